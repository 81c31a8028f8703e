//! "Safe at the edge: no request smuggling": a differential harness. tether (access
//! log on, one thread per listener, a rule `/admin*` -> fixed 403, default forward)
//! in front of two recording targets, each behind listeners of its own: Node's own
//! `http` server (llhttp, tests/differential/recorder.js) and hyper. Every request a
//! target parsed (method, path, body length, errors) must be one tether routed there
//! and logged, in order, with the same method, path and body length; the other
//! allowed outcome is tether's own 4xx with nothing at the target. After each attack
//! a victim on a fresh connection (which may get the attack's pooled target
//! connection) must get its own response.
//!
//! Sources: the published classes (the `smuggler` scanner's TE mutations,
//! PortSwigger's CL.TE / TE.CL / TE.TE / CL.0 / `Connection:`-listed headers, h2c,
//! pipelining, pool poisoning, chunk extensions, bare LF, trailers, ...), HTTP/2
//! downgrades, and a proptest generator of valid and invalid heads and bodies.
//! `TETHER_DIFF_CASES` (default 3000) generated cases, `TETHER_DIFF_SEED` another
//! sequence, `TETHER_DIFF_FULL=1` smuggler's byte sweeps too, `TETHER_DIFF_TRACE=1`
//! prints every run, `TETHER_DIFF_VERBOSE=1` every generated failure. Failures are
//! collected by case name with what each side saw, then asserted: a to-do list.
//!
//! One test binary: the targets and tether's log here, one run and its checks in
//! `run`, the published classes in `h1`, HTTP/2 downgrades in `h2`, generated
//! cases in `generated`.

#[path = "../common/mod.rs"]
mod common;

mod generated;
mod h1;
mod h2;
mod run;

use h1::*;
use h2::*;
use run::*;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc::Receiver, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{alb_log, lines_of, require_tools, KeyKind, Pki, TetherProc};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(3);
/// Half a request head: whatever a parser reads next completes it.
const HALF: &str = "GET /admin HTTP/1.1\r\nX: ";
const ADMIN: &str = "GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n";

fn env_is(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// === The recording targets ===

#[derive(Debug, Clone, Default)]
struct Seen {
    method: String,
    path: String,
    len: u64,
    /// None: whole; "aborted": cut off mid-body; else the parser's error.
    err: Option<String>,
    host: Option<String>,
    cookies: Vec<String>,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}B", self.method, esc(&self.path, 60), self.len)?;
        self.err.as_ref().map_or(Ok(()), |e| write!(f, " ({e})"))
    }
}

#[derive(Debug, Clone)]
enum Rec {
    Req(Seen),
    /// Bytes refused before any request head.
    Err(String),
}

impl Rec {
    fn req(&self) -> Option<&Seen> {
        if let Rec::Req(s) = self {
            Some(s)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rec::Req(s) => s.fmt(f),
            Rec::Err(e) => write!(f, "refused: {e}"),
        }
    }
}

/// The connection closed mid-request (llhttp's and hyper's words for it).
fn is_abort(err: &str) -> bool {
    let eof = err.contains("end of file") || err.contains("unexpected EOF");
    eof || err == "aborted" || err == "HPE_INVALID_EOF_STATE"
}

type Records = Arc<Mutex<Vec<Rec>>>;

struct NodeProc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    resets: u64,
}

/// Node (a process printing JSON lines) or hyper (tasks of this test).
struct Target {
    name: &'static str,
    addr: SocketAddr,
    records: Records,
    node: Option<Mutex<NodeProc>>,
    conns: Arc<Mutex<tokio::task::JoinSet<()>>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(n) = &self.node {
            let mut n = n.lock().unwrap();
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        if let Some(a) = &self.accept {
            a.abort();
        }
    }
}

impl Target {
    fn node() -> Target {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/differential/recorder.js"
        );
        let mut node = Command::new("node");
        node.arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = node
            .spawn()
            .expect("node (scripts/setup --tests installs it)");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let first = lines.recv_timeout(Duration::from_secs(20)).expect("PORT");
        let port = first.strip_prefix("PORT ").and_then(|p| p.parse().ok());
        let port: u16 = port.unwrap_or_else(|| panic!("recorder.js said {first:?}"));
        let stdin = child.stdin.take().expect("stdin");
        let node = NodeProc {
            child,
            stdin,
            lines,
            resets: 0,
        };
        Target {
            name: "node",
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            records: Records::default(),
            node: Some(Mutex::new(node)),
            conns: Default::default(),
            accept: None,
        }
    }

    async fn hyper() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<tokio::task::JoinSet<()>>> = Default::default();
        let records = Records::default();
        let (r, c) = (records.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.lock().unwrap().spawn(hyper_conn(stream, r.clone()));
            }
        });
        let accept = Some(accept);
        Target {
            name: "hyper",
            addr,
            records,
            node: None,
            conns,
            accept,
        }
    }

    /// Moves what Node printed into the records; returns the resets acknowledged.
    fn sync(&self) -> u64 {
        let Some(n) = &self.node else { return 0 };
        let mut n = n.lock().unwrap();
        while let Ok(line) = n.lines.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&line).expect("recorder json");
            let s = |k: &str| v[k].as_str().map(str::to_string);
            let rec = match v["t"].as_str() {
                Some("reset") => {
                    n.resets += 1;
                    continue;
                }
                Some("err") => Rec::Err(format!("{} {}", v["code"], v["reason"])),
                _ => Rec::Req(Seen {
                    method: s("method").unwrap_or_default(),
                    path: s("path").unwrap_or_default(),
                    len: v["len"].as_u64().unwrap_or(0),
                    err: s("err"),
                    host: s("host"),
                    cookies: serde_json::from_value(v["cookies"].clone()).unwrap_or_default(),
                }),
            };
            self.records.lock().unwrap().push(rec);
        }
        n.resets
    }

    /// Closes every connection to the target (what they left unfinished is recorded
    /// now), so that each case starts with an empty pool; returns the record count.
    async fn reset(&self) -> usize {
        if let Some(n) = &self.node {
            let before = self.sync();
            let written = n.lock().unwrap().stdin.write_all(b"reset\n");
            written.expect("recorder.js's stdin");
            let deadline = Instant::now() + WAIT;
            while self.sync() == before {
                assert!(Instant::now() < deadline, "recorder.js did not reset");
                pause(1).await;
            }
        } else {
            let mut set = std::mem::take(&mut *self.conns.lock().unwrap());
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        // tether's reactor sees the FINs before the next request takes a connection.
        pause(3).await;
        self.records.lock().unwrap().len()
    }

    /// The records since `from` less the victim's, once that is in (or a short while
    /// after, when something else took the victim's bytes).
    async fn seen(&self, from: usize, victim: &str) -> Vec<Rec> {
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            self.sync();
            let mut recs = self.records.lock().unwrap()[from..].to_vec();
            let mine = |r: &Rec| matches!(r, Rec::Req(s) if s.path == victim && s.err.is_none());
            if let Some(p) = recs.iter().position(mine) {
                recs.remove(p);
                return recs;
            }
            if Instant::now() > deadline {
                return recs;
            }
            pause(1).await;
        }
    }
}

async fn hyper_conn(stream: TcpStream, records: Records) {
    // Set while a request is read, and left set when its body failed: an error the
    // connection ends with is then that request's own, else bytes the target refused.
    let busy = Arc::new(AtomicBool::new(false));
    let (r, b) = (records.clone(), busy.clone());
    let service = hyper::service::service_fn(move |req| hyper_record(req, r.clone(), b.clone()));
    let conn = hyper::server::conn::http1::Builder::new();
    if let Err(e) = conn.serve_connection(TokioIo::new(stream), service).await {
        if !busy.load(SeqCst)
            && (e.is_parse() || e.is_parse_too_large() || e.is_incomplete_message())
        {
            records.lock().unwrap().push(Rec::Err(e.to_string()));
        }
    }
}

async fn hyper_record(
    req: http::Request<hyper::body::Incoming>,
    records: Records,
    busy: Arc<AtomicBool>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    busy.store(true, SeqCst);
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let seen = Seen {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        err: Some("aborted".into()),
        host: req.headers().get("host").map(text),
        cookies: req.headers().get_all("cookie").iter().map(text).collect(),
        ..Seen::default()
    };
    let at = {
        let mut all = records.lock().unwrap();
        all.push(Rec::Req(seen.clone()));
        all.len() - 1
    };
    let set = |len: u64, err: Option<String>| {
        if let Rec::Req(s) = &mut records.lock().unwrap()[at] {
            (s.len, s.err) = (len, err);
        }
    };
    let (mut body, mut len, mut err) = (req.into_body(), 0u64, None);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => len += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => {
                let source = std::error::Error::source(&e).map(|s| format!(": {s}"));
                err = Some(format!("{e}{}", source.unwrap_or_default()));
                break;
            }
        }
        set(len, Some("aborted".into()));
    }
    busy.store(err.is_some(), SeqCst);
    set(len, err);
    let answer = format!("{} {} {len}", seen.method, seen.path);
    let mut resp = http::Response::new(Full::new(Bytes::from(answer)));
    resp.headers_mut()
        .insert("x-recorder", http::HeaderValue::from_static("hyper"));
    if seen.method == "CONNECT" {
        *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    }
    Ok(resp)
}

// === tether and its access log ===

/// A request as tether logged it.
#[derive(Debug)]
struct Routed {
    method: String,
    /// The request target, less any fragment.
    path: String,
    /// The body length tether took (the run works it out from `received`).
    len: u64,
    received: u64,
    target: Option<SocketAddr>,
    elb: Option<u16>,
    /// The target answered (a target status is logged).
    answered: bool,
}

impl std::fmt::Display for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, p, elb) = (&self.method, esc(&self.path, 60), self.elb);
        match self.target {
            Some(_) => write!(f, "{m} {p} {}B -> target, {elb:?}", self.len),
            None => write!(f, "{m} {p} own {elb:?}"),
        }
    }
}

/// The path of a logged URL (`*` for OPTIONS *), less any fragment.
fn url_path(url: &str) -> String {
    let path = url
        .split_once("://")
        .map_or(url, |(_, r)| r.find('/').map_or("", |i| &r[i..]));
    let path = if path.is_empty() && url.ends_with('*') {
        "*"
    } else {
        path
    };
    no_fragment(path)
}

fn no_fragment(path: &str) -> String {
    path.split('#').next().unwrap_or_default().to_string()
}

/// A log line, read by the strict ALB parser of tests/common or, where that refuses
/// it (a Host with a space makes an unsplittable request field), field by field.
fn logged(line: &str) -> Option<Routed> {
    if let Ok(l) = alb_log::parse(line) {
        let (method, path) = l.request.map_or(("-".into(), "-".into()), |r| {
            let path = url_path(&r.url);
            (r.method, path)
        });
        return Some(Routed {
            method,
            path,
            len: 0,
            received: l.received_bytes,
            target: l.target,
            elb: l.elb_status_code,
            answered: l.target_status_code.is_some(),
        });
    }
    let f: Vec<&str> = line.splitn(13, ' ').collect();
    let request = f.get(12)?.strip_prefix('"')?.split("\" \"").next()?;
    let (method, rest) = request.split_once(' ')?;
    Some(Routed {
        method: method.into(),
        path: url_path(rest.rsplit_once(' ')?.0),
        len: 0,
        received: f[10].parse().ok()?,
        target: f[4].parse().ok(),
        elb: f[8].parse().ok(),
        answered: f[9] != "-",
    })
}

type Lines = Vec<Result<Routed, String>>;

/// Log lines by client port, read as the writer appends them.
#[derive(Default)]
struct LogTail {
    offset: u64,
    partial: Vec<u8>,
    by_client: HashMap<SocketAddr, Lines>,
}

struct Env {
    pki: Pki,
    log_path: std::path::PathBuf,
    log: Mutex<LogTail>,
    targets: [Target; 2],
    http: [SocketAddr; 2],
    https: [SocketAddr; 2],
    victims: AtomicU64,
    _lb: TetherProc,
    _dir: tempfile::TempDir,
}

/// Listeners 0 and 2 (HTTPS) forward to Node, 1 and 3 to hyper.
const CONFIG: &str = r#"
[[listener]]
address = "127.0.0.1"
port = PORT
TLS
default_action = { forward = "GROUP" }
  [[listener.rule]]
  priority = 1
  conditions = { path_pattern = ["/admin*"] }
  action = { fixed_response = { status = 403, content_type = "text/plain", body = "denied" } }
"#;

impl Env {
    async fn start() -> Env {
        require_tools(&["node"]);
        let targets = [Target::node(), Target::hyper().await];
        let pki = Pki::new();
        let (cert, key) = pki.leaf("a", &["a.test"], KeyKind::Ecdsa, false);
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("access.log");
        let (cert, key) = (cert.display(), key.display());
        let tls = format!(
            "protocol = \"HTTPS\"\ncertificates = [{{ cert = \"{cert}\", key = \"{key}\" }}]"
        );
        let mut config =
            format!("[load_balancer]\nthreads = 1\naccess_log = {{ path = {log_path:?} }}\n");
        for i in 0..4 {
            let listener = CONFIG.replace("PORT", if i == 0 { "{port}" } else { "0" });
            let listener = listener.replace("TLS", if i >= 2 { &tls } else { "" });
            config += &listener.replace("GROUP", ["node", "hyper"][i % 2]);
        }
        for (name, t) in [("node", &targets[0]), ("hyper", &targets[1])] {
            let check = "health_check = { enabled = false }";
            config += &format!(
                "[target_group.{name}]\ntargets = [\"{}\"]\n{check}\n",
                t.addr
            );
        }
        let lb = TetherProc::start(&config).await;
        Env {
            http: [lb.listener_addr(0).await, lb.listener_addr(1).await],
            https: [lb.listener_addr(2).await, lb.listener_addr(3).await],
            pki,
            log_path,
            log: Mutex::default(),
            targets,
            victims: AtomicU64::new(0),
            _lb: lb,
            _dir: dir,
        }
    }

    fn poll_log(&self, log: &mut LogTail) {
        let Ok(mut f) = std::fs::File::open(&self.log_path) else {
            return;
        };
        let mut buf = Vec::new();
        let _ = f
            .seek(SeekFrom::Start(log.offset))
            .and_then(|_| f.read_to_end(&mut buf));
        log.offset += buf.len() as u64;
        log.partial.extend_from_slice(&buf);
        while let Some(nl) = log.partial.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = log.partial.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw[..nl]).into_owned();
            // The fourth field is client:port.
            let client = line.split(' ').nth(3).and_then(|c| c.parse().ok());
            let parsed = logged(&line).ok_or(line);
            let client = client.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            log.by_client.entry(client).or_default().push(parsed);
        }
    }

    /// Once the victim's line is written (the attack's were queued before it), the
    /// lines of both connections.
    async fn lines(&self, attack: SocketAddr, victim: SocketAddr) -> [Lines; 2] {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let mut log = self.log.lock().unwrap();
                self.poll_log(&mut log);
                if log.by_client.contains_key(&victim) || Instant::now() > deadline {
                    let mut take = |c| log.by_client.remove(&c).unwrap_or_default();
                    return [take(attack), take(victim)];
                }
            }
            pause(1).await;
        }
    }
}
