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

mod target;
// Re-exported as part of the kit; a test binary may use none of it.
#[allow(unused_imports)]
pub use target::*;

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
