//! The admin API's status page (`GET /`) in headless Chromium (Debian's `chromium`,
//! driven by puppeteer-core as the Socket.IO example's browser test drives it:
//! tests/status/page.js): it shows every target's state, the rules in priority
//! order, a target turning unhealthy when its backend stops, request rates, and fits
//! a phone's width. Everything listens on 127.0.0.1.
//!
//! Needs node, chromium and `npm ci` in examples/socketio-chat (for puppeteer-core):
//! `scripts/setup --tests` installs them. `STATUS_PAGE_SCREENSHOT=docs/status-page.png`
//! keeps the screenshot (the README's); otherwise it goes to a temp dir.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{listener, Backend, Client, TetherProc};
use serde_json::Value;

fn puppeteer_modules() -> PathBuf {
    let modules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/socketio-chat/node_modules");
    assert!(
        modules.join("puppeteer-core").exists(),
        "{} has no puppeteer-core: run scripts/setup --tests (npm ci)",
        modules.display()
    );
    common::require_tools(&["node", "chromium"]);
    modules
}

/// The next JSON line the script prints (60 s at most).
fn next_json(lines: &Receiver<String>) -> Value {
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a line from tests/status/page.js");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_ne!(v["ok"], false, "{v}");
    v
}

fn state_of<'a>(v: &'a Value, target: &str) -> Option<&'a str> {
    v["states"]
        .as_array()?
        .iter()
        .find(|s| s["target"] == target)?["state"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_show_every_target_and_a_target_turning_unhealthy_in_a_browser() {
    let modules = puppeteer_modules();
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let check = r#"health_check = { interval = "500ms", timeout = "200ms", healthy_threshold = 2, unhealthy_threshold = 2 }"#;
    let listener = listener(
        "web",
        &[
            (20, "/api/*", r#"{ forward = "api" }"#),
            (
                10,
                "/maintenance",
                r#"{ fixed_response = { status = 503, body = "later" } }"#,
            ),
        ],
    );
    let config = format!(
        r#"
[load_balancer]
name = "status-test"
alb_limits = false
admin = "127.0.0.1:{{admin}}"
{listener}[target_group.web]
targets = ["{}", "{}"]
{check}
[target_group.api]
targets = ["{}"]
{check}
"#,
        a.addr, b.addr, c.addr
    );
    let lb = TetherProc::start(&config).await;
    // Some traffic, so that the page has request rates to show.
    let addr = lb.addr();
    let traffic = tokio::spawn(async move {
        loop {
            let mut client = Client::connect(addr).await;
            for path in ["/", "/api/x", "/"] {
                let _ = client.try_send(common::request("GET", path, &[])).await;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });

    // An open websocket to c (api), for the websockets column.
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/ws"))
        .await
        .expect("websocket through tether");

    let dir = tempfile::tempdir().expect("tempdir");
    let screenshot = std::env::var_os("STATUS_PAGE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("status-page.png"));
    let url = format!("http://127.0.0.1:{}/", lb.admin_port);
    let mut node = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/status/page.js"))
        .arg(&url)
        .arg(&screenshot)
        .args([a.addr, b.addr, c.addr].map(|a| a.to_string()))
        .env("NODE_PATH", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node tests/status/page.js");
    let lines = common::lines_of(node.stdout.take().expect("stdout"));

    let first = next_json(&lines);
    for t in [a.addr, b.addr, c.addr] {
        assert_eq!(
            state_of(&first, &t.to_string()),
            Some("healthy"),
            "{t}: {first}"
        );
    }
    // Rules in priority order, the default action last.
    let rules: Vec<&str> = first["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert!(rules[0].contains("path_pattern /maintenance"), "{rules:?}");
    assert!(rules[1].contains("path_pattern /api/*"), "{rules:?}");
    assert!(
        rules[2].starts_with("default") && rules[2].contains("forward web"),
        "{rules:?}"
    );

    // Stop a's backend: its health checks fail, and the page shows it.
    let stopped = a.addr;
    drop(a);
    let mut stdin = node.stdin.take().expect("stdin");
    writeln!(stdin, "go").expect("write to node");
    let second = next_json(&lines);
    assert_eq!(
        state_of(&second, &stopped.to_string()),
        Some("unhealthy"),
        "{second}"
    );
    assert_eq!(
        state_of(&second, &b.addr.to_string()),
        Some("healthy"),
        "{second}"
    );
    assert_eq!(second["websockets"], "1", "c's open websocket: {second}");
    let rate: f64 = second["rate"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a request rate for b: {second}"));
    assert!(rate > 0.0, "{second}");
    // Readable on a phone: no sideways scrolling at 390 px.
    let phone = &second["phone"];
    assert!(
        phone["scrollWidth"].as_u64() <= phone["innerWidth"].as_u64(),
        "{phone}"
    );
    assert_eq!(phone["viewport"], "width=device-width, initial-scale=1");
    // Not a six-column table squeezed into 390 px: each cell gets the row's width.
    assert!(
        phone["cellShare"].as_f64().is_some_and(|s| s > 0.9),
        "{phone}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        screenshot.display()
    );
    let _ = node.wait();
    traffic.abort();
}
