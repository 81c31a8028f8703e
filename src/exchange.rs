//! The engine-neutral core of one request: every decision tether makes about it, as
//! plain functions over what the engines parsed. The HTTP/1 and HTTP/2 engines call
//! these; nothing here reads or writes a socket.
//!
//! - [`decide`]: 405 for TRACE and CONNECT, 463 for long `X-Forwarded-For` chains, the listener's
//!   rules, a fixed response or redirect, a `jwt_validation`'s 401, or the group and target of a forward
//!   (group stickiness, target stickiness, Socket.IO sid, health, slow start) with
//!   the URL and Host the rule's transforms rewrite (500 when a rewrite fails).
//! - [`Exchange`]: a forward in flight: its target (counted outstanding), the retry
//!   policy after a failure, the cookies its response sets, the Socket.IO sid it
//!   learns from a handshake, and the drain signal that ends its websocket.
//! - [`Failure::status`]: the ALB status for what went wrong.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::access_log::ActionKind;
use crate::headers::Headers;
use crate::jwt::Rejection;
pub use crate::listener::ListenerInfo;
use crate::routing::Routing;
use crate::rules::{Action, Forward, RedirectInput, RequestInfo};
use crate::settings::{StickinessKind, UpstreamTls};
use crate::shared_state::{Lookup, SharedPin};
use crate::socketio;
use crate::stats::ListenerStats;
use crate::sticky::{self, CookieFlags, KeyRing, Pin, Purpose};
use crate::target_group::{Outstanding, PickedBy, PinHints, Target, TargetGroup};
use crate::transform::Rewritten;

/// What the core looks at in a request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Host` header (or the authority of an absolute-form target, or `:authority`).
    pub host: Option<&'a str>,
    pub headers: Headers<'a>,
    /// A websocket (or other) upgrade request.
    pub upgrade: bool,
    /// The socket peer.
    pub client_ip: Option<IpAddr>,
}

/// A response tether makes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// Close the client connection after it (errors do; fixed responses and
    /// redirects keep it).
    pub close: bool,
    /// The action that made it (none for an error).
    pub action: Option<ActionKind>,
    /// The priority of the rule that matched (0: the default action).
    pub rule_priority: Option<u32>,
    /// `WWW-Authenticate` of a 401 from a `jwt_validation` action.
    pub www_authenticate: Option<&'static str>,
}

impl LbResponse {
    /// ALB's HTML error page for `status`; the connection is closed after it.
    pub fn error(status: u16) -> LbResponse {
        LbResponse {
            status,
            content_type: "text/html".to_string(),
            body: error_page(status),
            location: None,
            close: true,
            action: None,
            rule_priority: None,
            www_authenticate: None,
        }
    }

    /// A `jwt_validation` action's 401 for `rejection`: ALB's error page with the
    /// RFC 6750 challenge. The connection stays open: the client may try again
    /// with a token.
    pub fn unauthorized(rejection: Rejection, rule_priority: Option<u32>) -> LbResponse {
        LbResponse {
            close: false,
            action: Some(ActionKind::JwtValidation),
            rule_priority,
            www_authenticate: Some(rejection.www_authenticate()),
            ..LbResponse::error(401)
        }
    }
}

/// The reason phrase of a status, ALB's own codes included.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or(match status {
            460 => "Client Closed Request",
            463 => "Too Many Forwarded Addresses",
            _ => "Error",
        })
}

/// ALB-style HTML error page.
pub fn error_page(status: u16) -> Bytes {
    let reason = reason(status);
    Bytes::from(format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    ))
}

/// How an attempt to send a request went, when it failed before any response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The connection came from the pool.
    pub reused: bool,
    /// The whole request is still at hand (nothing streamed from the client is lost).
    pub replayable: bool,
    /// Sending it again cannot repeat an effect: no byte of it was written, or its
    /// method is idempotent (RFC 9110 §9.2.2).
    pub safe: bool,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    Respond(LbResponse),
    Forward(Box<Exchange>),
}

/// Decides a request: an answer of tether's own, or a forward to a target.
pub fn decide(routing: &Arc<Routing>, listener: &ListenerInfo, req: &RequestHead<'_>) -> Decision {
    ListenerStats::add(&listener.stats.requests, 1);
    // TRACE as ALB; CONNECT too: tether tunnels websockets only, and a target
    // would take what follows a CONNECT as tunnel data.
    if req.method == "TRACE" || req.method == "CONNECT" {
        return Decision::Respond(LbResponse::error(405));
    }
    let xff = req.headers.get_all(crate::forwarded::X_FORWARDED_FOR);
    if crate::forwarded::forwarded_for_count(xff) > crate::forwarded::MAX_FORWARDED_FOR {
        return Decision::Respond(LbResponse::error(463));
    }
    let info = RequestInfo {
        method: req.method,
        path: req.path,
        query: req.query,
        host: req.host,
        headers: req.headers,
        source_ip: req.client_ip,
    };
    let Some(rules) = routing.listeners.get(listener.index) else {
        return Decision::Respond(LbResponse::error(500));
    };
    let (action, rule) = rules.evaluate(&info);
    let rule_priority = Some(rule.map_or(0, |r| r.priority));
    match action {
        Action::Forward(forward) => {
            // ALB's `jwt-validation` runs before the forward: a token that fails
            // stops the request here, before any group or target is chosen.
            if let Some(jwt) = &forward.jwt_validation {
                let authorization = req.headers.get_all("authorization");
                if let Err(rejection) = jwt.check(authorization, SystemTime::now()) {
                    return Decision::Respond(LbResponse::unauthorized(rejection, rule_priority));
                }
            }
            // Transforms rewrite what the target sees, after the routing decision.
            let rewritten = match rule.map(|r| &r.transforms).filter(|t| !t.is_empty()) {
                Some(transforms) => match transforms.apply(req.path, req.query, req.host) {
                    Ok(rewritten) => rewritten,
                    Err(e) => {
                        tracing::debug!("transform failed: {e}");
                        return Decision::Respond(LbResponse::error(500));
                    }
                },
                None => Rewritten::default(),
            };
            let (group, group_sticky) = match forward.stickiness {
                Some(duration) if forward.groups.len() > 1 => (
                    pinned_group(req.headers, forward, &routing.keys, duration)
                        .unwrap_or_else(|| forward.pick()),
                    true,
                ),
                _ => (forward.pick(), false),
            };
            match Exchange::start(routing.clone(), group.clone(), group_sticky, req) {
                Some(mut exchange) => {
                    exchange.rewritten = rewritten;
                    exchange.rule_priority = rule_priority;
                    exchange.jwt_validated = forward.jwt_validation.is_some();
                    if exchange.non_sticky {
                        ListenerStats::add(&listener.stats.non_sticky, 1);
                    }
                    Decision::Forward(Box::new(exchange))
                }
                None => Decision::Respond(LbResponse {
                    // A forward to a group with no target to take it.
                    action: Some(if forward.jwt_validation.is_some() {
                        ActionKind::JwtValidationForward
                    } else {
                        ActionKind::Forward
                    }),
                    rule_priority,
                    ..LbResponse::error(503)
                }),
            }
        }
        Action::FixedResponse(fixed) => {
            ListenerStats::add(&listener.stats.fixed_responses, 1);
            Decision::Respond(LbResponse {
                status: fixed.status,
                content_type: fixed.content_type.clone(),
                body: Bytes::from(fixed.body.clone()),
                location: None,
                close: false,
                action: Some(ActionKind::FixedResponse),
                rule_priority,
                www_authenticate: None,
            })
        }
        Action::Redirect(redirect) => {
            ListenerStats::add(&listener.stats.redirects, 1);
            let location = redirect.location(&RedirectInput {
                protocol: listener.protocol.as_str(),
                host: req.host.unwrap_or(""),
                port: listener.port,
                path: req.path,
                query: req.query.unwrap_or(""),
            });
            Decision::Respond(LbResponse {
                status: redirect.status,
                content_type: "text/html".to_string(),
                body: error_page(redirect.status),
                location: Some(location),
                close: false,
                action: Some(ActionKind::Redirect),
                rule_priority,
                www_authenticate: None,
            })
        }
    }
}

/// The group an `AWSALBTG` cookie pins the client to, if valid for this forward.
/// A group whose weight went to 0 still takes the clients pinned to it until their
/// pins expire: that is how a blue/green shift lets sessions finish on blue.
fn pinned_group<'a>(
    headers: Headers<'_>,
    forward: &'a Forward,
    keys: &KeyRing,
    duration: Duration,
) -> Option<&'a Arc<TargetGroup>> {
    let cookies = headers.get_all("cookie");
    let value = sticky::request_cookie_or(cookies, sticky::AWSALBTG, sticky::AWSALBTGCORS)?;
    let pin = keys.open(Purpose::TargetGroup, value)?;
    if !pin.is_fresh(sticky::unix_now(SystemTime::now()), duration) {
        return None;
    }
    forward
        .groups
        .iter()
        .find(|g| g.group.name == pin.group)
        .map(|g| &g.group)
}

/// The request's `AWSALB` value, or its CORS twin's.
fn lb_cookie<'a>(headers: Headers<'a>) -> Option<&'a str> {
    sticky::request_cookie_or(
        headers.get_all("cookie"),
        sticky::AWSALB,
        sticky::AWSALBCORS,
    )
}

/// What the request carries that may pin it, read only when the group can use it.
fn pin_hints<'a>(req: &RequestHead<'a>, group: &TargetGroup) -> PinHints<'a> {
    let mut hints = PinHints::default();
    if let Some(st) = &group.stickiness {
        match &st.kind {
            StickinessKind::LbCookie => hints.lb_cookie = lb_cookie(req.headers),
            StickinessKind::AppCookie { cookie_name } => {
                let cookies = || req.headers.get_all("cookie");
                hints.has_app_cookie = sticky::request_cookie(cookies(), cookie_name).is_some();
                hints.app_pin = sticky::request_cookie(cookies(), sticky::AWSALBAPP);
            }
        }
    }
    if group.socketio.is_some() {
        hints.sid = socketio::sid_param(req.query);
    }
    hints
}

/// Longest handshake body prefix read for the Engine.IO open packet.
const OPEN_PACKET_MAX: usize = 4096;

/// Where an exchange is with a Socket.IO handshake response.
#[derive(Debug)]
enum Handshake {
    /// Not a handshake, or done with it.
    None,
    /// Reading the response body for the open packet.
    Reading(Vec<u8>),
    /// The sid was learned; the shared store is still to hear of it.
    Learned(Box<(Box<str>, SharedPin)>),
}

/// Whether `sid`, on a path of a Socket.IO group, is a session no such group here knows.
fn unknown_here(routing: &Routing, path: &str, sid: &str, now: Instant) -> bool {
    let mut groups = routing
        .groups
        .iter()
        .filter_map(|g| g.socketio.as_ref())
        .filter(|s| path.starts_with(s.path.as_str()))
        .peekable();
    groups.peek().is_some() && !groups.any(|s| s.sessions.contains(sid, now))
}

/// Before a request is decided: a Socket.IO sid that no group here knows is looked up
/// in the shared store (at most its `lookup_timeout`), and a pin found there is kept
/// here as if this replica had seen the session start. The request is then decided
/// as usual. Without a store, or with a sid known here, nothing waits.
pub async fn recall_pin(routing: &Routing, path: &str, query: Option<&str>) {
    let Some(shared) = &routing.shared else {
        return;
    };
    let Some(sid) = socketio::sid_param(query) else {
        return;
    };
    let now = Instant::now();
    if !unknown_here(routing, path, sid, now) {
        return;
    }
    if let Lookup::Hit(pin) = shared.recall(sid).await {
        let group = routing.groups.iter().find(|g| *g.name == *pin.group);
        if let Some((group, sio)) = group.and_then(|g| g.socketio.as_ref().map(|s| (g, s))) {
            // Only a target still in the group: a pin to one that left is stale.
            if group.target(pin.target).is_some() {
                sio.sessions.insert(sid, pin.target, pin.idle, now);
            }
        }
    }
}

/// Whether a failed attempt is tried again, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Give up: answer the client with [`Failure::status`].
    No,
    /// Once more on a new connection to the same target (a pooled connection the
    /// target had closed).
    SameTarget,
    /// Once more on another target (already picked: see [`Exchange::target`]).
    Elsewhere,
}

/// What went wrong with a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection to the target within the group's connect timeout.
    ConnectTimeout,
    /// The target refused the connection, or the TLS handshake failed.
    ConnectError,
    /// The target closed the connection before a whole response.
    TargetClosed,
    /// The target reset the connection (an RST) before any byte of a response.
    TargetReset,
    /// The target was silent for the idle timeout.
    TargetTimeout,
    /// The target's response could not be parsed, or its head was too large.
    BadResponse,
    /// The client sent a malformed request or body.
    BadRequest,
    /// The client was silent for the idle timeout in the middle of a request.
    ClientTimeout,
    /// The client went away (ALB logs 460 and sends nothing).
    ClientClosed,
}

impl Failure {
    /// The ALB status for the failure; `None` when nothing is sent (the client is gone).
    pub fn status(self) -> Option<u16> {
        match self {
            Failure::ConnectTimeout | Failure::TargetTimeout => Some(504),
            Failure::ConnectError
            | Failure::TargetClosed
            | Failure::TargetReset
            | Failure::BadResponse => Some(502),
            Failure::BadRequest => Some(400),
            Failure::ClientTimeout => Some(408),
            Failure::ClientClosed => None,
        }
    }

    /// Whether the target, not the client, failed (counts against its passive health).
    pub fn is_target(self) -> bool {
        matches!(
            self,
            Failure::ConnectTimeout
                | Failure::ConnectError
                | Failure::TargetClosed
                | Failure::TargetReset
        )
    }
}

/// A request forwarded to a target, from the decision to the end of its response
/// (or of its websocket).
#[derive(Debug)]
pub struct Exchange {
    /// The routing snapshot this request uses from start to end.
    pub routing: Arc<Routing>,
    pub group: Arc<TargetGroup>,
    /// The target, counted as outstanding while the exchange lives.
    outstanding: Outstanding,
    /// Set `AWSALBTG` for the chosen group (weighted forward with group stickiness).
    group_sticky: bool,
    /// The request carried the application's own cookie (app_cookie stickiness).
    has_app_cookie: bool,
    /// The request's `AWSALB`, sealed by the sealing key in this second for this
    /// target: a response in the same second sends it back instead of sealing the
    /// same pin again. (The value and the second.)
    resend_cookie: Option<(Box<str>, u64)>,
    /// A Socket.IO handshake response, read to learn its sid.
    handshake: Handshake,
    /// The sid of a websocket upgrade: forgotten when the websocket ends.
    upgrade_sid: Option<Box<str>>,
    /// The response was a 101: the exchange is a websocket now.
    upgraded: bool,
    /// A target that failed this request, avoided by its one retry.
    failed: Option<SocketAddr>,
    /// The one retry on a new connection to the same target was used.
    retried_same: bool,
    /// The URL and Host the rule's transforms made for the target.
    rewritten: Rewritten,
    /// The priority of the rule that matched (0: the default action).
    pub rule_priority: Option<u32>,
    /// The group is sticky but the request carried no usable pin.
    pub non_sticky: bool,
    /// When the request went to the target (for `TargetResponseTime`).
    sent_at: Option<Instant>,
    /// The target's status (its response head), once known.
    pub target_status: Option<u16>,
    /// A `jwt_validation` action passed the request's token (access log:
    /// `jwt-validation,forward`).
    pub jwt_validated: bool,
}

impl Exchange {
    /// Picks the target of a forward to `group`; `None` when the group has none.
    fn start(
        routing: Arc<Routing>,
        group: Arc<TargetGroup>,
        group_sticky: bool,
        req: &RequestHead<'_>,
    ) -> Option<Exchange> {
        let hints = pin_hints(req, &group);
        let now = SystemTime::now();
        let (target, picked_by) = group.pick(&hints, &routing.keys, now, None)?;
        let resend_cookie = match (picked_by, hints.lb_cookie) {
            (PickedBy::Cookie { current: true }, Some(value)) => {
                Some((Box::from(value), sticky::unix_now(now)))
            }
            _ => None,
        };
        let (mut handshake, mut upgrade_sid) = (Handshake::None, None);
        if let Some(sio) = &group.socketio {
            if socketio::is_polling_handshake(req.path, req.query, &sio.path) {
                handshake = Handshake::Reading(Vec::new());
            } else if req.upgrade {
                upgrade_sid = hints.sid.map(Box::from);
            }
        }
        let outstanding = Outstanding::new(target.clone());
        let group_is_sticky = group.stickiness.is_some();
        Some(Exchange {
            routing,
            group,
            outstanding,
            group_sticky,
            has_app_cookie: hints.has_app_cookie,
            resend_cookie,
            handshake,
            upgrade_sid,
            upgraded: false,
            failed: None,
            retried_same: false,
            rewritten: Rewritten::default(),
            rule_priority: None,
            non_sticky: group_is_sticky && picked_by == PickedBy::Algorithm,
            sent_at: None,
            target_status: None,
            jwt_validated: false,
        })
    }

    /// The target the request goes to now (it may move on a retry).
    pub fn target(&self) -> &Arc<Target> {
        self.outstanding.target()
    }

    /// The current target's address.
    pub fn addr(&self) -> SocketAddr {
        self.target().addr
    }

    /// The origin-form target (path and `?query`) to send instead of the client's,
    /// when a URL rewrite changed it.
    pub fn rewritten_url(&self) -> Option<&str> {
        self.rewritten.url.as_deref()
    }

    /// The Host value to send instead of the client's, when a Host rewrite changed it.
    pub fn rewritten_host(&self) -> Option<&str> {
        self.rewritten.host.as_deref()
    }

    /// The group's TLS settings for its targets, when it speaks HTTPS to them.
    pub fn upstream_tls(&self) -> Option<&UpstreamTls> {
        self.group.upstream_tls.as_ref()
    }

    /// How long a connection to a target may take (ALB: 10 s).
    pub fn connect_timeout(&self) -> Duration {
        self.group.connect_timeout
    }

    /// ALB's idle timeout: no bytes either way this long ends the request or tunnel.
    pub fn idle_timeout(&self) -> Duration {
        self.routing.idle_timeout
    }

    /// The connection to the target failed before anything was sent: passive health
    /// marks the target, and any method may go to another target, once.
    pub fn connect_failed(&mut self) -> Retry {
        let target = self.target().clone();
        target.stats.connection_error();
        let passive = self.group.lifecycle.passive;
        target.mark_failure(&passive);
        if passive.enabled && self.failed.is_none() && self.group.has_alternative(target.addr) {
            return self.move_elsewhere(target.addr);
        }
        Retry::No
    }

    /// The target closed or reset the connection before any byte of a response, or
    /// refused the request's bytes ([`Attempt`] says how it had gone). A reset
    /// is no proof that the target's application never read the request (it may
    /// have read it, acted, then crashed), so a request that was written and is not
    /// idempotent is never sent twice: such requests take new connections instead
    /// (see [`Exchange::may_reuse`]), which do not race a keep-alive close.
    pub fn failed_before_response(&mut self, attempt: Attempt) -> Retry {
        let Attempt {
            reused,
            replayable,
            safe,
        } = attempt;
        if !replayable || !safe {
            if !reused {
                let target = self.target().clone();
                target.mark_failure(&self.group.lifecycle.passive);
            }
            return Retry::No;
        }
        if reused {
            // The target closed an idle pooled connection as the request went out:
            // it says nothing about the target's health. Sent again once, on a new
            // connection.
            if !self.retried_same {
                self.retried_same = true;
                return Retry::SameTarget;
            }
            return Retry::No;
        }
        let target = self.target().clone();
        let passive = self.group.lifecycle.passive;
        target.mark_failure(&passive);
        if passive.enabled && self.failed.is_none() && self.group.has_alternative(target.addr) {
            return self.move_elsewhere(target.addr);
        }
        Retry::No
    }

    /// Whether the request may go on an idle pooled connection. One that is not
    /// idempotent takes a new connection: a pooled one may be closed by the target
    /// (its keep-alive timeout) just as the request arrives, and then whether the
    /// target acted on it cannot be known, so it could be neither replayed nor
    /// answered but with a 502. This is HAProxy's `http-reuse safe` reasoning, applied
    /// by method: the connection still goes to the pool after the exchange.
    pub fn may_reuse(idempotent: bool) -> bool {
        idempotent
    }

    fn move_elsewhere(&mut self, failed: SocketAddr) -> Retry {
        let Some(next) = self.group.select(Some(failed)) else {
            return Retry::No;
        };
        self.failed = Some(failed);
        self.outstanding = Outstanding::new(next.clone());
        // A cookie re-sent as is would pin the client to the failed target.
        self.resend_cookie = None;
        Retry::Elsewhere
    }

    /// The request (its head, and its body when it came with it) went to the target:
    /// `TargetResponseTime` runs from here.
    pub fn request_sent(&mut self) {
        self.sent_at = Some(Instant::now());
    }

    /// The targets tried, in order: the one that failed (when the request moved
    /// elsewhere) and the one that answered.
    pub fn tried(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.failed.into_iter().chain(std::iter::once(self.addr()))
    }

    /// A response head came from the target.
    pub fn response_started(&mut self, status: u16) {
        self.target().mark_success();
        self.target_status = Some(status);
        let elapsed = self.sent_at.map_or(Duration::ZERO, |t| t.elapsed());
        self.target().stats.responded(status, elapsed);
        if status == 101 {
            self.upgraded = true;
            self.outstanding.upgraded();
        }
    }

    /// Whether the exchange became a websocket.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// The `Set-Cookie` values tether adds to the response (stickiness pins), given
    /// the response's own `Set-Cookie` values (an app cookie starts a session).
    pub fn cookies<'a>(&self, response_set_cookies: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
        let mut out = Vec::new();
        self.write_cookies(response_set_cookies, &mut out, b"", b"\n");
        String::from_utf8(out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Writes the `Set-Cookie` values of [`Exchange::cookies`] into `out`, each
    /// between `before` and `after` (a header line's name and its CRLF).
    pub fn write_cookies<'a>(
        &self,
        response_set_cookies: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
        before: &[u8],
        after: &[u8],
    ) {
        let group = &self.group;
        let keys = &self.routing.keys;
        let now = SystemTime::now();
        let issued = sticky::unix_now(now);
        let target = self.target().addr;
        let pin = || Pin {
            group: group.name.clone(),
            target: Some(target),
            issued,
        };
        let line = |out: &mut Vec<u8>,
                    names: (&str, Option<&str>),
                    value: &str,
                    expires: &str,
                    flags: CookieFlags| {
            let (name, cors_name) = names;
            out.extend_from_slice(before);
            sticky::write_set_cookie(out, name, value, expires, flags);
            out.extend_from_slice(after);
            // For browsers' credentialed cross-origin requests, the CORS twin with the
            // same value (`SameSite=None; Secure`).
            if let Some(cors_name) = cors_name {
                let cors = CookieFlags {
                    cross_site: true,
                    ..flags
                };
                out.extend_from_slice(before);
                sticky::write_set_cookie(out, cors_name, value, expires, cors);
                out.extend_from_slice(after);
            }
        };
        if let Some(st) = &group.stickiness {
            let expires = sticky::expires(now);
            let flags = CookieFlags {
                secure: st.secure,
                http_only: st.http_only,
                cross_site: false,
            };
            match &st.kind {
                StickinessKind::LbCookie => {
                    let names = (sticky::AWSALB, Some(sticky::AWSALBCORS));
                    match &self.resend_cookie {
                        Some((value, second)) if *second == issued => {
                            line(out, names, value, &expires, flags)
                        }
                        _ => {
                            let value = keys.seal(Purpose::LbCookie, &pin());
                            line(out, names, &value, &expires, flags);
                        }
                    }
                }
                StickinessKind::AppCookie { cookie_name } => {
                    let mut sets = response_set_cookies;
                    let app_session =
                        self.has_app_cookie || sets.any(|v| sticky::sets_cookie(v, cookie_name));
                    if app_session {
                        let value = keys.seal(Purpose::AppCookie, &pin());
                        line(out, (sticky::AWSALBAPP, None), &value, &expires, flags);
                    }
                }
            }
        }
        if self.group_sticky {
            let pin = Pin {
                group: group.name.clone(),
                target: None,
                issued,
            };
            let value = keys.seal(Purpose::TargetGroup, &pin);
            let names = (sticky::AWSALBTG, Some(sticky::AWSALBTGCORS));
            let expires = sticky::expires(now);
            line(out, names, &value, &expires, CookieFlags::default());
        }
    }

    /// Whether the response body should be shown to [`Exchange::response_body`]
    /// (a Socket.IO handshake whose sid is to be learned).
    pub fn wants_response_body(&self) -> bool {
        matches!(self.handshake, Handshake::Reading(_))
    }

    /// Bytes of the (decoded) response body, as they pass: a Socket.IO handshake's
    /// open packet pins its sid to the target. With a shared store, the engine then
    /// calls [`Exchange::publish_pin`] before the bytes go to the client.
    pub fn response_body(&mut self, bytes: &[u8], end: bool) {
        let Handshake::Reading(buf) = &mut self.handshake else {
            return;
        };
        let room = OPEN_PACKET_MAX.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if let Some(open) = socketio::parse_open_packet(buf) {
            self.handshake = Handshake::None;
            if let Some(sio) = &self.group.socketio {
                let addr = self.target().addr;
                sio.sessions
                    .insert(&open.sid, addr, open.idle, Instant::now());
                if sio.shared.is_some() {
                    self.handshake = Handshake::Learned(Box::new((
                        open.sid.into(),
                        SharedPin {
                            group: self.group.name.to_string(),
                            target: addr,
                            idle: open.idle,
                        },
                    )));
                }
            }
        } else if end || buf.len() >= OPEN_PACKET_MAX {
            self.handshake = Handshake::None;
        }
    }

    /// Whether a sid was learned that the shared store has not heard of yet.
    pub fn has_pin_to_publish(&self) -> bool {
        matches!(self.handshake, Handshake::Learned(_))
    }

    /// Tells the shared store of the sid just learned, waiting at most its
    /// `lookup_timeout`: the handshake response waits for it, so that the client's
    /// next request finds the pin on whichever replica it reaches.
    pub async fn publish_pin(&mut self) {
        let Handshake::Learned(learned) = std::mem::replace(&mut self.handshake, Handshake::None)
        else {
            return;
        };
        let (sid, pin) = *learned;
        if let Some(shared) = self.group.socketio.as_ref().and_then(|s| s.shared.as_ref()) {
            shared.publish(&sid, &pin).await;
        }
    }

    /// Resolves to true when the target's deregistration delay ends: its websockets
    /// must close.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.target().closing()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // A Socket.IO session whose websocket has ended is over.
        if let (true, Some(sid)) = (self.upgraded, self.upgrade_sid.take()) {
            if let Some(sio) = &self.group.socketio {
                sio.end(&sid);
            }
        }
    }
}

/// Whether a method may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
