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

mod common;

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

// === One run: an attack on one target, a victim, the checks ===

type Reply = (u16, Option<String>);

/// A run's problems by kind, the first word of each report line:
/// - `target-refused-head`: the target refused bytes tether sent before any request;
/// - `target-body-error`: the target found an error in a request tether forwarded;
/// - `body-length`: tether and the target took bodies of different lengths;
/// - `not-parsed`: tether forwarded a request the target did not parse as such;
/// - `smuggled`: the target parsed a request tether did not route there;
/// - `admin-bypass`: a request for `/admin*` reached a target;
/// - `answers-differ`: the client's answers are not the target's, in its order;
/// - `victim`: a request on a fresh connection did not get its own answer;
/// - `victim-log`, `log-unparseable`, `wrong-target`, `tether-5xx`, `hang`, and
///   `h2-downgrade` (see [`H2_CASES`]).
type Problems = Vec<(&'static str, String)>;

/// What an attack did.
struct Attack {
    /// Its client address (its log lines).
    client: SocketAddr,
    /// What was sent, for the report.
    sent: String,
    /// Status and, for a recorder's answer, its body, in the order they came.
    replies: Vec<Reply>,
    /// The body lengths tether had: worked out from the bytes sent and each line's
    /// received bytes (HTTP/1.1), or the DATA sent (HTTP/2).
    bytes: Result<Vec<u8>, u64>,
    problems: Problems,
    /// HTTP/2: what else the target's record must show (see [`H2_CASES`]).
    expect: String,
}

async fn run<F: Future<Output = Attack>>(
    env: &Env,
    t: usize,
    name: &str,
    attack: F,
) -> Option<String> {
    let target = &env.targets[t];
    let from = target.reset().await;
    let mut a = attack.await;
    let vpath = format!("/victim/{}", env.victims.fetch_add(1, SeqCst));
    let (vclient, vgot) = match a.bytes {
        Ok(_) => victim_h1(env.http[t], t, &vpath).await,
        Err(_) => {
            let victim = http::Request::get(format!("https://a.test{vpath}"));
            let victim = victim.body(Full::default()).expect("victim");
            let (client, got) = h2_send(env, t, true, victim).await;
            pause(20).await;
            (client, got.map(|(s, n)| (s, n.unwrap_or_default())))
        }
    };
    let [lines, victim_lines] = env.lines(a.client, vclient).await;
    let seen = target.seen(from, &vpath).await;
    let p = &mut a.problems;
    let mut routed = Vec::new();
    for line in lines {
        match line {
            Ok(r) => routed.push(r),
            Err(l) => p.push(("log-unparseable", l)),
        }
    }
    // Each line's received bytes follow the previous line's in what was sent.
    let mut offset = 0usize;
    for r in &mut routed {
        r.len = match &a.bytes {
            Ok(bytes) => {
                let end = (offset + r.received as usize).min(bytes.len());
                let seg = &bytes[offset.min(end)..end];
                offset = end;
                body_len(seg)
            }
            Err(data) => *data,
        };
    }
    let reqs: Vec<&Seen> = seen.iter().filter_map(Rec::req).collect();
    for r in &seen {
        if let Rec::Err(e) = r {
            p.push(("target-refused-head", e.clone()));
        }
    }
    for r in routed
        .iter()
        .filter(|r| r.target.is_none() && r.elb >= Some(500))
    {
        p.push(("tether-5xx", r.to_string()));
    }
    // tether's forwarded requests and the target's, paired in order.
    let mut next = 0;
    for r in routed.iter().filter(|r| r.target.is_some()) {
        if r.target != Some(target.addr) {
            p.push(("wrong-target", format!("{r} to {:?}", r.target)));
        }
        match reqs.get(next) {
            Some(s) if s.method == r.method && no_fragment(&s.path) == r.path => {
                next += 1;
                match s.err.as_deref() {
                    Some(e) if !is_abort(e) => p.push(("target-body-error", s.to_string())),
                    // Cut off: a prefix of the body, on a connection then closed.
                    Some(_) if s.len <= r.len => {}
                    _ if s.len == r.len => {}
                    _ => p.push(("body-length", format!("tether {r}, target {s}"))),
                }
            }
            // Refused by tether after choosing a target, before sending anything.
            _ if !r.answered && r.elb.is_some_and(|s| (400..500).contains(&s)) => {}
            _ => p.push(("not-parsed", r.to_string())),
        }
    }
    for s in reqs.iter().skip(next) {
        p.push(("smuggled", s.to_string()));
    }
    for s in reqs.iter().filter(|s| s.path.starts_with("/admin")) {
        p.push(("admin-bypass", s.to_string()));
    }
    for s in &reqs {
        let (host, cookies) = (s.host.as_deref(), &s.cookies);
        let bad = match a.expect.as_str() {
            "crumbs" => cookies != &["a=1; b=2"],
            "userinfo" => host.is_some_and(|h| h.contains('@')),
            "host" => host != Some("a.test"),
            _ => false,
        };
        if bad {
            p.push(("h2-downgrade", format!("Host {host:?}, Cookie {cookies:?}")));
        }
    }
    // What the recorder answered (a HEAD's answer has no body) and what the client got.
    let answer = |s: &&Seen| match s.method.as_str() {
        "HEAD" => String::new(),
        m => format!("{m} {} {}", s.path, s.len),
    };
    let whole = reqs.iter().filter(|s| s.err.is_none());
    let answers: Vec<String> = whole.map(answer).collect();
    let got: Vec<String> = a.replies.iter().filter_map(|r| r.1.clone()).collect();
    if got != answers {
        p.push(("answers-differ", format!("got {got:?}, gave {answers:?}")));
    }
    if !matches!(&vgot, Ok((200, body)) if *body == format!("GET {vpath} 0")) {
        p.push(("victim", format!("{vpath} got {vgot:?}")));
    }
    let vl: Vec<_> = victim_lines.iter().flatten().collect();
    if vl.len() != 1 || vl[0].path != vpath {
        p.push(("victim-log", format!("{victim_lines:?}")));
    }
    let (problems, tether) = (
        list(p.iter().map(|(k, d)| format!("{k}: {d}"))),
        list(&routed),
    );
    let replies = list(
        a.replies
            .iter()
            .map(|(s, n)| format!("{s} {}", n.as_deref().unwrap_or("-"))),
    );
    let (name, target, sent) = (format!("[{}] {name}", target.name), list(&seen), a.sent);
    let report = format!(
        "{name}: {problems}\n    sent:    {sent}\n    tether:  {tether}\n    \
         target:  {target}\n    replies: {replies}"
    );
    if env_is("TETHER_DIFF_TRACE") {
        eprintln!("{report}");
    }
    (!p.is_empty()).then_some(report)
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    items.join(" | ")
}

fn esc(b: impl AsRef<[u8]>, max: usize) -> String {
    let s = b.as_ref().escape_ascii().to_string();
    if s.len() > max {
        format!("{}...", &s[..max])
    } else {
        s
    }
}

/// `\r \n \t \0 \\ \xNN` escapes, as the tables below write bytes.
fn unescape(s: &str) -> Vec<u8> {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let (byte, used) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'r')) => (b'\r', 2),
            (b'\\', Some(b'n')) => (b'\n', 2),
            (b'\\', Some(b't')) => (b'\t', 2),
            (b'\\', Some(b'0')) => (0, 2),
            (b'\\', Some(b'\\')) => (b'\\', 2),
            (b'\\', Some(b'x')) => (u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"), 4),
            (c, _) => (c, 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Where a head ends, as tether finds it: LF, then LF or CRLF.
fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| match (b[i], b.get(i + 1), b.get(i + 2)) {
        (b'\n', Some(b'\n'), _) => Some(i + 2),
        (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
        _ => None,
    })
}

/// A chunked body's data and the bytes it used, leniently, as far as it goes.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, usize) {
    let (start, mut data) = (b.len(), Vec::new());
    while let Some(nl) = b.iter().position(|c| *c == b'\n') {
        let digits = b[..nl]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
            .min(15);
        let size = std::str::from_utf8(&b[..digits]).unwrap_or("0");
        let size = usize::from_str_radix(size, 16).unwrap_or(0);
        b = &b[nl + 1..];
        if size == 0 {
            // Trailer lines, up to the empty one.
            while let Some(nl) = b.iter().position(|c| *c == b'\n') {
                let empty = b[..nl].iter().all(|c| *c == b'\r');
                b = &b[nl + 1..];
                if empty {
                    break;
                }
            }
            break;
        }
        let take = size.min(b.len());
        data.extend_from_slice(&b[..take]);
        b = &b[take..];
        if take < size {
            break;
        }
        b = b
            .strip_prefix(b"\r\n")
            .or_else(|| b.strip_prefix(b"\n"))
            .unwrap_or(b);
    }
    (data, start - b.len())
}

/// The body length tether took for the request in `seg` (the bytes it logged as
/// received for it): chunked when the head has a Transfer-Encoding line (tether
/// refuses any other coding), else what came after the head.
fn body_len(seg: &[u8]) -> u64 {
    let Some(end) = head_end(seg) else { return 0 };
    let mut lines = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut lines);
    let parsed = req.parse(&seg[..end]).is_ok();
    match parsed
        && req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        true => dechunk(&seg[end..]).0.len() as u64,
        false => (seg.len() - end) as u64,
    }
}

/// The responses in what tether wrote: status, and a recorder's body.
fn responses(mut b: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        let Ok(httparse::Status::Complete(n)) = r.parse(b) else {
            out.push((0, Some(format!("unparseable: {}", esc(b, 80)))));
            break;
        };
        let status = r.code.unwrap_or(0);
        let get = |name: &str| r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        let named = get("x-recorder").is_some();
        let chunked = get("transfer-encoding").is_some_and(|h| h.value.ends_with(b"chunked"));
        let cl = get("content-length").and_then(|h| std::str::from_utf8(h.value).ok());
        let cl: Option<usize> = cl.and_then(|v| v.parse().ok());
        let rest = &b[n..];
        let (body, used) = match cl {
            _ if (100..200).contains(&status) => (Vec::new(), 0),
            _ if chunked => dechunk(rest),
            // A HEAD's answer has a length and no body.
            Some(cl) if cl > 0 && rest.starts_with(b"HTTP/1.") => (Vec::new(), 0),
            Some(cl) => (rest[..cl.min(rest.len())].to_vec(), cl.min(rest.len())),
            None => (rest.to_vec(), rest.len()),
        };
        if !(100..200).contains(&status) {
            out.push((
                status,
                named.then(|| String::from_utf8_lossy(&body).into_owned()),
            ));
        }
        b = &rest[used..];
    }
    out
}

async fn read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let hung = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .is_err();
    (out, hung)
}

// === HTTP/1.1 ===

/// A connection to tether from a loopback address of its own for each target and
/// role (attack, victim), so that each connection's log lines are its own: the
/// same port may serve connections from one address to two listeners at once.
async fn connect(addr: SocketAddr, t: usize, victim: bool) -> (TcpStream, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let source = [127, 0, 0, 1 + t as u8 + if victim { 2 } else { 0 }];
    socket.bind(SocketAddr::from((source, 0))).expect("bind");
    let s = socket.connect(addr).await.expect("connect to tether");
    let local = s.local_addr().expect("local");
    (s, local)
}

async fn victim_h1(
    addr: SocketAddr,
    t: usize,
    path: &str,
) -> (SocketAddr, Result<(u16, String), String>) {
    let (mut s, client) = connect(addr, t, true).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let (reply, hung) = read_all(&mut s).await;
    let got = match responses(&reply).first() {
        _ if hung => Err("no answer in 3 s".into()),
        Some((status, body)) => Ok((*status, body.clone().unwrap_or_default())),
        None => Err("nothing".into()),
    };
    (client, got)
}

/// Writes (20 ms apart), the client's FIN, and all tether answers until it closes.
async fn attack_h1(addr: SocketAddr, t: usize, writes: &[Vec<u8>]) -> Attack {
    let (mut s, client) = connect(addr, t, false).await;
    for (i, w) in writes.iter().enumerate() {
        if i > 0 {
            pause(20).await;
        }
        let _ = s.write_all(w).await;
    }
    let _ = s.shutdown().await;
    let (reply, hung) = read_all(&mut s).await;
    let mut problems = Problems::new();
    if hung {
        problems.push((
            "hang",
            "tether neither answered nor closed in 3 s after the FIN".into(),
        ));
    }
    let bytes = writes.concat();
    let (sent, replies) = (esc(&bytes, 400), responses(&reply));
    let expect = String::new();
    Attack {
        client,
        sent,
        replies,
        bytes: Ok(bytes),
        problems,
        expect,
    }
}

/// A case on both targets at once.
async fn both(env: &Env, name: &str, writes: &[Vec<u8>], failures: &mut Vec<String>) {
    let node = run(env, 0, name, attack_h1(env.http[0], 0, writes));
    let hyper = run(env, 1, name, attack_h1(env.http[1], 1, writes));
    let (a, b) = tokio::join!(node, hyper);
    failures.extend(a.into_iter().chain(b));
}

/// PortSwigger's classes and the issue's list: `name|bytes`, escaped as
/// [`unescape`] reads them; `{SPLIT}` splits writes, `{CL}` is the length of what
/// follows the head. Chunk sizes: ADMIN is 0x25 bytes, HALF 0x18.
const CORPUS: &str = r"
portswigger/cl.te|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HALF}
portswigger/te.cl|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n
portswigger/te.te-cow|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/te.te-space-colon|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/cl.0|POST /static/x.css HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
portswigger/connection-content-length|POST / HTTP/1.1\r\nHost: a.test\r\nConnection: Content-Length\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
portswigger/connection-transfer-encoding|POST / HTTP/1.1\r\nHost: a.test\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/connection-content-length-plain-body|POST /g HTTP/1.1\r\nHost: a.test\r\nConnection: Content-Length\r\nContent-Length: {CL}\r\n\r\nabcdefghijklmnopqrstuvwxyzabcde
portswigger/connection-content-length-http10|DELETE /g HTTP/1.0\nConnection: keep-alive\r\nConnection: Content-Length\r\nContent-Length: 023\r\n\n000a\r\nabcdefghij\r\n0\r\n\r\n
portswigger/connection-host|GET /c HTTP/1.1\r\nHost: a.test\r\nConnection: Host\r\n\r\n
portswigger/connection-close-then-more|GET /c HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n{ADMIN}
h2c/upgrade-then-admin|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n{ADMIN}
h2c/upgrade-then-get|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\n\r\n
h2c/upgrade-without-connection|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n
h2c/prior-knowledge|PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n
upgrade/websocket-then-get|GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/three|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/admin-in-the-middle|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\n{ADMIN}GET /p3 HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/split-mid-head|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /p2 HTTP/1.1\r\nHo{SPLIT}st: a.test\r\n\r\n
pipelining/split-mid-body|POST /p1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabcde{SPLIT}fghijGET /p2 HTTP/1.1\r\nHost: a.test\r\n\r\n
pool-poisoning/half-head-in-body|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{HALF}
pool-poisoning/half-head-after-body|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc{HALF}
pool-poisoning/half-head-in-chunk|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n18\r\n{HALF}\r\n0\r\n\r\n
pool-poisoning/half-head-after-chunks|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HALF}
chunk-ext/token|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nZ\r\n0\r\n\r\n
chunk-ext/quoted|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\x22b c\x22\r\nZ\r\n0\r\n\r\n
chunk-ext/space-before|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1 ;a\r\nZ\r\n0\r\n\r\n
chunk-ext/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n2a\r\n0\r\n\r\n{ADMIN}\r\n0\r\n\r\n
chunk-ext/bare-cr|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rZ\r\n0\r\n\r\n
chunk-ext/nul|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a\0b\r\nZ\r\n0\r\n\r\n
chunk-size/leading-space|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\nZ\r\n0\r\n\r\n
chunk-size/0x|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nZ\r\n0\r\n\r\n
chunk-size/plus|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nZ\r\n0\r\n\r\n
chunk-size/trailing-space|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nZ\r\n0\r\n\r\n
chunk-size/overflow|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nZ\r\n0\r\n\r\n
chunk-data/missing-crlf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ0\r\n\r\n
chunk-data/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\n0\r\n\r\n
chunk-data/longer-than-size|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZZ\r\n0\r\n\r\n{ADMIN}
bare-lf/head|GET /lf HTTP/1.1\nHost: a.test\n\n
bare-lf/one-header|GET /lf HTTP/1.1\r\nHost: a.test\nX: y\r\n\r\n
bare-lf/chunked-body|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\nZ\n0\n\n
bare-cr/head|GET /cr HTTP/1.1\rHost: a.test\r\n\r\n
trailers/valid|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX-T: 1\r\n\r\n
trailers/no-colon|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nbad trailer\r\n\r\n
trailers/content-length|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nContent-Length: 50\r\n\r\n
trailers/transfer-encoding|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n
trailers/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX: 1\n\r\n
trailers/folded|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX: 1\r\n 2\r\n\r\n
trailers/request-head|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{ADMIN}
te/empty-with-cl|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc
te/empty|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n\r\nabc
te/identity-chunked|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: identity, chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n
te/split-lines|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n
te/folded|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n
te/http10|POST /old HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n
cl/plus|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +3\r\n\r\nabc
cl/list-equal|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3, 3\r\n\r\nabc
cl/list-differ|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3, 30\r\n\r\nabc
cl/duplicate-equal|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc
cl/duplicate-differ|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc
cl/leading-zeros|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 003\r\n\r\nabc
cl/hex|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0x3\r\n\r\nabc
cl/space-inside|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3 3\r\n\r\nabc
cl/negative|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -3\r\n\r\nabc
cl/huge|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999999999999999\r\n\r\nabc
cl/get-with-body|GET /g HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
host/port-not-a-number|GET /h HTTP/1.1\r\nHost: a:x\r\n\r\n
host/missing|GET /h HTTP/1.1\r\n\r\n
host/duplicate|GET /h HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n
host/userinfo|GET /h HTTP/1.1\r\nHost: u@a.test\r\n\r\n
host/absolute-form-differs|GET http://b.test/abs HTTP/1.1\r\nHost: a.test\r\n\r\n
method/connect|CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n{ADMIN}
method/lowercase|get /m HTTP/1.1\r\nHost: a.test\r\n\r\n
expect/100-continue|POST /e HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc
request-line/space-in-target|GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n
request-line/http2-version|GET /v HTTP/2.0\r\nHost: a.test\r\n\r\n
request-line/nul|GET /a\0 HTTP/1.1\r\nHost: a.test\r\n\r\n
header/nul-in-value|GET /n HTTP/1.1\r\nHost: a.test\r\nX: a\0b\r\n\r\n
header/space-before-colon|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length : 3\r\n\r\nabc
header/obs-fold|GET /f HTTP/1.1\r\nHost: a.test\r\nX: a\r\n b\r\n\r\n
";

/// The `smuggler` scanner's TE mutations (github.com/defparam/smuggler, configs/):
/// exhaustive.py's named ones (default.py's first four among them) and two more.
const SMUGGLER_NAMED: &str = r#"
nameprefix1| Transfer-Encoding: chunked
tabprefix1|Transfer-Encoding:\tchunked
tabprefix2|Transfer-Encoding\t:\tchunked
spacejoin1|Transfer Encoding: chunked
underjoin1|Transfer_Encoding: chunked
smashed|Transfer Encoding:chunked
space1|Transfer-Encoding : chunked
valueprefix1|Transfer-Encoding:  chunked
vertprefix1|Transfer-Encoding:\x0bchunked
commaCow|Transfer-Encoding: chunked, cow
cowComma|Transfer-Encoding: cow, chunked
contentEnc|Content-Encoding: chunked
linewrapped1|Transfer-Encoding:\n chunked
quoted|Transfer-Encoding: "chunked"
aposed|Transfer-Encoding: 'chunked'
lazygrep|Transfer-Encoding: chunk
sarcasm|TrAnSFer-EnCODinG: cHuNkeD
yelling|TRANSFER-ENCODING: CHUNKED
0dsuffix|Transfer-Encoding: chunked\r
tabsuffix|Transfer-Encoding: chunked\t
revdualchunk|Transfer-Encoding: cow\r\nTransfer-Encoding: chunked
0dspam|Transfer\r-Encoding: chunked
nested|Transfer-Encoding: cow chunked bar
spaceFF|Transfer-Encoding:\xffchunked
accentCH|Transfer-Encoding: ch\x96nked
accentTE|Transf\x82r-Encoding: chunked
x-rout|X:X\rTransfer-Encoding: chunked
x-nout|X:X\nTransfer-Encoding: chunked
chunked-identity|Transfer-Encoding: chunked, identity
duplicate|Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked
"#;

/// smuggler's byte patterns, `%` standing for the byte: default.py's (for 13 bytes),
/// and with `TETHER_DIFF_FULL=1` exhaustive.py's and doubles.py's (0x01-0x20, 0x7f-0xff).
const SMUGGLER_DEFAULT: &str = r"
midspace|Transfer-Encoding:%chunked
postspace|Transfer-Encoding%: chunked
prespace|%Transfer-Encoding: chunked
endspace|Transfer-Encoding: chunked%
xprespace|X: X%Transfer-Encoding: chunked
endspacex|Transfer-Encoding: chunked%X: X
rxprespace|X: X\r%Transfer-Encoding: chunked
xnprespace|X: X%\nTransfer-Encoding: chunked
endspacerx|Transfer-Encoding: chunked\r%X: X
endspacexn|Transfer-Encoding: chunked%\nX: X
";
const SMUGGLER_DOUBLES: &str = r"
XX-XX-..-..|%Transfer-Encoding%: chunked
XX-..-XX-..|%Transfer-Encoding:%chunked
XX-..-..-XX|%Transfer-Encoding: chunked%
..-XX-XX-..|Transfer-Encoding%:%chunked
..-XX-..-XX|Transfer-Encoding%: chunked%
..-..-XX-XX|Transfer-Encoding:%chunked%
";

/// `name|text` lines of a table.
fn table(t: &str) -> impl Iterator<Item = (&str, &str)> {
    t.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once('|').expect("name|text"))
}

/// A corpus entry's writes.
fn corpus_writes(text: &str) -> Vec<Vec<u8>> {
    let text = text.replace("{ADMIN}", &ADMIN.escape_default().to_string());
    let mut bytes = unescape(&text.replace("{HALF}", &HALF.escape_default().to_string()));
    if let Some(at) = bytes.windows(4).position(|w| w == b"{CL}") {
        let body = bytes.len() - head_end(&bytes).expect("a head");
        bytes.splice(at..at + 4, body.to_string().into_bytes());
    }
    let mut writes = Vec::new();
    while let Some(at) = bytes.windows(7).position(|w| w == b"{SPLIT}") {
        writes.push(bytes[..at].to_vec());
        bytes.drain(..at + 7);
    }
    writes.push(bytes);
    writes
}

/// smuggler's gadgets (bytes sent as bytes: smuggler sends those above 0x7f UTF-8
/// encoded), and its two probes of each: TE.CL (length 6 over `0\r\n\r\nX`) and CL.TE
/// (length 4 over `1\r\nZ\r\n0\r\n\r\n`).
fn smuggler_probes(full: bool) -> Vec<(String, Vec<u8>)> {
    let mut gadgets: Vec<(String, Vec<u8>)> = table(SMUGGLER_NAMED)
        .map(|(n, g)| (n.into(), unescape(g)))
        .collect();
    let few = [
        0x1u8, 0x4, 0x8, 0x9, 0xa, 0xb, 0xc, 0xd, 0x1f, 0x20, 0x7f, 0xa0, 0xff,
    ];
    let all: Vec<u8> = (0x1u8..0x21).chain(0x7f..=0xff).collect();
    let sweeps = [
        (SMUGGLER_DEFAULT, &few[..]),
        (SMUGGLER_DEFAULT, &all),
        (SMUGGLER_DOUBLES, &all),
    ];
    for (patterns, bytes) in sweeps.into_iter().take(if full { 3 } else { 1 }) {
        for ((name, pattern), c) in table(patterns).flat_map(|p| bytes.iter().map(move |c| (p, *c)))
        {
            let gadget = unescape(pattern)
                .into_iter()
                .map(|b| if b == b'%' { c } else { b });
            gadgets.push((format!("{name}-{c:02x}"), gadget.collect()));
        }
    }
    let mut names = std::collections::HashSet::new();
    gadgets.retain(|(n, _)| names.insert(n.clone()));
    let mut probes = Vec::new();
    for (i, (name, gadget)) in gadgets.iter().enumerate() {
        for (probe, cl, body) in [
            ("te.cl", 6, "0\r\n\r\nX"),
            ("cl.te", 4, "1\r\nZ\r\n0\r\n\r\n"),
        ] {
            let head = format!("POST /?cb={i} HTTP/1.1\r\n");
            let tail = format!(
                "\r\nHost: a.test\r\nUser-Agent: smuggler\r\nContent-type: application/\
                 x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: {cl}\r\n\r\n{body}"
            );
            let bytes = [head.as_bytes(), gadget, tail.as_bytes()].concat();
            probes.push((format!("smuggler/{probe}/{name}"), bytes));
        }
    }
    probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_smuggling_classes_should_reach_targets_as_tether_logged_them() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    let mut runs = 0;
    for (name, text) in table(CORPUS) {
        both(&env, name, &corpus_writes(text), &mut failures).await;
        runs += 2;
    }
    for (name, bytes) in smuggler_probes(env_is("TETHER_DIFF_FULL")) {
        both(&env, &name, &[bytes], &mut failures).await;
        runs += 2;
    }
    let n = failures.len();
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        failures.join("\n")
    );
}

// === HTTP/2 downgrades ===

/// `name|method|uri|headers (name: value; ...)|body|check`, sent with hyper's h2
/// client where it lets a client send them. Checks: `crumbs`, the Cookie crumbs
/// reach the target as one line; `userinfo`, no userinfo in its Host; `host`, its
/// Host is the `:authority`.
const H2_CASES: &str = r"
h2/plain|POST|https://a.test/plain||hello|
h2/cookie-crumbs|GET|https://a.test/crumbs|cookie: a=1; cookie: b=2||crumbs
h2/authority-userinfo|GET|https://user:pw@a.test/userinfo|||userinfo
h2/connect|CONNECT|a.test:443|||
h2/content-length-above-data|POST|https://a.test/cl-long|content-length: 10|hello|
h2/content-length-below-data|POST|https://a.test/cl-short|content-length: 2|hello|
h2/content-length-zero-data-is-a-request|POST|https://a.test/cl-zero|content-length: 0|{ADMIN}|
h2/get-with-body|GET|https://a.test/g||{ADMIN}|
h2/host-differs-from-authority|GET|https://a.test/host|host: b.test||host
h2/admin|GET|https://a.test/admin|||
h2/te-trailers|GET|https://a.test/te|te: trailers||
";

/// One request on a fresh h2 connection: its client address and the answer.
async fn h2_send(
    env: &Env,
    t: usize,
    victim: bool,
    req: http::Request<Full<Bytes>>,
) -> (SocketAddr, Result<Reply, String>) {
    let (tcp, client) = connect(env.https[t], t, victim).await;
    let config = Arc::new(env.pki.client_config(&[b"h2"]));
    let name = rustls::pki_types::ServerName::try_from("a.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = tls.await.expect("tls");
    let mut h2 = common::h2_client::<_, Full<Bytes>>(tls).await;
    let got = tokio::time::timeout(WAIT, async {
        let resp = h2.send_request(req).await.map_err(|e| e.to_string())?;
        let (status, named) = (
            resp.status().as_u16(),
            resp.headers().contains_key("x-recorder"),
        );
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            named.then(|| String::from_utf8_lossy(&body).into_owned()),
        ))
    });
    let got = got.await.unwrap_or_else(|_| Err("no answer in 3 s".into()));
    (client, got)
}

async fn run_h2(env: &Env, t: usize, line: &str) -> Option<String> {
    let f: Vec<&str> = line.split('|').collect();
    let body = unescape(&f[4].replace("{ADMIN}", &ADMIN.escape_default().to_string()));
    let mut req = http::Request::builder().method(f[1]).uri(f[2]);
    for h in f[3].split("; ").filter(|h| !h.is_empty()) {
        let (k, v) = h.split_once(": ").expect("name: value");
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(body.clone()))).ok()?;
    let attack = async {
        let (client, got) = h2_send(env, t, false, req).await;
        let sent = format!(
            "{} {} [{}] DATA {} -> {got:?}",
            f[1],
            f[2],
            f[3],
            esc(&body, 80)
        );
        let replies = got.map_or(vec![(0, None)], |r| vec![r]);
        let (bytes, problems, expect) = (Err(body.len() as u64), Problems::new(), f[5].into());
        Attack {
            client,
            sent,
            replies,
            bytes,
            problems,
            expect,
        }
    };
    run(env, t, f[0], attack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_should_reach_http1_targets_as_tether_logged_them() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    let cases: Vec<&str> = H2_CASES.lines().filter(|l| !l.is_empty()).collect();
    for line in &cases {
        let (a, b) = tokio::join!(run_h2(&env, 0, line), run_h2(&env, 1, line));
        failures.extend(a.into_iter().chain(b));
    }
    let (n, runs) = (failures.len(), 2 * cases.len());
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        failures.join("\n")
    );
}

// === Generated heads and bodies ===

/// One of the `|`-separated choices (Rust escapes are read as usual).
fn pick(choices: &'static str) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(choices.split('|').collect::<Vec<_>>())
}

/// One request, valid or not: a request line, a Host, up to four more header lines
/// (a Content-Length in some form, a Transfer-Encoding in some form, or another),
/// line ends mostly CRLF, a raw or chunked body (with a mutation), and what follows.
fn gen_request() -> impl Strategy<Value = Vec<u8>> {
    let method = pick("GET|GET|POST|POST|PUT|HEAD|DELETE|OPTIONS|get|CONNECT|G\x01T");
    let path = pick("/|/g|/g?q=1|/admin|/admin/x|/Admin|//admin|/%61dmin|/g?x=/admin|http://a.test/g|*|/g#f|/g\x7f");
    let version = pick("HTTP/1.1|HTTP/1.1|HTTP/1.1|HTTP/1.0|HTTP/1.2|HTTP/2.0|HTTP/1.1 ");
    let eol = || pick("\r\n|\r\n|\r\n|\r\n|\r\n|\n|\r");
    let host = pick("a.test|a.test|a.test|a.test:80|a:x||a b|-");
    let te_name = pick("Transfer-Encoding|transfer-encoding| Transfer-Encoding|Transfer-Encoding |Transfer_Encoding|X: X\nTransfer-Encoding");
    let te_value = pick("chunked|chunked|Chunked| chunked|chunked |\tchunked|xchunked|chunked, identity|identity, chunked|gzip, chunked||chunked\x0b|\"chunked\"|chunked\r\n chunked");
    let length = pick("{n}|{n}|{m}|{l}|0|+{n}|{n}, {n}|{n}, {m}|0{n}| {n} |{n}x|");
    let other = pick("Connection: keep-alive|Connection: close|Connection: Content-Length|Connection: Transfer-Encoding|Connection: Host|Connection: Upgrade|Upgrade: h2c|Upgrade: websocket|Expect: 100-continue|X-A: a\x00b|X-C: a\r\n b|Cookie: a=1");
    let header = (0..3u8, length, te_name, te_value, other, eol());
    let body = (
        any::<bool>(),
        proptest::collection::vec(0..20usize, 0..3),
        0..13usize,
    );
    let trailing = pick("||||GET /admin HTTP/1.1\r\nX: |GET /p HTTP/1.1\r\nHost: a.test\r\n\r\n|GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n|\r\n|X");
    let headers = proptest::collection::vec(header, 0..5);
    let parts = (method, path, version, host, eol(), headers, body, trailing);
    parts.prop_map(
        |(method, path, version, host, eol, headers, (chunked, sizes, mutation), trailing)| {
            let mut body = String::new();
            let nl = if mutation == 6 { "\n" } else { "\r\n" };
            for (i, n) in sizes.iter().enumerate().filter(|_| chunked) {
                let data: String = (0..*n)
                    .map(|k| (b'a' + ((i + k) % 26) as u8) as char)
                    .collect();
                body += &match mutation {
                    1 => format!("{n:X};a=b{nl}{data}{nl}"),
                    2 => format!("{n:x};a\n{data}{nl}"),
                    3 => format!("000{n:x}{nl}{data}{nl}"),
                    4 => format!("0x{n:x}{nl}{data}{nl}"),
                    5 => format!("{n:x} {nl}{data}{nl}"),
                    _ => format!("{n:x}{nl}{data}{nl}"),
                };
            }
            if chunked {
                let last = [
                    "0\r\n\r\n",
                    "0\r\nX-T: 1\r\n\r\n",
                    "0\r\nContent-Length: 9\r\n\r\n",
                    "0\r\n",
                    "0\r\n\r\nX",
                    "0\n\n",
                ];
                body += last[match mutation {
                    7..=10 => mutation - 6,
                    6 => 5,
                    _ => 0,
                }];
                if mutation == 11 {
                    body.truncate(body.len().saturating_sub(3));
                }
            } else {
                body = (0..sizes.iter().sum::<usize>())
                    .map(|k| (b'a' + (k % 26) as u8) as char)
                    .collect();
            }
            let n = body.len();
            let mut out = format!("{method} {path} {version}{eol}");
            if host != "-" {
                out += &format!("Host: {host}{eol}");
            }
            for (kind, length, name, value, other, eol) in headers {
                let length = length
                    .replace("{n}", &n.to_string())
                    .replace("{m}", &(n + 1).to_string());
                let length = length.replace("{l}", &n.saturating_sub(1).to_string());
                out += &match kind {
                    0 => format!("Content-Length: {length}{eol}"),
                    1 => format!(
                        "{name}:{}{value}{eol}",
                        if value.is_empty() { "" } else { " " }
                    ),
                    _ => format!("{other}{eol}"),
                };
            }
            format!("{out}{eol}{body}{trailing}").into_bytes()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_heads_and_bodies_should_reach_targets_as_tether_logged_them() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = var("TETHER_DIFF_CASES").unwrap_or(3000);
    let rng = match var("TETHER_DIFF_SEED") {
        Some(seed) => TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &[seed.to_le_bytes(), [0; 8], [0; 8], [0; 8]].concat(),
        ),
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng);
    let strategy = proptest::collection::vec(gen_request(), 1..=2).prop_map(|r| r.concat());
    let env = Env::start().await;
    let mut failures = Vec::new();
    for i in 0..cases {
        let bytes = strategy.new_tree(&mut runner).expect("a case").current();
        both(&env, &format!("generated/{i}"), &[bytes], &mut failures).await;
    }
    // By the kind of the first problem, with a few of each: a to-do list.
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in &failures {
        kinds
            .entry(f.split(": ").nth(1).unwrap_or_default())
            .or_default()
            .push(f);
    }
    let shown = if env_is("TETHER_DIFF_VERBOSE") {
        usize::MAX
    } else {
        3
    };
    let kinds = kinds.iter().map(|(k, v)| {
        let some = v.iter().take(shown).copied().collect::<Vec<_>>().join("\n");
        format!("{} x {k}, e.g.:\n{some}", v.len())
    });
    let (n, runs) = (failures.len(), 2 * cases);
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        kinds.collect::<Vec<_>>().join("\n\n")
    );
}
