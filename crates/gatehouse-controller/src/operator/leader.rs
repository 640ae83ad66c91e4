//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at once. The holder renews the lease well within its duration; a replica takes
//! it over only once it has expired. Every write carries the resourceVersion it read, so two
//! candidates racing for an expired lease cannot both win.

use gatehouse_core::clock::Clock;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use std::sync::Arc;
use std::time::Duration;

pub const LEASE_NAME: &str = "gatehouse-operator";
/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and a candidate retries).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);

pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    /// The process's clock: lease times are wall-clock times other replicas compare.
    clock: Arc<dyn Clock>,
}

fn conflict(e: &Error) -> bool {
    matches!(e, Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, identity: String, clock: Arc<dyn Clock>) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            identity,
            clock,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes or renews the lease. True if this replica holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool, Error> {
        let now = Timestamp::from_second(i64::try_from(self.clock.now()).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let mut lease = Lease::default();
            lease.metadata.name = Some(LEASE_NAME.into());
            lease.spec = Some(self.spec(None, now));
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let duration = spec.lease_duration_seconds.unwrap_or(0);
            renewed.0 + SignedDuration::from_secs(i64::from(duration)) < now
        });
        if !ours && holder.is_some() && !expired {
            return Ok(false);
        }
        lease.spec = Some(self.spec(Some(&spec), now));
        // Replace carries the resourceVersion read above: a concurrent winner makes this 409.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so another replica need not wait for it to expire.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let renewing =
            previous.is_some_and(|p| p.holder_identity.as_deref() == Some(self.identity.as_str()));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if renewing {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if renewing || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }
}

/// Waits until this replica holds the lease, trying every [`RENEW_INTERVAL`]. False if
/// `stopped` resolves first.
pub async fn acquire(
    elector: &LeaderElector,
    stopped: impl std::future::Future<Output = ()>,
) -> bool {
    futures::pin_mut!(stopped);
    loop {
        match elector.try_acquire().await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the leader lease; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(RENEW_INTERVAL) => {}
            () = &mut stopped => return false,
        }
    }
}

/// Renews the lease every [`RENEW_INTERVAL`] until `stopped` resolves (false) or the lease is
/// lost: taken by another replica, or not renewed for [`LEASE_DURATION`] (true).
pub async fn hold(elector: LeaderElector, stopped: impl std::future::Future<Output = ()>) -> bool {
    futures::pin_mut!(stopped);
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(RENEW_INTERVAL) => {}
            () = &mut stopped => return false,
        }
        match elector.try_acquire().await {
            Ok(true) => renewed = std::time::Instant::now(),
            Ok(false) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
        }
        if renewed.elapsed() >= LEASE_DURATION {
            return true;
        }
    }
}

/// The lease, held: renewed in the background until the process stops or the lease is lost.
pub struct Leadership {
    end: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Leadership {
    /// Starts renewing with `elector` until `stopped` resolves or the lease is lost.
    pub fn keep(
        elector: LeaderElector,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        use futures::FutureExt;
        let (tx, lost) = tokio::sync::watch::channel(false);
        let stopped = stopped.shared();
        let renewer = tokio::spawn(hold(elector, stopped.clone()));
        tokio::spawn(async move {
            if renewer.await.unwrap_or(false) {
                let _ = tx.send(true);
            }
        });
        let mut lost_now = lost.clone();
        let end = async move {
            tokio::select! {
                () = stopped => {}
                _ = lost_now.wait_for(|l| *l) => {}
            }
        }
        .boxed()
        .shared();
        Leadership { end, lost }
    }

    /// Resolves when leading must end: the process stops, or the lease was lost.
    pub fn end(&self) -> impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static {
        self.end.clone()
    }

    /// Whether the lease was lost (rather than given up).
    #[must_use]
    pub fn lost(&self) -> bool {
        *self.lost.borrow()
    }
}
