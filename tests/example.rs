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

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::Client;
use serde_json::Value;

/// One example at a time: each runs Redis, three or more Node servers, tether and
/// 30 clients on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn example_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/socketio-chat");
    assert!(
        dir.join("node_modules/@socket.io/redis-adapter").exists()
            && dir.join("node_modules/puppeteer-core").exists(),
        "examples/socketio-chat/node_modules is missing: run scripts/setup --tests (npm ci)"
    );
    common::require_tools(&["node", "redis-server", "openssl", "python3", "chromium"]);
    dir
}

/// Sends `signal` to the process group `pgid`.
fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

// === the example ===

/// `examples/socketio-chat/run`, in a process group of its own (as a terminal runs
/// it); dropping it presses Ctrl-C (SIGINT to the group).
struct Example {
    child: Child,
    state: tempfile::TempDir,
    https: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
}

impl Example {
    fn start(ecs: bool, env: &[(&str, &str)]) -> Example {
        let dir = example_dir();
        let state = tempfile::tempdir().expect("state dir");
        let mut cmd = Command::new(dir.join("run"));
        if ecs {
            cmd.arg("--ecs");
        }
        let mut child = cmd
            .env("TETHER", env!("CARGO_BIN_EXE_tether"))
            .env("HTTPS_PORT", "0")
            .env("HTTP_PORT", "0")
            .env("STATE_DIR", state.path())
            .env("DEREGISTRATION_DELAY", "3s")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start examples/socketio-chat/run");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(90);
        let https = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line
                        .strip_prefix("ready: https://")
                        .and_then(|r| r.strip_suffix('/'))
                    {
                        break a.parse::<SocketAddr>().expect("https address");
                    }
                }
                Err(_) => {
                    kill_group(child.id(), "KILL");
                    panic!("the example did not print ready: in 90 s");
                }
            }
        };
        // Keep draining its stdout (it prints more) on the reader thread.
        std::thread::spawn(move || while lines.recv().is_ok() {});
        let addresses = std::fs::read_to_string(state.path().join("addresses")).expect("addresses");
        let addr_of = |prefix: &str| -> SocketAddr {
            addresses
                .lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} in {addresses}"))
        };
        Example {
            https,
            http: addr_of("listener 1 "),
            admin: addr_of("admin "),
            child,
            state,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/", self.https)
    }

    fn ca(&self) -> PathBuf {
        self.state.path().join("tls/ca.pem")
    }

    /// Static mode: (name, port, pid) of each chat server.
    fn servers(&self) -> Vec<(String, u16, u32)> {
        std::fs::read_to_string(self.state.path().join("servers"))
            .expect("servers")
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok()?,
                    w.next()?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// The chat group's targets: port → state.
    async fn chat_targets(&self) -> HashMap<u16, String> {
        let groups = tether::admin::fetch_targets(self.admin)
            .await
            .expect("admin /targets");
        groups
            .iter()
            .filter(|g| g.name == "chat")
            .flat_map(|g| g.targets.iter().map(|t| (t.port, t.state.clone())))
            .collect()
    }

    /// Ctrl-C: SIGINT to the group; true when the script and everything it started
    /// (every listed pid) ended within 15 s.
    fn interrupt(&mut self, pids: &[u32]) -> bool {
        kill_group(self.child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let done = matches!(self.child.try_wait(), Ok(Some(_)));
            if done && !pids.iter().any(|p| alive(*p)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Example {
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

// === the clients ===

/// test/swarm.js: 30 socket.io-client clients, one JSON answer per command.
struct Swarm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Swarm {
    fn start(example: &Example, n: usize) -> Swarm {
        let mut child = Command::new("node")
            .arg("test/swarm.js")
            .arg(example.url())
            .arg(n.to_string())
            .env("NODE_EXTRA_CA_CERTS", example.ca())
            .current_dir(example_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node test/swarm.js");
        let stdin = child.stdin.take().expect("stdin");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        Swarm {
            child,
            stdin,
            lines,
        }
    }

    fn cmd(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("write to swarm");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("swarm did not answer {command}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Waits (bounded) until `n` clients are connected; returns the status.
    fn wait_connected(&mut self, n: u64, within: Duration) -> Value {
        self.wait_connected_to(n, within, |_| true)
    }

    /// Waits (bounded) until `n` clients are connected, and only to servers that
    /// `allowed` accepts; returns the status.
    fn wait_connected_to(
        &mut self,
        n: u64,
        within: Duration,
        allowed: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.cmd("status");
            if status["connected"].as_u64() == Some(n)
                && servers_of(&status).iter().all(|s| allowed(s))
            {
                return status;
            }
            assert!(Instant::now() < deadline, "not all connected: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn servers_of(status: &Value) -> Vec<String> {
    let mut s: Vec<String> = status["perServer"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    s.sort();
    s
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
    let pids: Vec<u32> = servers.iter().map(|s| s.2).collect();
    assert!(example.interrupt(&pids), "Ctrl-C left processes running");
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
