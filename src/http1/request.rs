//! Request heads on their way to a target: parsed and checked once (framing, ALB's
//! limits, the Host grammar, the desync classes), decided by the exchange core, and
//! written as the client's own lines less hop-by-hop ones plus ALB's headers. The
//! body that follows is moved in its own framing ([`BodyState`]).

use crate::exchange::{self, Decision};
use crate::forwarded::{self, ForwardedFor};
use crate::headers::{valid_host, Headers};
use crate::observe::{self, Detail};
use crate::routing::Routing;
use crate::stats::ListenerStats;

use super::chunked;
use super::parse::{self, Framing, Verdict};
use super::{ClientConn, ListenerApp};
use crate::exchange::RequestHead;

impl ListenerApp {
    /// Ends a head going to a target: ALB's forwarded headers, then the empty line.
    /// Returns where in `out` the trace id sent is.
    pub(crate) fn end_upstream_head(
        &self,
        out: &mut Vec<u8>,
        client: &ClientConn,
        headers: Headers<'_>,
        routing: &Routing,
    ) -> std::ops::Range<usize> {
        let shaping = &routing.shaping;
        let names = routing.headers(self.listener.index);
        let tls = match (shaping.tls_version_and_cipher_headers, client.tls) {
            (true, Some(session)) => Some((
                &*names.tls_version_name,
                &*names.tls_cipher_suite_name,
                session,
            )),
            _ => None,
        };
        let fwd = ForwardedFor {
            client: client.ip,
            client_port: shaping.xff_client_port.then_some(client.port),
            xff_mode: shaping.xff_mode,
            proto: self.listener.forwarded_proto,
            port: &self.listener.forwarded_port,
            tls,
        };
        let trace = forwarded::write_headers(
            out,
            &fwd,
            headers.get_all(forwarded::X_FORWARDED_FOR),
            headers.get(forwarded::X_AMZN_TRACE_ID),
        );
        // Mutual TLS: the client's certificate as ALB gives it to targets (values
        // rendered once per connection; no CR or LF in them).
        if let Some(cert) = &client.client_cert {
            for (name, value) in &cert.headers {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        trace
    }

    /// The access log's request field, as ALB writes it:
    /// `METHOD scheme://host:port/path?query HTTP/version`.
    pub(crate) fn request_line(
        &self,
        method: &str,
        host: Option<&str>,
        target: &str,
        version: &str,
    ) -> String {
        let scheme = match self.listener.protocol {
            crate::settings::Protocol::Http => "http",
            crate::settings::Protocol::Https => "https",
        };
        let host = host.map_or("-", crate::headers::strip_port);
        let port = std::str::from_utf8(&self.listener.forwarded_port).unwrap_or("-");
        let mut line = String::with_capacity(
            method.len() + scheme.len() + host.len() + port.len() + target.len() + 20,
        );
        for part in [
            method, " ", scheme, "://", host, ":", port, target, " HTTP/", version,
        ] {
            line.push_str(part);
        }
        line
    }

    /// Writes the `Host` line sent to a target: `value` as it is with
    /// `preserve_host_header`, else as ALB rewrites it (the port).
    pub(crate) fn write_host_line(
        &self,
        out: &mut Vec<u8>,
        name: &[u8],
        value: &[u8],
        preserve: bool,
    ) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        if preserve {
            out.extend_from_slice(value);
        } else {
            forwarded::write_host(
                out,
                value,
                self.listener.port,
                &self.listener.forwarded_port,
            );
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A request ready to go, made from its head before any await.
pub struct Prepared {
    pub decision: Decision,
    /// The head to send to the target (forwards only).
    pub upstream_head: Vec<u8>,
    pub plan: Plan,
    /// What the access log wants of the request (when it is on).
    pub(super) detail: Option<Box<Detail>>,
}

/// How a prepared request is carried.
pub struct Plan {
    pub body: Framing,
    /// The client wants the connection kept after this exchange.
    pub(super) keep_alive: bool,
    /// Close the client (and target) connection after this exchange (desync).
    pub(super) close_after: bool,
    pub(super) head_request: bool,
    pub(super) idempotent: bool,
    pub(super) expect_continue: bool,
    pub(super) upgrade: bool,
    pub(super) http10: bool,
}

/// What ends a request before it is forwarded.
pub(super) enum Refused {
    /// Answer with this status and close.
    Status(u16),
    /// Close without an answer (client gone, idle, shutdown).
    Close,
}

/// Parses and checks a request head (`head`: the bytes up to and including its empty
/// line) and decides the request, without awaiting anything: nothing borrowed from
/// the head outlives this call. `Err` is the status of a refused head.
pub fn prepare(app: &ListenerApp, head: &[u8], client: &ClientConn) -> Result<Prepared, u16> {
    let len = head.len();

    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; parse::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut lines) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(400);
    };
    // A fragment is no part of a request target (RFC 9112 §3.2), and targets that
    // cut the path at `#` would route `/admin#x` as `/admin`, past a rule on it.
    if !parse::known_method(method) || target.contains('#') {
        return Err(400);
    }
    let headers = Headers(req.headers);
    let mut total = 0;
    for h in headers.iter() {
        let line = h.name.len() + h.value.len() + 4;
        total += line;
        if line > parse::MAX_HEADER_LINE || total > parse::MAX_HEADERS_BYTES {
            return Err(400);
        }
    }
    let http10 = version == 0;

    // Desync classes, with ALB's action table.
    let (tier, class) = parse::desync_class(head, method, target, http10, headers);
    if class.is_some() {
        ListenerStats::add(&app.listener.stats.desync_non_compliant, 1);
    }
    let mut close_after = match parse::desync_verdict(app.desync, tier) {
        Verdict::Pass => false,
        Verdict::PassThenClose => true,
        Verdict::Reject => return Err(400),
    };

    let scan = parse::scan_request(headers, http10).map_err(|_| 400u16)?;
    let (body, drop_length) = (scan.framing, scan.drop_length);
    // RFC 9112 §6.1: a request with both must not leave a connection to reuse.
    close_after |= drop_length;

    // Host: one, valid, required on HTTP/1.1; an absolute-form target's authority
    // replaces it.
    if scan.hosts > 1 {
        return Err(400);
    }
    let host_header = scan.host;
    let absolute = parse::absolute_form(target);
    let (host, origin) = match absolute {
        Some((authority, _)) if !valid_host(authority.as_bytes()) => return Err(400),
        Some((authority, rest)) => (Some(authority), rest),
        None => {
            if !(target.starts_with('/') || (target == "*" && method == "OPTIONS")) {
                return Err(400);
            }
            let host = match host_header {
                Some(h) if valid_host(h.trim_ascii()) => std::str::from_utf8(h.trim_ascii()).ok(),
                Some(_) => return Err(400),
                None if http10 => None,
                None => return Err(400),
            };
            (host, target)
        }
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    };
    let path = if path.is_empty() { "/" } else { path };

    let keep_alive = if http10 { scan.keep_alive } else { !scan.close };
    // Websockets are the one upgrade tunnelled (as on ALB): `h2c` and the rest are
    // dropped as hop-by-hop, and the request is served as a plain one.
    let upgrade = !http10 && scan.upgrade_websocket && scan.upgrade_option && method == "GET";
    let expect_continue = !http10 && scan.expect_continue;

    let routing = app.routing.load_full();
    let decision = exchange::decide(
        &routing,
        &app.listener,
        &RequestHead {
            method,
            path,
            query,
            host,
            headers,
            upgrade,
            client_ip: client.ip,
        },
    );

    let mut detail = app.listener.access_log.as_ref().map(|_| {
        Box::new(Detail {
            request: Some(
                app.request_line(method, host, origin, if http10 { "1.0" } else { "1.1" })
                    .into(),
            ),
            user_agent: headers.get_str("user-agent").map(Box::from),
            trace_id: None,
            classification: class,
        })
    });
    let mut upstream_head = Vec::new();
    if let Decision::Forward(ex) = &decision {
        upstream_head.reserve(len + 256);
        upstream_head.extend_from_slice(method.as_bytes());
        upstream_head.push(b' ');
        match ex.rewritten_url() {
            Some(url) => upstream_head.extend_from_slice(url.as_bytes()),
            None => {
                if origin.starts_with('?') {
                    upstream_head.push(b'/');
                }
                upstream_head.extend_from_slice(origin.as_bytes());
            }
        }
        upstream_head.extend_from_slice(if http10 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let shaping = &routing.shaping;
        let listener_headers = routing.headers(app.listener.index);
        let preserve_host = shaping.preserve_host_header;
        // A rule's Host rewrite is sent as written; else an absolute-form target's
        // authority replaces the Host value (in the client's own line when it sent
        // one), with ALB's port rule unless the Host is preserved.
        let rewritten_host = ex.rewritten_host();
        let authority = absolute.and(host);
        if host_header.is_none() {
            if let Some(h) = rewritten_host {
                parse::push_header(&mut upstream_head, b"host", h.as_bytes());
            } else if let Some(h) = authority {
                app.write_host_line(&mut upstream_head, b"host", h.as_bytes(), preserve_host);
            }
        }
        let mut length_to_write = scan.content_length;
        for h in headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                match (rewritten_host, authority) {
                    (Some(new_host), _) => {
                        parse::push_header(&mut upstream_head, name.as_bytes(), new_host.as_bytes())
                    }
                    (None, Some(authority)) => app.write_host_line(
                        &mut upstream_head,
                        name.as_bytes(),
                        authority.as_bytes(),
                        preserve_host,
                    ),
                    (None, None) if absolute.is_some() => {}
                    (None, None) if preserve_host => parse::copy_line(&mut upstream_head, head, h),
                    (None, None) => app.write_host_line(
                        &mut upstream_head,
                        name.as_bytes(),
                        h.value.trim_ascii(),
                        false,
                    ),
                }
                continue;
            }
            // The framing lines go as tether read them: one Content-Length with the
            // plain number (unless Transfer-Encoding wins), Transfer-Encoding's value
            // without the whitespace around it.
            if name.eq_ignore_ascii_case("content-length") {
                if let (false, Some(n)) = (drop_length, length_to_write.take()) {
                    let mut digits = itoa::Buffer::new();
                    parse::push_header(
                        &mut upstream_head,
                        name.as_bytes(),
                        digits.format(n).as_bytes(),
                    );
                }
                continue;
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                parse::push_header(&mut upstream_head, name.as_bytes(), h.value);
                continue;
            }
            let upgrade_line = upgrade && name.eq_ignore_ascii_case("upgrade");
            let skip = (!upgrade_line && (parse::is_hop_by_hop(name) || scan.named.contains(name)))
                || forwarded::leaves_out(name, shaping, listener_headers);
            if !skip {
                parse::copy_line(&mut upstream_head, head, h);
            }
        }
        if upgrade {
            upstream_head.extend_from_slice(b"connection: upgrade\r\n");
        }
        let trace = app.end_upstream_head(&mut upstream_head, client, headers, &routing);
        if let Some(d) = detail.as_mut() {
            d.trace_id = observe::text(&upstream_head[trace]);
        }
    }
    Ok(Prepared {
        decision,
        upstream_head,
        detail,
        plan: Plan {
            body,
            keep_alive,
            close_after,
            head_request: method == "HEAD",
            idempotent: exchange::is_idempotent(method),
            expect_continue,
            upgrade,
            http10,
        },
    })
}

/// A request body on its way: how much is left, in its framing.
pub(super) struct BodyState {
    framing: Framing,
    left: u64,
    chunks: chunked::Decoder,
    done: bool,
}

impl BodyState {
    pub(super) fn new(framing: Framing) -> Self {
        BodyState {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: chunked::Decoder::default(),
            done: matches!(framing, Framing::None),
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Moves the body bytes at the front of `buf` to `out` (the bytes after the
    /// body stay in `buf`: the next request).
    pub(super) fn take(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), chunked::Invalid> {
        if self.done || buf.is_empty() {
            return Ok(());
        }
        let n = match self.framing {
            Framing::Length(_) => {
                let n = (buf.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                self.done = self.left == 0;
                n
            }
            Framing::Chunked => {
                let n = self.chunks.feed(buf, |_| {})?;
                self.done = self.chunks.is_done();
                n
            }
            Framing::None | Framing::Close => 0,
        };
        out.extend_from_slice(&buf[..n]);
        buf.drain(..n);
        Ok(())
    }
}

/// What the access log can say of a refused head (a desync rejection, a bad Host):
/// its request line and desync class, when it parses at all.
pub(super) fn refused_detail(app: &ListenerApp, head: &[u8]) -> Option<Box<Detail>> {
    let mut lines = [httparse::EMPTY_HEADER; parse::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut lines);
    if !req.parse(head).ok()?.is_complete() {
        return None;
    }
    let (method, target, version) = (req.method?, req.path?, req.version?);
    let headers = Headers(req.headers);
    let http10 = version == 0;
    let (_, classification) = parse::desync_class(head, method, target, http10, headers);
    let host = headers.get_str("host");
    let version = if http10 { "1.0" } else { "1.1" };
    Some(Box::new(Detail {
        request: Some(app.request_line(method, host, target, version).into()),
        user_agent: headers.get_str("user-agent").map(Box::from),
        trace_id: None,
        classification,
    }))
}
