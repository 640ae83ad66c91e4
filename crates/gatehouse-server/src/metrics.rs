//! Prometheus metrics of the token service and the middleware that records them, and writes
//! the one log line per request: method, route template, tenant, status, latency and, for a
//! failure, the client, the RFC error code and the internal detail — never a query string,
//! header or body, so no secret or token can reach the log. Failures at info (client errors)
//! or warn (5xx); successes at debug.

use crate::AppState;
use crate::error::{Failure, Succeeded};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gatehouse_core::GrantType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

// Label values that come from a fixed set are `&'static str`: the labels of every request
// are built on the hot path, and borrowed values cost no allocation.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    tenant: String,
    grant_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tenant: String,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    outcome: &'static str,
}

/// A route template as a `&'static str`. Templates are the router's own (a fixed, small set:
/// requests cannot add to it), so each is leaked once and reused.
fn route_label(template: &str) -> &'static str {
    static ROUTES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    if let Ok(known) = ROUTES.read()
        && let Some(found) = known.iter().find(|r| **r == template)
    {
        return found;
    }
    let mut known = match ROUTES.write() {
        Ok(k) => k,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(found) = known.iter().find(|r| **r == template) {
        return found;
    }
    let leaked: &'static str = Box::leak(template.to_string().into_boxed_str());
    known.push(leaked);
    leaked
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;
type StoreHistogramFamily = Family<StoreLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    tokens: Family<TokenLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    pub tenants: Gauge,
    sign_ins: Family<SignInLabels, Counter>,
    client_auth_failures: Family<TenantLabels, Counter>,
    store_latency: StoreHistogramFamily,
    argon2_waiting: Gauge,
    argon2_jobs: Counter,
    argon2_wait: Counter<f64, std::sync::atomic::AtomicU64>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// From 50 µs (a Redis round trip on one host) to about 3 s.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let tokens = Family::<TokenLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let tenants = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Access tokens issued by tenant and grant type",
            tokens.clone(),
        );
        registry.register(
            "oauth_errors",
            "OAuth error responses by tenant and error code",
            errors.clone(),
        );
        registry.register("tenants", "Tenants currently served", tenants.clone());
        let sign_ins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "sign_ins",
            "Password sign-ins (sign-in page and password grant) by tenant and outcome: success, failure (wrong username or password), locked (refused by brute-force protection)",
            sign_ins.clone(),
        );
        let client_auth_failures = Family::<TenantLabels, Counter>::default();
        registry.register(
            "client_authentication_failures",
            "Requests refused with invalid_client, by tenant",
            client_auth_failures.clone(),
        );
        let store_latency: StoreHistogramFamily = Family::new_with_constructor(store_histogram);
        registry.register(
            "store_operation_duration_seconds",
            "Store calls by operation (the Store method) and outcome (ok, error)",
            store_latency.clone(),
        );
        let argon2_waiting = Gauge::default();
        registry.register(
            "argon2_queue_depth",
            "argon2id verifications waiting for a worker",
            argon2_waiting.clone(),
        );
        let argon2_jobs = Counter::default();
        registry.register("argon2_jobs", "argon2id jobs started", argon2_jobs.clone());
        let argon2_wait = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "argon2_queue_wait_seconds",
            "Time argon2id jobs waited for a worker, altogether (divide by argon2_jobs for the mean)",
            argon2_wait.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            tokens,
            errors,
            tenants,
            sign_ins,
            client_auth_failures,
            store_latency,
            argon2_waiting,
            argon2_jobs,
            argon2_wait,
        }
    }

    /// A request refused with `invalid_client`.
    pub fn client_authentication_failed(&self, tenant: &str) {
        self.client_auth_failures
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// A store call (see `gatehouse_store::timed`).
    pub fn store_call(&self, operation: &'static str, elapsed: std::time::Duration, ok: bool) {
        self.store_latency
            .get_or_create(&StoreLabels {
                operation,
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Reads the argon2 workers' counts into the metrics (at each scrape).
    fn read_argon2(&self) {
        let workers = gatehouse_core::argon2_workers::Argon2Workers::shared();
        self.argon2_waiting
            .set(i64::try_from(workers.waiting()).unwrap_or(i64::MAX));
        let (started, waited) = workers.waited();
        self.argon2_jobs
            .inc_by(started.saturating_sub(self.argon2_jobs.get()));
        let more = waited - self.argon2_wait.get();
        if more > 0.0 {
            self.argon2_wait.inc_by(more);
        }
    }

    pub fn token_issued(&self, tenant: &str, grant: GrantType) {
        self.tokens
            .get_or_create(&TokenLabels {
                tenant: tenant.to_string(),
                grant_type: grant.as_str(),
            })
            .inc();
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        self.read_argon2();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The tenant a routed request addresses, if the route has one and the tenant exists (unknown
/// names are not used as label values, so garbage paths cannot blow up cardinality).
fn tenant_of(state: &AppState, template: &str, path: &str) -> Option<String> {
    let index = template.split('/').position(|s| s == "{tenant}")?;
    let offset = template.split('/').count();
    let segments: Vec<&str> = path.split('/').collect();
    // Nested routers report the full template, so both line up from the end.
    let name = segments.get(segments.len().checked_sub(offset)? + index)?;
    state.directory.get(name).map(|_| name.to_string())
}

pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| route_label(m.as_str()));
    // A `Uri` clone shares its bytes; the path is only read when the tenant is needed below.
    let uri = request.uri().clone();
    // The root of the request's trace (kept only when traces are exported).
    let span = tracing::trace_span!(
        target: "gatehouse::trace",
        "request",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    let failure = response.extensions().get::<Failure>();
    let logged =
        status >= 400 || tracing::enabled!(target: "gatehouse::access", tracing::Level::DEBUG);
    if failure.is_none() && !logged {
        return response;
    }
    let tenant = tenant_of(&state, route, uri.path());
    let tenant_label = tenant.as_deref().unwrap_or("-");
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let Some(failure) = failure else {
        match response.extensions().get::<Succeeded>() {
            Some(served) => {
                let (client, grant) = (served.client.as_str(), served.grant);
                tracing::debug!(target: "gatehouse::access", %method, %route, tenant = tenant_label, client, grant, status, micros);
            }
            None => {
                tracing::debug!(target: "gatehouse::access", %method, %route, tenant = tenant_label, status, micros);
            }
        }
        return response;
    };
    m.errors
        .get_or_create(&ErrorLabels {
            tenant: tenant.clone().unwrap_or_else(|| "unknown".into()),
            error: failure.code.as_str(),
        })
        .inc();
    if failure.code == gatehouse_core::ErrorCode::InvalidClient
        && let Some(tenant) = &tenant
    {
        m.client_authentication_failed(tenant);
    }
    // The one line a failed request gets: client errors (and errors sent back to a client's
    // redirect URI) at info, server errors and an unavailable store at warn.
    let error = failure.code.as_str();
    let client = failure.client.as_deref().unwrap_or("-");
    let grant = failure.grant.unwrap_or("-");
    match (status >= 500, failure.detail.as_deref()) {
        (true, Some(detail)) => {
            tracing::warn!(target: "gatehouse::access", %method, %route, tenant = tenant_label, client, grant, status, error, detail, micros);
        }
        (true, None) => {
            tracing::warn!(target: "gatehouse::access", %method, %route, tenant = tenant_label, client, grant, status, error, micros);
        }
        (false, Some(detail)) => {
            tracing::info!(target: "gatehouse::access", %method, %route, tenant = tenant_label, client, grant, status, error, detail, micros);
        }
        (false, None) => {
            tracing::info!(target: "gatehouse::access", %method, %route, tenant = tenant_label, client, grant, status, error, micros);
        }
    }
    response
}

impl gatehouse_flows::Observer for Metrics {
    fn sign_in(&self, tenant: &str, outcome: gatehouse_flows::SignInOutcome) {
        self.sign_ins
            .get_or_create(&SignInLabels {
                tenant: tenant.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }
}
