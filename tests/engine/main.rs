//! tether's HTTP/1 engine through the real binary, under random input and under load:
//! random valid requests reach the target byte for byte, random broken heads never
//! do, a thousand clients trickling their heads are cut off at
//! `client_header_timeout` while others are served, POSTs survive targets closing
//! idle keep-alive connections, and nine thousand idle websockets are held.
//!
//! One test binary, a module per subject: random valid requests, random broken
//! heads, tricklers, keep-alive races, websockets. The config, the recording
//! target and the response reader they share are here.

#[path = "../common/mod.rs"]
mod common;

mod broken;
mod keepalive;
mod trickle;
mod valid;
mod websockets;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What the recording target answers to every whole request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Held by the tests that load the machine or measure time (the tests of one file
/// run in parallel): they run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long to wait for one response.
const RESPONSE_WAIT: Duration = Duration::from_secs(3);

/// The header lines tether adds to every forwarded request (ALB's).
const ADDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-amzn-trace-id",
];

/// Header names the generators never use: the ones tether adds, the hop-by-hop ones
/// it removes, and the ones that frame or route a request (set by the generator
/// itself, once).
const RESERVED: [&str; 14] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-amzn-trace-id",
    "connection",
    "keep-alive",
    "te",
    "proxy-connection",
    "proxy-authenticate",
    "upgrade",
    "host",
    "content-length",
    "transfer-encoding",
    "expect",
];

// === Config ===

/// One HTTP listener forwarding everything to `targets`; no health checks (every
/// target takes traffic at once). `lb_extra` goes into `[load_balancer]`, `tg_extra`
/// into the target group.
fn config(targets: &[SocketAddr], lb_extra: &str, tg_extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[load_balancer]
threads = 2
{lb_extra}

[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "web" }}

[target_group.web]
targets = [{}]
health_check = {{ enabled = false }}
{tg_extra}
"#,
        list.join(", ")
    )
}

// === Messages (test side) ===

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes for a failure message: escaped, cut when long.
fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b).escape_debug().to_string();
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes)", &s[..cut], b.len())
    } else {
        s
    }
}

/// Where a head ends (just past its empty line; CRLF lines).
fn head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// `(name, value)` of each header line of a head (after its first line), trimmed.
fn head_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

fn framing(head: &[u8], response: bool) -> Result<Framing, String> {
    let fields = head_fields(head);
    let te = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if !te.is_empty() {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(format!("transfer-encoding {te:?}"))
        };
    }
    match fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v
            .parse()
            .map(Framing::Length)
            .map_err(|_| format!("content-length {v:?}")),
        None if response => Ok(Framing::Close),
        None => Ok(Framing::None),
    }
}

/// The length of the complete chunked body (trailers included) at the front of
/// `buf`; `None` while incomplete.
fn chunked_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut i = 0;
    loop {
        let Some(eol) = find(&buf[i..], b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[i..i + eol];
        let size = line.split(|b| *b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| format!("chunk size line {}", show(line)))?;
        i += eol + 2;
        if size == 0 {
            // Trailer lines up to the empty one.
            loop {
                let Some(eol) = find(&buf[i..], b"\r\n") else {
                    return Ok(None);
                };
                i += eol + 2;
                if eol == 0 {
                    return Ok(Some(i));
                }
            }
        }
        if buf.len() < i + size + 2 {
            return Ok(None);
        }
        if &buf[i + size..i + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        i += size + 2;
    }
}

/// The length of the whole request at the front of `buf` (head and body); `None`
/// while incomplete.
fn request_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(head) = head_end(buf) else {
        return Ok(None);
    };
    Ok(match framing(&buf[..head], false)? {
        Framing::None | Framing::Close => Some(head),
        Framing::Length(n) => (buf.len() >= head + n).then_some(head + n),
        Framing::Chunked => chunked_len(&buf[head..])?.map(|n| head + n),
    })
}

/// The body of a whole request (as sent: chunked stays chunked).
fn request_body(req: &[u8]) -> &[u8] {
    &req[head_end(req).unwrap_or(req.len())..]
}

// === A target that records every byte ===

/// A raw target: records every byte it receives and each whole request (content
/// length or chunked with trailers, read to its end), and answers each with [`OK`].
/// What it cannot parse is recorded and the connection closed.
struct RecordingTarget {
    addr: SocketAddr,
    raw: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Drop for RecordingTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingTarget {
    async fn start() -> RecordingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let raw = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(VecDeque::new()));
        let (r, q) = (raw.clone(), requests.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.spawn(serve_recording(s, r.clone(), q.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        RecordingTarget {
            addr,
            raw,
            requests,
            task,
        }
    }

    fn take_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.requests).drain(..).collect()
    }

    fn raw(&self) -> Vec<u8> {
        lock(&self.raw).clone()
    }
}

async fn serve_recording(
    mut s: TcpStream,
    raw: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        loop {
            match request_len(&buf) {
                Ok(Some(n)) => {
                    let req: Vec<u8> = buf.drain(..n).collect();
                    lock(&requests).push_back(req);
                    if s.write_all(OK).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                lock(&raw).extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

// === Client side ===

#[derive(Debug)]
struct Resp {
    status: u16,
    head: Vec<u8>,
    body: Vec<u8>,
}

/// How reading a response ended without one.
#[derive(Debug)]
enum NoResp {
    /// Closed (FIN) after `partial` bytes.
    Closed(Vec<u8>),
    /// Reset after `partial` bytes.
    Reset(Vec<u8>),
    /// Neither a whole response nor a close in time.
    Timeout(Vec<u8>),
    Garbage(String),
}

impl std::fmt::Display for NoResp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoResp::Closed(p) => write!(f, "closed after {:?}", show(p)),
            NoResp::Reset(p) => write!(f, "reset after {:?}", show(p)),
            NoResp::Timeout(p) => write!(f, "no response in time; got {:?}", show(p)),
            NoResp::Garbage(e) => write!(f, "bad response: {e}"),
        }
    }
}

/// Reads one response (content-length, chunked or close-delimited body) from `s`.
async fn read_response(s: &mut TcpStream, wait: Duration) -> Result<Resp, NoResp> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        if let Some(h) = head_end(&buf) {
            let status = std::str::from_utf8(&buf[..h])
                .ok()
                .and_then(|t| t.strip_prefix("HTTP/1.1 "))
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| NoResp::Garbage(show(&buf[..h])))?;
            let body_len = match framing(&buf[..h], true).map_err(NoResp::Garbage)? {
                Framing::None => Some(0),
                Framing::Length(n) => Some(n),
                Framing::Chunked => chunked_len(&buf[h..]).map_err(NoResp::Garbage)?,
                Framing::Close => None,
            };
            if let Some(n) = body_len {
                if buf.len() >= h + n && !(100..200).contains(&status) {
                    return Ok(Resp {
                        status,
                        head: buf[..h].to_vec(),
                        body: buf[h..h + n].to_vec(),
                    });
                }
            }
        }
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Err(_) => return Err(NoResp::Timeout(buf)),
            Ok(Err(_)) => return Err(NoResp::Reset(buf)),
            Ok(Ok(0)) => {
                // A close-delimited body ends here.
                if let Some(h) = head_end(&buf) {
                    if framing(&buf[..h], true) == Ok(Framing::Close) {
                        let status = buf
                            .get(9..12)
                            .and_then(|c| std::str::from_utf8(c).ok().and_then(|c| c.parse().ok()));
                        if let Some(status) = status {
                            return Ok(Resp {
                                status,
                                head: buf[..h].to_vec(),
                                body: buf[h..].to_vec(),
                            });
                        }
                    }
                }
                return Err(NoResp::Closed(buf));
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `bytes` on a new connection and reads one response.
async fn exchange_once(addr: SocketAddr, bytes: &[u8]) -> Result<Resp, String> {
    let mut s = tokio::time::timeout(RESPONSE_WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.write_all(bytes)
        .await
        .map_err(|e| format!("write to {addr}: {e}"))?;
    read_response(&mut s, RESPONSE_WAIT)
        .await
        .map_err(|e| e.to_string())
}
