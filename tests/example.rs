//! examples/socketio-chat end to end: the example's own `run` script (Redis, three
//! Socket.IO 4.8 servers with the Redis adapter, the API service, tether with HTTPS
//! and an HTTP redirect), driven with 30 real socket.io-client clients
//! (examples/socketio-chat/test/swarm.js), the `deploy` script against the fake
//! ECS, and the chat page in headless Chromium (Debian's `chromium`, driven by
//! puppeteer-core: test/browser.js). Everything listens on 127.0.0.1 (Redis on a
//! Unix socket); tether's listeners on free ports.
//!
//! Needs node, redis-server, openssl, python3, chromium and `npm ci` in
//! examples/socketio-chat: `scripts/setup --tests` installs them.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::example::{example_dir, servers_of, Example, Swarm};
use common::Client;
use serde_json::Value;

/// One example at a time: each runs Redis, three or more Node servers, tether and
/// 30 clients on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `unknownSid` summed over chat servers reached directly at `ports`.
async fn unknown_sids(ports: &[u16]) -> u64 {
    let mut total = 0;
    for port in ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let r = Client::connect(addr).await.get("/stats").await;
        let stats: Value = serde_json::from_slice(&r.body).expect("stats json");
        total += stats["unknownSid"].as_u64().expect("unknownSid");
    }
    total
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn it_should_spread_30_clients_share_messages_through_redis_and_survive_a_dead_server() {
    let _serial = SERIAL.lock().await;
    let mut example = Example::start(false, &[]);
    let servers = example.servers();
    let ports: Vec<u16> = servers.iter().map(|s| s.1).collect();

    // The HTTP listener redirects to the HTTPS one, path and query kept.
    let r = Client::connect(example.http).await.get("/chat?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://{}/chat?x=1", example.https).as_str())
    );

    let mut swarm = Swarm::start(&example, 30);
    let status = swarm.wait_connected(30, Duration::from_secs(30));
    assert_eq!(
        servers_of(&status),
        ["chat-1", "chat-2", "chat-3"],
        "spread over all three: {status}"
    );
    // A message from a client on one server reaches every client, on every server.
    let b = swarm.cmd("broadcast");
    assert_eq!(b["received"], 30, "{b}");
    assert_eq!(b["receivedOn"].as_object().map(|m| m.len()), Some(3), "{b}");
    assert_eq!(swarm.cmd("status")["connectErrors"], 0);
    assert_eq!(unknown_sids(&ports).await, 0, "no Session ID unknown");

    // One server dies: its clients come back through tether on the others.
    let (dead, dead_port, dead_pid) = servers[0].clone();
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &dead_pid.to_string()])
        .status();
    let status = swarm.wait_connected_to(30, Duration::from_secs(10), |s| s != dead);
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "reconnected in {:?}",
        killed.elapsed()
    );
    assert!(!servers_of(&status).contains(&dead), "{status}");
    let b = swarm.cmd("broadcast");
    assert_eq!(b["received"], 30, "after the kill: {b}");
    let report = swarm.cmd("report");
    assert!(
        report["maxDownMs"].as_u64().is_some_and(|ms| ms < 5000),
        "{report}"
    );
    assert_eq!(report["missedCount"], 0, "{report}");
    // The health check takes the dead server out (2 failures, 5 s apart).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let targets = example.chat_targets().await;
        if targets.get(&dead_port).map(String::as_str) == Some("unhealthy") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dead} never unhealthy: {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(unknown_sids(&ports[1..]).await, 0);

    // Ctrl-C stops all of it.
    drop(swarm);
    let left = example.interrupt(Duration::from_secs(15));
    assert!(left.is_empty(), "Ctrl-C left processes running: {left:?}");
    assert!(tokio::net::TcpStream::connect(example.https).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn negative_control_without_stickiness_socketio_clients_hit_session_id_unknown() {
    let _serial = SERIAL.lock().await;
    let example = Example::start(false, &[("STICKINESS", "off")]);
    let ports: Vec<u16> = example.servers().iter().map(|s| s.1).collect();
    let _swarm = Swarm::start(&example, 30);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let unknown = unknown_sids(&ports).await;
        if unknown > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "without stickiness, polling requests must reach the wrong server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_keep_every_client_through_a_rolling_ecs_deployment() {
    let _serial = SERIAL.lock().await;
    let example = Example::start(true, &[]);
    let mut swarm = Swarm::start(&example, 30);
    let status = swarm.wait_connected(30, Duration::from_secs(30));
    assert_eq!(
        servers_of(&status),
        ["chat-1", "chat-2", "chat-3"],
        "{status}"
    );
    swarm.cmd("stream 100");
    std::thread::sleep(Duration::from_secs(1));

    let deploy = Command::new(example_dir().join("deploy"))
        .arg(example.state.path())
        .arg("--timeout")
        .arg("60")
        .output()
        .expect("run deploy");
    let log = String::from_utf8_lossy(&deploy.stdout);
    assert!(deploy.status.success(), "deploy failed:\n{log}");

    // Let the last reconnections land and a few more messages flow.
    let old = ["chat-1", "chat-2", "chat-3"];
    let status = swarm.wait_connected_to(30, Duration::from_secs(10), |s| !old.contains(&s));
    std::thread::sleep(Duration::from_secs(3));
    swarm.cmd("stop");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        servers_of(&status),
        ["chat-4", "chat-5", "chat-6"],
        "all on the new tasks: {status}\n{log}"
    );
    let report = swarm.cmd("report");
    let disconnects = report["disconnects"].as_array().expect("disconnects");
    assert!(
        disconnects.len() >= 30,
        "every client was on an old task: {report}"
    );
    assert!(
        disconnects.iter().all(|d| d["code"] == 1001),
        "drained websockets end with Close 1001: {report}"
    );
    assert!(
        report["maxDownMs"].as_u64().is_some_and(|ms| ms < 5000),
        "{report}"
    );
    assert!(report["sent"].as_u64().is_some_and(|n| n > 50), "{report}");
    assert_eq!(report["missedCount"], 0, "{report}");
    assert_eq!(swarm.cmd("status")["connectErrors"], 0);
    // tether routes only to the new tasks now.
    let targets = example.chat_targets().await;
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(targets.values().all(|s| s == "healthy"), "{targets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_show_each_others_messages_in_two_chromium_contexts_on_different_servers() {
    let _serial = SERIAL.lock().await;
    assert!(
        example_dir().join("node_modules/puppeteer-core").exists(),
        "examples/socketio-chat/node_modules is missing: run scripts/setup --tests (npm ci)"
    );
    common::require_tools(&["chromium"]);
    let example = Example::start(false, &[]);
    let out = Command::new("node")
        .arg("test/browser.js")
        .arg(example.url())
        .current_dir(example_dir())
        .output()
        .expect("node test/browser.js");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let r: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["ok"], true, "{r}");
    let (a, b) = (&r["servers"][0], &r["servers"][1]);
    assert_ne!(a, b, "two contexts on different servers: {r}");
    let has = |list: &Value, text: &str| {
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|m| m.as_str().is_some_and(|m| m.contains(text)))
        })
    };
    assert!(has(&r["aSees"], "hi from user"), "{r}");
    assert!(has(&r["bSees"], "hello from user"), "{r}");
    assert_eq!(&r["afterReload"], a, "a reload stays on its server: {r}");
    let api = r["api"].as_str().unwrap_or_default();
    assert!(
        api.contains("X-Forwarded-Proto https"),
        "the page reached /api/*: {r}"
    );
}
