//! Test harness: real hyper backends, the real `tether` binary on an ephemeral port,
//! and a small HTTP/1.1 client. Everything listens on 127.0.0.1.
#![allow(dead_code)]

pub mod alb_log;
mod backends;
mod certs;
pub mod example;
pub mod raw_http;

// Re-exported as they were before the split; a test binary may use neither.
#[allow(unused_imports)]
pub use backends::*;
#[allow(unused_imports)]
pub use certs::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const BACKEND_HEADER: &str = "x-backend";

type Body = BoxBody<Bytes, Infallible>;

// === tether ===

/// The operator tests' mix (tests/metrics.rs, tests/access_log.rs): `web` by
/// default; `/fixed` a fixed response (priority 10), `/old` a redirect (20),
/// `/empty` a group without targets (30), `/dead` a group whose one target refuses
/// connections (40). `load_balancer` and `listeners` are added to the
/// `[load_balancer]` table and after the first listener; `web` is added to its group.
pub fn mix_config(
    web: SocketAddr,
    dead: SocketAddr,
    load_balancer: &str,
    listeners: &str,
    web_group: &str,
) -> String {
    let listener = listener(
        "web",
        &[
            (
                10,
                "/fixed",
                r#"{ fixed_response = { status = 200, content_type = "text/plain", body = "fixed" } }"#,
            ),
            (
                20,
                "/old",
                r#"{ redirect = { path = "/new", status = 301 } }"#,
            ),
            (30, "/empty", r#"{ forward = "empty" }"#),
            (40, "/dead", r#"{ forward = "dead" }"#),
        ],
    );
    format!(
        r#"
[load_balancer]
name = "edge"
admin = "127.0.0.1:{{admin}}"
{load_balancer}
{listener}{listeners}
[target_group.web]
targets = ["{web}"]
health_check = {{ enabled = false }}
{web_group}
[target_group.empty]
targets = []
health_check = {{ enabled = false }}
[target_group.dead]
targets = ["{dead}"]
health_check = {{ enabled = false }}
"#
    )
}

/// A `[[listener]]` on 127.0.0.1 at `{port}` (the port [`TetherProc`] picks) that
/// forwards to the group `default` but where one of `rules` matches: each is a
/// priority, a path pattern and the rule's action (TOML).
pub fn listener(default: &str, rules: &[(u32, &str, &str)]) -> String {
    let mut toml = format!(
        "[[listener]]\naddress = \"127.0.0.1\"\nport = {{port}}\n\
         default_action = {{ forward = \"{default}\" }}\n"
    );
    for (priority, path, action) in rules {
        toml.push_str(&format!(
            "  [[listener.rule]]\n  priority = {priority}\n  \
             conditions = {{ path_pattern = [\"{path}\"] }}\n  action = {action}\n"
        ));
    }
    toml
}

/// An address nothing listens on (a port bound, then closed): connections to it
/// are refused.
pub fn refused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port to give back")
}

/// An HTTP/2 client over an established stream (TLS that chose `h2`), its
/// connection driven by a task of its own.
pub async fn h2_client<S, B>(io: S) -> hyper::client::conn::http2::SendRequest<B>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// The Close frame a websocket gets within `limit` (frames before it skipped);
/// panics if the websocket ends without one or nothing comes in time.
pub async fn close_frame<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    limit: Duration,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame<'static>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("websocket ended without a Close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no Close frame within {limit:?}"))
}

/// The mix's two failures, each on a connection of its own (tether closes after
/// an error): `/empty` gets 503 (no targets), `/dead` 502 (connection refused).
/// A metric's value from an admin API's `/metrics`: the first sample whose line starts
/// with `series` (a name, or a name with the start of its labels).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let r = Client::connect(admin).await.get("/metrics").await;
    let text = r.text();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// A redis-server listening only on the Unix socket `socket` (no TCP port, no
/// persistence), once the socket exists. The caller kills it.
pub fn redis_on_socket(socket: &Path) -> Child {
    require_tools(&["redis-server"]);
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(socket)
        .args(["--unixsocketperm", "700"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

pub async fn mix_failures(addr: SocketAddr) {
    assert_eq!(Client::connect(addr).await.get("/empty").await.status, 503);
    assert_eq!(Client::connect(addr).await.get("/dead").await.status, 502);
}

/// One listener forwarding everything to `web`, with `load_balancer` in the
/// `[load_balancer]` table.
pub fn one_group_config(web: SocketAddr, load_balancer: &str) -> String {
    web_config(
        load_balancer,
        &format!("targets = [\"{web}\"]\nhealth_check = {{ enabled = false }}"),
    )
}

/// One listener forwarding everything to the group `web`: `load_balancer` goes in
/// the `[load_balancer]` table, `web` in the group's.
pub fn web_config(load_balancer: &str, web: &str) -> String {
    let listener = listener("web", &[]);
    format!(
        r#"
[load_balancer]
{load_balancer}
{listener}[target_group.web]
{web}
"#
    )
}

/// A running `tether run` process; killed when dropped.
pub struct TetherProc {
    pub child: Child,
    pub port: u16,
    /// Port substituted for `{admin}` in the config.
    pub admin_port: u16,
    pub config_path: PathBuf,
    /// The file `--addresses-file` writes.
    pub addresses_path: PathBuf,
    /// Where stdout and stderr go, when started with [`TetherProc::start_logged`].
    pub log_path: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl TetherProc {
    /// Starts tether with `config` (where `{port}` is replaced by a free port) and
    /// waits until it accepts connections.
    pub async fn start(config: &str) -> TetherProc {
        Self::start_with_env(config, &[]).await
    }

    /// As [`TetherProc::start`], with extra environment variables.
    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> TetherProc {
        Self::start_with_args(config, env, &[]).await
    }

    /// The log lines so far (of a [`TetherProc::start_logged`] process).
    pub fn log_lines(&self) -> Vec<String> {
        self.log_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// As [`TetherProc::start_with_env`], with extra `tether run` arguments.
    pub async fn start_with_args(config: &str, env: &[(&str, &str)], args: &[&str]) -> TetherProc {
        Self::spawn(config, env, args, false).await
    }

    /// As [`TetherProc::start_with_env`], with stdout and stderr written to one file
    /// ([`TetherProc::log_path`]) rather than stderr passed through.
    pub async fn start_logged(config: &str, env: &[(&str, &str)]) -> TetherProc {
        Self::spawn(config, env, &[], true).await
    }

    async fn spawn(config: &str, env: &[(&str, &str)], args: &[&str], logged: bool) -> TetherProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("tether.toml");
        std::fs::write(&config_path, Self::fill(config)).expect("write config");
        let addresses = dir.path().join("addresses");
        let log_path = dir.path().join("tether.log");
        let (stdout, stderr) = if logged {
            let log = std::fs::File::create(&log_path).expect("create the log file");
            let log2 = log.try_clone().expect("clone the log file");
            (Stdio::from(log), Stdio::from(log2))
        } else {
            (Stdio::null(), Stdio::inherit())
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--addresses-file")
            .arg(&addresses)
            .args(args)
            .env("TETHER_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn tether");
        let (port, admin_port) = match Self::bound_ports(&addresses, &mut child).await {
            Ok(ports) => ports,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{e}");
            }
        };
        let proc = TetherProc {
            child,
            port,
            admin_port,
            config_path,
            addresses_path: addresses,
            log_path: logged.then_some(log_path),
            _dir: dir,
        };
        proc.wait_ready().await;
        proc
    }

    /// The config as tether gets it: `{port}` and `{admin}` become port 0, so that
    /// tether picks free ports itself (no race with other tests for a port).
    fn fill(config: &str) -> String {
        config.replace("{port}", "0").replace("{admin}", "0")
    }

    /// The first listener's and the admin API's ports, from the file
    /// `--addresses-file` writes once tether has bound them.
    async fn bound_ports(path: &Path, child: &mut Child) -> Result<(u16, u16), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let port_of = |prefix: &str| {
                    text.lines()
                        .find(|l| l.starts_with(prefix))
                        .and_then(|l| l.rsplit(' ').next())
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                        .map(|a| a.port())
                };
                let port = port_of("listener 0 ").ok_or(format!("no listener in {text:?}"))?;
                return Ok((port, port_of("admin ").unwrap_or(0)));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("tether exited before binding: {status}"));
            }
            if Instant::now() > deadline {
                return Err("tether did not report its addresses in 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tether did not listen on {}", self.addr());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Listener `i`'s address, once it takes connections: its port is in the
    /// addresses file as soon as it is reserved, a moment before it listens.
    pub async fn listener_addr(&self, i: usize) -> SocketAddr {
        let text = std::fs::read_to_string(&self.addresses_path).expect("addresses");
        let addr: SocketAddr = text
            .lines()
            .find(|l| l.starts_with(&format!("listener {i} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no listener {i} in {text:?}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "listener {i} ({addr}) never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        addr
    }

    /// Rewrites the config (placeholders filled as at start) and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        self.write_config(config);
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }
}

impl TetherProc {
    /// Starts `tether run --upgrade` on this tether's config and addresses file, with
    /// `args` (the upgrade socket), and returns it, killed when dropped. It waits on
    /// the upgrade socket for this tether's listening sockets (send SIGQUIT).
    pub fn spawn_upgrade(&self, args: &[&str]) -> KillOnDrop {
        let child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--upgrade", "--config"])
            .arg(&self.config_path)
            .arg("--addresses-file")
            .arg(&self.addresses_path)
            .args(args)
            .env("TETHER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tether --upgrade");
        KillOnDrop(child)
    }

    /// Sends `signal` (`"QUIT"`, `"TERM"`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// A child process killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TetherProc {
    /// Rewrites the config file (placeholders filled as at start) without reloading.
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config_path, Self::fill(config)).expect("write config");
    }
}

impl Drop for TetherProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === Client ===

/// One HTTP/1.1 keep-alive connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    pub host: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The `Set-Cookie` value of cookie `name`, whole.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// `name=value` of a cookie set by this reply, ready for a `Cookie` header.
    pub fn cookie_pair(&self, name: &str) -> Option<String> {
        self.set_cookie(name)
            .and_then(|c| c.split(';').next().map(str::to_string))
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to tether");
        Self::over(stream, addr).await
    }

    /// Connects from a chosen loopback source address (for source-ip rules).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind source");
        let stream = socket.connect(addr).await.expect("connect");
        Self::over(stream, addr).await
    }

    async fn over(stream: TcpStream, addr: SocketAddr) -> Client {
        Self::over_io(stream, &addr.to_string()).await
    }

    /// HTTP/1.1 over any established stream (TCP, TLS).
    pub async fn over_io<S>(io: S, host: &str) -> Client
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Client {
            sender,
            host: host.to_string(),
        }
    }

    pub async fn send(&mut self, req: Request<Body>) -> Reply {
        self.try_send(req).await.expect("request failed")
    }

    pub async fn try_send(&mut self, mut req: Request<Body>) -> Result<Reply, hyper::Error> {
        if !req.headers().contains_key(http::header::HOST) {
            let host = self.host.parse().expect("host");
            req.headers_mut().insert(http::header::HOST, host);
        }
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(request("GET", path, &[])).await
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(Bytes::new())).expect("request")
}

pub fn request_with_body(method: &str, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(body)
        .expect("request")
}

/// A body streamed in chunks of `chunk` bytes with no Content-Length.
pub fn chunked_body(data: Bytes, chunk: usize) -> Body {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..data.len())
        .step_by(chunk)
        .map(|s| Ok(Frame::data(data.slice(s..(s + chunk).min(data.len())))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Sends raw bytes and reads the whole answer until the server closes (or 5 s).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// === Admin API ===

/// Target states by port from tether's admin API (which may take a moment to listen
/// after the proxy port does: retried within a bound).
pub async fn target_states(lb: &TetherProc) -> std::collections::HashMap<u16, String> {
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let groups = loop {
        match tether::admin::fetch_targets(admin).await {
            Ok(g) => break g,
            Err(e) if Instant::now() > deadline => panic!("admin /targets: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    groups
        .iter()
        .flat_map(|g| g.targets.iter().map(|t| (t.port, t.state.clone())))
        .collect()
}

/// Runs `probe` every `step` until it gives `Ok`; once `within` has passed, fails
/// with what its last `Err` says.
pub async fn poll<T, F, Fut>(within: Duration, step: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(step).await;
            }
        }
    }
}

/// Waits (bounded) until the target at `addr` shows `state` in the admin API.
pub async fn wait_state(lb: &TetherProc, addr: SocketAddr, state: &str) {
    poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async move {
            let states = target_states(lb).await;
            if states.get(&addr.port()).map(String::as_str) == Some(state) {
                return Ok(());
            }
            Err(format!("{addr} never became {state}: {states:?}"))
        },
    )
    .await
}

// === Discovery ===

/// Which backends answer `n` requests to `path` on one keep-alive connection, and how
/// often (a non-200 answer is counted as `status N`, on a new connection).
pub async fn served_by(
    lb: &TetherProc,
    path: &str,
    n: usize,
) -> std::collections::HashMap<String, usize> {
    let mut client = Client::connect(lb.addr()).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..n {
        let r = client.get(path).await;
        // Before the first discovery the group is empty (503): recorded as such.
        let key = if r.status == 200 {
            r.text()
        } else {
            format!("status {}", r.status)
        };
        *seen.entry(key).or_default() += 1;
        if r.status != 200 {
            client = Client::connect(lb.addr()).await;
        }
    }
    seen
}

/// Waits (bounded) until the requests to `path` are served by exactly `want`.
pub async fn wait_served(lb: &TetherProc, path: &str, want: &[&str]) {
    poll(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async move {
            let seen = served_by(lb, path, 12).await;
            let mut ids: Vec<&str> = seen.keys().map(String::as_str).collect();
            ids.sort();
            if ids == want {
                return Ok(());
            }
            Err(format!("served by {ids:?}, want {want:?}"))
        },
    )
    .await
}

/// What the admin API's status page shows of `group`'s discovery.
pub async fn discovery_status(
    lb: &TetherProc,
    group: &str,
) -> tether::admin::status::DiscoveryView {
    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let reply = admin.get("/status").await;
    let status: tether::admin::status::Status =
        serde_json::from_slice(&reply.body).expect("/status JSON");
    status
        .discovery
        .into_iter()
        .find(|d| d.group == group)
        .unwrap_or_else(|| panic!("no discovery status for {group}"))
}

// === AWS ===

/// The environment tether gets in the ECS tests: static dummy credentials, no
/// instance metadata (never called: it is off limits here), no profile files.
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDTETHERTEST"),
    ("AWS_SECRET_ACCESS_KEY", "tether-test-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/tether-test"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/tether-test"),
];

// === Child processes ===

/// Panics with the setup hint unless every tool is on the PATH (tests never skip).
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is missing: run scripts/setup --tests"
        );
    }
}

/// Lines of a child's stdout, read on a thread so that reads can time out.
pub fn lines_of(stdout: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
