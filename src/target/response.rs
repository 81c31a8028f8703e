//! A target's response, read the same way for both engines: its head read under a
//! deadline, parsed and scanned once, filtered by one rule of what reaches the client,
//! and its body followed in the target's framing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;

use crate::exchange::{Exchange, Failure};
use crate::headers::Headers;
use crate::http1::chunked;
use crate::http1::parse::{self, Framing, ResponseScan};
use crate::http1::relay::{self, Timer};
use crate::settings::ListenerHeaders;
use crate::stats::{ListenerStats, Stall};

/// Reads a response head into `buf`; returns its length. The target may be silent
/// for `idle` between reads; a target that is silent longer is counted in `stats`.
pub async fn read_head<T>(
    target: &mut T,
    buf: &mut Vec<u8>,
    timer: &mut Timer,
    idle: Duration,
    (stats, client): (&ListenerStats, Option<SocketAddr>),
) -> Result<usize, Failure>
where
    T: AsyncRead + Unpin + ?Sized,
{
    let mut scanned = 0;
    loop {
        if let Some(end) = parse::find_head_end(buf, scanned) {
            return Ok(end);
        }
        if buf.len() > parse::MAX_RESPONSE_HEAD {
            return Err(Failure::BadResponse);
        }
        scanned = buf.len();
        match timer
            .run(Instant::now() + idle, relay::read_into(target, buf))
            .await
        {
            None => {
                stats.stalled(Stall::TargetRead, client);
                return Err(Failure::TargetTimeout);
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(Failure::TargetReset)
            }
            Some(Ok(0)) | Some(Err(_)) => return Err(Failure::TargetClosed),
            Some(Ok(_)) => {}
        }
    }
}

/// The status code of a response head.
pub fn status(head: &[u8]) -> Option<u16> {
    let line_end = memchr::memchr(b'\n', head)?;
    let line = &head[..line_end];
    // `HTTP/1.1 200\r\n`: no reason phrase, and the CR is not the code's.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |b| *b == b' ');
    let version = parts.next()?;
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A target's response that is not valid HTTP/1 (the client gets a 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid response from the target")]
pub struct BadResponse;

/// A response head, parsed and scanned.
pub struct Parsed<'h> {
    pub status: u16,
    pub reason: &'h str,
    /// An HTTP/1.0 target.
    pub http10: bool,
    pub headers: Headers<'h>,
    pub scan: ResponseScan<'h>,
}

impl Parsed<'_> {
    /// The connection may carry another request after this response: the target
    /// keeps it open, and framed the response one way only.
    pub fn keep_target(&self) -> bool {
        !(self.scan.close || (self.http10 && !self.scan.keep_alive) || self.scan.both_lengths)
    }

    /// Whether the target's line `name` goes on to the client as it came: not
    /// hop-by-hop (a websocket 101's `Upgrade` aside), not named by `Connection`,
    /// not `Content-Length` (written once, plain, by [`Parsed::write_length`]; never
    /// beside a `Transfer-Encoding`, RFC 9112 §6.3), and not one the listener sets
    /// itself.
    pub fn forwards(&self, name: &str, listener: Option<&ListenerHeaders>) -> bool {
        let upgrade_line = self.status == 101 && name.eq_ignore_ascii_case("upgrade");
        !((!upgrade_line && (parse::is_hop_by_hop(name) || self.scan.named.contains(name)))
            || name.eq_ignore_ascii_case("content-length")
            || listener.is_some_and(|l| !l.is_noop() && l.replaces(name)))
    }

    /// The one `Content-Length` value the client gets, when the target's lines say
    /// one length (duplicates and lists agreeing) and no `Transfer-Encoding`.
    pub fn write_length(&self) -> Option<u64> {
        self.scan.length
    }
}

/// Parses and scans a response head and hands it to `f`. `Err` when it is not a
/// valid HTTP/1 response head (the client gets a 502).
pub fn parse<R>(
    head: &[u8],
    head_request: bool,
    f: impl FnOnce(&Parsed<'_>) -> R,
) -> Result<R, BadResponse> {
    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; parse::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, head, &mut lines)
    {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BadResponse),
    }
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(BadResponse);
    };
    let headers = Headers(resp.headers);
    let scan = parse::scan_response(status, head_request, headers).map_err(|_| BadResponse)?;
    Ok(f(&Parsed {
        status,
        reason: resp.reason.unwrap_or(""),
        http10: version == 0,
        headers,
        scan,
    }))
}

/// An interim (1xx) response head as it goes to an HTTP/1.1 client: the status line
/// and the target's lines less hop-by-hop ones. HTTP/1.0 clients get none (RFC 9110
/// §15.2), and HTTP/2 clients none either.
pub fn interim_head(head: &[u8]) -> Result<Vec<u8>, BadResponse> {
    parse(head, false, |p| {
        let mut out = Vec::with_capacity(head.len());
        out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", p.status, p.reason).as_bytes());
        for h in p.headers.iter() {
            if p.forwards(h.name, None) {
                parse::copy_line(&mut out, head, h);
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    })
}

/// A response body on its way to the client, followed in the target's framing.
pub struct ResponseBody {
    pub framing: Framing,
    left: u64,
    chunks: chunked::Decoder,
}

impl ResponseBody {
    /// A body framed as `framing` says, none of it read yet.
    pub fn new(framing: Framing) -> Self {
        ResponseBody {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: chunked::Decoder::default(),
        }
    }

    /// Whether the body has ended (never, for a body framed by the close).
    pub fn is_done(&self) -> bool {
        match self.framing {
            Framing::None => true,
            Framing::Length(_) => self.left == 0,
            Framing::Chunked => self.chunks.is_done(),
            Framing::Close => false,
        }
    }

    /// How many of `bytes` belong to the body, and whether it is complete (what
    /// follows is not the body's: the connection is not reused). `decoded` gets the
    /// body's data, decoded from its framing, when given; the exchange sees the data
    /// when it wants it.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        ex: &mut Exchange,
        mut decoded: Option<&mut Vec<u8>>,
    ) -> Result<(usize, bool), BadResponse> {
        let wants = ex.wants_response_body();
        let decode = wants || decoded.is_some();
        let mut data = |d: &[u8], end: bool| {
            if let Some(out) = decoded.as_deref_mut() {
                out.extend_from_slice(d);
            }
            if wants {
                ex.response_body(d, end);
            }
        };
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::Length(_) => {
                let n = (bytes.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                data(&bytes[..n], self.left == 0);
                Ok((n, self.left == 0))
            }
            Framing::Chunked => {
                if !decode {
                    let n = self.chunks.feed(bytes, |_| {}).map_err(|_| BadResponse)?;
                    return Ok((n, self.chunks.is_done()));
                }
                let mut body = Vec::new();
                let n = self
                    .chunks
                    .feed(bytes, |d| body.extend_from_slice(d))
                    .map_err(|_| BadResponse)?;
                let done = self.chunks.is_done();
                data(&body, done);
                Ok((n, done))
            }
            Framing::Close => {
                data(bytes, bytes.is_empty());
                Ok((bytes.len(), false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_should_read_a_status_without_a_reason_phrase() {
        assert_eq!(super::status(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        assert_eq!(super::status(b"HTTP/1.1 100\r\n\r\n"), Some(100));
        assert_eq!(super::status(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(super::status(b"HTTP/1.1 20\r\n\r\n"), None);
        assert_eq!(super::status(b"HTTP/2 200\r\n\r\n"), None);
    }
}
