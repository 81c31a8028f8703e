//! `[load_balancer] shared_state`: Socket.IO pins shared between replicas through
//! Redis, with two tether processes and a real `redis-server` (on a Unix socket),
//! and a stand-in Redis on loopback that answers PING and never answers a GET (a
//! slow store). The targets are small Engine.IO stand-ins: a polling handshake gets
//! an open packet whose sid names the target; any other request gets the target's
//! name.
//!
//! Needs redis-server: `scripts/setup --tests` installs it.

mod common;

use common::metric;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TetherProc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// An Engine.IO stand-in named `id`: sids it opens are `{id}-{n}`.
async fn engine_io_target(id: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let opened = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line);
                    }
                    let target = head.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("");
                    let handshake = target.starts_with("/socket.io/?")
                        && target.contains("transport=polling")
                        && !target.contains("sid=");
                    let body = if handshake {
                        let n = opened.fetch_add(1, Ordering::Relaxed) + 1;
                        format!(
                            r#"0{{"sid":"{id}-{n}","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#
                        )
                    } else {
                        id.to_string()
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One GET through tether on a new connection (as an L4 front makes each request
/// land anywhere); returns the body.
async fn get(addr: SocketAddr, path: &str) -> String {
    let reply = common::Client::connect(addr).await.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.text()
}

fn lookups(result: &str) -> String {
    format!("tether_shared_state_lookups_total{{load_balancer=\"tether\",result=\"{result}\"}}")
}

async fn wait_metric(admin: SocketAddr, series: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    while metric(admin, series).await != want {
        assert!(Instant::now() < deadline, "{series} never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(targets: &[SocketAddr], redis: &str, lookup_timeout: &str) -> String {
    config_with(
        targets,
        &format!(
            "shared_state = {{ redis = \"{redis}\", key_prefix = \"test:\", lookup_timeout = \"{lookup_timeout}\" }}"
        ),
    )
}

fn config_with(targets: &[SocketAddr], shared_state: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
[load_balancer]
admin = "127.0.0.1:{{admin}}"
{shared_state}

[[listener]]
port = {{port}}
default_action = {{ forward = "chat" }}

[target_group.chat]
targets = [{}]
socketio = {{ path = "/socket.io/" }}
health_check = {{ enabled = false }}
"#,
        targets.join(", ")
    )
}

/// A real redis-server on a Unix socket in `dir`; killed when dropped.
struct Redis {
    child: Child,
    socket: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let socket = dir.join("redis.sock");
        let child = common::redis_on_socket(&socket);
        Redis { child, socket }
    }

    /// One command, its raw RESP reply.
    async fn command(&self, args: &[&str]) -> String {
        let mut s = UnixStream::connect(&self.socket)
            .await
            .expect("redis socket");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling&t=x";

fn with_sid(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn a_session_opened_through_one_replica_is_pinned_on_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let targets = [engine_io_target("t1").await, engine_io_target("t2").await];
    let url = format!("unix:{}", redis.socket.display());
    let a = TetherProc::start(&config(&targets, &url, "100ms")).await;
    let b = TetherProc::start(&config(&targets, &url, "100ms")).await;
    let admin = |p: &TetherProc| SocketAddr::from(([127, 0, 0, 1], p.admin_port));
    for p in [&a, &b] {
        wait_metric(
            admin(p),
            "tether_shared_state_up",
            1.0,
            Duration::from_secs(10),
        )
        .await;
    }

    // Sessions open through A; B, which never saw them, sends each request of each
    // session to the target that opened it. Round robin alone would miss half.
    for _ in 0..4 {
        let open = get(a.addr(), HANDSHAKE).await;
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("sid")
            .to_string();
        let owner = sid.split('-').next().expect("owner").to_string();
        for _ in 0..4 {
            assert_eq!(get(b.addr(), &with_sid(&sid)).await, owner, "sid {sid}");
        }
    }
    assert_eq!(
        metric(admin(&b), &lookups("hit")).await,
        4.0,
        "one lookup per session"
    );
    // The status page shows the store.
    let status = common::Client::connect(admin(&b))
        .await
        .get("/status")
        .await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("status json");
    let store = &status["shared_state"];
    assert_eq!(store["redis"].as_str(), Some(url.as_str()), "{store}");
    assert_eq!(store["up"].as_bool(), Some(true), "{store}");
    assert_eq!(store["lookups"][0].as_u64(), Some(4), "hits: {store}");
    assert!(metric(admin(&a), "tether_shared_state_pins_published_total").await >= 4.0);

    // A sid nobody published: a miss, routed as without a store.
    let body = get(b.addr(), &with_sid("nobody-1")).await;
    assert!(body == "t1" || body == "t2");
    assert_eq!(metric(admin(&b), &lookups("miss")).await, 1.0);

    // A target that leaves A's group takes its pins with it, in Redis too.
    let pinned_to_t1 = redis.command(&["GET", "test:sid:t1-1"]).await;
    assert!(pinned_to_t1.contains("t1") || pinned_to_t1.contains(&targets[0].to_string()));
    a.reload(&config(&targets[1..], &url, "100ms"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = redis.command(&["GET", "test:sid:t1-1"]).await;
        if left.starts_with("$-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "t1's pin is still in Redis: {left}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let set = format!("test:target:chat:{}", targets[0]);
    assert_eq!(redis.command(&["EXISTS", &set]).await, ":0\r\n");
    // t2's pins stay.
    assert!(!redis
        .command(&["GET", "test:sid:t2-1"])
        .await
        .starts_with("$-1"));
}

/// A Redis stand-in on loopback: `+OK` to anything, `+PONG` to PING, and no answer
/// at all to GET (nor to anything after it on that connection): a store gone slow.
async fn slow_redis() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_slowly(stream));
        }
    });
    addr
}

async fn serve_slowly(stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let Some(n) = line
            .trim()
            .strip_prefix('*')
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let mut args = Vec::new();
        for _ in 0..n {
            let mut len = String::new();
            let mut arg = String::new();
            if stream.read_line(&mut len).await.unwrap_or(0) == 0
                || stream.read_line(&mut arg).await.unwrap_or(0) == 0
            {
                return;
            }
            args.push(arg.trim().to_ascii_uppercase());
        }
        let reply = match args.first().map(String::as_str) {
            Some("GET") => {
                // Never answered: hold the connection until the client drops it.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                return;
            }
            Some("PING") => "+PONG\r\n",
            _ => "+OK\r\n",
        };
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_store_costs_a_miss_at_most_its_lookup_timeout_and_a_known_pin_nothing() {
    let redis = slow_redis().await;
    let targets = [engine_io_target("t1").await, engine_io_target("t2").await];
    let lb = TetherProc::start(&config(&targets, &format!("redis://{redis}"), "50ms")).await;
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    wait_metric(
        admin,
        "tether_shared_state_up",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // A session this replica opened: its requests never ask the store.
    let open = get(lb.addr(), HANDSHAKE).await;
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("sid")
        .to_string();
    let owner = sid.split('-').next().expect("owner").to_string();
    for _ in 0..5 {
        assert_eq!(get(lb.addr(), &with_sid(&sid)).await, owner);
    }
    for result in ["hit", "miss", "error", "timeout"] {
        assert_eq!(metric(admin, &lookups(result)).await, 0.0, "{result}");
    }

    // A sid it does not know: the store does not answer; after 50 ms the request is
    // routed as without it, and answered.
    let started = Instant::now();
    let body = get(lb.addr(), &with_sid("elsewhere-1")).await;
    let waited = started.elapsed();
    assert!(body == "t1" || body == "t2");
    assert_eq!(metric(admin, &lookups("timeout")).await, 1.0);
    assert!(waited < Duration::from_secs(1), "waited {waited:?}");

    // The stalled connection fails the next PING: the store is down, and lookups no
    // longer wait at all.
    wait_metric(
        admin,
        "tether_shared_state_up",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let body = get(lb.addr(), &with_sid("elsewhere-2")).await;
    assert!(body == "t1" || body == "t2");
    assert_eq!(metric(admin, &lookups("error")).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_over_tls_with_a_password_is_used_and_a_wrong_password_fails_nothing() {
    // ElastiCache with in-transit encryption and an AUTH token: rediss:// with the
    // token as the password, verified against a CA of our own.
    common::require_tools(&["redis-server"]);
    let pki = common::Pki::new();
    let (cert, key) = pki.leaf(
        "redis",
        &["localhost", "127.0.0.1"],
        common::KeyKind::Ecdsa,
        false,
    );
    let ca = pki.ca_path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args(["--tls-auth-clients", "no", "--requirepass", "s3cret"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server with TLS");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server (TLS) did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let targets = [engine_io_target("t1").await];
    let shared = |password: &str| {
        format!(
            "shared_state = {{ redis = \"rediss://:{password}@127.0.0.1:{port}\", ca_bundle = \"{}\" }}",
            ca.display()
        )
    };
    let good = TetherProc::start(&config_with(&targets, &shared("s3cret"))).await;
    let bad = TetherProc::start(&config_with(&targets, &shared("wrong"))).await;
    let admin = |p: &TetherProc| SocketAddr::from(([127, 0, 0, 1], p.admin_port));
    wait_metric(
        admin(&good),
        "tether_shared_state_up",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    get(good.addr(), HANDSHAKE).await;
    assert_eq!(
        metric(admin(&good), "tether_shared_state_pins_published_total").await,
        1.0
    );
    // Without the CA (the system's roots) the server is not trusted.
    let untrusted = format!("shared_state = {{ redis = \"rediss://:s3cret@127.0.0.1:{port}\" }}");
    let untrusted = TetherProc::start(&config_with(&targets, &untrusted)).await;
    // The wrong password, or an untrusted server, never gets the store up, and fails
    // no request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(admin(&bad), "tether_shared_state_up").await, 0.0);
    assert_eq!(
        metric(admin(&untrusted), "tether_shared_state_up").await,
        0.0
    );
    get(bad.addr(), HANDSHAKE).await;
    assert_eq!(get(bad.addr(), &with_sid("t1-1")).await, "t1");
    let _ = redis.kill();
    let _ = redis.wait();
}
