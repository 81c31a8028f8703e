//! contrib/grafana/tether.json asks only for what tether exports: every metric name
//! in the dashboard's queries has series in `GET /metrics` of a real tether that
//! runs everything the dashboard shows (a listener, a target behind it, file
//! discovery, health checks, `socketio` pinning and `shared_state`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::Value;

use common::{Backend, Client, TetherProc};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/tether.json");

/// The metric names (`tether_…`) in `text`.
fn names_in(text: &str, out: &mut BTreeSet<String>) {
    let name = regex::Regex::new(r"\btether_[a-z0-9_]+").expect("regex");
    out.extend(name.find_iter(text).map(|m| m.as_str().to_string()));
}

/// Every metric name the dashboard queries: panel targets' `expr`, and the template
/// variables' queries (`query`, `definition`), wherever they nest.
fn dashboard_names(value: &Value, key: Option<&str>, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if matches!(key, Some("expr" | "query" | "definition")) => {
            names_in(s, out)
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_names(v, key, out)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| dashboard_names(v, Some(k.as_str()), out)),
        _ => {}
    }
}

/// A histogram's series (`_bucket`, `_sum`, `_count`) under the family's name; any
/// other name as it is.
fn base<'a>(name: &'a str, histograms: &BTreeSet<String>) -> &'a str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s).filter(|b| histograms.contains(*b)))
        .unwrap_or(name)
}

/// The names of `wanted` with no series in the exposition `text` (a `# HELP` or
/// `# TYPE` line alone is not a series: a panel over it would stay empty).
fn missing(wanted: &BTreeSet<String>, text: &str) -> Vec<String> {
    let histograms: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .map(str::to_string)
        .collect();
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| base(n, &histograms))
        .collect();
    wanted
        .iter()
        .filter(|n| !exposed.contains(base(n, &histograms)))
        .cloned()
        .collect()
}

/// One group `web` whose target comes from the file `targets`, with health checks,
/// Socket.IO pinning, and a shared store on a refused port (its metrics are exported
/// whenever it is configured, `tether_shared_state_up` 0).
fn config(targets: &str) -> String {
    common::web_config(
        r#"name = "dash"
admin = "127.0.0.1:{admin}"
shared_state = { redis = "redis://127.0.0.1:1" }"#,
        &format!(
            r#"discovery = {{ file = {{ path = "{targets}", interval = "1s" }} }}
socketio = {{ path = "/socket.io/" }}
health_check = {{ path = "/health", interval = "5s", timeout = "2s", healthy_threshold = 2 }}"#
        ),
    )
}

#[tokio::test]
async fn it_should_query_only_metrics_that_tether_exports() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(DASHBOARD).expect("read contrib/grafana/tether.json"),
    )
    .expect("the dashboard is JSON");
    let mut wanted = BTreeSet::new();
    dashboard_names(&dashboard, None, &mut wanted);
    assert!(
        wanted.len() >= 15,
        "too few metric names in the dashboard: {wanted:?}"
    );

    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = dir.path().join("targets.txt");
    std::fs::write(&targets, format!("{}\n", web.addr)).expect("write targets");
    let lb = TetherProc::start(&config(&targets.display().to_string())).await;
    // Discovered, and requests through it: the target's series exist.
    common::wait_served(&lb, "/", &["web"]).await;

    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let reply = Client::connect(admin).await.get("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(
        text.lines()
            .any(|l| l == r#"tether_shared_state_up{load_balancer="dash"} 0"#),
        "shared_state up with Redis refused:\n{text}"
    );

    let absent = missing(&wanted, &text);
    assert!(
        absent.is_empty(),
        "the dashboard queries metrics tether does not export: {absent:?}\n{text}"
    );

    // Negative controls, through the same check: a made-up name, and a histogram
    // suffix on a metric that is not a histogram.
    for bogus in ["tether_not_a_metric", "tether_healthy_hosts_count"] {
        let one = BTreeSet::from([bogus.to_string()]);
        assert_eq!(missing(&one, &text), vec![bogus.to_string()]);
    }
    // And a histogram's series count as the histogram.
    let bucket = BTreeSet::from(["tether_target_response_time_seconds_bucket".to_string()]);
    assert!(missing(&bucket, &text).is_empty());
}
