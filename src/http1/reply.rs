//! Responses as they go to an HTTP/1 client: a target's head rewritten (HTTP/1.1,
//! its lines less hop-by-hop ones, tether's cookies, the listener's headers, the
//! connection's fate) and tether's own responses.

use crate::exchange::{self, Exchange, LbResponse};
use crate::settings::ListenerHeaders;
use crate::target::response;

use super::parse::{self, Framing};

/// A final response head, checked, as it goes to the client.
pub(crate) struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    pub client_head: Vec<u8>,
    /// The target keeps the connection open after the response.
    pub keep_target: bool,
    /// The client connection may stay open after the response.
    pub keep_client: bool,
    /// `Upgrade: websocket` (what a 101 must say).
    pub websocket: bool,
}

/// Parses a final response head and writes the client's: the status line in
/// HTTP/1.1, the target's lines less hop-by-hop ones (and less those listener
/// `listener` sets itself), tether's cookies, the listener's response headers, and
/// the client connection's fate.
pub(crate) fn response_head(
    ex: &Exchange,
    listener: usize,
    head: &[u8],
    head_request: bool,
    keep_client: bool,
    http10_client: bool,
) -> Result<ResponseHead, response::BadResponse> {
    let listener = ex.routing.headers(listener);
    response::parse(head, head_request, |p| {
        let (status, framing) = (p.status, p.scan.framing);
        let keep_client = keep_client && framing != Framing::Close;
        let upgrade = status == 101;
        let mut out = Vec::with_capacity(head.len() + 256);
        out.extend_from_slice(b"HTTP/1.1 ");
        let line_end = memchr::memchr(b'\n', head).ok_or(response::BadResponse)?;
        let status_rest = head[..line_end + 1]
            .splitn(2, |b| *b == b' ')
            .nth(1)
            .ok_or(response::BadResponse)?;
        out.extend_from_slice(status_rest);
        if !status_rest.ends_with(b"\r\n") {
            out.pop();
            out.extend_from_slice(b"\r\n");
        }
        for h in p.headers.iter() {
            if p.forwards(h.name, Some(listener)) {
                parse::copy_line(&mut out, head, h);
            }
        }
        if let Some(n) = p.write_length() {
            let mut digits = itoa::Buffer::new();
            parse::push_header(&mut out, b"content-length", digits.format(n).as_bytes());
        }
        if !(100..200).contains(&status) || upgrade {
            ex.write_cookies(
                p.headers.get_all("set-cookie"),
                &mut out,
                b"set-cookie: ",
                b"\r\n",
            );
        }
        write_response_headers(&mut out, listener);
        if upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if !keep_client {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10_client {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(ResponseHead {
            status,
            framing,
            client_head: out,
            keep_target: p.keep_target(),
            keep_client,
            websocket: p.scan.upgrade_websocket,
        })
    })?
}

/// The lines a listener sets on every response.
fn write_response_headers(out: &mut Vec<u8>, listener: &ListenerHeaders) {
    for (name, value) in listener.response.iter() {
        parse::push_header(out, name.as_bytes(), value.as_bytes());
    }
}

/// One of tether's own responses, as HTTP/1.1 bytes, with the listener's response
/// headers (ALB adds them to every response, its own included).
pub(crate) fn lb_response_bytes(
    resp: &LbResponse,
    head_only: bool,
    close: bool,
    listener: &ListenerHeaders,
) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(256 + resp.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        resp.status,
        exchange::reason(resp.status)
    );
    if listener.server {
        out.extend_from_slice(b"server: tether\r\n");
    }
    let _ = write!(
        out,
        "date: {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        resp.content_type,
        resp.body.len()
    );
    if let Some(location) = &resp.location {
        let _ = write!(out, "location: {location}\r\n");
    }
    if let Some(challenge) = resp.www_authenticate {
        let _ = write!(out, "www-authenticate: {challenge}\r\n");
    }
    write_response_headers(&mut out, listener);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    out
}
