//! Traces over OTLP (HTTP, JSON encoding), off unless the standard `OTEL_*` environment asks:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (plus
//! `/v1/traces`), `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,...`), `OTEL_SERVICE_NAME`
//! (default `gatehouse`) and `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn it off again. Only `http/json` is spoken (every OpenTelemetry
//! Collector accepts it on port 4318); another `OTEL_EXPORTER_OTLP_PROTOCOL` is refused at start.
//!
//! The spans are those of target `gatehouse::trace` (the request, client authentication,
//! sign-in, argon2, signing and each store call), at trace level: with no exporter nothing
//! enables them, and a disabled span costs a cached check.

use crate::http_client::Http;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, field::Field, field::Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target of the spans exported.
pub const TARGET: &str = "gatehouse::trace";
/// Spans kept waiting for the exporter at most; beyond, new ones are dropped (and counted).
const MAX_QUEUED: usize = 20_000;
/// How often finished spans are sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Where and how traces go, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporting {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub resource: Vec<(String, String)>,
}

/// The exporting the environment asks for: `Ok(None)` when it asks for none.
///
/// # Errors
/// A protocol other than `http/json`.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Exporting>, String> {
    let off = |name: &str, value: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case(value));
    if off("OTEL_SDK_DISABLED", "true") || off("OTEL_TRACES_EXPORTER", "none") {
        return Ok(None);
    }
    let url = match (
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.is_empty()),
        get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty()),
    ) {
        (Some(url), _) => url,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/json".into());
    if protocol != "http/json" {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: Gatehouse exports traces with http/json only (an OpenTelemetry Collector takes it on port 4318)"
        ));
    }
    let pairs = |value: Option<String>| -> Vec<(String, String)> {
        value
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| !k.is_empty())
            .collect()
    };
    let headers = pairs(
        get("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| get("OTEL_EXPORTER_OTLP_HEADERS")),
    );
    let mut resource = pairs(get("OTEL_RESOURCE_ATTRIBUTES"));
    let service = get("OTEL_SERVICE_NAME").filter(|v| !v.is_empty());
    match (service, resource.iter().any(|(k, _)| k == "service.name")) {
        (Some(name), _) => {
            resource.retain(|(k, _)| k != "service.name");
            resource.push(("service.name".into(), name));
        }
        (None, false) => resource.push(("service.name".into(), "gatehouse".into())),
        (None, true) => {}
    }
    Ok(Some(Exporting {
        url,
        headers,
        resource,
    }))
}

/// A span being recorded.
struct Open {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
    start: u64,
    attributes: Vec<(&'static str, Value)>,
}

enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
}

struct Fields<'a>(&'a mut Vec<(&'static str, Value)>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), Value::Text(value.to_string())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::Int(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((
            field.name(),
            Value::Int(i64::try_from(value).unwrap_or(i64::MAX)),
        ));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::Bool(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name(), Value::Text(format!("{value:?}"))));
    }
}

/// Finished spans, as OTLP JSON objects, waiting for the exporter.
#[derive(Default)]
struct Queue {
    spans: Vec<serde_json::Value>,
    dropped: u64,
}

/// The layer that records `gatehouse::trace` spans for export.
pub struct OtlpLayer {
    queue: Arc<Mutex<Queue>>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    gatehouse_core::random::system()
        .bytes::<N>()
        .unwrap_or([1; N])
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            use std::fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        })
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<Open>()
                .map(|o| (o.trace_id, o.span_id))
        });
        let mut attributes = Vec::new();
        attrs.record(&mut Fields(&mut attributes));
        let open = Open {
            trace_id: parent.map_or_else(random_bytes::<16>, |(t, _)| t),
            span_id: random_bytes::<8>(),
            parent: parent.map(|(_, s)| s),
            name: attrs.metadata().name(),
            start: unix_nanos(),
            attributes,
        };
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut Fields(&mut open.attributes));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let attributes: Vec<serde_json::Value> = open
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Text(t) => serde_json::json!({"stringValue": t}),
                    Value::Int(i) => serde_json::json!({"intValue": i.to_string()}),
                    Value::Bool(b) => serde_json::json!({"boolValue": b}),
                };
                serde_json::json!({"key": key, "value": value})
            })
            .collect();
        let mut json = serde_json::json!({
            "traceId": hex(&open.trace_id),
            "spanId": hex(&open.span_id),
            "name": open.name,
            // SERVER for the request, INTERNAL for the rest (OTLP SpanKind).
            "kind": if open.parent.is_none() && open.name == "request" { 2 } else { 1 },
            "startTimeUnixNano": open.start.to_string(),
            "endTimeUnixNano": unix_nanos().to_string(),
            "attributes": attributes,
        });
        if let Some(parent) = open.parent {
            json["parentSpanId"] = serde_json::Value::String(hex(&parent));
        }
        if let Ok(mut queue) = self.queue.lock() {
            if queue.spans.len() < MAX_QUEUED {
                queue.spans.push(json);
            } else {
                queue.dropped += 1;
            }
        }
    }
}

/// The layer, and a thread that sends what it records every second.
///
/// # Errors
/// The HTTP client cannot be set up, or the thread cannot start.
pub fn start(exporting: Exporting) -> anyhow::Result<OtlpLayer> {
    let queue: Arc<Mutex<Queue>> = Arc::default();
    let shipped = queue.clone();
    let http = Http::new(None)?;
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(export_forever(http, exporting, shipped));
        })?;
    Ok(OtlpLayer { queue })
}

async fn export_forever(http: Http, exporting: Exporting, queue: Arc<Mutex<Queue>>) {
    let resource: Vec<serde_json::Value> = exporting
        .resource
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    let headers: Vec<(&str, &str)> = exporting
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut failing = false;
    loop {
        tokio::time::sleep(EXPORT_EVERY).await;
        let (spans, dropped) = match queue.lock() {
            Ok(mut q) => (std::mem::take(&mut q.spans), std::mem::take(&mut q.dropped)),
            Err(_) => return,
        };
        if dropped > 0 {
            tracing::warn!(dropped, "trace export cannot keep up; spans dropped");
        }
        if spans.is_empty() {
            continue;
        }
        let body = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": resource},
            "scopeSpans": [{"scope": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
        }]});
        match http.post_json(&exporting.url, &body, &headers).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                if failing {
                    tracing::info!(url = %exporting.url, "trace export works again");
                    failing = false;
                }
            }
            Ok(answer) => {
                if !failing {
                    tracing::warn!(url = %exporting.url, status = answer.status, "trace export refused; spans dropped until it works");
                    failing = true;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(url = %exporting.url, error = %e, "trace export failed; spans dropped until it works");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_standard_environment_decides() {
        assert_eq!(from_env(env(&[])), Ok(None), "off unless configured");
        let on = from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer x, tenant=a",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(on.url, "http://collector:4318/v1/traces");
        assert_eq!(
            on.headers,
            [
                ("authorization".to_string(), "Bearer x".to_string()),
                ("tenant".to_string(), "a".to_string())
            ]
        );
        assert!(
            on.resource
                .contains(&("service.name".into(), "gatehouse".into()))
        );
        let named = from_env(env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/traces"),
            ("OTEL_SERVICE_NAME", "auth"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(named.url, "http://c/traces");
        assert_eq!(named.resource, [("service.name".into(), "auth".into())]);
        assert_eq!(
            from_env(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_SDK_DISABLED", "true")
            ])),
            Ok(None)
        );
        assert!(
            from_env(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ]))
            .unwrap_err()
            .contains("http/json only")
        );
    }
}
