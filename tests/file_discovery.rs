//! Targets from a file, end to end: the real `tether` binary follows a targets file
//! the test writes (beside its config, or at an absolute path), in front of real
//! backends on 127.0.0.1. Targets added serve, targets removed drain, and a bad or
//! emptied file keeps the last good targets while the status page says why.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tether::admin::status::{DiscoveryView, Status};
use tokio_tungstenite::tungstenite::Message;

/// One listener forwarding to `web`, whose targets come from the file at `path`
/// (polled every 200 ms); a removed target drains for 30 s.
fn config(path: &str) -> String {
    web_config(
        r#"alb_limits = false
admin = "127.0.0.1:{admin}""#,
        &format!(
            r#"discovery = {{ file = {{ path = "{path}", interval = "200ms" }} }}
health_check = {{ path = "/health", interval = "200ms", timeout = "100ms", healthy_threshold = 2 }}
deregistration_delay = "30s""#
        ),
    )
}

/// Writes a new file and renames it over `path`, as careful tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write the new targets file");
    std::fs::rename(&tmp, path).expect("rename it over the old one");
}

/// A JSON array of the backends' addresses.
fn json(backends: &[&Backend]) -> String {
    let entries: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!("[{}]", entries.join(", "))
}

/// Waits (bounded) until the status page shows `group`'s discovery as `want` says.
async fn wait_discovery(
    lb: &TetherProc,
    group: &str,
    want: impl Fn(&DiscoveryView) -> bool,
) -> DiscoveryView {
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = Client::connect(admin).await.get("/status").await;
        let status: Status = serde_json::from_slice(&reply.body).expect("/status JSON");
        let seen = status.discovery.into_iter().find(|d| d.group == group);
        if let Some(d) = seen.as_ref().filter(|d| want(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "discovery of {group}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backends that answer 30 requests, sorted.
async fn serving(lb: &TetherProc) -> Vec<String> {
    let mut ids: Vec<String> = served_by(lb, "/", 30).await.into_keys().collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_follow_a_targets_file_through_additions_removals_and_a_bad_write() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let lb = TetherProc::start(&config("targets.json")).await;
    // Relative to the config file; not there yet: polls fail, the group is empty.
    let file = lb.config_path.with_file_name("targets.json");
    let missing = wait_discovery(&lb, "web", |d| d.failures > 0).await;
    assert!(
        missing
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("targets.json: cannot read")),
        "{missing:?}"
    );

    replace(&file, &json(&[&a, &b]));
    wait_served(&lb, "/", &["a", "b"]).await;
    wait_state(&lb, a.addr, "healthy").await;
    wait_state(&lb, b.addr, "healthy").await;

    // Add C, written as an object, as tools that list a state with each target do.
    replace(
        &file,
        &format!(
            "[\n  \"{}\",\n  \"{}\",\n  {{ \"address\": \"{}\", \"draining\": false }}\n]\n",
            a.addr, b.addr, c.addr
        ),
    );
    wait_served(&lb, "/", &["a", "b", "c"]).await;

    // Remove B: it drains and takes no new requests. (A websocket open on it keeps
    // it draining for the deregistration delay: with nothing open, draining ends at
    // once.)
    let mut ws = websocket_on(&lb, "b").await;
    replace(&file, &json(&[&a, &c]));
    wait_state(&lb, b.addr, "draining").await;
    assert_eq!(serving(&lb).await, ["a", "c"]);
    ws.send(Message::text("still here")).await.expect("send");
    let echo = ws.next().await.expect("open").expect("frame");
    assert_eq!(echo.into_text().unwrap().as_str(), "still here");

    // Garbage written in place: the last good targets stay (C still serves, B still
    // drains) and the status page names the file and line.
    std::fs::write(
        &file,
        format!("[\n  \"{}\",\n  \"{}\"\n  oops\n]\n", a.addr, c.addr),
    )
    .expect("write garbage");
    let bad = wait_discovery(&lb, "web", |d| d.failing_since_ms.is_some()).await;
    let error = bad.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with(&format!("{}:4:", file.display())),
        "{bad:?}"
    );
    assert_eq!(serving(&lb).await, ["a", "c"]);
    let states = target_states(&lb).await;
    for (addr, state) in [
        (a.addr, "healthy"),
        (b.addr, "draining"),
        (c.addr, "healthy"),
    ] {
        assert_eq!(
            states.get(&addr.port()).map(String::as_str),
            Some(state),
            "{states:?}"
        );
    }

    // Mended: discovery works again, and C leaves.
    replace(&file, &json(&[&a]));
    wait_served(&lb, "/", &["a"]).await;
    wait_discovery(&lb, "web", |d| d.failing_since_ms.is_none()).await;
    assert_not_serving(&lb, &c).await;

    // Only an explicit `[]` empties the group: requests get 503.
    replace(&file, "[]");
    wait_served(&lb, "/", &["status 503 Service Unavailable"]).await;
    assert_not_serving(&lb, &a).await;
    drop(ws);
}

/// A websocket through `lb` that landed on the backend `id` (bounded tries).
async fn websocket_on(
    lb: &TetherProc,
    id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    for _ in 0..30 {
        let (ws, reply) = tokio_tungstenite::connect_async(format!("ws://{}/ws", lb.addr()))
            .await
            .expect("websocket");
        if reply
            .headers()
            .get(BACKEND_HEADER)
            .and_then(|v| v.to_str().ok())
            == Some(id)
        {
            return ws;
        }
    }
    panic!("no websocket landed on {id}");
}

/// `backend` is out of the group: draining, or already gone (nothing was open).
async fn assert_not_serving(lb: &TetherProc, backend: &Backend) {
    let states = target_states(lb).await;
    let state = states.get(&backend.addr.port()).map(String::as_str);
    assert!(matches!(state, None | Some("draining")), "{states:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_read_a_text_file_and_keep_its_targets_while_it_is_empty() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("targets.txt");
    std::fs::write(&file, format!("# web, written by deploy.sh\n{}\n", a.addr)).unwrap();
    let lb = TetherProc::start(&config(&file.display().to_string())).await;
    wait_served(&lb, "/", &["a"]).await;
    wait_state(&lb, a.addr, "healthy").await;

    // Truncated, as a shell's `>` leaves it before the new lines come: an error,
    // not an empty group.
    std::fs::write(&file, "").unwrap();
    let empty = wait_discovery(&lb, "web", |d| d.failing_since_ms.is_some()).await;
    assert_eq!(
        empty.last_error.as_deref(),
        Some(
            format!(
                "{}: lists no targets; only a JSON `[]` removes every target",
                file.display()
            )
            .as_str()
        )
    );
    assert_eq!(serving(&lb).await, ["a"]);
    assert_eq!(
        target_states(&lb)
            .await
            .get(&a.addr.port())
            .map(String::as_str),
        Some("healthy")
    );

    // Written: both serve.
    std::fs::write(&file, format!("{}\n{}   # the new one\n", a.addr, b.addr)).unwrap();
    wait_served(&lb, "/", &["a", "b"]).await;
}

/// `tether check` on `config` written to a temp dir: exit code and stderr.
fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run tether check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn tether_check_accepts_a_targets_file_not_yet_written_and_points_at_a_bad_block() {
    let good = "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[target_group.web]\ndiscovery = { file = { path = \"later.json\" } }\n";
    assert_eq!(check(good), (0, String::new()));
    let (code, stderr) = check(&good.replace("path =", "interval = \"5s\", pth ="));
    assert_eq!(code, 2);
    assert!(
        stderr.ends_with("tether.toml:5:41: unknown field `pth`, expected `path` or `interval`"),
        "{stderr}"
    );
}
