//! The raw HTTP/1.1 test kit: a lenient message-head parser, request framing under
//! the readings a target might use, a recording raw target and a raw client. Used by
//! the tests that check bytes on the wire (tests/http1, tests/engine, ...).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

// === Message parsing (shared by the target, the client and the checks) ===

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Bytes for a failure message: escaped, and cut when long.
pub fn show(b: &[u8]) -> String {
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

pub fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A parsed message head (request or response), leniently: lines may end in LF or
/// CRLF, obs-fold lines are appended to the previous value.
#[derive(Debug, Clone)]
pub struct MsgHead {
    /// Bytes of the head including the empty line.
    pub len: usize,
    pub start_line: String,
    /// Names as sent (not trimmed, not lowercased); values trimmed.
    pub headers: Vec<(String, String)>,
}

impl MsgHead {
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }

    /// Request method, target and version.
    pub fn request_parts(&self) -> (String, String, String) {
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
pub fn parse_head(buf: &[u8]) -> Option<Result<MsgHead, ()>> {
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
pub enum View {
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
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

pub fn request_framing(h: &MsgHead, view: View) -> Framing {
    let lenient = view != View::Rfc;
    let named = |n: &str, want: &str| {
        if lenient {
            n.trim().eq_ignore_ascii_case(want)
        } else {
            n.eq_ignore_ascii_case(want)
        }
    };
    let values = |want: &str| -> Vec<&str> {
        h.headers
            .iter()
            .filter(|(n, _)| named(n, want))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
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
pub struct Chunked {
    pub data: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub len: usize,
}

/// `None`: incomplete; `Some(Err)`: malformed (a bad or overflowing chunk size).
pub fn parse_chunked(buf: &[u8]) -> Option<Result<Chunked, ()>> {
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
pub fn body_len(buf: &[u8], framing: Framing) -> Option<Result<usize, ()>> {
    match framing {
        Framing::Empty => Some(Ok(0)),
        Framing::Length(n) => (buf.len() >= n).then_some(Ok(n)),
        Framing::Chunked => parse_chunked(buf).map(|r| r.map(|c| c.len)),
        Framing::UntilClose => Some(Err(())),
    }
}

/// Where a head ends (just past its empty line; CRLF lines).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// The length of the whole request at the front of `buf` (head and body, read as
/// RFC 9112 says); `None` while incomplete, `Some(Err)` when it cannot be framed.
pub fn request_len(buf: &[u8]) -> Option<Result<usize, ()>> {
    let head = match parse_head(buf)? {
        Ok(h) => h,
        Err(()) => return Some(Err(())),
    };
    let framing = request_framing(&head, View::Rfc);
    body_len(&buf[head.len..], framing).map(|r| r.map(|n| head.len + n))
}

/// The body of a whole request (as sent: chunked stays chunked).
pub fn request_body(req: &[u8]) -> &[u8] {
    match parse_head(req) {
        Some(Ok(h)) => &req[h.len..],
        _ => &[],
    }
}

/// The request lines found in `bytes` (one connection's stream) when read as `view`.
pub fn request_lines(bytes: &[u8], view: View) -> Vec<String> {
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
pub fn strip_added(bytes: &[u8]) -> Vec<u8> {
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
pub fn strip_added_and_close(bytes: &[u8]) -> Vec<u8> {
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
pub struct ConnRecord {
    pub bytes: Vec<u8>,
    /// tether closed (or reset) the connection.
    pub peer_closed: bool,
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
///
/// That is [`TargetReply::ByPath`]; [`RecordingTarget::start_with`] picks another answer.
/// Every whole request is also kept, in arrival order ([`RecordingTarget::take_requests`]).
pub struct RecordingTarget {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<ConnRecord>>>,
    pub requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
    pub hang_health: Arc<AtomicBool>,
    pub task: JoinHandle<()>,
}

/// How a [`RecordingTarget`] answers each whole request.
#[derive(Debug, Clone, Copy)]
pub enum TargetReply {
    /// The canned responses chosen by the request (see [`RecordingTarget`]).
    ByPath,
    /// These bytes, as they are, to every request; the connection stays open.
    Fixed(&'static [u8]),
    /// `200` with the body `target=<request-target>\nhost=<Host>\n`; stays open.
    EchoTargetAndHost,
    /// A target like a backend named `id`: `200` with the body `id` (closing when
    /// the request asks to), `/slow?ms=N` after N ms (1000 without `ms`), and
    /// `/health` never once [`RecordingTarget::hang_health`] is called.
    Id(&'static str),
}

impl Drop for RecordingTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingTarget {
    pub async fn start() -> RecordingTarget {
        RecordingTarget::start_with(TargetReply::ByPath).await
    }

    pub async fn start_with(reply: TargetReply) -> RecordingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target addr");
        let conns: Arc<Mutex<Vec<ConnRecord>>> = Arc::default();
        let task_conns = conns.clone();
        let requests: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let task_requests = requests.clone();
        let hang_health: Arc<AtomicBool> = Arc::default();
        let task_hang = hang_health.clone();
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
                set.spawn(answer(
                    wr,
                    rx,
                    reply,
                    task_requests.clone(),
                    task_hang.clone(),
                ));
                while set.try_join_next().is_some() {}
            }
        });
        RecordingTarget {
            addr,
            conns,
            requests,
            hang_health,
            task,
        }
    }

    /// From now on `/health` never answers ([`TargetReply::Id`]).
    pub fn hang_health(&self) {
        self.hang_health.store(true, Ordering::Relaxed);
    }

    /// Stops it as a crashed process stops: its listener closes (connects are
    /// refused) and its open connections close, with whatever they were serving.
    pub async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// The request-target of every whole request received (and not taken).
    pub fn targets(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter_map(|r| match parse_head(r) {
                Some(Ok(h)) => Some(h.request_parts().1),
                _ => None,
            })
            .collect()
    }

    /// How many requests for `path` (without its query) arrived.
    pub fn count(&self, path: &str) -> usize {
        self.targets()
            .iter()
            .filter(|t| t.split('?').next() == Some(path))
            .count()
    }

    /// Whether a request for exactly `path_and_query` arrived.
    pub fn got(&self, path_and_query: &str) -> bool {
        self.targets().iter().any(|t| t == path_and_query)
    }

    /// The whole requests received since the last call (head and body as sent).
    pub fn take_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.requests).drain(..).collect()
    }

    /// The start lines of the whole requests received (and not taken).
    pub fn start_lines(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter_map(|r| match parse_head(r) {
                Some(Ok(h)) => Some(h.start_line),
                _ => None,
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<usize> {
        lock(&self.conns).iter().map(|c| c.bytes.len()).collect()
    }

    /// Bytes received since `snap`, per connection index (connections with none left out).
    pub fn since(&self, snap: &[usize]) -> Vec<(usize, Vec<u8>)> {
        lock(&self.conns)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let from = snap.get(i).copied().unwrap_or(0);
                (c.bytes.len() > from).then(|| (i, c.bytes[from..].to_vec()))
            })
            .collect()
    }

    pub fn conn(&self, idx: usize) -> ConnRecord {
        lock(&self.conns).get(idx).cloned().unwrap_or_default()
    }

    pub fn all_bytes(&self) -> Vec<u8> {
        lock(&self.conns)
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// Waits (bounded) until tether has closed connection `idx`.
    pub async fn wait_closed(&self, idx: usize, within: Duration) -> bool {
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

pub async fn record(
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
pub async fn go_silent(rx: &mut UnboundedReceiver<Vec<u8>>) {
    while rx.recv().await.is_some() {}
}

pub async fn answer(
    mut wr: OwnedWriteHalf,
    mut rx: UnboundedReceiver<Vec<u8>>,
    reply: TargetReply,
    requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
    hang_health: Arc<AtomicBool>,
) {
    let by_path = matches!(reply, TargetReply::ByPath);
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
        if by_path && head.header("upgrade").is_some() && target.starts_with("/ws-accept") {
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
        if by_path && expects_continue && framing != Framing::Empty {
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
        lock(&requests).push_back(buf.drain(..total).collect());
        if by_path && target.contains("slow") {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        if let TargetReply::Id(_) = reply {
            let path = target.split('?').next().unwrap_or("");
            if path == "/health" && hang_health.load(Ordering::Relaxed) {
                return go_silent(&mut rx).await;
            }
            if path == "/slow" {
                let ms = target
                    .split_once('?')
                    .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let (bytes, close) = match reply {
            TargetReply::ByPath => reply_for(&head, &method, &target, &saw),
            TargetReply::Fixed(bytes) => (bytes.to_vec(), false),
            TargetReply::EchoTargetAndHost => {
                let host = head.header("host").unwrap_or_default();
                let body = format!("target={target}\nhost={host}\n");
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                (text.into_bytes(), false)
            }
            TargetReply::Id(id) => {
                let close = asks_to_close(&head);
                let conn = if close { "Connection: close\r\n" } else { "" };
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n{id}",
                    id.len()
                );
                (text.into_bytes(), close)
            }
        };
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
        if close {
            let _ = wr.shutdown().await;
            return go_silent(&mut rx).await;
        }
    }
}

/// Whether a request asks to close after its response (`Connection: close`, or
/// HTTP/1.0 without `keep-alive`).
pub fn asks_to_close(head: &MsgHead) -> bool {
    let connection = head.values("connection").join(",").to_ascii_lowercase();
    let http10 = head.request_parts().2 == "HTTP/1.0";
    connection.contains("close") || (http10 && !connection.contains("keep-alive"))
}

pub fn reply_for(head: &MsgHead, method: &str, target: &str, saw: &str) -> (Vec<u8>, bool) {
    let close = asks_to_close(head);
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

/// The next whole request on `s` (framed as [`request_len`] frames it), with what
/// came before it already in `buf`; `None` once `s` closes or fails.
pub async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = vec![0u8; 16384];
    loop {
        if let Some(Ok(n)) = request_len(buf) {
            return Some(buf.drain(..n).collect());
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw target on 127.0.0.1 that runs `serve` on each connection it accepts; its
/// connections live in the task, so dropping or aborting the task ends them all.
pub async fn serve_raw<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.spawn(serve(s));
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

// === The raw client ===

/// A response as the client got it (chunked bodies decoded).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: MsgHead,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// What the target said it answered; `None` for tether's own responses.
    pub fn saw(&self) -> Option<&str> {
        self.header("x-target-saw")
    }

    pub fn describe(&self) -> String {
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
pub fn parse_response(
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
pub struct RawClient {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub eof: bool,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect to tether");
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes `bytes`; false when tether has already closed.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads once more (until `deadline`); false on EOF, reset or timeout.
    pub async fn fill(&mut self, deadline: Instant) -> bool {
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
    pub async fn response(&mut self, head_request: bool, wait: Duration) -> Result<Resp, String> {
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
    pub async fn responses_until_quiet(&mut self, quiet: Duration, max: Duration) -> Vec<Resp> {
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
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.eof {
            if !self.fill(deadline).await && !self.eof {
                return false;
            }
        }
        true
    }
}
