//! Target health and lifecycle through the real binary: active checks, fail-open,
//! passive failures with retries, draining, slow start, least_connections, and
//! `tether targets`. Checks run fast here (`alb_limits = false`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_http::{RecordingTarget, TargetReply};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn targets(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    list.join(", ")
}

/// One listener forwarding to group "web" with fast health checks.
fn config(backends: &[&Backend], group_extra: &str) -> String {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    config_at(&addrs, group_extra)
}

/// As [`config`], for targets at `addrs`.
fn config_at(addrs: &[SocketAddr], group_extra: &str) -> String {
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
        targets = targets(addrs)
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

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A GET on a new connection whose response is handed over as soon as its head
/// arrives, its body still streaming. The connection lives as long as its sender.
async fn start_get(
    addr: SocketAddr,
    path: &str,
) -> (
    Response<Incoming>,
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect to tether");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response head");
    (resp, sender)
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
        .args(["targets", "--admin"])
        .arg(format!("127.0.0.1:{}", lb.admin_port))
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
    let (a, c) = (Backend::start("a").await, Backend::start("c").await);
    let mut b = RecordingTarget::start_with(TargetReply::Id("b")).await;
    let lb = TetherProc::start(&config_at(&[a.addr, b.addr, c.addr], "")).await;
    for addr in [a.addr, b.addr, c.addr] {
        wait_state(&lb, addr, "healthy").await;
    }
    let addr = lb.addr();
    // Clients sending GETs until told to stop; each reply is kept with whether b
    // was already dead when its request went out.
    let (killed, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (killed, stop) = (killed.clone(), stop.clone());
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut replies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let after_kill = killed.load(Ordering::Relaxed);
                    let r = client.get("/").await;
                    replies.push((after_kill, r.status.as_u16(), r.text()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                replies
            })
        })
        .collect();

    // b takes its share of the clients' requests while it lives...
    wait_until("b served the clients", || b.count("/") >= 10).await;
    // ...and dies holding one: slow GETs, each on its own connection, until one
    // has reached b (the others reach a or c).
    let mut slow = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let on_b = loop {
        let path = format!("/slow?ms=3000&n={}", slow.len());
        let sent = path.clone();
        slow.push((
            path,
            tokio::spawn(async move { Client::connect(addr).await.get(&sent).await }),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some((path, _)) = slow.iter().find(|(p, _)| b.got(p)) {
            break path.clone();
        }
        assert!(Instant::now() < deadline, "no slow request reached b");
    };
    b.kill().await; // its open connections close, its port refuses connections
    killed.store(true, Ordering::Relaxed);

    // Every slow request is answered by a or c; the one b held (`on_b`) was sent
    // again elsewhere.
    for (path, task) in slow {
        let r = task.await.expect("slow request");
        let held = if path == on_b { " (held by b)" } else { "" };
        assert_eq!(r.status, 200, "{path}{held}: {}", r.text());
        assert!(
            ["a", "c"].contains(&r.text().as_str()),
            "{path}{held}: {}",
            r.text()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut replies = Vec::new();
    for w in workers {
        replies.extend(w.await.expect("worker"));
    }
    let lost: Vec<_> = replies
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(lost.is_empty(), "{lost:?}");
    let from_b_before = replies
        .iter()
        .filter(|(after, _, id)| !after && id == "b")
        .count();
    assert!(
        from_b_before > 0,
        "no client got an answer from b before it died"
    );
    let after: Vec<&str> = replies
        .iter()
        .filter(|(after, _, _)| *after)
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert!(
        after.len() >= 20,
        "too few requests after b died: {}",
        after.len()
    );
    assert!(after.iter().all(|id| *id != "b"), "{after:?}");
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
    // A streaming response under way on a before the reload: its head names a and
    // its first chunk has arrived.
    let (head, sender) = start_get(lb.addr(), "/stream?ms=4500").await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()
            .get(BACKEND_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("a")
    );
    let mut body = head.into_body();
    let mut first = Vec::new();
    while !first.contains(&b'\n') {
        let frame = body.frame().await.expect("a first chunk").expect("a frame");
        first.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
    }
    assert!(first.starts_with(b"chunk 0\n"), "{first:?}");
    let stream = tokio::spawn(async move {
        let _sender = sender;
        body.collect().await.map(|b| b.to_bytes())
    });

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
    let rest = stream.await.expect("stream task").expect("the whole body");
    first.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&first);
    let want: String = (0..18).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(text, want);

    // At the delay the client gets Close 1001.
    let close = close_frame(&mut ws, Duration::from_secs(10)).await;
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
    const RAMP: Duration = Duration::from_secs(4);
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = r#"slow_start = "4s""#;
    let lb = TetherProc::start(&config(&[&a], extra)).await;
    wait_state(&lb, a.addr, "healthy").await;
    tokio::time::sleep(RAMP + Duration::from_millis(100)).await; // a's own ramp is over
    lb.reload(&config(&[&a, &b], extra));
    wait_state(&lb, b.addr, "healthy").await;
    // b's weight grows from nothing to a's over RAMP from when it became healthy: with
    // a at full weight, b's share of requests grows from 0 to 1/2 (about 0.11 over the
    // ramp's first second). Each request is kept with its time since b was seen
    // healthy (a little after it was: that lag only raises the first second's share).
    let seen_healthy = Instant::now();
    let mut client = Client::connect(lb.addr()).await;
    let mut replies = Vec::new();
    while seen_healthy.elapsed() < RAMP + Duration::from_millis(1300) {
        let at = seen_healthy.elapsed();
        replies.push((at, client.get("/").await.text() == "b"));
    }
    // b's share over a window, and the number of requests in it. Shares, not times:
    // a slow or stalled client sends fewer requests in a window, but its requests are
    // split by weight all the same.
    let share = |from: Duration, to: Duration| {
        let window: Vec<bool> = replies
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, to_b)| *to_b)
            .collect();
        let to_b = window.iter().filter(|to_b| **to_b).count();
        (to_b as f64 / window.len().max(1) as f64, window.len())
    };
    let (early, n_early) = share(Duration::ZERO, Duration::from_secs(1));
    let (late, n_late) = share(
        RAMP + Duration::from_millis(300),
        RAMP + Duration::from_secs(2),
    );
    let shares = format!("b's share: {early:.3} of {n_early} in the ramp's first second, {late:.3} of {n_late} after it");
    // Enough requests for the shares to mean something (hundreds on a quiet machine).
    assert!(
        n_early >= 100 && n_late >= 100,
        "too few requests: {shares}"
    );
    // After the ramp b has full weight: about half the requests (round robin).
    assert!((0.35..=0.65).contains(&late), "{shares}");
    // Early in the ramp it had some, and far fewer than at full weight. Without slow
    // start it would have about half from the start; a lag of a whole second in
    // seeing b healthy would still leave its share under 0.3.
    assert!(early > 0.0, "b got nothing while ramping: {shares}");
    assert!(early < 0.6 * late, "{shares}");
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
    let a = Backend::start("a").await;
    let b = RecordingTarget::start_with(TargetReply::Id("b")).await;
    // Checks that hang long: a request held up by a hanging check would wait for up to
    // its timeout, and with steady traffic one request waits nearly all of it at each
    // check. A timeout of 900 ms puts that far above what a loaded machine adds to a
    // request on loopback, where a few milliseconds against a timeout of 100 ms was not.
    let fast = r#"interval = "200ms", timeout = "100ms""#;
    let config = config_at(&[a.addr, b.addr], "");
    assert!(config.contains(fast));
    let config = config.replace(fast, r#"interval = "1s", timeout = "900ms""#);
    let lb = TetherProc::start(&config).await;
    wait_state(&lb, a.addr, "healthy").await;
    wait_state(&lb, b.addr, "healthy").await;

    b.hang_health();
    // Requests one after another from now on, each with its time and whether b was
    // already seen unhealthy when it went out.
    let (unhealthy, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let addr = lb.addr();
    let traffic = {
        let (unhealthy, stop) = (unhealthy.clone(), stop.clone());
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut replies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = unhealthy.load(Ordering::Relaxed);
                let t = Instant::now();
                let id = client.get("/").await.text();
                replies.push((t.elapsed(), out, id));
            }
            replies
        })
    };
    wait_state(&lb, b.addr, "unhealthy").await; // two checks timed out
    unhealthy.store(true, Ordering::Relaxed);
    // Four more checks begin, so three more hang for their whole timeout meanwhile.
    let checks = b.count("/health");
    wait_until("four more checks of b", || b.count("/health") >= checks + 4).await;
    stop.store(true, Ordering::Relaxed);
    let replies = traffic.await.expect("traffic");

    let to_b_after: Vec<_> = replies
        .iter()
        .filter(|(_, out, id)| *out && id != "a")
        .collect();
    assert!(
        to_b_after.is_empty(),
        "an unhealthy target got requests: {to_b_after:?}"
    );
    // At least five checks hung while the requests went; none held one up. One slow
    // request is let pass: a loaded machine may stall a process that long once, where
    // requests waiting on checks would be slow at every check.
    let slow: Vec<Duration> = replies
        .iter()
        .map(|(took, _, _)| *took)
        .filter(|took| *took >= Duration::from_millis(450))
        .collect();
    assert!(
        slow.len() <= 1,
        "{} of {} requests took at least half the check timeout: {slow:?}",
        slow.len(),
        replies.len()
    );
}
