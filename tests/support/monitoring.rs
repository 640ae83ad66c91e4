//! The chart's alert rules and Grafana dashboard, rendered, as the PromQL they run: checked
//! for syntax by Prometheus' own parser (`tests/chart.rs`) and for metric names against what
//! the running binaries export (`tests/kubernetes.rs`).

use super::*;

/// Every PromQL expression of the rendered PrometheusRule and dashboard, with the dashboard's
/// variables given sample values. Also checks each alert's shape.
pub fn rendered_queries() -> Vec<String> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/gatehouse");
    let out = Command::new(helm_binary())
        .args(["template", "gh"])
        .arg(&chart)
        .args(["-n", "gatehouse", "-f"])
        .arg(chart.join("ci/minimal-values.yaml"))
        .args([
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ])
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple::<Value>(&String::from_utf8_lossy(&out.stdout))
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut queries = Vec::new();
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let name = r["alert"].as_str().expect("every rule is an alert");
        assert!(r["for"].is_string(), "{name} has a for");
        assert!(
            ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{name} has a severity"
        );
        for a in ["summary", "description"] {
            assert!(r["annotations"][a].is_string(), "{name} has a {a}");
        }
        queries.push(r["expr"].as_str().unwrap().replace('\n', " "));
    }
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "gh-gatehouse-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["gatehouse.json"].as_str().unwrap()).unwrap();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queries.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$namespace", "gatehouse")
                    .replace("$job_server", "gh-gatehouse-server")
                    .replace("$job_operator", "gh-gatehouse-operator-metrics")
                    .replace("$tenant", ".*"),
            );
        }
    }
    queries
}

/// The Gatehouse metric names a query reads (`gatehouse_…`).
pub fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("gatehouse_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The sample names a Prometheus text exposition offers, from its `# TYPE` lines (a counter
/// `x` is sampled as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`).
pub fn exported_names(exposition: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => names.push(format!("{name}_total")),
            "histogram" => {
                for suffix in ["bucket", "sum", "count"] {
                    names.push(format!("{name}_{suffix}"));
                }
            }
            _ => names.push(name.to_string()),
        }
    }
    names
}
