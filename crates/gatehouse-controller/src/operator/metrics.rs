//! The operator's metrics: reconciliations, errors and their durations, by kind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

pub struct OperatorMetrics {
    pub registry: Registry,
    reconciliations: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    in_flight: Family<KindLabel, Gauge>,
    pending: Family<KindLabel, Gauge>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse_operator");
        let reconciliations = Family::<KindLabel, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0])
        });
        let leader = Gauge::default();
        let in_flight = Family::<KindLabel, Gauge>::default();
        let pending = Family::<KindLabel, Gauge>::default();
        registry.register(
            "objects_pending",
            "Objects whose latest spec or deletion is not reconciled yet, by kind: the controller's backlog (sampled every few seconds while leading)",
            pending.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now, by kind (at most the controller's concurrency: a value that stays there means a queue behind it)",
            in_flight.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciliations run, by kind",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed and will be retried, by kind and error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconciliation took, by kind",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        // Every series exists from the start, at zero: a dashboard shows 0, not "no data",
        // and an alert on a rate sees the first failure.
        for kind in [super::tenant::KIND, super::client::KIND] {
            let _ = reconciliations.get_or_create(&KindLabel { kind });
            let _ = in_flight.get_or_create(&KindLabel { kind });
            let _ = pending.get_or_create(&KindLabel { kind });
            for error in super::ReconcileError::LABELS {
                let _ = errors.get_or_create(&ErrorLabels { kind, error });
            }
        }
        OperatorMetrics {
            registry,
            reconciliations,
            errors,
            duration,
            in_flight,
            pending,
            leader,
        }
    }

    /// Sets how many objects of `kind` wait to be reconciled.
    pub fn set_pending(&self, kind: &'static str, count: usize) {
        self.pending
            .get_or_create(&KindLabel { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one reconciliation of `kind`; its duration is recorded when the guard drops.
    pub fn start(&self, kind: &'static str) -> Timer<'_> {
        self.reconciliations
            .get_or_create(&KindLabel { kind })
            .inc();
        self.in_flight.get_or_create(&KindLabel { kind }).inc();
        Timer {
            metrics: self,
            kind,
            started: Instant::now(),
        }
    }

    pub fn error(&self, kind: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, error })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct Timer<'a> {
    metrics: &'a OperatorMetrics,
    kind: &'static str,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabel { kind: self.kind })
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .in_flight
            .get_or_create(&KindLabel { kind: self.kind })
            .dec();
    }
}
