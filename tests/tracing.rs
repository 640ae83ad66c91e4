//! Traces over OTLP (http/json) through the real binary: with the standard `OTEL_*`
//! environment set, a token request's trace reaches a collector with its spans (the request,
//! client authentication, argon2, signing, the store call), linked as one trace.

mod support;

use axum::body::Bytes;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use support::*;

/// A stand-in OpenTelemetry Collector: keeps every OTLP/HTTP JSON export it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                assert_eq!(headers["content-type"], "application/json");
                assert_eq!(
                    headers["x-collector-key"], "k1",
                    "OTEL_EXPORTER_OTLP_HEADERS"
                );
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

/// Every span received, with the service name it came under.
fn spans(received: &Mutex<Vec<Value>>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for export in received.lock().unwrap().iter() {
        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    out.push((service.clone(), span.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn a_token_requests_trace_reaches_the_collector_as_one_trace() {
    let (url, received) = collector().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in fixtures() {
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let g = Gatehouse::start_with_env(
        &redis.url(),
        dir,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k1"),
            ("OTEL_SERVICE_NAME", "gatehouse-test"),
        ],
    );
    // A JWT tenant (signing) and an opaque one (a store write), each a first request (argon2).
    let r = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = client_credentials(&g, "globex", "globex-ops", "globex-secret", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    eventually(10, "the spans to be exported", || {
        let names: Vec<String> = spans(&received)
            .iter()
            .map(|(_, s)| s["name"].as_str().unwrap_or_default().to_string())
            .collect();
        async move {
            [
                "request",
                "client_authentication",
                "argon2",
                "sign",
                "store",
            ]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
        }
    })
    .await;
    let all = spans(&received);
    assert!(all.iter().all(|(service, _)| service == "gatehouse-test"));
    let span = |name: &str| -> Value {
        all.iter()
            .map(|(_, s)| s.clone())
            .find(|s| s["name"] == name)
            .unwrap()
    };
    // The sign span belongs to a request's trace, under its client authentication or the
    // request itself; every span of the trace shares its id.
    let signed = span("sign");
    let trace = signed["traceId"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 32);
    let of_trace: Vec<&Value> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["traceId"] == trace.as_str())
        .collect();
    let root = of_trace
        .iter()
        .find(|s| s["name"] == "request")
        .expect("the request span roots the trace");
    assert!(root.get("parentSpanId").is_none());
    assert_eq!(root["kind"], 2, "SERVER");
    let status = root["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "http.response.status_code")
        .unwrap();
    assert_eq!(status["value"]["intValue"], "200");
    assert!(
        of_trace
            .iter()
            .any(|s| s["name"] == "client_authentication" && s["parentSpanId"] == root["spanId"])
    );
    let store = span("store");
    assert!(
        store["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "db.operation"),
        "{store}"
    );
    // No secret or token in any span.
    let text = serde_json::to_string(&*received.lock().unwrap()).unwrap();
    assert!(!text.contains(BILLING_SECRET) && !text.contains("globex-secret"));
}

#[test]
fn an_otlp_protocol_it_does_not_speak_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary())
        .args(["standalone", "--manifests"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http/json only"), "{err}");
}
