//! HTTP/1.1 framing and anti-smuggling through the real binary, against a raw target
//! that records every byte it receives: message framing (RFC 9112 §6), a corpus of
//! request-smuggling attempts, ALB's desync mitigation modes (`http_desync_guardian`
//! classes, ALB-REFERENCE §10) and the request size and time limits (§5, §8).
//!
//! Every table reports all its failing rows at once, each named.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// The request every smuggling case tries to sneak past tether: tether answers
/// `/forbidden/*` itself with a 403, so it must never reach the target.
const SMUGGLED: &str = "GET /forbidden/x HTTP/1.1\r\nHost: t\r\n\r\n";

/// Header tether's own rule answers with (the 403 of `/forbidden/*`).
const FORBIDDEN_BODY: &str = "forbidden by tether";

/// How long to wait for one expected response.
const RESPONSE_WAIT: Duration = Duration::from_secs(3);

// === Config ===

/// One HTTP listener: `/forbidden/*` answered by tether with a 403, everything else
/// forwarded to the one target; no health checks, no passive health (no retries: a
/// request reaches the target at most once). `lb_extra` goes into `[load_balancer]`.
/// The Host goes as the client wrote it (`preserve_host_header`): ALB's default adds
/// the listener's port, which would show in every byte-exact check.
fn config(target: SocketAddr, lb_extra: &str) -> String {
    format!(
        r#"
[load_balancer]
threads = 2
preserve_host_header = true
{lb_extra}

[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "web" }}

  [[listener.rule]]
  priority = 1
  conditions = {{ path_pattern = ["/forbidden/*"] }}
  action = {{ fixed_response = {{ status = 403, body = "{FORBIDDEN_BODY}" }} }}

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
passive_health = {{ enabled = false }}
"#
    )
}

fn desync_config(target: SocketAddr, mode: &str) -> String {
    config(target, &format!("desync_mitigation_mode = \"{mode}\""))
}

// === Message parsing (shared by the target, the client and the checks) ===

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Bytes for a failure message: escaped, and cut when long.
fn show(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(b).escape_debug().to_string();
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes)", &s[..cut], b.len())
    } else {
        s
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A parsed message head (request or response), leniently: lines may end in LF or
/// CRLF, obs-fold lines are appended to the previous value.
#[derive(Debug, Clone)]
struct MsgHead {
    /// Bytes of the head including the empty line.
    len: usize,
    start_line: String,
    /// Names as sent (not trimmed, not lowercased); values trimmed.
    headers: Vec<(String, String)>,
}

impl MsgHead {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }

    /// Request method, target and version.
    fn request_parts(&self) -> (String, String, String) {
        let line = self.start_line.as_str();
        let method = line.split(' ').next().unwrap_or("").to_string();
        let rest = line
            .get(method.len()..)
            .unwrap_or("")
            .trim_start_matches(' ');
        let (target, version) = match rest.rsplit_once(' ') {
            Some((t, v)) => (t.to_string(), v.to_string()),
            None => (rest.to_string(), String::new()),
        };
        (method, target, version)
    }
}

/// `None`: incomplete; `Some(Err)`: not a message head.
fn parse_head(buf: &[u8]) -> Option<Result<MsgHead, ()>> {
    let mut pos = 0;
    let mut start_line: Option<String> = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > 1 << 20 {
                Some(Err(()))
            } else {
                None
            };
        };
        let line = trim_cr(&buf[pos..pos + nl]);
        pos += nl + 1;
        let text = String::from_utf8_lossy(line).into_owned();
        match &start_line {
            None => start_line = Some(text),
            Some(_) if line.is_empty() => {
                return Some(Ok(MsgHead {
                    len: pos,
                    start_line: start_line.unwrap_or_default(),
                    headers,
                }));
            }
            Some(_) if line[0] == b' ' || line[0] == b'\t' => match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(text.trim());
                }
                None => return Some(Err(())),
            },
            Some(_) => match text.split_once(':') {
                Some((n, v)) => headers.push((n.to_string(), v.trim().to_string())),
                None => return Some(Err(())),
            },
        }
    }
}

/// How a request's body is delimited, in one of several readings: the RFC's, and
/// the lenient or CL-first readings of sloppy downstream servers (a smuggled request
/// must not appear in any of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// RFC 9112: exact names, Transfer-Encoding over Content-Length.
    Rfc,
    /// Names trimmed, any `chunked` in Transfer-Encoding counts, TE first.
    TeFirstLenient,
    /// Content-Length first (its first value), names trimmed.
    ClFirst,
    /// Content-Length first (its last value), names trimmed.
    ClLast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

fn request_framing(h: &MsgHead, view: View) -> Framing {
    let lenient = view != View::Rfc;
    let named = |n: &str, want: &str| {
        if lenient {
            n.trim().eq_ignore_ascii_case(want)
        } else {
            n.eq_ignore_ascii_case(want)
        }
    };
    let te: Vec<&str> = h
        .headers
        .iter()
        .filter(|(n, _)| named(n, "transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect();
    let cl: Vec<&str> = h
        .headers
        .iter()
        .filter(|(n, _)| named(n, "content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    let te_framing = (!te.is_empty()).then(|| {
        let joined = te.join(",").to_ascii_lowercase();
        let chunked = if lenient {
            joined.contains("chunked")
        } else {
            joined.rsplit(',').next().map(str::trim) == Some("chunked")
        };
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    });
    let cl_value = if view == View::ClLast {
        cl.last()
    } else {
        cl.first()
    };
    let cl_framing = cl_value.map(|v| {
        v.trim()
            .parse::<usize>()
            .map(Framing::Length)
            .unwrap_or(Framing::UntilClose)
    });
    match view {
        View::Rfc | View::TeFirstLenient => te_framing.or(cl_framing),
        View::ClFirst | View::ClLast => cl_framing.or(te_framing),
    }
    .unwrap_or(Framing::Empty)
}

/// A chunked body: its data, trailers and encoded length.
struct Chunked {
    data: Vec<u8>,
    trailers: Vec<(String, String)>,
    len: usize,
}

/// `None`: incomplete; `Some(Err)`: malformed (a bad or overflowing chunk size).
fn parse_chunked(buf: &[u8]) -> Option<Result<Chunked, ()>> {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() - pos > 4096 {
                Some(Err(()))
            } else {
                None
            };
        };
        let line = trim_cr(&buf[pos..pos + nl]);
        pos += nl + 1;
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_text: Vec<u8> = size_text
            .iter()
            .copied()
            .filter(|b| *b != b' ' && *b != b'\t')
            .collect();
        if size_text.is_empty() {
            return Some(Err(()));
        }
        let mut size: u64 = 0;
        for c in size_text {
            let Some(d) = (c as char).to_digit(16) else {
                return Some(Err(()));
            };
            let Some(s) = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(d)))
            else {
                return Some(Err(()));
            };
            size = s;
        }
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let nl = buf[pos..].iter().position(|&b| b == b'\n')?;
                let line = trim_cr(&buf[pos..pos + nl]);
                pos += nl + 1;
                if line.is_empty() {
                    return Some(Ok(Chunked {
                        data,
                        trailers,
                        len: pos,
                    }));
                }
                let text = String::from_utf8_lossy(line);
                if let Some((n, v)) = text.split_once(':') {
                    trailers.push((n.to_string(), v.trim().to_string()));
                }
            }
        }
        let Ok(size) = usize::try_from(size) else {
            return Some(Err(()));
        };
        if buf.len() < pos.saturating_add(size) {
            return None;
        }
        data.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        let after = &buf[pos..];
        if after.starts_with(b"\r\n") {
            pos += 2;
        } else if after.starts_with(b"\n") {
            pos += 1;
        } else if after.is_empty() || after == b"\r" {
            return None;
        } else {
            return Some(Err(()));
        }
    }
}

/// The length of a body framed as `framing` at the start of `buf`.
fn body_len(buf: &[u8], framing: Framing) -> Option<Result<usize, ()>> {
    match framing {
        Framing::Empty => Some(Ok(0)),
        Framing::Length(n) => (buf.len() >= n).then_some(Ok(n)),
        Framing::Chunked => parse_chunked(buf).map(|r| r.map(|c| c.len)),
        Framing::UntilClose => Some(Err(())),
    }
}

/// The request lines found in `bytes` (one connection's stream) when read as `view`.
fn request_lines(bytes: &[u8], view: View) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(Ok(head)) = parse_head(&bytes[pos..]) else {
            break;
        };
        lines.push(head.start_line.clone());
        pos += head.len;
        match body_len(&bytes[pos..], request_framing(&head, view)) {
            Some(Ok(n)) => pos += n,
            _ => break,
        }
    }
    lines
}

/// Removes the header lines tether adds to every forwarded request.
fn strip_added(bytes: &[u8]) -> Vec<u8> {
    const ADDED: [&[u8]; 4] = [
        b"x-forwarded-for:",
        b"x-forwarded-proto:",
        b"x-forwarded-port:",
        b"x-amzn-trace-id:",
    ];
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            !ADDED.iter().any(|a| lower.starts_with(a))
        })
        .flatten()
        .copied()
        .collect()
}

/// As [`strip_added`], also without a `Connection: close` line.
fn strip_added_and_close(bytes: &[u8]) -> Vec<u8> {
    strip_added(bytes)
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !line.eq_ignore_ascii_case(b"connection: close\r\n"))
        .flatten()
        .copied()
        .collect()
}

// === The recording raw target ===

/// What one target connection received.
#[derive(Debug, Default, Clone)]
struct ConnRecord {
    bytes: Vec<u8>,
    /// tether closed (or reset) the connection.
    peer_closed: bool,
}

/// A raw HTTP/1.1 target: records every byte per connection and answers each request
/// (framed by Content-Length or chunked, trailers included) with a canned response
/// chosen by the request:
/// - `HEAD`: `200` with `Content-Length: 5` and no body;
/// - `/status/204`, `/status/304`: that status with `Content-Length: 5` and no body;
/// - `/chunked-reply`: a chunked `hello world` with chunk extensions and a trailer;
/// - `/close-delimited`: neither Content-Length nor Transfer-Encoding, then close;
/// - an Upgrade request to `/ws-accept…`: `101`, then records silently;
/// - a path containing `slow`: answered after 600 ms;
/// - anything else: `200`, `Content-Length: 2`, `ok`.
///
/// Every response (the interim `100 Continue` too, sent when the request has
/// `Expect: 100-continue` and a body) carries `X-Target-Saw: METHOD TARGET`. The
/// connection stays open for more requests unless the request asks to close. A
/// request it cannot frame (bad chunk size, unknown coding) gets no answer.
struct RecordingTarget {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    task: JoinHandle<()>,
}

impl Drop for RecordingTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingTarget {
    async fn start() -> RecordingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target addr");
        let conns: Arc<Mutex<Vec<ConnRecord>>> = Arc::default();
        let task_conns = conns.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set: dropping the target ends them all.
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let idx = {
                    let mut c = lock(&task_conns);
                    c.push(ConnRecord::default());
                    c.len() - 1
                };
                let (rd, wr) = stream.into_split();
                let (tx, rx) = unbounded_channel();
                set.spawn(record(rd, idx, task_conns.clone(), tx));
                set.spawn(answer(wr, rx));
                while set.try_join_next().is_some() {}
            }
        });
        RecordingTarget { addr, conns, task }
    }

    fn snapshot(&self) -> Vec<usize> {
        lock(&self.conns).iter().map(|c| c.bytes.len()).collect()
    }

    /// Bytes received since `snap`, per connection index (connections with none left out).
    fn since(&self, snap: &[usize]) -> Vec<(usize, Vec<u8>)> {
        lock(&self.conns)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let from = snap.get(i).copied().unwrap_or(0);
                (c.bytes.len() > from).then(|| (i, c.bytes[from..].to_vec()))
            })
            .collect()
    }

    fn conn(&self, idx: usize) -> ConnRecord {
        lock(&self.conns).get(idx).cloned().unwrap_or_default()
    }

    fn all_bytes(&self) -> Vec<u8> {
        lock(&self.conns)
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// Waits (bounded) until tether has closed connection `idx`.
    async fn wait_closed(&self, idx: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.conn(idx).peer_closed {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn record(
    mut rd: OwnedReadHalf,
    idx: usize,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    tx: UnboundedSender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if let Some(c) = lock(&conns).get_mut(idx) {
                    c.peer_closed = true;
                }
                return;
            }
            Ok(n) => {
                if let Some(c) = lock(&conns).get_mut(idx) {
                    c.bytes.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(buf[..n].to_vec());
            }
        }
    }
}

/// Keeps the write side open and answers nothing more (the recorder keeps recording).
async fn go_silent(rx: &mut UnboundedReceiver<Vec<u8>>) {
    while rx.recv().await.is_some() {}
}

async fn answer(mut wr: OwnedWriteHalf, mut rx: UnboundedReceiver<Vec<u8>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = loop {
            match parse_head(&buf) {
                Some(Ok(h)) => break h,
                Some(Err(())) => return go_silent(&mut rx).await,
                None => match rx.recv().await {
                    Some(b) => buf.extend_from_slice(&b),
                    None => return,
                },
            }
        };
        let (method, target, _) = head.request_parts();
        let saw = format!("{method} {target}").replace(|c: char| c.is_control(), "?");
        if head.header("upgrade").is_some() && target.starts_with("/ws-accept") {
            let _ = wr
                .write_all(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nX-Target-Saw: {saw}\r\n\
                         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            return go_silent(&mut rx).await;
        }
        let framing = request_framing(&head, View::Rfc);
        let expects_continue = head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects_continue && framing != Framing::Empty {
            let interim = format!("HTTP/1.1 100 Continue\r\nX-Target-Saw: {saw}\r\n\r\n");
            if wr.write_all(interim.as_bytes()).await.is_err() {
                return;
            }
        }
        let total = loop {
            match body_len(&buf[head.len..], framing) {
                Some(Ok(n)) => break head.len + n,
                Some(Err(())) => return go_silent(&mut rx).await,
                None => match rx.recv().await {
                    Some(b) => buf.extend_from_slice(&b),
                    None => return,
                },
            }
        };
        buf.drain(..total);
        if target.contains("slow") {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let (reply, close) = reply_for(&head, &method, &target, &saw);
        if wr.write_all(&reply).await.is_err() {
            return;
        }
        if close {
            let _ = wr.shutdown().await;
            return go_silent(&mut rx).await;
        }
    }
}

fn reply_for(head: &MsgHead, method: &str, target: &str, saw: &str) -> (Vec<u8>, bool) {
    let connection = head.values("connection").join(",").to_ascii_lowercase();
    let http10 = head.request_parts().2 == "HTTP/1.0";
    let close = connection.contains("close") || (http10 && !connection.contains("keep-alive"));
    let conn = if close { "Connection: close\r\n" } else { "" };
    let text = if method == "HEAD" {
        format!("HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Length: 5\r\n{conn}\r\n")
    } else if target.starts_with("/status/204") {
        format!("HTTP/1.1 204 No Content\r\nX-Target-Saw: {saw}\r\nContent-Length: 5\r\n{conn}\r\n")
    } else if target.starts_with("/status/304") {
        format!(
            "HTTP/1.1 304 Not Modified\r\nX-Target-Saw: {saw}\r\nETag: \"v1\"\r\n\
             Content-Length: 5\r\n{conn}\r\n"
        )
    } else if target.starts_with("/chunked-reply") {
        format!(
            "HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nTransfer-Encoding: chunked\r\n\
             Trailer: X-Checksum\r\n{conn}\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\
             X-Checksum: 42\r\n\r\n"
        )
    } else if target.starts_with("/close-delimited") {
        let text = format!(
            "HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Type: text/plain\r\n\r\n\
             close-delimited body"
        );
        return (text.into_bytes(), true);
    } else {
        format!("HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Length: 2\r\n{conn}\r\nok")
    };
    (text.into_bytes(), close)
}

// === The raw client ===

/// A response as the client got it (chunked bodies decoded).
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    head: MsgHead,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// What the target said it answered; `None` for tether's own responses.
    fn saw(&self) -> Option<&str> {
        self.header("x-target-saw")
    }

    fn describe(&self) -> String {
        format!(
            "{:?} (X-Target-Saw: {:?}, body {:?}, trailers {:?})",
            self.head.start_line,
            self.saw().map(|s| show(s.as_bytes())),
            show(&self.body),
            self.trailers
        )
    }
}

/// `None`: incomplete; `Some(Err)`: not a response.
fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Option<Result<(Resp, usize), String>> {
    let head = match parse_head(buf)? {
        Ok(h) => h,
        Err(()) => return Some(Err(format!("not a response: {}", show(buf)))),
    };
    let Some(status) = head
        .start_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
    else {
        return Some(Err(format!("bad status line {:?}", head.start_line)));
    };
    let rest = &buf[head.len..];
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let te = head
        .values("transfer-encoding")
        .join(",")
        .to_ascii_lowercase();
    let cl = head.header("content-length").map(str::to_string);
    let (body, trailers, used) = if no_body {
        (Vec::new(), Vec::new(), 0)
    } else if !te.is_empty() && te.rsplit(',').next().map(str::trim) == Some("chunked") {
        match parse_chunked(rest)? {
            Ok(c) => (c.data, c.trailers, c.len),
            Err(()) => return Some(Err(format!("bad chunked response body: {}", show(rest)))),
        }
    } else if let (true, Some(cl)) = (te.is_empty(), cl) {
        let Ok(n) = cl.trim().parse::<usize>() else {
            return Some(Err(format!("bad Content-Length {cl:?}")));
        };
        if rest.len() < n {
            return None;
        }
        (rest[..n].to_vec(), Vec::new(), n)
    } else if eof {
        (rest.to_vec(), Vec::new(), rest.len())
    } else {
        return None;
    };
    Some(Ok((
        Resp {
            status,
            head: head.clone(),
            body,
            trailers,
        },
        head.len + used,
    )))
}

/// One raw client connection to tether.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect to tether");
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes `bytes`; false when tether has already closed.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads once more (until `deadline`); false on EOF, reset or timeout.
    async fn fill(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let mut tmp = vec![0u8; 65536];
        match tokio::time::timeout_at(deadline.into(), self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// The next response (for a HEAD request when `head_request`).
    async fn response(&mut self, head_request: bool, wait: Duration) -> Result<Resp, String> {
        let deadline = Instant::now() + wait;
        loop {
            match parse_response(&self.buf, head_request, self.eof) {
                Some(Ok((resp, used))) => {
                    self.buf.drain(..used);
                    return Ok(resp);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    if !self.fill(deadline).await {
                        if self.eof {
                            if let Some(Ok((resp, used))) =
                                parse_response(&self.buf, head_request, true)
                            {
                                self.buf.drain(..used);
                                return Ok(resp);
                            }
                        }
                        return Err(format!(
                            "{} with {:?} received",
                            if self.eof {
                                "connection closed"
                            } else {
                                "timed out"
                            },
                            show(&self.buf)
                        ));
                    }
                }
            }
        }
    }

    /// Every response until tether closes or says nothing for `quiet` (at most `max`).
    async fn responses_until_quiet(&mut self, quiet: Duration, max: Duration) -> Vec<Resp> {
        let end = Instant::now() + max;
        let mut out = Vec::new();
        loop {
            match parse_response(&self.buf, false, self.eof) {
                Some(Ok((resp, used))) => {
                    self.buf.drain(..used);
                    out.push(resp);
                    continue;
                }
                Some(Err(_)) => return out,
                None => {}
            }
            let deadline = (Instant::now() + quiet).min(end);
            if !self.fill(deadline).await {
                if self.eof {
                    if let Some(Ok((resp, used))) = parse_response(&self.buf, false, true) {
                        self.buf.drain(..used);
                        out.push(resp);
                    }
                }
                return out;
            }
        }
    }

    /// Whether tether closes (or resets) the connection within `wait`; whatever it
    /// sends meanwhile stays in `buf`.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.eof {
            if !self.fill(deadline).await && !self.eof {
                return false;
            }
        }
        true
    }
}

// === Table rows ===

/// Who must have made a response.
#[derive(Debug, Clone)]
enum Saw {
    /// The target, answering this `METHOD TARGET`.
    Target(String),
    /// tether itself (no `X-Target-Saw`).
    Tether,
}

#[derive(Debug, Clone)]
struct Expect {
    status: u16,
    body: Option<&'static str>,
    /// The request was HEAD: the response has no body whatever its headers say.
    head: bool,
    saw: Saw,
}

fn from_target(status: u16, saw: &str) -> Expect {
    Expect {
        status,
        body: None,
        head: false,
        saw: Saw::Target(saw.to_string()),
    }
}

fn ok_from_target(saw: &str) -> Expect {
    Expect {
        body: Some("ok"),
        ..from_target(200, saw)
    }
}

fn from_tether(status: u16) -> Expect {
    Expect {
        status,
        body: None,
        head: false,
        saw: Saw::Tether,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Send(Vec<u8>),
    Pause(Duration),
    Expect(Expect),
    /// Read until tether closes or goes quiet: no response may be a 2xx.
    No2xx,
}

fn send(s: impl AsRef<[u8]>) -> Step {
    Step::Send(s.as_ref().to_vec())
}

/// What must (not) reach the target during a row, after [`strip_added`].
#[derive(Debug, Clone)]
enum Seen {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Exactly these bytes, give or take a `Connection: close` line.
    ExactButClose(Vec<u8>),
    /// These bytes, ASCII case aside (for a header tether rewrites).
    ExactAnyCase(Vec<u8>),
    /// No byte at all.
    Nothing,
    /// These bytes somewhere.
    Has(Vec<u8>),
    /// Never these bytes.
    Lacks(Vec<u8>),
}

fn exact(s: impl AsRef<[u8]>) -> Seen {
    Seen::Exact(s.as_ref().to_vec())
}

fn has(s: impl AsRef<[u8]>) -> Seen {
    Seen::Has(s.as_ref().to_vec())
}

fn lacks(s: impl AsRef<[u8]>) -> Seen {
    Seen::Lacks(s.as_ref().to_vec())
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    steps: Vec<Step>,
    target: Vec<Seen>,
    /// `Some(true)`: tether closes the client connection after the last response;
    /// `Some(false)`: it keeps it open.
    client_closed: Option<bool>,
    /// tether closes the target connection(s) the row used.
    target_closed: bool,
}

impl Row {
    fn new(name: impl Into<String>, steps: Vec<Step>) -> Row {
        Row {
            name: name.into(),
            steps,
            target: Vec::new(),
            client_closed: None,
            target_closed: false,
        }
    }

    fn target(mut self, seen: Seen) -> Row {
        self.target.push(seen);
        self
    }

    fn keeps_open(mut self) -> Row {
        self.client_closed = Some(false);
        self
    }

    fn closes(mut self) -> Row {
        self.client_closed = Some(true);
        self
    }

    fn closes_target(mut self) -> Row {
        self.target_closed = true;
        self
    }
}

fn check_response(r: &Resp, e: &Expect) -> Vec<String> {
    let mut fails = Vec::new();
    if r.status != e.status {
        fails.push(format!(
            "expected status {}, got {}",
            e.status,
            r.describe()
        ));
    }
    if let Some(body) = e.body {
        if r.body != body.as_bytes() {
            fails.push(format!("expected body {body:?}, got {}", r.describe()));
        }
    }
    match &e.saw {
        Saw::Target(saw) if r.saw() != Some(saw.as_str()) => fails.push(format!(
            "expected the target's answer to {saw:?}, got {}",
            r.describe()
        )),
        Saw::Tether if r.saw().is_some() => fails.push(format!(
            "expected tether's own answer, got the target's: {}",
            r.describe()
        )),
        _ => {}
    }
    fails
}

/// Runs one row on a new client connection; returns its failures, named.
async fn run_row(addr: SocketAddr, target: &RecordingTarget, row: &Row) -> Vec<String> {
    let mut fails = Vec::new();
    let snap = target.snapshot();
    let mut client = RawClient::connect(addr).await;
    let mut broken = false;
    for step in &row.steps {
        if broken {
            break;
        }
        match step {
            Step::Send(bytes) => {
                if !client.send(bytes).await {
                    fails.push(format!(
                        "tether closed before {} bytes were sent",
                        bytes.len()
                    ));
                }
            }
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::Expect(e) => match client.response(e.head, RESPONSE_WAIT).await {
                Ok(r) => fails.extend(check_response(&r, e)),
                Err(why) => {
                    fails.push(format!("expected a {} response: {why}", e.status));
                    broken = true;
                }
            },
            Step::No2xx => {
                let rs = client
                    .responses_until_quiet(Duration::from_millis(1500), Duration::from_secs(5))
                    .await;
                for r in rs.iter().filter(|r| (200..300).contains(&r.status)) {
                    fails.push(format!("expected no 2xx, got {}", r.describe()));
                }
            }
        }
    }
    if !broken {
        let closed = match row.client_closed {
            Some(true) => Some(client.closed_within(Duration::from_secs(3)).await),
            Some(false) => Some(client.closed_within(Duration::from_millis(300)).await),
            None => None,
        };
        match (row.client_closed, closed) {
            (Some(true), Some(false)) => {
                fails.push("the client connection is still open 3 s after the response".into())
            }
            (Some(false), Some(true)) => {
                fails.push("tether closed the client connection; expected keep-alive".into())
            }
            _ => {}
        }
        if !client.buf.is_empty() {
            fails.push(format!(
                "unexpected bytes after the expected responses: {}",
                show(&client.buf)
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new = target.since(&snap);
    let got: Vec<u8> = new.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for seen in &row.target {
        match seen {
            Seen::Exact(want) => {
                if strip_added(&got) != *want {
                    fails.push(format!(
                        "the target got {} (tether's X-Forwarded-*/X-Amzn-Trace-Id removed); expected {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::ExactButClose(want) => {
                if strip_added_and_close(&got) != strip_added_and_close(want) {
                    fails.push(format!(
                        "the target got {}; expected {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::ExactAnyCase(want) => {
                if !strip_added(&got).eq_ignore_ascii_case(want) {
                    fails.push(format!(
                        "the target got {}; expected (any case) {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::Nothing => {
                if !got.is_empty() {
                    fails.push(format!(
                        "expected nothing at the target, it got {}",
                        show(&got)
                    ));
                }
            }
            Seen::Has(want) => {
                if !contains(&got, want) {
                    fails.push(format!(
                        "the target never got {}; it got {}",
                        show(want),
                        show(&got)
                    ));
                }
            }
            Seen::Lacks(bad) => {
                if contains(&got, bad) {
                    fails.push(format!("the target got {}: {}", show(bad), show(&got)));
                }
            }
        }
    }
    if row.target_closed {
        if new.is_empty() {
            fails.push("no target connection was used".into());
        }
        for (idx, _) in &new {
            if !target.wait_closed(*idx, Duration::from_secs(3)).await {
                fails.push(format!(
                    "target connection #{idx} still open 3 s after the response"
                ));
            }
        }
    }
    fails
        .into_iter()
        .map(|f| format!("[{}] {f}", row.name))
        .collect()
}

async fn run_table(addr: SocketAddr, target: &RecordingTarget, rows: &[Row]) -> Vec<String> {
    let mut fails = Vec::new();
    for row in rows {
        fails.extend(run_row(addr, target, row).await);
    }
    fails
}

fn assert_table(what: &str, rows: usize, fails: &[String]) {
    assert!(
        fails.is_empty(),
        "{what}: {} failure(s) over {rows} rows:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

// === 1. Framing ===

fn framing_rows() -> Vec<Row> {
    let clte_in = "POST /clte HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\
                   Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let clte_out = "POST /clte HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\n\r\n";
    let chunked = "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                   Trailer: X-Checksum\r\n\r\n5;name=value\r\nhello\r\n6;flag\r\n world\r\n\
                   0\r\nX-Checksum: 42\r\n\r\n";
    let gzip_chunked = "POST /gzip-chunked HTTP/1.1\r\nHost: t\r\n\
                        Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let expect_head = "POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
                       Expect: 100-continue\r\n\r\n";
    let pipelined = "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n";
    let hop_in = "GET /hop HTTP/1.1\r\nHost: t\r\nConnection: x-foo\r\nX-Foo: 1\r\n\
                  Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\
                  Upgrade: h2c\r\nX-Keep: yes\r\n\r\n";
    vec![
        Row::new(
            "Content-Length body forwarded byte-exact",
            vec![
                send("POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"),
                Step::Expect(ok_from_target("POST /cl")),
            ],
        )
        .target(exact("POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"))
        .keeps_open(),
        Row::new(
            "chunked body with extensions and trailers forwarded byte-exact",
            vec![send(chunked), Step::Expect(ok_from_target("POST /chunked"))],
        )
        .target(exact(chunked))
        .keeps_open(),
        Row::new(
            "Transfer-Encoding: gzip, chunked forwarded",
            vec![send(gzip_chunked), Step::Expect(ok_from_target("POST /gzip-chunked"))],
        )
        .target(exact(gzip_chunked))
        .keeps_open(),
        Row::new(
            "Transfer-Encoding: chunked, gzip (chunked not last) is 400",
            vec![
                send(
                    "POST /te-not-last HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n\
                     3\r\nabc\r\n0\r\n\r\n",
                ),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Transfer-Encoding: gzip (no chunked) is 400",
            vec![
                send("POST /te-gzip HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "two different Content-Lengths are 400",
            vec![
                send(
                    "POST /two-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\
                     Content-Length: 5\r\n\r\nhello",
                ),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Content-Length and Transfer-Encoding: per TE, CL removed, both connections closed",
            vec![send(clte_in), Step::Expect(ok_from_target("POST /clte"))],
        )
        .target(Seen::ExactButClose(clte_out.as_bytes().to_vec()))
        .closes()
        .closes_target(),
        Row::new(
            "obs-fold header line is 400",
            vec![
                send("GET /fold HTTP/1.1\r\nHost: t\r\nX-Note: a\r\n folded\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "bare CR in a header value is 400",
            vec![
                send("GET /bare-cr HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "NUL in a header value is 400",
            vec![
                send("GET /nul HTTP/1.1\r\nHost: t\r\nX-Note: a\0b\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "chunk-size overflow: never a 2xx, and what follows is no request",
            vec![
                send(
                    "POST /overflow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                     ffffffffffffffffff\r\nGET /after-overflow HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::No2xx,
            ],
        )
        .target(lacks("/after-overflow"))
        .closes(),
        Row::new(
            "HEAD answered with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send("HEAD /head HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(Expect {
                    head: true,
                    body: Some(""),
                    ..from_target(200, "HEAD /head")
                }),
                Step::Expect(ok_from_target("GET /after-head")),
            ],
        )
        .target(exact(
            "HEAD /head HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n",
        ))
        .keeps_open(),
        Row::new(
            "204 with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send(
                    "GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\nGET /after-204 HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some(""),
                    ..from_target(204, "GET /status/204")
                }),
                Step::Expect(ok_from_target("GET /after-204")),
            ],
        )
        .keeps_open(),
        Row::new(
            "304 with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send(
                    "GET /status/304 HTTP/1.1\r\nHost: t\r\n\r\nGET /after-304 HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some(""),
                    ..from_target(304, "GET /status/304")
                }),
                Step::Expect(ok_from_target("GET /after-304")),
            ],
        )
        .keeps_open(),
        Row::new(
            "chunked response with a trailer, then the next pipelined response",
            vec![
                send(
                    "GET /chunked-reply HTTP/1.1\r\nHost: t\r\n\r\nGET /after-chunked HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some("hello world"),
                    ..from_target(200, "GET /chunked-reply")
                }),
                Step::Expect(ok_from_target("GET /after-chunked")),
            ],
        )
        .keeps_open(),
        Row::new(
            "Expect: 100-continue: the target's 100 relayed before the body is sent",
            vec![
                send(expect_head),
                Step::Expect(from_target(100, "POST /expect")),
                send("hello"),
                Step::Expect(ok_from_target("POST /expect")),
            ],
        )
        .target(exact(format!("{expect_head}hello")))
        .keeps_open(),
        Row::new(
            "two pipelined GETs in one write: two responses in order",
            vec![
                send(pipelined),
                Step::Expect(ok_from_target("GET /p1")),
                Step::Expect(ok_from_target("GET /p2")),
            ],
        )
        .target(exact(pipelined))
        .keeps_open(),
        Row::new(
            "HTTP/1.0 without Host: served, then closed",
            vec![send("GET /ten HTTP/1.0\r\n\r\n"), Step::Expect(ok_from_target("GET /ten"))],
        )
        .target(has("GET /ten "))
        .closes(),
        Row::new(
            "HTTP/1.0 with Connection: keep-alive: served and kept open",
            vec![
                send("GET /ten-ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                Step::Expect(ok_from_target("GET /ten-ka")),
                send("GET /ten-ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                Step::Expect(ok_from_target("GET /ten-ka2")),
            ],
        )
        .target(has("GET /ten-ka2 "))
        .keeps_open(),
        Row::new(
            "HTTP/1.1 without Host is 400",
            vec![send("GET /no-host HTTP/1.1\r\n\r\n"), Step::Expect(from_tether(400))],
        )
        .target(Seen::Nothing),
        Row::new(
            "two Host headers are 400",
            vec![
                send("GET /two-hosts HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "absolute-form: the target gets origin-form and the URI's host",
            vec![
                send("GET http://example.com/a?b HTTP/1.1\r\nHost: ignored.test\r\n\r\n"),
                Step::Expect(ok_from_target("GET /a?b")),
            ],
        )
        .target(Seen::ExactAnyCase(
            b"GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
        ))
        .keeps_open(),
        Row::new(
            "hop-by-hop headers removed before the target",
            vec![send(hop_in), Step::Expect(ok_from_target("GET /hop"))],
        )
        .target(exact("GET /hop HTTP/1.1\r\nHost: t\r\nX-Keep: yes\r\n\r\n"))
        .keeps_open(),
        Row::new(
            "close-delimited response reaches the client whole, then close",
            vec![
                send("GET /close-delimited HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(Expect {
                    body: Some("close-delimited body"),
                    ..from_target(200, "GET /close-delimited")
                }),
            ],
        )
        .closes(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_frame_requests_and_responses_as_rfc_9112_says() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let rows = framing_rows();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("framing", rows.len(), &fails);
}

// === 2. Smuggling corpus ===

struct Smuggle {
    name: &'static str,
    steps: Vec<Step>,
    /// The first response is the target's answer to this; the second is tether's 403
    /// for the smuggled request, which tether parsed and routed itself.
    then_403: Option<&'static str>,
    /// Under the RFC reading the smuggled bytes are body data (TE.CL): they may reach
    /// the target inside a body, never as a request in any reading.
    in_body_ok: bool,
}

fn smuggle(name: &'static str, bytes: String) -> Smuggle {
    Smuggle {
        name,
        steps: vec![Step::Send(bytes.into_bytes())],
        then_403: None,
        in_body_ok: false,
    }
}

/// CL.TE: Content-Length covers `0`-chunk and the smuggled request; the TE header
/// (as `te_lines`) would end the body before it.
fn clte(path: &str, te_lines: &str) -> String {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{te_lines}\r\n{body}",
        body.len()
    )
}

/// TE.CL: the smuggled request is chunk data; Content-Length covers the size line only.
fn tecl(path: &str, te_lines: &str) -> String {
    let first = chunk(SMUGGLED);
    let size_line_len = first.find("\r\n").map(|i| i + 2).unwrap_or(0);
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {size_line_len}\r\n{te_lines}\r\n{first}0\r\n\r\n"
    )
}

fn upgrade_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn smuggling_corpus() -> Vec<Smuggle> {
    vec![
        smuggle("CL.TE", clte("/clte", "Transfer-Encoding: chunked\r\n")),
        Smuggle {
            in_body_ok: true,
            ..smuggle("TE.CL", tecl("/tecl", "Transfer-Encoding: chunked\r\n"))
        },
        smuggle(
            "duplicate Content-Length, short first",
            format!(
                "POST /dup-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "duplicate Content-Length, short last",
            format!(
                "POST /dup-cl2 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nContent-Length: 0\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding : chunked` (space before colon)",
            clte("/te-space", "Transfer-Encoding : chunked\r\n"),
        ),
        smuggle(
            "TE.CL with `Transfer-Encoding : chunked` (space before colon)",
            tecl("/te-space2", "Transfer-Encoding : chunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: xchunked`",
            clte("/xchunked", "Transfer-Encoding: xchunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding:\\tchunked`",
            clte("/te-tab", "Transfer-Encoding:\tchunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-encoding: chunked` twice",
            clte(
                "/te-twice",
                "Transfer-Encoding: chunked\r\nTransfer-encoding: chunked\r\n",
            ),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: chunked` and an obs-fold line",
            clte("/te-fold", "Transfer-Encoding: chunked\r\n obs-fold\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding:` folded onto ` chunked`",
            clte("/te-fold2", "Transfer-Encoding:\r\n chunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: chunked, identity`",
            clte("/te-identity", "Transfer-Encoding: chunked, identity\r\n"),
        ),
        Smuggle {
            then_403: Some("GET /ws"),
            ..smuggle(
                "pipelined behind an Upgrade the target refuses with 200",
                format!("{}{SMUGGLED}", upgrade_head("/ws")),
            )
        },
        Smuggle {
            name: "sent after an Upgrade request, before the (refused) 101 (RUSTSEC-2026-0033)",
            steps: vec![
                Step::Send(upgrade_head("/ws-slow").into_bytes()),
                Step::Pause(Duration::from_millis(150)),
                Step::Send(SMUGGLED.as_bytes().to_vec()),
            ],
            then_403: Some("GET /ws-slow"),
            in_body_ok: false,
        },
        smuggle(
            "CL.0 through `Connection: Content-Length`",
            format!(
                "POST /cl0 HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "TE.0 through `Connection: Transfer-Encoding`",
            format!(
                "POST /te0 HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk(SMUGGLED)
            ),
        ),
        Smuggle {
            then_403: Some("POST /no-length"),
            ..smuggle(
                "after a POST with neither CL nor TE (no body: a new request)",
                format!("POST /no-length HTTP/1.1\r\nHost: t\r\n\r\n{SMUGGLED}"),
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_never_let_a_smuggled_request_reach_the_target() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let corpus = smuggling_corpus();
    let mut fails = Vec::new();
    for case in &corpus {
        let mut row_fails = Vec::new();
        let snap = target.snapshot();
        let mut client = RawClient::connect(lb.addr()).await;
        for step in &case.steps {
            match step {
                Step::Send(b) => {
                    let _ = client.send(b).await;
                }
                Step::Pause(d) => tokio::time::sleep(*d).await,
                _ => {}
            }
        }
        let responses = client
            .responses_until_quiet(Duration::from_millis(1500), Duration::from_secs(6))
            .await;
        for r in &responses {
            if r.saw().is_some_and(|s| s.contains("/forbidden")) {
                row_fails.push(format!(
                    "the client got the target's answer to the smuggled request: {}",
                    r.describe()
                ));
            }
        }
        if let Some(first) = case.then_403 {
            let statuses: Vec<String> = responses.iter().map(Resp::describe).collect();
            let ok = responses.len() == 2
                && responses[0].status == 200
                && responses[0].saw() == Some(first)
                && responses[1].status == 403
                && responses[1].saw().is_none()
                && responses[1].body == FORBIDDEN_BODY.as_bytes();
            if !ok {
                row_fails.push(format!(
                    "expected the target's 200 to {first:?} then tether's 403, got {statuses:?}"
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let new = target.since(&snap);
        for (idx, bytes) in &new {
            if !case.in_body_ok && contains(bytes, b"/forbidden") {
                row_fails.push(format!(
                    "target connection #{idx} got the bytes /forbidden: {}",
                    show(bytes)
                ));
            }
            let whole = target.conn(*idx).bytes;
            for view in [View::Rfc, View::TeFirstLenient, View::ClFirst, View::ClLast] {
                if let Some(line) = request_lines(&whole, view)
                    .into_iter()
                    .find(|l| l.contains("/forbidden"))
                {
                    row_fails.push(format!(
                        "target connection #{idx} holds the request {line:?} when read {view:?}: {}",
                        show(&whole)
                    ));
                }
            }
        }
        fails.extend(
            row_fails
                .into_iter()
                .map(|f| format!("[{}] {f}", case.name)),
        );
    }
    // The corpus ran: each row reached tether, and the ones with a request in front
    // of the smuggled one reached the target.
    let all = target.all_bytes();
    assert!(
        contains(&all, b"GET /ws ") && contains(&all, b"POST /no-length "),
        "the target never saw the requests in front of the smuggled ones: {}",
        show(&all)
    );
    assert_table("smuggling corpus", corpus.len(), &fails);
}

// === 3. Desync mitigation modes ===

/// What a mode does with a request (ALB-REFERENCE §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Forwarded; the client connection stays usable.
    Pass,
    /// Forwarded, then both the client and the target connection closed.
    PassThenClose,
    /// Forwarded, then the client connection closed (the target's may stay).
    PassThenCloseClient,
    /// 400 from tether, nothing to the target.
    Refuse,
    /// 400 from tether, nothing to the target, the client connection closed.
    RefuseAndClose,
}

use Outcome::*;

struct DesyncCase {
    name: &'static str,
    /// The `http_desync_guardian` class.
    class: &'static str,
    bytes: String,
    /// `X-Target-Saw` of the target's answer.
    saw: &'static str,
    /// monitor, defensive, strictest.
    outcomes: [Outcome; 3],
    /// Bytes that must never reach the target as sent.
    never_forwarded: Option<&'static str>,
}

fn desync_cases() -> Vec<DesyncCase> {
    let case = |name, class, bytes: &str, saw, outcomes| DesyncCase {
        name,
        class,
        bytes: bytes.to_string(),
        saw,
        outcomes,
        never_forwarded: None,
    };
    vec![
        case(
            "plain GET",
            "Compliant",
            "GET /d/get HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /d/get",
            [Pass, Pass, Pass],
        ),
        case(
            "POST with Content-Length",
            "Compliant",
            "POST /d/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/post",
            [Pass, Pass, Pass],
        ),
        case(
            "chunked POST",
            "Compliant",
            "POST /d/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/chunked",
            [Pass, Pass, Pass],
        ),
        case(
            "space-less `Name:value` (OWS is optional)",
            "Compliant",
            "GET /d/no-space HTTP/1.1\r\nHost:t\r\nX-A:b\r\n\r\n",
            "GET /d/no-space",
            [Pass, Pass, Pass],
        ),
        case(
            "bare LF line ends",
            "Acceptable (NonCrLfLineTermination)",
            "GET /d/lf HTTP/1.1\nHost: t\nX-A: b\n\n",
            "GET /d/lf",
            [Pass, Pass, Refuse],
        ),
        case(
            "GET with Content-Length: 0",
            "Acceptable (GetHeadZeroContentLength)",
            "GET /d/get-cl0 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "GET /d/get-cl0",
            [Pass, Pass, Refuse],
        ),
        // RFC 9112 §6.3: a server MUST close after responding to CL+TE, monitor or not.
        case(
            "Content-Length and Transfer-Encoding",
            "Ambiguous (BothTeClPresent)",
            "POST /d/cl-te HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/cl-te",
            [PassThenCloseClient, PassThenClose, Refuse],
        ),
        case(
            "look-alike `Transfer_Encoding: chunked` beside Content-Length",
            "Ambiguous (SuspiciousHeader)",
            "POST /d/look-alike HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/look-alike",
            [Pass, PassThenClose, Refuse],
        ),
        case(
            "the same Content-Length twice",
            "Ambiguous (DuplicateContentLength)",
            "POST /d/same-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/same-cl",
            [Pass, PassThenClose, Refuse],
        ),
        case(
            "GET with a body",
            "Ambiguous (UndefinedContentLengthSemantics)",
            "GET /d/get-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "GET /d/get-body",
            [Pass, PassThenClose, Refuse],
        ),
        // RFC 9110 §5.5 lets a recipient reject NUL/CR or replace them with SP; tether
        // never forwards a head its parser refuses, so these are 400 in every mode.
        DesyncCase {
            never_forwarded: Some("a\0b"),
            ..case(
                "NUL in a header value",
                "Severe (BadHeader)",
                "GET /d/nul HTTP/1.1\r\nHost: t\r\nX-Note: a\0b\r\n\r\n",
                "GET /d/nul",
                [RefuseAndClose, RefuseAndClose, RefuseAndClose],
            )
        },
        DesyncCase {
            never_forwarded: Some("a\rb"),
            ..case(
                "bare CR in a header value",
                "Severe (BadHeader)",
                "GET /d/cr HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n",
                "GET /d/cr",
                [RefuseAndClose, RefuseAndClose, RefuseAndClose],
            )
        },
        // Unframeable: 400 in every mode, monitor included.
        case(
            "conflicting Content-Lengths",
            "Severe (MultipleContentLength)",
            "POST /d/two-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/two-cl",
            [RefuseAndClose, RefuseAndClose, RefuseAndClose],
        ),
        case(
            "Transfer-Encoding: xchunked",
            "Severe (BadTransferEncoding)",
            "POST /d/xchunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/xchunked",
            [RefuseAndClose, RefuseAndClose, RefuseAndClose],
        ),
    ]
}

fn desync_row(c: &DesyncCase, mode: usize) -> Row {
    let outcome = c.outcomes[mode];
    let name = format!("{} — {} — expected {outcome:?}", c.name, c.class);
    let path = c.saw.split(' ').nth(1).unwrap_or(c.saw).to_string();
    let mut row = match outcome {
        Pass => Row::new(
            name,
            vec![
                send(&c.bytes),
                Step::Expect(ok_from_target(c.saw)),
                send("GET /d/follow-up HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(ok_from_target("GET /d/follow-up")),
            ],
        )
        .target(has(format!("{path} ")))
        .keeps_open(),
        PassThenClose | PassThenCloseClient => {
            let r = Row::new(
                name,
                vec![send(&c.bytes), Step::Expect(ok_from_target(c.saw))],
            )
            .target(has(format!("{path} ")))
            .closes();
            if outcome == PassThenClose {
                r.closes_target()
            } else {
                r
            }
        }
        Refuse => Row::new(name, vec![send(&c.bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing),
        RefuseAndClose => Row::new(name, vec![send(&c.bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes(),
    };
    if let Some(bad) = c.never_forwarded {
        row = row.target(lacks(bad));
    }
    row
}

async fn desync_table(mode: usize, mode_name: &str) {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&desync_config(target.addr, mode_name)).await;
    let rows: Vec<Row> = desync_cases().iter().map(|c| desync_row(c, mode)).collect();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table(
        &format!("desync_mitigation_mode = {mode_name}"),
        rows.len(),
        &fails,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_pass_all_but_unframeable_requests_in_monitor_mode() {
    desync_table(0, "monitor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_after_ambiguous_and_refuse_severe_requests_in_defensive_mode() {
    desync_table(1, "defensive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_all_but_compliant_requests_in_strictest_mode() {
    desync_table(2, "strictest").await;
}

// === 4. Limits ===

fn limit_rows() -> Vec<Row> {
    let long_target = format!("/long-{}", "a".repeat(17 * 1024));
    let ok_target = format!("/ok-{}", "a".repeat(12 * 1024));
    let big_header = format!("X-Big: {}\r\n", "b".repeat(17 * 1024));
    let ok_header = format!("X-Big: {}\r\n", "b".repeat(12 * 1024));
    let headers = |n: usize| -> String {
        (0..n)
            .map(|i| format!("X-Part-{i}: {}\r\n", "c".repeat(13 * 1024)))
            .collect()
    };
    vec![
        Row::new(
            "request line over 16 KiB is 400 and closed",
            vec![
                send(format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n")),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "request line of 12 KiB is served",
            vec![
                send(format!("GET {ok_target} HTTP/1.1\r\nHost: t\r\n\r\n")),
                Step::Expect(ok_from_target(&format!("GET {ok_target}"))),
            ],
        )
        .target(has(format!("GET {ok_target} HTTP/1.1\r\n"))),
        Row::new(
            "one header over 16 KiB is 400",
            vec![
                send(format!(
                    "GET /big-header HTTP/1.1\r\nHost: t\r\n{big_header}\r\n"
                )),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "one header of 12 KiB is served",
            vec![
                send(format!(
                    "GET /ok-header HTTP/1.1\r\nHost: t\r\n{ok_header}\r\n"
                )),
                Step::Expect(ok_from_target("GET /ok-header")),
            ],
        )
        .target(has(ok_header.clone())),
        Row::new(
            "headers over 64 KiB in all are 400",
            vec![
                send(format!(
                    "GET /many-headers HTTP/1.1\r\nHost: t\r\n{}\r\n",
                    headers(5)
                )),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "headers of 52 KiB in all are served",
            vec![
                send(format!(
                    "GET /ok-headers HTTP/1.1\r\nHost: t\r\n{}\r\n",
                    headers(4)
                )),
                Step::Expect(ok_from_target("GET /ok-headers")),
            ],
        )
        .target(has("GET /ok-headers ")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_request_lines_and_headers_over_alb_limits() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let rows = limit_rows();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("limits", rows.len(), &fails);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_a_client_that_trickles_its_header_past_client_header_timeout() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "client_header_timeout = \"2s\"")).await;
    let start = Instant::now();
    let mut slow = RawClient::connect(lb.addr()).await;
    assert!(
        slow.send(b"GET /trickle HTTP/1.1\r\nHost: t\r\n").await,
        "tether refused the first bytes"
    );
    let mut closed_at = None;
    let mut served_meanwhile = None;
    for i in 0..8 {
        if slow.closed_within(Duration::from_secs(1)).await {
            closed_at = Some(start.elapsed());
            break;
        }
        if i == 0 {
            // A normal request on another connection is served while one trickles.
            let mut normal = RawClient::connect(lb.addr()).await;
            let sent = normal
                .send(b"GET /normal HTTP/1.1\r\nHost: t\r\n\r\n")
                .await;
            served_meanwhile = Some(match (sent, normal.response(false, RESPONSE_WAIT).await) {
                (true, Ok(r)) => check_response(&r, &ok_from_target("GET /normal")),
                (_, Err(e)) => vec![e],
                (false, _) => vec!["tether refused the normal request".to_string()],
            });
        }
        if !slow.send(format!("X-Trickle-{i}: v\r\n").as_bytes()).await {
            closed_at = Some(start.elapsed());
            break;
        }
    }
    let served =
        served_meanwhile.unwrap_or_else(|| vec!["the normal request was never sent".into()]);
    assert!(
        served.is_empty(),
        "normal request beside the trickler: {served:?}"
    );
    let Some(closed_at) = closed_at else {
        panic!("a header trickled for 8 s was never cut off (client_header_timeout = 2s)");
    };
    assert!(
        closed_at >= Duration::from_millis(1500) && closed_at <= Duration::from_millis(4500),
        "the trickler was closed after {closed_at:?}, expected about 2 s"
    );
    assert!(
        slow.buf.is_empty() || slow.buf.starts_with(b"HTTP/1.1 408"),
        "a client cut off mid-header gets nothing or a 408, got {}",
        show(&slow.buf)
    );
    assert!(
        !contains(&target.all_bytes(), b"/trickle"),
        "the unfinished request reached the target"
    );
}

// === 5. Safe at the edge (issue 20): one named regression per rule ===

/// A raw target that answers every request with `reply`, as is, and keeps the
/// connection open (for responses the recording target does not make).
async fn canned_target(reply: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            set.spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(Ok(h)) = parse_head(&buf) {
                        buf.drain(..h.len);
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
            while set.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

/// Item 1. Fails on the engine before issue 20: `Connection: Content-Length` had the
/// Content-Length line removed while the body still went, so the target read the body
/// as a request no rule saw (CL.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_a_connection_header_that_names_a_framing_header() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let cl0 = format!(
        "POST /x HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let te0 = format!(
        "POST /x HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, Transfer-Encoding\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk(SMUGGLED)
    );
    let host0 = "GET /x HTTP/1.1\r\nHost: t\r\nConnection: Host\r\n\r\n";
    let many: String = (0..17).map(|i| format!("x-{i}, ")).collect();
    let too_many = format!("GET /many HTTP/1.1\r\nHost: t\r\nConnection: {many}\r\n\r\n");
    // 7,000 tokens fit ALB's 16 KiB line.
    let same = format!(
        "GET /same HTTP/1.1\r\nHost: t\r\nConnection: {}x\r\nX: 1\r\n\r\n",
        "x,".repeat(7_000)
    );
    let mut rows: Vec<Row> = [
        ("CL.0: Connection names Content-Length", cl0.as_str()),
        ("TE.0: Connection names Transfer-Encoding", te0.as_str()),
        ("Connection names Host", host0),
        ("17 Connection options", too_many.as_str()),
    ]
    .into_iter()
    .map(|(name, bytes)| {
        Row::new(name, vec![send(bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes()
    })
    .collect();
    rows.push(
        Row::new(
            "7,000 copies of one Connection option are one option",
            vec![send(same), Step::Expect(ok_from_target("GET /same"))],
        )
        .target(lacks("X: 1"))
        .keeps_open(),
    );
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("Connection naming framing headers", rows.len(), &fails);
}

/// Item 2. Fails before issue 20: `Upgrade: h2c` was forwarded, and a target's 101
/// to it became a raw tunnel past every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_tunnel_websocket_upgrades_only() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let h2c = "GET /ws-accept-plain HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let rows = vec![Row::new(
        "Upgrade: h2c is dropped and served as a plain request",
        vec![
            send(h2c),
            Step::Expect(ok_from_target("GET /ws-accept-plain")),
            send(SMUGGLED),
            Step::Expect(Expect {
                body: Some(FORBIDDEN_BODY),
                ..from_tether(403)
            }),
        ],
    )
    .target(lacks("h2c"))
    .target(lacks("HTTP2-Settings"))
    .target(lacks("/forbidden"))];
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("h2c upgrades", rows.len(), &fails);

    // A 101 that no websocket request asked for is a 502, and nothing is tunnelled.
    let (switcher, _t) = canned_target(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let lb = TetherProc::start(&config(switcher, "")).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client.send(h2c.as_bytes()).await;
    let responses = client
        .responses_until_quiet(Duration::from_millis(500), Duration::from_secs(4))
        .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [502],
        "{:?}",
        responses.iter().map(Resp::describe).collect::<Vec<_>>()
    );
}

/// Item 6. Fails before issue 20: `Host: admin.example.com:x` was taken, and its
/// name went past a host rule that a target's reading of the Host would match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_a_host_outside_the_one_host_grammar() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let mut rows: Vec<Row> = [
        "Host: admin.example.com:x",
        "Host: admin.example.com:",
        "Host: admin.example.com:65536",
        "Host: %61dmin.example.com",
        "Host: user@admin.example.com",
        "Host: [::1",
    ]
    .into_iter()
    .map(|host| {
        let head = format!("GET /h HTTP/1.1\r\n{host}\r\n\r\n");
        Row::new(host, vec![send(head), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes()
    })
    .collect();
    rows.push(
        Row::new(
            "absolute-form with a bad port",
            vec![
                send("GET http://admin.example.com:x/h HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
    );
    for host in ["admin.example.com:8080", "[::1]:443", "10.0.0.1"] {
        rows.push(
            Row::new(
                format!("Host: {host} is taken"),
                vec![
                    send(format!("GET /h HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                    Step::Expect(ok_from_target("GET /h")),
                ],
            )
            .keeps_open(),
        );
    }
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("Host grammar", rows.len(), &fails);
}

/// Item 7. Each row fails before issue 20: a bare LF went on as it came, trailers and
/// chunk extensions of any content went through, `Transfer-Encoding: ,` was no
/// coding at all, and `Connection: expect` left tether waiting for a 100 the target
/// was never asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_forward_no_parser_discrepancy_material() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let long_ext = format!(
        "POST /ext HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n",
        "a".repeat(4096)
    );
    // The head may have gone before the bad body bytes came: the target never gets
    // those, and its connection is closed.
    let refused = |name: &str, bytes: String, bad: &str| {
        Row::new(name, vec![send(bytes), Step::Expect(from_tether(400))])
            .target(lacks(bad))
            .closes()
    };
    let rows = vec![
        Row::new(
            "bare LF line ends are forwarded as CRLF",
            vec![
                send("GET /lf HTTP/1.1\nHost: t\nX-A: b  \n\n"),
                Step::Expect(ok_from_target("GET /lf")),
            ],
        )
        .target(exact("GET /lf HTTP/1.1\r\nHost: t\r\nX-A: b  \r\n\r\n"))
        .keeps_open(),
        refused(
            "a trailer that is not a field line",
            "POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"
                .into(),
            "no colon",
        ),
        refused(
            "a trailer with a control character",
            "POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\x01b\r\n\r\n"
                .into(),
            "a\x01b",
        ),
        refused("a chunk extension over 4 KiB", long_ext, "aaaaaaaa"),
        refused(
            "whitespace after a chunk size without an extension",
            "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"
                .into(),
            "5 x",
        ),
        Row::new(
            "a fragment in the request target",
            vec![
                send("GET /forbidden#x HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Transfer-Encoding with no coding",
            vec![
                send("POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Connection: expect does not wait for a 100",
            vec![
                send(
                    "POST /expect-hop HTTP/1.1\r\nHost: t\r\nConnection: expect\r\n\
                     Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
                ),
                Step::Expect(ok_from_target("POST /expect-hop")),
            ],
        )
        .target(lacks("100-continue"))
        .keeps_open(),
    ];
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("parser-discrepancy material", rows.len(), &fails);

    // Interim responses lose their hop-by-hop lines, and HTTP/1.0 clients get none.
    let (hints, _t) = canned_target(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-hop\r\n\
          X-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let lb = TetherProc::start(&config(hints, "")).await;
    let http11 = raw_exchange(
        lb.addr(),
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let interim = http11
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(interim.starts_with("http/1.1 103"), "{http11:?}");
    assert!(interim.contains("link: </a.css>"), "{http11:?}");
    for hop in ["x-hop", "keep-alive", "connection"] {
        assert!(!interim.contains(hop), "the 103 kept {hop}: {http11:?}");
    }
    let http10 = raw_exchange(lb.addr(), b"GET /a HTTP/1.0\r\nHost: t\r\n\r\n").await;
    assert!(
        http10.starts_with("HTTP/1.1 200"),
        "an HTTP/1.0 client got {http10:?}"
    );
    assert!(
        !http10.contains(" 103 "),
        "an HTTP/1.0 client got a 103: {http10:?}"
    );
}

// === The checks themselves ===

#[test]
fn it_should_find_smuggled_requests_in_the_readings_that_see_them() {
    let forbidden = |bytes: &str, view| {
        request_lines(bytes.as_bytes(), view)
            .iter()
            .any(|l| l.contains("/forbidden"))
    };
    // Forwarded verbatim, CL.TE smuggles to a TE reader, TE.CL to a CL reader.
    let cl_te = clte("/x", "Transfer-Encoding: chunked\r\n");
    assert!(
        forbidden(&cl_te, View::Rfc),
        "CL.TE unseen by the RFC reading"
    );
    assert!(
        !forbidden(&cl_te, View::ClFirst),
        "CL.TE seen by a CL reader"
    );
    let te_cl = tecl("/x", "Transfer-Encoding: chunked\r\n");
    assert!(
        !forbidden(&te_cl, View::Rfc),
        "TE.CL seen by the RFC reading"
    );
    assert!(
        forbidden(&te_cl, View::ClFirst),
        "TE.CL unseen by a CL reader"
    );
    let spaced = clte("/x", "Transfer-Encoding : chunked\r\n");
    assert!(!forbidden(&spaced, View::Rfc) && forbidden(&spaced, View::TeFirstLenient));
    let dup = format!(
        "POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert!(forbidden(&dup, View::ClFirst) && !forbidden(&dup, View::ClLast));
    assert!(matches!(
        parse_chunked(b"ffffffffffffffffff\r\nabc"),
        Some(Err(()))
    ));
    assert_eq!(
        strip_added(b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: t\r\nx-amzn-trace-id: Root=1\r\n\r\n"),
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()
    );
}
