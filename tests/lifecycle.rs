//! Target health and lifecycle through the real binary: active checks, fail-open,
//! passive failures with retries, draining, slow start, least_connections, and
//! `tether targets`. Checks run fast here (`alb_limits = false`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn targets(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    list.join(", ")
}

/// One listener forwarding to group "web" with fast health checks.
fn config(backends: &[&Backend], group_extra: &str) -> String {
    format!(
        r#"
[load_balancer]
threads = 2
alb_limits = false
admin = "127.0.0.1:{{admin}}"
sticky_keys = ["{KEY}"]
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "web" }}
[target_group.web]
targets = [{targets}]
health_check = {{ path = "/health", interval = "200ms", timeout = "100ms", healthy_threshold = 2, unhealthy_threshold = 2 }}
{group_extra}
"#,
        targets = targets(backends)
    )
}

async fn hits(lb: &TetherProc, n: usize) -> HashMap<String, usize> {
    let mut client = Client::connect(lb.addr()).await;
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = client.get("/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        *seen.entry(r.text()).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn it_should_take_a_failing_target_out_and_move_its_sticky_clients() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = TetherProc::start(&config(
        &[&a, &b, &c],
        r#"stickiness = { type = "lb_cookie" }"#,
    ))
    .await;
    for t in [&a, &b, &c] {
        wait_state(&lb, t.addr, "healthy").await;
    }
    // A client pinned to b.
    let mut pair = None;
    for _ in 0..10 {
        let r = Client::connect(lb.addr()).await.get("/").await;
        if r.text() == "b" {
            pair = r.cookie_pair("AWSALB");
            break;
        }
    }
    let pair = pair.expect("a client lands on b");

    b.set_health(Health::Fail500);
    wait_state(&lb, b.addr, "unhealthy").await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let states = tether::admin::fetch_targets(admin)
        .await
        .expect("admin /targets");
    let reason = &states[0]
        .targets
        .iter()
        .find(|t| t.port == b.addr.port())
        .unwrap()
        .reason;
    assert_eq!(reason, "Target.ResponseCodeMismatch");
    let seen = hits(&lb, 30).await;
    assert!(
        !seen.contains_key("b"),
        "an unhealthy target gets no new requests: {seen:?}"
    );

    let mut client = Client::connect(lb.addr()).await;
    let moved = client
        .send(request("GET", "/", &[("cookie", pair.as_str())]))
        .await;
    assert_eq!(moved.status, 200);
    assert_ne!(moved.text(), "b");
    let new_pair = moved.cookie_pair("AWSALB").expect("a new cookie");
    assert_ne!(new_pair, pair);

    b.set_health(Health::Ok);
    wait_state(&lb, b.addr, "healthy").await;
    let seen = hits(&lb, 30).await;
    assert!(
        seen.get("b").copied().unwrap_or(0) > 0,
        "b is back: {seen:?}"
    );
}

#[tokio::test]
async fn it_should_fail_open_when_every_target_is_unhealthy() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = TetherProc::start(&config(&[&a, &b], "")).await;
    a.set_health(Health::Fail500);
    b.set_health(Health::Hang);
    wait_state(&lb, a.addr, "unhealthy").await;
    wait_state(&lb, b.addr, "unhealthy").await;
    let seen = hits(&lb, 20).await;
    assert_eq!(
        seen.len(),
        2,
        "fail-open routes to all registered targets: {seen:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["targets", "--config"])
        .arg(&lb.config_path)
        .output()
        .expect("tether targets");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("web (fail-open)"), "{table}");
    assert!(table.contains("Target.Timeout"), "{table}");
    assert!(table.contains("Target.ResponseCodeMismatch"), "{table}");
}

#[tokio::test]
async fn it_should_lose_no_idempotent_request_when_a_target_dies() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = TetherProc::start(&config(&[&a, &b, &c], "")).await;
    for t in [&a, &b, &c] {
        wait_state(&lb, t.addr, "healthy").await;
    }
    let addr = lb.addr();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut statuses = Vec::new();
                for _ in 0..150 {
                    let r = client.get("/").await;
                    statuses.push(r.status.as_u16());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b); // killed mid-stream: its open connections are reset
    let mut total = 0;
    for w in workers {
        let statuses = w.await.expect("worker");
        total += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert_eq!(total, 600);
}

#[tokio::test]
async fn it_should_drain_a_removed_target_and_close_its_websockets_with_1001() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = r#"deregistration_delay = "6s""#;
    let lb = TetherProc::start(&config(&[&a], extra)).await;
    wait_state(&lb, a.addr, "healthy").await;

    let url = format!("ws://{}/ws", lb.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let addr = lb.addr();
    let stream = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.get("/stream?ms=4500").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // a leaves the config: it drains; new requests go to b.
    let removed_at = Instant::now();
    lb.reload(&config(&[&b], extra));
    wait_state(&lb, b.addr, "healthy").await;
    let states = target_states(&lb).await;
    assert_eq!(
        states.get(&a.addr.port()).map(String::as_str),
        Some("draining"),
        "{states:?}"
    );
    let seen = hits(&lb, 10).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");

    // The websocket still works while draining.
    ws.send(Message::text("still here")).await.expect("send");
    let echo = ws.next().await.expect("open").expect("frame");
    assert_eq!(echo.into_text().unwrap().as_str(), "still here");

    // The streaming response on a completes whole.
    let r = stream.await.expect("stream task");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 18, "{}", r.text());

    // At the delay the client gets Close 1001.
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("websocket ended without a Close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within the delay");
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1001);
    let waited = removed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(5500),
        "closed before the delay: {waited:?}"
    );
}

#[tokio::test]
async fn it_should_end_draining_early_when_nothing_is_open() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = r#"deregistration_delay = "300s""#;
    let lb = TetherProc::start(&config(&[&a, &b], extra)).await;
    wait_state(&lb, a.addr, "healthy").await;
    lb.reload(&config(&[&b], extra));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states = target_states(&lb).await;
        if !states.contains_key(&a.addr.port()) {
            break;
        }
        assert!(Instant::now() < deadline, "a still listed: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn it_should_ramp_a_new_target_up_during_slow_start() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = r#"slow_start = "4s""#;
    let lb = TetherProc::start(&config(&[&a], extra)).await;
    wait_state(&lb, a.addr, "healthy").await;
    tokio::time::sleep(Duration::from_millis(4100)).await; // a's own ramp is over
    lb.reload(&config(&[&a, &b], extra));
    wait_state(&lb, b.addr, "healthy").await;
    // Share of b in four one-second buckets.
    let mut shares = Vec::new();
    let mut client = Client::connect(lb.addr()).await;
    for _ in 0..4 {
        let start = Instant::now();
        let (mut n, mut to_b) = (0, 0);
        while start.elapsed() < Duration::from_secs(1) {
            if client.get("/").await.text() == "b" {
                to_b += 1;
            }
            n += 1;
        }
        shares.push(to_b as f64 / n as f64);
    }
    assert!(shares[0] < shares[3], "{shares:?}");
    assert!(shares[0] < 0.25, "{shares:?}");
    assert!(shares[3] > 0.30, "{shares:?}");
}

#[tokio::test]
async fn it_should_send_new_sessions_to_the_least_connected_target() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let extra = r#"algorithm = "least_connections""#;
    let lb = TetherProc::start(&config(&[&a, &b], extra)).await;
    wait_state(&lb, a.addr, "healthy").await;
    wait_state(&lb, b.addr, "healthy").await;
    let url = format!("ws://{}/ws", lb.addr());
    let mut open = Vec::new();
    for _ in 0..20 {
        let (ws, resp) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("ws");
        assert_eq!(resp.status(), 101);
        open.push(ws);
    }
    lb.reload(&config(&[&a, &b, &c], extra));
    wait_state(&lb, c.addr, "healthy").await;
    let mut new_sessions = HashMap::new();
    for _ in 0..10 {
        let (ws, resp) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("ws");
        let id = resp
            .headers()
            .get("x-tether-demo-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        *new_sessions.entry(id).or_insert(0) += 1;
        open.push(ws);
    }
    assert_eq!(new_sessions.get("c"), Some(&10), "{new_sessions:?}");
}

#[tokio::test]
async fn it_should_never_block_requests_on_a_hanging_health_check() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = TetherProc::start(&config(&[&a, &b], "")).await;
    wait_state(&lb, a.addr, "healthy").await;
    wait_state(&lb, b.addr, "healthy").await;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut client = Client::connect(lb.addr()).await;
    let mut before = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        client.get("/").await;
        before.push(t.elapsed());
    }
    b.set_health(Health::Hang);
    wait_state(&lb, b.addr, "unhealthy").await;
    let mut during = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        assert_eq!(client.get("/").await.text(), "a");
        during.push(t.elapsed());
    }
    let (m0, m1) = (median(before), median(during));
    assert!(
        m1 < m0 * 3 + Duration::from_millis(2),
        "median {m0:?} → {m1:?}"
    );
}
