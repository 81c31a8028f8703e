//! Driving examples/socketio-chat: its `run` script in a process group of its own
//! (as a terminal runs it), and test/swarm.js, real socket.io-client clients.
//! tests/example.rs and tests/signals.rs use them.
//!
//! Needs node, redis-server, openssl, python3 and `npm ci` in examples/socketio-chat:
//! `scripts/setup --tests` installs them.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// examples/socketio-chat, once its Node packages and tools are there (tests never
/// skip: a missing one fails with the setup hint).
pub fn example_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/socketio-chat");
    assert!(
        dir.join("node_modules/@socket.io/redis-adapter").exists(),
        "examples/socketio-chat/node_modules is missing: run scripts/setup --tests (npm ci)"
    );
    super::require_tools(&["node", "redis-server", "openssl", "python3"]);
    dir
}

/// Sends `signal` to the process group `pgid`.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, …
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` runs (a zombie, ended but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// The processes of group `pgid` still running (zombies left out), with their
/// command lines.
pub fn group_members(pgid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<(u32, String)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z") && f.get(2) == Some(&pgid.to_string())
            })
        })
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            (pid, cmdline.trim().to_string())
        })
        .collect();
    members.sort();
    members
}

/// `examples/socketio-chat/run`, in a process group of its own (as a terminal runs
/// it); dropping it presses Ctrl-C (SIGINT to the group).
pub struct Example {
    pub child: Child,
    pub state: tempfile::TempDir,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Example {
    pub fn start(ecs: bool, env: &[(&str, &str)]) -> Example {
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
        let lines = super::lines_of(child.stdout.take().expect("stdout"));
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

    pub fn url(&self) -> String {
        format!("https://{}/", self.https)
    }

    pub fn ca(&self) -> PathBuf {
        self.state.path().join("tls/ca.pem")
    }

    /// Static mode: (name, port, pid) of each chat server.
    pub fn servers(&self) -> Vec<(String, u16, u32)> {
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
    pub async fn chat_targets(&self) -> HashMap<u16, String> {
        let groups = tether::admin::fetch_targets(self.admin)
            .await
            .expect("admin /targets");
        groups
            .iter()
            .filter(|g| g.name == "chat")
            .flat_map(|g| g.targets.iter().map(|t| (t.port, t.state.clone())))
            .collect()
    }

    /// Ctrl-C: SIGINT to the group. Returns the processes of the group (the script
    /// and everything it started: Redis, Node, tether) still running `within` after
    /// it: none when all of it stopped.
    pub fn interrupt(&mut self, within: Duration) -> Vec<(u32, String)> {
        let pgid = self.child.id();
        kill_group(pgid, "INT");
        let deadline = Instant::now() + within;
        loop {
            // Reap the script (its children are reaped by whoever inherits them).
            let _ = self.child.try_wait();
            let left = group_members(pgid);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Each file under the state directory's logs/ with its size in bytes.
    pub fn log_sizes(&self) -> Vec<(PathBuf, u64)> {
        let dir = self.state.path().join("logs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut sizes: Vec<(PathBuf, u64)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                Some((e.path(), e.metadata().ok()?.len()))
            })
            .collect();
        sizes.sort();
        sizes
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

/// test/swarm.js: socket.io-client clients, one JSON answer per command.
pub struct Swarm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Swarm {
    pub fn start(example: &Example, n: usize) -> Swarm {
        Swarm::start_at(&example.url(), &example.ca(), n, &[])
    }

    /// `n` clients of `url`, trusting the CA at `ca`; `env` for swarm.js (`COOKIES`).
    pub fn start_at(url: &str, ca: &std::path::Path, n: usize, env: &[(&str, &str)]) -> Swarm {
        let mut child = Command::new("node")
            .arg("test/swarm.js")
            .arg(url)
            .arg(n.to_string())
            .env("NODE_EXTRA_CA_CERTS", ca)
            .envs(env.iter().copied())
            .current_dir(example_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node test/swarm.js");
        let stdin = child.stdin.take().expect("stdin");
        let lines = super::lines_of(child.stdout.take().expect("stdout"));
        Swarm {
            child,
            stdin,
            lines,
        }
    }

    pub fn cmd(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("write to swarm");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("swarm did not answer {command}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Waits (bounded) until `n` clients are connected; returns the status.
    pub fn wait_connected(&mut self, n: u64, within: Duration) -> Value {
        self.wait_connected_to(n, within, |_| true)
    }

    /// Waits (bounded) until `n` clients are connected, and only to servers that
    /// `allowed` accepts; returns the status.
    pub fn wait_connected_to(
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

/// The servers a swarm status names, sorted.
pub fn servers_of(status: &Value) -> Vec<String> {
    let mut s: Vec<String> = status["perServer"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    s.sort();
    s
}
