//! tether's HTTP/1.1 engine, run by pingora as a `ServerApp` on each accepted (and
//! TLS-terminated) client connection. It reads request heads, asks the exchange core
//! what to do, and moves bytes: request heads forwarded as the client's own lines
//! less hop-by-hop ones plus ALB's headers, bodies in their own framing, responses
//! the same way back, websockets relayed after the 101. HTTP/2 clients (ALPN `h2`)
//! go to [`crate::http2`], which uses the same core and the same target side.

pub mod chunked;
pub mod parse;
pub mod relay;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncRead;

use crate::access_log::Kind;
use crate::exchange::{
    self, Decision, Exchange, Failure, LbResponse, ListenerInfo, RequestHead, Retry,
};
use crate::forwarded::{self, ForwardedFor};
use crate::headers::{valid_host, Headers};
use crate::metrics::{ConnectionGuard, ListenerStats, Stall};
use crate::observe::{self, Detail, Record};
use crate::routing::{Routing, SharedRouting};
use crate::settings::{DesyncMode, ListenerHeaders};
use crate::tls_session::TlsSession;
use parse::{Framing, Verdict};
use relay::Counted;
use upstream::TargetConn;

/// One listener's engine settings.
#[derive(Debug)]
pub struct Http1App {
    pub listener: ListenerInfo,
    pub routing: SharedRouting,
    pub client_header_timeout: Duration,
    pub desync: DesyncMode,
    /// The listener's policy allows TLS 1.3 only.
    pub tls13_only: bool,
}

/// What the engines know of a client connection.
#[derive(Debug, Clone, Default)]
pub struct ClientConn {
    /// The socket peer (unknown for a Unix socket client).
    pub ip: Option<IpAddr>,
    /// The peer's port (0 when unknown).
    pub port: u16,
    /// The TLS session of an HTTPS connection, in OpenSSL's names.
    pub tls: Option<TlsSession>,
    /// The SNI name the TLS client sent.
    pub server_name: Option<Arc<str>>,
}

impl ClientConn {
    /// The client's address, when known.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.ip.map(|ip| std::net::SocketAddr::new(ip, self.port))
    }

    fn of(stream: &Stream) -> ClientConn {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let digest = stream.get_ssl_digest();
        let tls = digest
            .as_ref()
            .and_then(|d| TlsSession::from_rustls(&d.version, &d.cipher));
        let server_name = digest
            .as_ref()
            .and_then(|d| d.extension.get::<crate::server::ServerName>())
            .map(|n| n.0.clone());
        ClientConn {
            ip: peer.map(|a| a.ip()),
            port: peer.map_or(0, |a| a.port()),
            tls,
            server_name,
        }
    }
}

#[async_trait]
impl ServerApp for Http1App {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stats = &self.listener.stats;
        if self.tls13_only && !negotiated_tls13(&stream) {
            // The certificate resolver refuses hellos without TLS 1.3 suites; a client
            // that offered them but still settled on TLS 1.2 is closed here, unserved.
            ListenerStats::add(&stats.tls_negotiation_errors, 1);
            return None;
        }
        let guard = stats.connection_opened();
        let client = ClientConn::of(&stream);
        // ALB's client keep-alive runs from the connection's start.
        let keep_alive = self.routing.load().client_keep_alive;
        if stream.selected_alpn_proto() == Some(ALPN::H2) {
            crate::http2::serve(self.clone(), stream, client, keep_alive, shutdown.clone()).await;
            return None;
        }
        let mut conn = Conn {
            app: self,
            io: Counted::new(stream),
            counted: (0, 0),
            head_started: None,
            buf: Vec::new(),
            client,
            keep_alive_until: Instant::now() + keep_alive,
            shutdown: shutdown.clone(),
            timer: relay::Timer::default(),
        };
        if let Some(tunnel) = conn.run().await {
            // A websocket: its own small task from here on, so that the connection's
            // larger state (sized for parsing and forwarding) is freed.
            let Conn { io, timer, .. } = conn;
            tokio::spawn(tunnel.run(self.clone(), io, timer, guard));
        }
        None
    }
}

/// An upgraded connection, handed from the HTTP exchange to its relay.
struct Tunnel {
    target: TargetConn,
    /// Kept for its life: it counts the websocket on its target, and forgets its
    /// Socket.IO sid when it ends.
    ex: Box<Exchange>,
    /// With an access log: the upgrade request, logged when the websocket closes
    /// (as ALB does). Without, nothing is kept: an idle websocket stays small.
    log: Option<Box<(Record, ClientConn)>>,
}

impl Tunnel {
    async fn run(
        mut self,
        app: Arc<Http1App>,
        mut io: Counted<Stream>,
        mut timer: relay::Timer,
        _guard: ConnectionGuard,
    ) {
        let idle = self.ex.idle_timeout();
        let closing = self.ex.closing();
        let (read, written) = (io.read, io.written);
        let end = relay::tunnel(&mut io, &mut self.target, idle, &mut timer, closing).await;
        tracing::debug!("websocket to {} ended: {end:?}", self.ex.addr());
        let (rx, tx) = (io.read - read, io.written - written);
        match self.log.take() {
            Some(log) => {
                let (mut record, client) = *log;
                record.rx += rx;
                record.tx += tx;
                record.finish(&app.listener, &client);
            }
            None => ListenerStats::add(&app.listener.stats.processed_bytes, rx + tx),
        }
    }
}

/// What follows an exchange on a client connection.
enum Next {
    /// Read the next request.
    Request,
    Close,
    /// Relay the websocket.
    Tunnel(Box<Tunnel>),
    /// The target answered 101: [`Conn::forward`] makes the tunnel.
    Upgraded(TargetConn),
}

fn negotiated_tls13(stream: &Stream) -> bool {
    let version = stream.get_ssl_digest().map(|d| d.version.clone());
    // rustls names it "TLSv1_3"; OpenSSL-style "TLSv1.3" too, to be safe.
    matches!(version.as_deref(), Some("TLSv1_3" | "TLSv1.3"))
}

impl Http1App {
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
        let host = host.map_or("-", crate::rules::strip_port);
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

/// A connection to the exchange's target and whether it came from the pool: an idle
/// pooled one unless `fresh_only` (a replay after a pooled connection failed), else
/// a new one. When connecting fails the core may move the exchange to another
/// target, which is tried in turn.
pub(crate) async fn connect_target(
    ex: &mut Exchange,
    fresh_only: bool,
) -> Result<(TargetConn, bool), Failure> {
    loop {
        if !fresh_only {
            if let Some(conn) = upstream::take(ex.addr()) {
                return Ok((conn, true));
            }
        }
        match upstream::connect(ex.addr(), ex.upstream_tls(), ex.connect_timeout()).await {
            Ok(conn) => return Ok((conn, false)),
            Err(e) => {
                tracing::debug!("connect to {} failed: {e:?}", ex.addr());
                if ex.connect_failed() == Retry::Elsewhere {
                    continue;
                }
                return Err(match e {
                    upstream::ConnectError::Timeout => Failure::ConnectTimeout,
                    upstream::ConnectError::Failed(_) => Failure::ConnectError,
                });
            }
        }
    }
}

/// A request ready to go, made from its head before any await.
pub struct Prepared {
    pub decision: Decision,
    /// The head to send to the target (forwards only).
    pub upstream_head: Vec<u8>,
    pub plan: Plan,
    /// What the access log wants of the request (when it is on).
    detail: Option<Box<Detail>>,
}

/// How a prepared request is carried.
pub struct Plan {
    pub body: Framing,
    /// The client wants the connection kept after this exchange.
    keep_alive: bool,
    /// Close the client (and target) connection after this exchange (desync).
    close_after: bool,
    head_request: bool,
    idempotent: bool,
    expect_continue: bool,
    upgrade: bool,
    http10: bool,
}

/// What ends a request before it is forwarded.
enum Refused {
    /// Answer with this status and close.
    Status(u16),
    /// Close without an answer (client gone, idle, shutdown).
    Close,
}

/// Parses and checks a request head (`head`: the bytes up to and including its empty
/// line) and decides the request, without awaiting anything: nothing borrowed from
/// the head outlives this call. `Err` is the status of a refused head.
pub fn prepare(app: &Http1App, head: &[u8], client: &ClientConn) -> Result<Prepared, u16> {
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
            let upgrade_line = upgrade && name.eq_ignore_ascii_case("upgrade");
            let skip = (drop_length && name.eq_ignore_ascii_case("content-length"))
                || (!upgrade_line && (parse::is_hop_by_hop(name) || scan.named.contains(name)))
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

/// One client connection.
struct Conn<'a> {
    app: &'a Arc<Http1App>,
    io: Counted<Stream>,
    /// The stream's byte counts when the current request began.
    counted: (u64, u64),
    /// When the first byte of the request head being read came.
    head_started: Option<Instant>,
    /// Bytes read from the client and not yet used (the next pipelined request).
    buf: Vec<u8>,
    client: ClientConn,
    /// ALB's client keep-alive: a response after this closes the connection.
    keep_alive_until: Instant,
    shutdown: ShutdownWatch,
    /// The connection's one timer (header, idle and response waits).
    timer: relay::Timer,
}

impl Conn<'_> {
    /// Serves requests until the connection ends, or becomes a websocket (returned).
    async fn run(&mut self) -> Option<Box<Tunnel>> {
        loop {
            let head_len = match self.read_head().await {
                Ok(n) => n,
                Err(Refused::Close) => return None,
                Err(Refused::Status(status)) => {
                    let mut rec = self.record();
                    let _ = self
                        .respond(&mut rec, &LbResponse::error(status), false, false)
                        .await;
                    self.finish(rec);
                    return None;
                }
            };
            let mut rec = self.record();
            let prepared = match self.prepare(head_len) {
                Ok(p) => p,
                Err(status) => {
                    if self.app.listener.access_log.is_some() {
                        rec.detail = refused_detail(self.app, &self.buf[..head_len]);
                    }
                    let _ = self
                        .respond(&mut rec, &LbResponse::error(status), false, false)
                        .await;
                    self.finish(rec);
                    return None;
                }
            };
            self.buf.drain(..head_len);
            let Prepared {
                decision,
                upstream_head,
                mut plan,
                detail,
            } = prepared;
            rec.detail = detail;
            if Instant::now() >= self.keep_alive_until || *self.shutdown.borrow() {
                // The connection has been kept as long as ALB keeps one, or the
                // server is stopping (an upgrade's new process takes the next
                // connection): this request is served, and its response says
                // `Connection: close` and closes the connection.
                plan.keep_alive = false;
            }
            let keep = match decision {
                Decision::Respond(resp) => {
                    // A body the client sent along is not read: close after answering.
                    let keep = plan.keep_alive
                        && !plan.close_after
                        && !resp.close
                        && plan.body == Framing::None;
                    let sent = self
                        .respond(&mut rec, &resp, plan.head_request, !keep || plan.http10)
                        .await;
                    keep && sent.is_ok()
                }
                Decision::Forward(ex) => {
                    match self.forward(ex, upstream_head, plan, &mut rec).await {
                        Next::Request => true,
                        Next::Close | Next::Upgraded(_) => false,
                        Next::Tunnel(t) => return Some(t),
                    }
                }
            };
            self.finish(rec);
            // A stop that came after the response said keep-alive closes the
            // connection only after the next response, which says so: closing now
            // would race the client's next request.
            if !keep {
                return None;
            }
            if self.buf.is_empty() {
                // Nothing pipelined: hold no buffer while the connection idles.
                self.buf = Vec::new();
            }
        }
    }

    /// A record for the request whose head was just read.
    fn record(&mut self) -> Record {
        let now = Instant::now();
        let started = self.head_started.take().unwrap_or(now);
        let kind = match self.app.listener.protocol {
            crate::settings::Protocol::Http => Kind::Http,
            crate::settings::Protocol::Https => Kind::Https,
        };
        Record::new(kind, observe::wall_clock_before(started.elapsed()), now, 0)
    }

    /// Adds the bytes moved since the last request's to `rec`: those written, and
    /// those read and used (bytes still in `buf` belong to the next request).
    fn take_bytes(&mut self, rec: &mut Record) {
        let used = self.io.read.saturating_sub(self.buf.len() as u64);
        rec.rx += used.saturating_sub(self.counted.0);
        rec.tx += self.io.written.saturating_sub(self.counted.1);
        self.counted = (used.max(self.counted.0), self.io.written);
    }

    /// The request is over: its bytes, its counts and its log line.
    fn finish(&mut self, mut rec: Record) {
        self.take_bytes(&mut rec);
        rec.finish(&self.app.listener, &self.client);
    }

    /// Reads until `buf` holds a whole request head; returns its length. The header
    /// timeout runs from the head's first byte; before it, the idle timeout.
    async fn read_head(&mut self) -> Result<usize, Refused> {
        let idle = self.app.routing.load().idle_timeout;
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        self.head_started = started;
        let mut scanned = 0;
        loop {
            if !self.buf.is_empty() {
                if let Some(end) = parse::find_head_end(&self.buf, scanned) {
                    if parse::head_too_long(&self.buf[..end], parse::MAX_REQUEST_HEAD) {
                        return Err(Refused::Status(400));
                    }
                    return Ok(end);
                }
                if parse::head_too_long(&self.buf, parse::MAX_REQUEST_HEAD) {
                    return Err(Refused::Status(400));
                }
                scanned = self.buf.len();
            }
            let deadline = match started {
                Some(t) => t + self.app.client_header_timeout,
                None => Instant::now() + idle,
            };
            // Between requests a graceful stop ends the connection when the process
            // exits (src/shutdown.rs); a request that arrives first is served, with
            // `Connection: close`.
            let read = match self
                .timer
                .run(deadline, relay::read_into(&mut self.io, &mut self.buf))
                .await
            {
                Some(r) => r,
                // A head begun and not finished in time: ALB's 408; an idle
                // connection just closes.
                None if started.is_some() => return Err(Refused::Status(408)),
                None => return Err(Refused::Close),
            };
            match read {
                Ok(0) | Err(_) => return Err(Refused::Close),
                Ok(_) => {
                    if started.is_none() {
                        started = Some(Instant::now());
                        self.head_started = started;
                    }
                }
            }
        }
    }

    fn prepare(&self, len: usize) -> Result<Prepared, u16> {
        prepare(self.app, &self.buf[..len], &self.client)
    }

    /// Writes one of tether's own responses.
    async fn respond(
        &mut self,
        rec: &mut Record,
        resp: &LbResponse,
        head_only: bool,
        close: bool,
    ) -> std::io::Result<()> {
        rec.responded(&self.app.listener.stats, resp);
        let routing = self.app.routing.load();
        let listener = routing.headers(self.app.listener.index);
        let out = lb_response_bytes(resp, head_only, close || resp.close, listener);
        let idle = routing.idle_timeout;
        drop(routing);
        self.write_client(&out, true, idle)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client write failed"))
    }

    /// Writes to the client within the idle timeout; a client that reads nothing for
    /// that long is counted and its connection closed.
    async fn write_client(
        &mut self,
        bytes: &[u8],
        flush: bool,
        idle: Duration,
    ) -> Result<(), relay::WriteFailed> {
        let r = relay::write_all_within(&mut self.io, bytes, flush, &mut self.timer, idle).await;
        if let Err(relay::WriteFailed {
            timed_out: true, ..
        }) = r
        {
            self.app
                .listener
                .stats
                .stalled(Stall::ClientWrite, self.client.addr());
        }
        r
    }

    /// Writes to the target within the idle timeout (a target that reads nothing of
    /// a request for that long is counted).
    async fn write_target(
        &mut self,
        target: &mut TargetConn,
        bytes: &[u8],
        idle: Duration,
    ) -> Result<(), relay::WriteFailed> {
        let r = relay::write_all_within(target, bytes, false, &mut self.timer, idle).await;
        if let Err(relay::WriteFailed {
            timed_out: true, ..
        }) = r
        {
            self.app
                .listener
                .stats
                .stalled(Stall::TargetWrite, self.client.addr());
        }
        r
    }

    /// Forwards a request and relays its response; returns whether the client
    /// connection may carry another request.
    async fn forward(
        &mut self,
        mut ex: Box<Exchange>,
        upstream_head: Vec<u8>,
        p: Plan,
        rec: &mut Record,
    ) -> Next {
        let next = self.exchange(&mut ex, upstream_head, p, rec).await;
        rec.forwarded(&ex, self.app.listener.access_log.is_some());
        match next {
            Next::Upgraded(target) => {
                let kind = if rec.kind == Kind::Https {
                    Kind::Wss
                } else {
                    Kind::Ws
                };
                let mut record =
                    std::mem::replace(rec, Record::new(kind, rec.created, rec.received, 0));
                record.kind = kind;
                // The upgrade's own bytes so far; the relay's are added at its end.
                self.take_bytes(&mut record);
                let log = if self.app.listener.access_log.is_some() {
                    Some(Box::new((record, self.client.clone())))
                } else {
                    // Counted now; the relay's bytes are counted when it ends.
                    record.finish(&self.app.listener, &self.client);
                    None
                };
                Next::Tunnel(Box::new(Tunnel { target, ex, log }))
            }
            next => next,
        }
    }

    /// [`Conn::forward`]'s exchange with the target.
    async fn exchange(
        &mut self,
        ex: &mut Exchange,
        upstream_head: Vec<u8>,
        p: Plan,
        rec: &mut Record,
    ) -> Next {
        let mut keep = p.keep_alive && !p.close_after && !(p.http10 && p.upgrade);
        let idle = ex.idle_timeout();

        // The request bytes at hand: its head and whatever of its body came with it.
        let mut out = upstream_head;
        let mut body = BodyState::new(p.body);
        match body.take(&mut self.buf, &mut out) {
            Ok(()) => {}
            Err(()) => {
                let _ = self
                    .respond(rec, &LbResponse::error(400), false, true)
                    .await;
                return Next::Close;
            }
        }
        let replayable = body.is_done();

        // Connect (or reuse) and send, retrying as the core allows.
        let mut fresh_only = !Exchange::may_reuse(p.idempotent);
        let (mut target, head) = loop {
            let (mut target, reused) = match connect_target(ex, fresh_only).await {
                Ok(c) => c,
                Err(failure) => return self.fail(rec, failure, false).await,
            };
            if let Err(w) = self.write_target(&mut target, &out, idle).await {
                if w.timed_out {
                    return self.fail(rec, Failure::TargetTimeout, false).await;
                }
                // The target refused the bytes: it has closed the connection.
                let safe = w.written == 0 || p.idempotent;
                match ex.failed_before_response(reused, replayable, safe) {
                    Retry::No => return self.fail(rec, Failure::TargetClosed, false).await,
                    retry => {
                        fresh_only = retry == Retry::SameTarget;
                        continue;
                    }
                }
            }
            // Expect: 100-continue: the target's answer first, then the body.
            if !body.is_done() && !p.expect_continue {
                match self.upload(&mut target, &mut body, idle).await {
                    Ok(()) => {}
                    Err(UploadError::Client(f)) => return self.fail(rec, f, false).await,
                    // The target stopped reading: its response may say why.
                    Err(UploadError::Target) => keep = false,
                }
            }
            // Sent (the head alone when the target is to answer 100 first): the
            // target's time starts (ALB's target_processing_time).
            ex.request_sent();
            rec.dispatched = Some(Instant::now());
            let mut rbuf = Vec::new();
            match read_response_head(
                &mut target,
                &mut rbuf,
                &mut self.timer,
                idle,
                (&self.app.listener.stats, self.client.addr()),
            )
            .await
            {
                Ok(head) => break (target, (head, rbuf)),
                Err(f @ (Failure::TargetClosed | Failure::TargetReset)) if rbuf.is_empty() => {
                    // The whole request was written: sent again only if idempotent.
                    match ex.failed_before_response(reused, replayable, p.idempotent) {
                        Retry::No => return self.fail(rec, f, false).await,
                        retry => {
                            fresh_only = retry == Retry::SameTarget;
                            continue;
                        }
                    }
                }
                Err(f) => return self.fail(rec, f, false).await,
            }
        };
        let (mut head_len, mut rbuf) = head;
        let mut wrote_any = false;

        // Interim responses (100 Continue, 103 Early Hints) go to the client as they are.
        loop {
            let status = match response_status(&rbuf[..head_len]) {
                Some(s) => s,
                None => return self.fail(rec, Failure::BadResponse, wrote_any).await,
            };
            if !(100..200).contains(&status) || status == 101 {
                break;
            }
            // Relayed less its hop-by-hop lines; an HTTP/1.0 client gets none
            // (RFC 9110 §15.2).
            if !p.http10 {
                let Ok(interim) = interim_head(&rbuf[..head_len]) else {
                    return self.fail(rec, Failure::BadResponse, wrote_any).await;
                };
                if self.write_client(&interim, true, idle).await.is_err() {
                    return Next::Close;
                }
                wrote_any = true;
            }
            rbuf.drain(..head_len);
            if status == 100 && !body.is_done() {
                match self.upload(&mut target, &mut body, idle).await {
                    Ok(()) => {}
                    Err(UploadError::Client(f)) => return self.fail(rec, f, true).await,
                    Err(UploadError::Target) => keep = false,
                }
            }
            match parse::find_head_end(&rbuf, 0) {
                Some(end) => head_len = end,
                None => {
                    match read_response_head(
                        &mut target,
                        &mut rbuf,
                        &mut self.timer,
                        idle,
                        (&self.app.listener.stats, self.client.addr()),
                    )
                    .await
                    {
                        Ok(end) => head_len = end,
                        Err(f) => return self.fail(rec, f, true).await,
                    }
                }
            }
        }
        if !body.is_done() {
            // A final answer before the whole body (an early 4xx, or a refused
            // 100-continue): the rest of the body is not read; close after.
            keep = false;
        }

        let listener = self.app.listener.index;
        let resp = match response_head(
            ex,
            listener,
            &rbuf[..head_len],
            p.head_request,
            keep,
            p.http10,
        ) {
            Ok(r) => r,
            Err(()) => return self.fail(rec, Failure::BadResponse, wrote_any).await,
        };
        ex.response_started(resp.status);
        rec.answered = Some(Instant::now());
        keep &= resp.keep_client;
        let rest = rbuf.split_off(head_len);
        let mut client_head = resp.client_head;

        if resp.status == 101 {
            // Only a websocket that was asked for: any other switch would leave a
            // tunnel past every rule. The target connection is dropped, not pooled.
            if !p.upgrade || !resp.websocket {
                return self.fail(rec, Failure::BadResponse, wrote_any).await;
            }
            // The websocket: what either side sent early goes first, then the relay.
            client_head.extend_from_slice(&rest);
            if self.write_client(&client_head, true, idle).await.is_err() {
                return Next::Close;
            }
            if !self.buf.is_empty() {
                let early = std::mem::take(&mut self.buf);
                if self.write_target(&mut target, &early, idle).await.is_err() {
                    return Next::Close;
                }
            }
            return Next::Upgraded(target);
        }

        // The body, in the target's framing.
        let mut framing = ResponseBody::new(resp.framing);
        let (used, complete) = match framing.feed(&rest, ex) {
            Ok(x) => x,
            Err(()) => return self.fail(rec, Failure::BadResponse, wrote_any).await,
        };
        client_head.extend_from_slice(&rest[..used]);
        let mut target_reusable = resp.keep_target && used == rest.len() && !p.close_after;
        if self.write_client(&client_head, false, idle).await.is_err() {
            return Next::Close;
        }
        if !complete {
            match self.download(&mut target, &mut framing, ex, idle).await {
                Ok(clean) => target_reusable &= clean,
                Err(Failure::ClientClosed) => return Next::Close,
                // Part of the response is out: nothing to do but close.
                Err(_) => return Next::Close,
            }
        }
        if self.write_client(&[], true, idle).await.is_err() {
            return Next::Close;
        }
        if framing.framing == Framing::Close {
            keep = false;
        }
        if target_reusable && body.is_done() && resp.framing != Framing::Close {
            upstream::put(ex.addr(), target);
        }
        if !keep {
            relay::shutdown_within(&mut self.io, idle).await;
            return Next::Close;
        }
        Next::Request
    }

    /// Sends the rest of a request body from the client to the target.
    async fn upload(
        &mut self,
        target: &mut TargetConn,
        body: &mut BodyState,
        idle: Duration,
    ) -> Result<(), UploadError> {
        let mut chunk = Vec::new();
        while !body.is_done() {
            chunk.clear();
            let read = self
                .timer
                .run(
                    Instant::now() + idle,
                    relay::read_into(&mut self.io, &mut self.buf),
                )
                .await;
            match read {
                None => {
                    let stats = &self.app.listener.stats;
                    stats.stalled(Stall::ClientRead, self.client.addr());
                    return Err(UploadError::Client(Failure::ClientTimeout));
                }
                Some(Ok(0)) | Some(Err(_)) => {
                    return Err(UploadError::Client(Failure::ClientClosed))
                }
                Some(Ok(_)) => {}
            }
            if body.take(&mut self.buf, &mut chunk).is_err() {
                return Err(UploadError::Client(Failure::BadRequest));
            }
            match self.write_target(target, &chunk, idle).await {
                Ok(()) => {}
                Err(w) if w.timed_out => return Err(UploadError::Client(Failure::TargetTimeout)),
                Err(_) => return Err(UploadError::Target),
            }
        }
        Ok(())
    }

    /// Relays the rest of a response body; `Ok(true)` when it ended cleanly with
    /// nothing after it (the target connection may be reused).
    async fn download(
        &mut self,
        target: &mut TargetConn,
        framing: &mut ResponseBody,
        ex: &mut Exchange,
        idle: Duration,
    ) -> Result<bool, Failure> {
        let mut chunk = Vec::new();
        loop {
            chunk.clear();
            let read = self
                .timer
                .run(Instant::now() + idle, relay::read_into(target, &mut chunk))
                .await;
            let n = match read {
                None => {
                    let stats = &self.app.listener.stats;
                    stats.stalled(Stall::TargetRead, self.client.addr());
                    return Err(Failure::TargetTimeout);
                }
                Some(Err(_)) => return Err(Failure::TargetClosed),
                Some(Ok(n)) => n,
            };
            if n == 0 {
                return if framing.framing == Framing::Close {
                    Ok(false)
                } else {
                    Err(Failure::TargetClosed)
                };
            }
            let (used, complete) = framing
                .feed(&chunk, ex)
                .map_err(|()| Failure::BadResponse)?;
            if self
                .write_client(&chunk[..used], false, idle)
                .await
                .is_err()
            {
                return Err(Failure::ClientClosed);
            }
            if complete {
                return Ok(used == chunk.len());
            }
        }
    }

    /// Ends an exchange that failed: ALB's status to the client when nothing of the
    /// response was sent yet, then the connection is closed.
    async fn fail(&mut self, rec: &mut Record, failure: Failure, wrote_any: bool) -> Next {
        tracing::debug!("request failed: {failure:?}");
        rec.error_reason = Some(observe::error_reason(failure));
        if let (Some(status), false) = (failure.status(), wrote_any) {
            let _ = self
                .respond(rec, &LbResponse::error(status), false, true)
                .await;
        }
        let idle = self.app.routing.load().idle_timeout;
        relay::shutdown_within(&mut self.io, idle).await;
        Next::Close
    }
}

enum UploadError {
    Client(Failure),
    Target,
}

/// A request body on its way: how much is left, in its framing.
struct BodyState {
    framing: Framing,
    left: u64,
    chunks: chunked::Decoder,
    done: bool,
}

impl BodyState {
    fn new(framing: Framing) -> Self {
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

    fn is_done(&self) -> bool {
        self.done
    }

    /// Moves the body bytes at the front of `buf` to `out` (the bytes after the
    /// body stay in `buf`: the next request).
    fn take(&mut self, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), ()> {
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
                let n = self.chunks.feed(buf, |_| {}).map_err(|_| ())?;
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

/// A response body on its way to the client.
struct ResponseBody {
    framing: Framing,
    left: u64,
    chunks: chunked::Decoder,
}

impl ResponseBody {
    fn new(framing: Framing) -> Self {
        ResponseBody {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: chunked::Decoder::default(),
        }
    }

    /// How many of `bytes` belong to the body, and whether it is complete; the
    /// exchange sees the decoded data when it wants it.
    fn feed(&mut self, bytes: &[u8], ex: &mut Exchange) -> Result<(usize, bool), ()> {
        let wants = ex.wants_response_body();
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::Length(_) => {
                let n = (bytes.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                if wants {
                    ex.response_body(&bytes[..n], self.left == 0);
                }
                Ok((n, self.left == 0))
            }
            Framing::Chunked => {
                let n = if wants {
                    let mut data = Vec::new();
                    let n = self
                        .chunks
                        .feed(bytes, |d| data.extend_from_slice(d))
                        .map_err(|_| ())?;
                    ex.response_body(&data, self.chunks.is_done());
                    n
                } else {
                    self.chunks.feed(bytes, |_| {}).map_err(|_| ())?
                };
                Ok((n, self.chunks.is_done()))
            }
            Framing::Close => {
                if wants {
                    ex.response_body(bytes, bytes.is_empty());
                }
                Ok((bytes.len(), false))
            }
        }
    }
}

/// Reads a response head into `buf`; returns its length. The target may be silent
/// for `idle` between reads.
pub(crate) async fn read_response_head<T>(
    target: &mut T,
    buf: &mut Vec<u8>,
    timer: &mut relay::Timer,
    idle: Duration,
    (stats, client): (&ListenerStats, Option<std::net::SocketAddr>),
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
pub(crate) fn response_status(head: &[u8]) -> Option<u16> {
    let line_end = memchr::memchr(b'\n', head)?;
    let line = &head[..line_end];
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
) -> Result<ResponseHead, ()> {
    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; parse::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, head, &mut lines)
    {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(()),
    }
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(());
    };
    let headers = Headers(resp.headers);
    let scan = parse::scan_response(status, head_request, headers).map_err(|_| ())?;
    let framing = scan.framing;
    let target_close = scan.close || (version == 0 && !scan.keep_alive);
    let keep_client = keep_client && framing != Framing::Close;
    let te = scan.transfer_encoding;
    let upgrade = status == 101;
    let listener = ex.routing.headers(listener);
    let replaces = !listener.is_noop();

    let mut out = Vec::with_capacity(head.len() + 256);
    out.extend_from_slice(b"HTTP/1.1 ");
    let line_end = memchr::memchr(b'\n', head).ok_or(())?;
    let status_rest = head[..line_end + 1]
        .splitn(2, |b| *b == b' ')
        .nth(1)
        .ok_or(())?;
    out.extend_from_slice(status_rest);
    if !status_rest.ends_with(b"\r\n") {
        out.pop();
        out.extend_from_slice(b"\r\n");
    }
    for h in headers.iter() {
        let name = h.name;
        let upgrade_line = upgrade && name.eq_ignore_ascii_case("upgrade");
        let skip = (!upgrade_line && (parse::is_hop_by_hop(name) || scan.named.contains(name)))
            || (te && name.eq_ignore_ascii_case("content-length"))
            || (replaces && listener.replaces(name));
        if !skip {
            parse::copy_line(&mut out, head, h);
        }
    }
    if !(100..200).contains(&status) || upgrade {
        ex.write_cookies(
            headers.get_all("set-cookie"),
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
        keep_target: !target_close,
        keep_client,
        websocket: scan.upgrade_websocket,
    })
}

/// An interim (1xx) response head as it goes to an HTTP/1.1 client: the status line
/// and the target's lines less hop-by-hop ones.
pub(crate) fn interim_head(head: &[u8]) -> Result<Vec<u8>, ()> {
    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; parse::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, head, &mut lines)
    {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(()),
    }
    let status = resp.code.ok_or(())?;
    let headers = Headers(resp.headers);
    let scan = parse::scan_response(status, false, headers).map_err(|_| ())?;
    let mut out = Vec::with_capacity(head.len());
    out.extend_from_slice(
        format!("HTTP/1.1 {status} {}\r\n", resp.reason.unwrap_or("")).as_bytes(),
    );
    for h in headers.iter() {
        if !(parse::is_hop_by_hop(h.name) || scan.named.contains(h.name)) {
            parse::copy_line(&mut out, head, h);
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
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

/// What the access log can say of a refused head (a desync rejection, a bad Host):
/// its request line and desync class, when it parses at all.
fn refused_detail(app: &Http1App, head: &[u8]) -> Option<Box<Detail>> {
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

/// Lets the HTTP/2 engine reach targets the same way.
pub(crate) use relay::read_into;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_should_keep_the_connection_state_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(client));
        let config = crate::config::Config::parse(
            "[[listener]]\nport = 1\ndefault_action = { forward = \"g\" }\n[target_group.g]\ntargets = [\"127.0.0.1:2\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let app = Arc::new(Http1App {
            listener: ListenerInfo::new(0, 1, crate::settings::Protocol::Http),
            routing: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::routing::Routing::build(&config, None, &Default::default()),
            )),
            client_header_timeout: Duration::from_secs(60),
            desync: DesyncMode::default(),
            tls13_only: false,
        });
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let mut conn = Conn {
            app: &app,
            io: Counted::new(stream),
            counted: (0, 0),
            head_started: None,
            buf: Vec::new(),
            client: ClientConn::default(),
            keep_alive_until: Instant::now(),
            shutdown: rx,
            timer: relay::Timer::default(),
        };
        // Every client connection's task holds this state for its whole life, idle
        // keep-alive connections and websockets included (debug builds are larger
        // than release ones, so the bound holds for both).
        let run = conn.run();
        eprintln!("connection future: {} bytes", std::mem::size_of_val(&run));
        assert!(std::mem::size_of_val(&run) <= 2048);
        let (mut a, mut b) = (tokio::io::empty(), tokio::io::empty());
        let mut timer = relay::Timer::default();
        let tunnel = relay::tunnel(
            &mut a,
            &mut b,
            Duration::from_secs(1),
            &mut timer,
            tokio::sync::watch::channel(false).1,
        );
        eprintln!("tunnel future: {} bytes", std::mem::size_of_val(&tunnel));
        assert!(std::mem::size_of_val(&tunnel) <= 1024);
    }
}
