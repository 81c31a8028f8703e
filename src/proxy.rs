//! The pingora `ProxyHttp` implementation: glue between pingora's hooks and tether's
//! modules (rules, target groups, forwarded headers). Logic lives in those modules.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::{ErrorSource, ErrorType};

use crate::config::{Protocol, StickinessKind};
use crate::forwarded;
use crate::routing::{Routing, SharedRouting};
use crate::rules::{Action, Forward, RedirectInput, RequestInfo};
use crate::socketio;
use crate::sticky::{self, CookieFlags, KeyRing, Pin, Purpose};
use crate::target_group::{Outstanding, PickedBy, PinHints, Target, TargetGroup};
use crate::websocket::{self, FrameTracker};

/// One listener's proxy logic.
pub struct Proxy {
    listener: usize,
    port: u16,
    protocol: Protocol,
    routing: SharedRouting,
    /// `X-Forwarded-Port` and `-Proto` values, made once.
    forwarded_port: http::HeaderValue,
    forwarded_proto: http::HeaderValue,
    /// The listener's policy allows TLS 1.3 only.
    tls13_only: bool,
}

impl Proxy {
    pub fn new(
        listener: usize,
        addr: SocketAddr,
        protocol: Protocol,
        tls13_only: bool,
        routing: SharedRouting,
    ) -> Self {
        Proxy {
            listener,
            port: addr.port(),
            protocol,
            routing,
            forwarded_port: http::HeaderValue::from(addr.port()),
            forwarded_proto: http::HeaderValue::from_static(match protocol {
                Protocol::Http => "http",
                Protocol::Https => "https",
            }),
            tls13_only,
        }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    /// The routing snapshot this request uses from start to end.
    routing: Option<Arc<Routing>>,
    group: Option<Arc<TargetGroup>>,
    /// Counts the request on its target until the context is dropped (websockets
    /// included: the request lives as long as the tunnel).
    outstanding: Option<Outstanding>,
    /// Set `AWSALBTG` for the chosen group (weighted forward with group stickiness).
    group_sticky: bool,
    /// The request carried the application's own cookie (app_cookie stickiness).
    has_app_cookie: bool,
    /// Collecting a Socket.IO handshake response to learn its sid.
    open_packet: Option<Vec<u8>>,
    /// The sid of a websocket upgrade: forgotten when the websocket ends.
    upgrade_sid: Option<String>,
    /// A target that failed this request, avoided by its one retry.
    failed: Option<SocketAddr>,
    /// Server-to-client frame boundaries of an upgraded websocket.
    frames: Option<FrameTracker>,
    /// Closes the upstream side of a websocket when its target's drain ends.
    closer: Option<Closer>,
    /// The request's `AWSALB` was sealed by the sealing key in this second for this
    /// target: (target, second). A response to that target in the same second sends
    /// the same value back instead of sealing the same pin again.
    resend_cookie: Option<(SocketAddr, u64)>,
}

/// Shuts a websocket's upstream socket down when its target's deregistration delay
/// ends, so that the tunnel ends (and the client gets a Close frame); aborted when
/// the request ends first.
struct Closer {
    task: tokio::task::JoinHandle<()>,
    target: Arc<Target>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Duplicates the upstream socket pingora hands to `connected_to_upstream`, so that
/// tether owns a descriptor of its own for the connection's whole life.
#[allow(unsafe_code)]
fn own_socket(fd: std::os::fd::RawFd) -> Option<std::net::TcpStream> {
    // SAFETY: pingora passes `fd` to `connected_to_upstream` while it holds the open
    // connection, so the descriptor is valid for this call; it is only borrowed here
    // to duplicate it into a descriptor tether owns (and closes on drop).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from)
}

/// Pool key of websocket upgrades: upgraded connections never return to the pool,
/// so nothing pooled ever matches it.
const UPGRADE_POOL_KEY: u64 = 0x7765_6273_6f63_6b65;

/// How long an idle pooled connection to a target is kept.
const UPSTREAM_IDLE: Duration = Duration::from_secs(4);

/// Longest handshake body prefix read for the Engine.IO open packet.
const OPEN_PACKET_MAX: usize = 4096;

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The group an `AWSALBTG` cookie pins the client to, if valid for this forward.
fn pinned_group<'a>(
    headers: &http::HeaderMap,
    forward: &'a Forward,
    keys: &KeyRing,
    duration: Duration,
) -> Option<&'a Arc<TargetGroup>> {
    let cookies = headers.get_all(header::COOKIE);
    let value = sticky::request_cookie_or(cookies.iter(), sticky::AWSALBTG, sticky::AWSALBTGCORS)?;
    let pin = keys.open(Purpose::TargetGroup, value)?;
    if !pin.is_fresh(sticky::unix_now(SystemTime::now()), duration) {
        return None;
    }
    forward
        .groups
        .iter()
        .find(|g| g.weight > 0 && g.group.name == pin.group)
        .map(|g| &g.group)
}

/// The group's CA list in pingora's form, parsed once and kept in the group.
fn upstream_ca(group: &TargetGroup) -> Option<Arc<pingora::protocols::tls::CaType>> {
    let ders = group.upstream_tls.as_ref()?.ca.as_ref()?;
    let cached = group.engine_cache.get_or_init(|| {
        let list: Vec<WrappedX509> = ders
            .iter()
            .map(|der| WrappedX509::new(der.clone(), parse_x509))
            .collect();
        let ca: Arc<pingora::protocols::tls::CaType> = Arc::from(list);
        Arc::new(ca)
    });
    cached
        .downcast_ref::<Arc<pingora::protocols::tls::CaType>>()
        .cloned()
}

/// Sets a sealed pin cookie and, for browsers' credentialed cross-origin requests, its
/// CORS twin with the same value (`SameSite=None; Secure`).
fn set_pin_cookies(
    resp: &mut ResponseHeader,
    (name, cors_name): (&str, Option<&str>),
    value: &str,
    expires: &str,
    flags: CookieFlags,
) -> Result<()> {
    resp.append_header(
        header::SET_COOKIE,
        sticky::set_cookie(name, value, expires, flags),
    )?;
    if let Some(cors_name) = cors_name {
        let cors = CookieFlags {
            cross_site: true,
            ..flags
        };
        resp.append_header(
            header::SET_COOKIE,
            sticky::set_cookie(cors_name, value, expires, cors),
        )?;
    }
    Ok(())
}

/// The request's `AWSALB` value, or its CORS twin's.
fn lb_cookie(req: &RequestHeader) -> Option<&str> {
    let cookies = req.headers.get_all(header::COOKIE);
    sticky::request_cookie_or(cookies.iter(), sticky::AWSALB, sticky::AWSALBCORS)
}

/// What the request carries that may pin it, read only when the group can use it.
fn pin_hints<'a>(req: &'a RequestHeader, group: &TargetGroup) -> PinHints<'a> {
    let mut hints = PinHints::default();
    if let Some(st) = &group.stickiness {
        let cookies = req.headers.get_all(header::COOKIE);
        match &st.kind {
            StickinessKind::LbCookie => hints.lb_cookie = lb_cookie(req),
            StickinessKind::AppCookie { cookie_name } => {
                hints.has_app_cookie =
                    sticky::request_cookie(cookies.iter(), cookie_name).is_some();
                hints.app_pin = sticky::request_cookie(cookies.iter(), sticky::AWSALBAPP);
            }
        }
    }
    if group.socketio.is_some() {
        hints.sid = socketio::sid_param(req.uri.query());
    }
    hints
}

/// A response made by the load balancer itself: current `Date`, no engine
/// placeholders.
fn lb_response(status: u16, content_type: &str, body_len: usize) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header(header::SERVER, "tether")?;
    resp.insert_header(
        header::DATE,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )?;
    resp.insert_header(header::CONTENT_TYPE, content_type)?;
    resp.insert_header(header::CONTENT_LENGTH, body_len.to_string())?;
    Ok(resp)
}

/// ALB-style HTML error page.
fn error_page(status: u16) -> Bytes {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or(match status {
            460 => "Client Closed Request",
            463 => "Too Many Forwarded Addresses",
            _ => "Error",
        });
    Bytes::from(format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    ))
}

async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: Option<(header::HeaderName, String)>,
) -> Result<()> {
    let mut resp = lb_response(status, content_type, body.len())?;
    if let Some((name, value)) = extra {
        resp.insert_header(name, value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), body.is_empty() || head_only)
        .await?;
    if !body.is_empty() && !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Ends the request with an LB error and closes the connection.
async fn reject(session: &mut Session, status: u16) -> Result<bool> {
    session.set_keepalive(None);
    respond(session, status, "text/html", error_page(status), None).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // No response compression module: tether passes bodies through untouched.
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The certificate resolver refuses hellos without TLS 1.3 suites; a client
        // that offered them but still settled on TLS 1.2 is closed here, unserved.
        if self.tls13_only {
            let version = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .map(|d| d.version.clone());
            // rustls names it "TLSv1_3"; OpenSSL-style "TLSv1.3" too, to be safe.
            if !matches!(version.as_deref(), Some("TLSv1_3" | "TLSv1.3")) {
                session.set_keepalive(None);
                let mut e = Error::explain(
                    ErrorType::ConnectionClosed,
                    "TLS 1.3-only listener: the client negotiated an older version",
                );
                // A downstream close: nothing is written back.
                e.as_down();
                return Err(e);
            }
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let routing = self.routing.load_full();
        // ALB idle timeout: a client silent this long (between requests, in a body, or
        // on a websocket) is closed.
        session.set_read_timeout(Some(routing.idle_timeout));
        session.set_keepalive(Some(routing.idle_timeout.as_secs()));

        let req = session.req_header();
        if req.method == http::Method::TRACE {
            return reject(session, 405).await;
        }
        if forwarded::forwarded_for_count(req.headers.get_all(&forwarded::X_FORWARDED_FOR).iter())
            > forwarded::MAX_FORWARDED_FOR
        {
            return reject(session, 463).await;
        }

        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let info = RequestInfo {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query(),
            host,
            headers: &req.headers,
            source_ip: client_ip(session),
        };
        let Some(rules) = routing.listeners.get(self.listener) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "listener has no rules",
            ));
        };
        let (action, _priority) = rules.evaluate(&info);
        match action {
            Action::Forward(forward) => {
                let group = match forward.stickiness {
                    Some(duration) if forward.groups.len() > 1 => {
                        ctx.group_sticky = true;
                        pinned_group(&req.headers, forward, &routing.keys, duration)
                            .unwrap_or_else(|| forward.pick())
                    }
                    _ => forward.pick(),
                };
                ctx.group = Some(group.clone());
                ctx.routing = Some(routing.clone());
                Ok(false)
            }
            Action::FixedResponse(fixed) => {
                let body = Bytes::from(fixed.body.clone());
                respond(session, fixed.status, &fixed.content_type, body, None).await?;
                Ok(true)
            }
            Action::Redirect(redirect) => {
                let location = redirect.location(&RedirectInput {
                    protocol: self.protocol.as_str(),
                    host: info.host.unwrap_or(""),
                    port: self.port,
                    path: info.path,
                    query: info.query.unwrap_or(""),
                });
                let status = redirect.status;
                let body = error_page(status);
                respond(
                    session,
                    status,
                    "text/html",
                    body,
                    Some((header::LOCATION, location)),
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(group), Some(routing)) = (ctx.group.as_ref(), ctx.routing.as_ref()) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no target group chosen",
            ));
        };
        let req = session.req_header();
        let hints = pin_hints(req, group);
        ctx.has_app_cookie = hints.has_app_cookie;
        let now = SystemTime::now();
        let Some((target, picked_by)) = group.pick(&hints, &routing.keys, now, None) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("target group {} has no registered targets", group.name),
            ));
        };
        if picked_by == (PickedBy::Cookie { current: true }) {
            ctx.resend_cookie = Some((target.addr, sticky::unix_now(now)));
        }
        if let Some(sio) = &group.socketio {
            let (path, query) = (req.uri.path(), req.uri.query());
            if socketio::is_polling_handshake(path, query, &sio.path) {
                ctx.open_packet = Some(Vec::new());
            } else if session.is_upgrade_req() {
                ctx.upgrade_sid = hints.sid.map(str::to_string);
            }
        }
        let mut peer = match &group.upstream_tls {
            None => HttpPeer::new(target.addr, false, String::new()),
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| target.addr.ip().to_string());
                let mut peer = HttpPeer::new(target.addr, true, name);
                peer.options.ca = upstream_ca(group);
                peer
            }
        };
        if session.is_upgrade_req() {
            // A websocket on a reused pooled connection loses its tunnel right after
            // the 101 (pingora 0.9 ends the upgraded body at once); a pool key no
            // pooled connection has gives it a fresh connection every time.
            peer.group_key = UPGRADE_POOL_KEY;
        }
        let idle = routing.idle_timeout;
        peer.options.connection_timeout = Some(group.connect_timeout);
        // Drop pooled connections before the target would: Node.js closes idle
        // keep-alive connections after 5 s, and reusing one it closed fails.
        peer.options.idle_timeout = Some(UPSTREAM_IDLE);
        peer.options.read_timeout = Some(idle);
        peer.options.write_timeout = Some(idle);
        ctx.outstanding = Some(Outstanding::new(target.clone()));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        forwarded::rewrite_request(
            upstream,
            client_ip(session),
            &self.forwarded_proto,
            &self.forwarded_port,
        )
    }

    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Websockets may outlive a target's deregistration delay: be ready to end them.
        if !session.is_upgrade_req() {
            return Ok(());
        }
        let Some(target) = ctx.outstanding.as_ref().map(|o| o.target().clone()) else {
            return Ok(());
        };
        if let Some(socket) = own_socket(fd) {
            let mut closing = target.closing();
            let task = tokio::spawn(async move {
                if closing.wait_for(|c| *c).await.is_ok() {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            });
            ctx.closer = Some(Closer { task, target });
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent: any method may go to another target, once.
        if let Some(out) = ctx.outstanding.take() {
            let target = out.target().clone();
            if let Some(group) = ctx.group.as_ref() {
                target.mark_failure(&group.lifecycle.passive);
                if group.lifecycle.passive.enabled
                    && ctx.failed.is_none()
                    && group.has_alternative(target.addr)
                {
                    ctx.failed = Some(target.addr);
                    e.set_retry(true);
                    return e;
                }
            }
        }
        e.set_retry(false);
        e.more_context(format!("Peer: {peer}"))
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let reset = matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        ) && e.esource() == &ErrorSource::Upstream;
        let group = ctx.group.clone();
        let passive = group.as_ref().map(|g| g.lifecycle.passive);
        let target = ctx.outstanding.as_ref().map(|o| o.target().clone());
        // A stale pooled connection (closed by the target while idle) says nothing
        // about the target's health.
        if reset && !client_reused {
            if let (Some(t), Some(p)) = (&target, &passive) {
                t.mark_failure(p);
            }
        }
        let safe = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        if safe && client_reused {
            // A pooled connection the target had already closed: pingora's own rule,
            // try again (the pick is the same: a sticky client stays on its target).
            e.retry.decide_reuse(client_reused);
        } else if reset && safe && ctx.failed.is_none() && passive.is_some_and(|p| p.enabled) {
            // A fresh connection reset by the target: once more, elsewhere, when it is
            // safe (an idempotent method, a request body still buffered whole, nothing
            // sent to the client yet).
            let elsewhere = match (&group, &target) {
                (Some(g), Some(t)) => g.has_alternative(t.addr),
                _ => false,
            };
            if let (true, Some(t)) = (elsewhere, &target) {
                ctx.failed = Some(t.addr);
                ctx.outstanding = None;
            }
            e.set_retry(elsewhere);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(out) = ctx.outstanding.as_mut() {
            out.target().mark_success();
            if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
                out.upgraded();
                ctx.frames = Some(FrameTracker::default());
            }
        }
        let (Some(group), Some(routing)) = (ctx.group.as_ref(), ctx.routing.as_ref()) else {
            return Ok(());
        };
        let now = SystemTime::now();
        let issued = sticky::unix_now(now);
        let expires = sticky::expires(now);
        if let (Some(st), Some(out)) = (&group.stickiness, &ctx.outstanding) {
            // Built only when a cookie is sealed: a re-sent one needs no pin.
            let pin = || Pin {
                group: group.name.clone(),
                target: Some(out.target().addr),
                issued,
            };
            let flags = CookieFlags {
                secure: st.secure,
                http_only: st.http_only,
                cross_site: false,
            };
            match &st.kind {
                StickinessKind::LbCookie => {
                    let names = (sticky::AWSALB, Some(sticky::AWSALBCORS));
                    let resend = (ctx.resend_cookie == Some((out.target().addr, issued)))
                        .then(|| lb_cookie(session.req_header()))
                        .flatten();
                    match resend {
                        Some(value) => set_pin_cookies(resp, names, value, &expires, flags)?,
                        None => {
                            let value = routing.keys.seal(Purpose::LbCookie, &pin());
                            set_pin_cookies(resp, names, &value, &expires, flags)?;
                        }
                    }
                }
                StickinessKind::AppCookie { cookie_name } => {
                    let app_session = ctx.has_app_cookie
                        || resp
                            .headers
                            .get_all(header::SET_COOKIE)
                            .iter()
                            .any(|v| sticky::sets_cookie(v, cookie_name));
                    if app_session {
                        let value = routing.keys.seal(Purpose::AppCookie, &pin());
                        set_pin_cookies(resp, (sticky::AWSALBAPP, None), &value, &expires, flags)?;
                    }
                }
            }
        }
        if ctx.group_sticky {
            let pin = Pin {
                group: group.name.clone(),
                target: None,
                issued,
            };
            let value = routing.keys.seal(Purpose::TargetGroup, &pin);
            let names = (sticky::AWSALBTG, Some(sticky::AWSALBTGCORS));
            set_pin_cookies(resp, names, &value, &expires, CookieFlags::default())?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(frames) = ctx.frames.as_mut() {
            if let Some(b) = body.as_ref() {
                frames.feed(b);
            }
            // The target's drain ended the tunnel: say goodbye between two frames so
            // that clients (Socket.IO) reconnect at once.
            let drained = || {
                ctx.closer
                    .as_ref()
                    .is_some_and(|c| *c.target.closing().borrow())
            };
            if end_of_stream && frames.at_boundary() && drained() {
                let mut out = body.take().map(|b| b.to_vec()).unwrap_or_default();
                out.extend_from_slice(&websocket::CLOSE_GOING_AWAY);
                *body = Some(Bytes::from(out));
                ctx.frames = None;
            }
        }
        if let Some(buf) = ctx.open_packet.as_mut() {
            if let Some(b) = body {
                let room = OPEN_PACKET_MAX.saturating_sub(buf.len());
                buf.extend_from_slice(&b[..b.len().min(room)]);
            }
            if let Some(open) = socketio::parse_open_packet(buf) {
                let sessions = ctx.group.as_ref().and_then(|g| g.socketio.as_ref());
                if let (Some(sio), Some(out)) = (sessions, &ctx.outstanding) {
                    sio.sessions
                        .insert(&open.sid, out.target().addr, open.idle, Instant::now());
                }
                ctx.open_packet = None;
            } else if end_of_stream || buf.len() >= OPEN_PACKET_MAX {
                ctx.open_packet = None;
            }
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // A Socket.IO session whose websocket has ended is over.
        if let Some(sid) = ctx.upgrade_sid.take() {
            let upgraded = session.response_written().is_some_and(|r| r.status == 101);
            let sessions = ctx.group.as_ref().and_then(|g| g.socketio.as_ref());
            if let (true, Some(sio)) = (upgraded, sessions) {
                sio.sessions.remove(&sid);
            }
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            (ErrorType::ConnectTimedout, _) => 504,
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => 504,
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => 408,
            (_, ErrorSource::Upstream) => 502,
            (
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => 0, // the client is gone (ALB logs 460)
            (_, ErrorSource::Downstream) => 400,
            (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
        };
        if code > 0 {
            session.set_keepalive(None);
            let already = session
                .response_written()
                .is_some_and(|r| !r.status.is_informational() || r.status == 101);
            if !already {
                if let Err(err) = respond(session, code, "text/html", error_page(code), None).await
                {
                    tracing::debug!("cannot send {code} to the client: {err}");
                }
            }
        }
        FailToProxy {
            error_code: if code == 0 { 460 } else { code },
            can_reuse_downstream: false,
        }
    }
}
