//! Several tether replicas behind an L4 balancer, end to end: examples/replicas/run
//! (HAProxy in `mode tcp`, round robin per connection, standing in for an NLB; three
//! tether replicas with one config and one sticky key; three Socket.IO 4.8 chat
//! servers with the Redis adapter; Redis for the adapter and for
//! `[load_balancer] shared_state`), driven by real socket.io-client clients
//! (examples/socketio-chat/test/swarm.js) with Engine.IO's default transports:
//! polling, then the websocket upgrade. Everything on 127.0.0.1 and Unix sockets.
//!
//! Needs node, redis-server, haproxy, openssl, python3 and `npm ci` in
//! examples/socketio-chat: `scripts/setup --tests` installs them.

mod common;

use common::metric;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::example::{example_dir, kill_group, Swarm};
use common::Client;
use serde_json::Value;

/// One deployment at a time: each runs Redis, three Node servers, three tethers,
/// HAProxy and 30 clients on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// examples/replicas/run in a process group of its own; dropping it presses Ctrl-C.
struct Replicas {
    child: Child,
    state: tempfile::TempDir,
    /// The L4 front.
    front: SocketAddr,
}

/// One tether replica: its listener, admin address and pid.
struct Replica {
    admin: SocketAddr,
    pid: u32,
}

impl Replicas {
    fn start(env: &[(&str, &str)]) -> Replicas {
        example_dir();
        common::require_tools(&["haproxy"]);
        let state = tempfile::tempdir().expect("state dir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/replicas/run");
        let mut child = Command::new(script)
            .env("TETHER", env!("CARGO_BIN_EXE_tether"))
            .env("PORT", "0")
            .env("STATE_DIR", state.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start examples/replicas/run");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(90);
        let front = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line
                        .strip_prefix("ready: https://")
                        .and_then(|r| r.strip_suffix('/'))
                    {
                        break a.parse::<SocketAddr>().expect("front address");
                    }
                }
                Err(_) => {
                    kill_group(child.id(), "KILL");
                    panic!("examples/replicas/run did not print ready: in 90 s");
                }
            }
        };
        std::thread::spawn(move || while lines.recv().is_ok() {});
        Replicas {
            child,
            state,
            front,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/", self.front)
    }

    fn swarm(&self, n: usize, cookies: &str) -> Swarm {
        let ca = self.state.path().join("tls/ca.pem");
        Swarm::start_at(&self.url(), &ca, n, &[("COOKIES", cookies)])
    }

    fn replicas(&self) -> Vec<Replica> {
        let text = std::fs::read_to_string(self.state.path().join("replicas")).expect("replicas");
        text.lines()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Replica {
                    admin: w[2].parse().expect("admin address"),
                    pid: w[3].parse().expect("pid"),
                }
            })
            .collect()
    }

    /// The chat servers' ports.
    fn server_ports(&self) -> Vec<u16> {
        std::fs::read_to_string(self.state.path().join("servers"))
            .expect("servers")
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    /// "Session ID unknown" errors, summed over the chat servers (their own count).
    async fn unknown_sids(&self) -> u64 {
        let mut total = 0;
        for port in self.server_ports() {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let r = Client::connect(addr).await.get("/stats").await;
            let stats: Value = serde_json::from_slice(&r.body).expect("stats json");
            total += stats["unknownSid"].as_u64().expect("unknownSid");
        }
        total
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.child.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        kill_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

/// A metric summed over every replica.
async fn summed(replicas: &[Replica], series: &str) -> f64 {
    let mut total = 0.0;
    for r in replicas {
        total += metric(r.admin, series).await;
    }
    total
}

/// Waits until all `n` clients are connected and on the websocket transport (every
/// upgrade went through); returns the last status.
fn wait_upgraded(swarm: &mut Swarm, n: usize, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let status = swarm.cmd("status");
        let websockets = status["transports"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| *t == "websocket").count());
        if status["connected"].as_u64() == Some(n as u64) && websockets == n {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "not all {n} connected over websockets: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A broadcast reaches every connected client.
fn assert_broadcast_reaches_all(swarm: &mut Swarm, n: u64) {
    let b = swarm.cmd("broadcast");
    assert_eq!(b["received"].as_u64(), Some(n), "{b}");
    assert_eq!(b["missing"].as_array().map(Vec::len), Some(0), "{b}");
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn replicas_with_shared_state_pin_clients_without_cookies() {
    let _serial = SERIAL.lock().await;
    let deployment = Replicas::start(&[]);
    let mut swarm = deployment.swarm(45, "none");
    let status = wait_upgraded(&mut swarm, 45, Duration::from_secs(45));
    assert_eq!(status["unknownSid"].as_u64(), Some(0), "{status}");
    assert_eq!(deployment.unknown_sids().await, 0);
    for _ in 0..3 {
        assert_broadcast_reaches_all(&mut swarm, 45);
    }
    // The pins did cross replicas: lookups hit, and each replica published some.
    let replicas = deployment.replicas();
    let hits = summed(
        &replicas,
        "tether_shared_state_lookups_total{load_balancer=\"replicas\",result=\"hit\"}",
    )
    .await;
    assert!(hits > 0.0, "no shared lookup hit");
    for r in &replicas {
        assert_eq!(
            metric(r.admin, "tether_shared_state_up").await,
            1.0,
            "replica {}",
            r.admin
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_without_shared_state_lose_clients_without_cookies() {
    // The negative control: the same deployment, without the store.
    let _serial = SERIAL.lock().await;
    let deployment = Replicas::start(&[("SHARED_STATE", "off")]);
    let _swarm = deployment.swarm(45, "none");
    let deadline = Instant::now() + Duration::from_secs(20);
    while deployment.unknown_sids().await < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unknown = deployment.unknown_sids().await;
    assert!(
        unknown >= 10,
        "without shared_state, clients without cookies should meet \"Session ID unknown\": {unknown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_with_shared_state_upgrade_every_client_with_cookies() {
    let _serial = SERIAL.lock().await;
    let deployment = Replicas::start(&[]);
    let mut swarm = deployment.swarm(45, "all");
    let status = wait_upgraded(&mut swarm, 45, Duration::from_secs(45));
    assert_eq!(status["unknownSid"].as_u64(), Some(0), "{status}");
    assert_eq!(deployment.unknown_sids().await, 0, "no failed upgrade");
    assert_broadcast_reaches_all(&mut swarm, 45);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_run_loses_no_message_acknowledged_after_the_reconnect() {
    let _serial = SERIAL.lock().await;
    let deployment = Replicas::start(&[]);
    let mut swarm = deployment.swarm(30, "none");
    wait_upgraded(&mut swarm, 30, Duration::from_secs(45));
    swarm.cmd("stream 100");
    std::thread::sleep(Duration::from_secs(2));

    let replicas = deployment.replicas();
    let victim = &replicas[0];
    let _ = Command::new("kill")
        .args(["-KILL", &victim.pid.to_string()])
        .status();
    // Its clients lose their connections, reconnect through the front, and land on
    // the two replicas left (HAProxy's TCP check takes the dead one out). From then
    // on, every message acknowledged reaches every client.
    std::thread::sleep(Duration::from_secs(2));
    wait_upgraded(&mut swarm, 30, Duration::from_secs(45));
    swarm.cmd("mark");
    std::thread::sleep(Duration::from_secs(6));
    swarm.cmd("stop");
    std::thread::sleep(Duration::from_secs(3));
    let report = swarm.cmd("report");
    assert!(
        report["disconnects"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "the kill should have cut some clients off: {report}"
    );
    assert_eq!(report["missedCount"].as_u64(), Some(0), "{report}");
    assert_eq!(
        report["stillDown"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_broadcast_reaches_all(&mut swarm, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_fails_no_request_and_sharing_resumes() {
    let _serial = SERIAL.lock().await;
    let deployment = Replicas::start(&[("TETHER_REDIS", "own")]);
    let replicas = deployment.replicas();
    let mut before = deployment.swarm(30, "none");
    wait_upgraded(&mut before, 30, Duration::from_secs(45));

    // Kill tether's Redis (the chat adapter's stays up).
    let pid_file = deployment.state.path().join("redis-tether.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("redis-tether.pid");
    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while summed(&replicas, "tether_shared_state_up").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "replicas still say the store is up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Sessions made while Redis is down: each replica routes with its own pins.
    // "Session ID unknown" may follow (a split view); it is counted, not failed.
    let unknown_before = deployment.unknown_sids().await;
    let during = deployment.swarm(30, "none");
    std::thread::sleep(Duration::from_secs(8));
    let split_view = deployment.unknown_sids().await - unknown_before;
    eprintln!("\"Session ID unknown\" while Redis was down (30 new clients, 8 s): {split_view}");
    drop(during);

    // Redis back on the same socket: the replicas see it within a few seconds.
    let socket = deployment.state.path().join("redis-tether.sock");
    let _ = std::fs::remove_file(&socket);
    let mut redis = common::redis_on_socket(&socket);
    let deadline = Instant::now() + Duration::from_secs(20);
    while summed(&replicas, "tether_shared_state_up").await < replicas.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "replicas did not see Redis return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The outage shows in the metrics.
    let failures = summed(&replicas, "tether_shared_state_write_failures_total").await
        + summed(
            &replicas,
            "tether_shared_state_lookups_total{load_balancer=\"replicas\",result=\"error\"}",
        )
        .await;
    assert!(failures > 0.0, "the outage should show in the metrics");

    // Sessions made after Redis returned are shared again.
    let unknown_before = deployment.unknown_sids().await;
    let mut after = deployment.swarm(30, "none");
    wait_upgraded(&mut after, 30, Duration::from_secs(45));
    assert_eq!(deployment.unknown_sids().await, unknown_before);
    assert_broadcast_reaches_all(&mut after, 30);

    // No request failed because of Redis: no 5XX of tether's own on any replica.
    let elb_5xx = summed(
        &replicas,
        "tether_httpcode_elb_5xx_count_total{load_balancer=\"replicas\"",
    )
    .await;
    assert_eq!(elb_5xx, 0.0);
    let _ = redis.kill();
    let _ = redis.wait();
}
