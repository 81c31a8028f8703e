//! HTTP/2 from clients (ALPN `h2` on HTTPS listeners), served by hyper 1's HTTP/2
//! server (the `h2` crate underneath, the one pingora used too): each stream goes
//! through the same exchange core as HTTP/1 and reaches its target over HTTP/1.1 with
//! the HTTP/1 engine's target side (pool, connect, framing). Websockets stay on
//! HTTP/1.1, as on ALB.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::http1::relay::{self, Timer};
use crate::stats::{ListenerStats, Stall};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::net::SocketAddr;

use crate::access_log::Kind;
use crate::exchange::{self, Decision, Exchange, Failure, LbResponse, RequestHead, Retry};
use crate::forwarded;
use crate::headers::{valid_host, Header, Headers};
use crate::http1::parse::{self, Framing};
use crate::listener::client::ClientConn;
use crate::listener::ListenerApp;
use crate::observe::{self, Detail, Record};
use crate::settings::ListenerHeaders;
use crate::target::{self, response, TargetConn};

mod watchdog;

type Body = BoxBody<Bytes, std::io::Error>;

/// Serves one HTTP/2 connection until the client ends it, the server shuts down or
/// the connection has lived `keep_alive` (ALB's client keep-alive): then with a
/// GOAWAY and the streams in flight finished. Its [`watchdog`] sends a GOAWAY to a
/// connection idle for `idle_timeout`, and closes one whose streams (or a request
/// being started) stall.
pub async fn serve(
    app: Arc<ListenerApp>,
    stream: Stream,
    client: ClientConn,
    keep_alive: Duration,
    mut shutdown: ShutdownWatch,
) {
    let activity = Arc::new(watchdog::Activity::default());
    let mut dog = watchdog::Watchdog::new(
        activity.clone(),
        app.routing.load().idle_timeout,
        app.client_header_timeout,
    );
    let peer = client.addr();
    let stats = app.listener.stats.clone();
    let io = hyper_util::rt::TokioIo::new(watchdog::Watched::new(stream, activity.clone()));
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let client = client.clone();
        let open = activity.open_stream();
        async move { Ok::<_, Infallible>(handle(app, client, req, open).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(keep_alive);
    tokio::pin!(lifetime);
    let mut tick = tokio::time::interval(dog.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("HTTP/2 connection ended: {e}");
                }
                return;
            }
            _ = shutdown.changed() => break,
            _ = &mut lifetime => break,
            _ = tick.tick() => match dog.check(std::time::Instant::now()) {
                None => {}
                Some(watchdog::Verdict::GoAway) => {
                    stats.stalled(Stall::H2Idle, peer);
                    break;
                }
                Some(watchdog::Verdict::Close(stall)) => {
                    // Dropping the connection resets its streams and closes their
                    // target connections.
                    stats.stalled(stall, peer);
                    return;
                }
            },
        }
    }
    // A GOAWAY, and the streams in flight finish (under the same watchdog: a client
    // that then moves nothing for another idle timeout is dropped).
    dog.restart(std::time::Instant::now());
    conn.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tick.tick() => match dog.check(std::time::Instant::now()) {
                None => {}
                Some(watchdog::Verdict::Close(stall)) => {
                    stats.stalled(stall, peer);
                    return;
                }
                Some(watchdog::Verdict::GoAway) => return,
            },
        }
    }
}

/// One of tether's own responses, with the listener's response headers.
fn lb_response(resp: &LbResponse, head_only: bool, listener: &ListenerHeaders) -> Response<Body> {
    let mut builder = Response::builder().status(resp.status);
    if listener.server {
        builder = builder.header(http::header::SERVER, "tether");
    }
    builder = builder
        .header(
            http::header::DATE,
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .header(http::header::CONTENT_TYPE, resp.content_type.as_str())
        .header(http::header::CONTENT_LENGTH, resp.body.len());
    if let Some(location) = &resp.location {
        builder = builder.header(http::header::LOCATION, location.as_str());
    }
    if let Some(challenge) = resp.www_authenticate {
        builder = builder.header(http::header::WWW_AUTHENTICATE, challenge);
    }
    for (name, value) in listener.response.iter() {
        builder = builder.header(*name, &**value);
    }
    let body = if head_only {
        Bytes::new()
    } else {
        resp.body.clone()
    };
    builder
        .body(Full::new(body).map_err(|never| match never {}).boxed())
        .unwrap_or_else(|_| error(500))
}

fn error(status: u16) -> Response<Body> {
    let mut r = Response::new(
        Full::new(exchange::error_page(status))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r
}

async fn handle(
    app: Arc<ListenerApp>,
    client: ClientConn,
    req: Request<Incoming>,
    open: watchdog::OpenStream,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let logging = app.listener.access_log.is_some();
    // HTTP/2 heads are HPACK-compressed: the bytes counted are those of the head
    // as HTTP/1.1 would carry it, as ALB's `received_bytes` does not say either.
    let head_bytes = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + 13;
    let mut g = StreamRecord {
        rec: Record::new(
            Kind::H2,
            std::time::SystemTime::now(),
            std::time::Instant::now(),
            head_bytes as u64,
        ),
        app: app.clone(),
        client: client.clone(),
        finished: false,
        _open: open,
    };
    let head_request = parts.method == http::Method::HEAD;
    let idempotent = exchange::is_idempotent(parts.method.as_str());
    let routing = app.routing.load_full();
    if routing.shared.is_some() {
        exchange::recall_pin(&routing, parts.uri.path(), parts.uri.query()).await;
    }
    let listener = routing.headers(app.listener.index);
    let (decision, upstream_head, framing) = {
        let lines: Vec<Header<'_>> = parts
            .headers
            .iter()
            .map(|(n, v)| Header {
                name: n.as_str(),
                value: v.as_bytes(),
            })
            .collect();
        let headers = Headers(&lines);
        let host = match request_host(&parts, headers) {
            Ok(h) => h,
            Err(status) => {
                return own_response(&mut g, &LbResponse::error(status), head_request, listener)
            }
        };
        let decision = exchange::decide(
            &routing,
            &app.listener,
            &RequestHead {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                host,
                headers,
                upgrade: false,
                client_ip: client.ip,
            },
        );
        if logging {
            let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            g.rec.detail = Some(Box::new(Detail {
                request: Some(
                    app.request_line(parts.method.as_str(), host, target, "2.0")
                        .into(),
                ),
                user_agent: headers.get_str("user-agent").map(Box::from),
                trace_id: None,
                classification: None,
            }));
        }
        let Decision::Forward(ex) = &decision else {
            let Decision::Respond(resp) = decision else {
                return error(500);
            };
            return own_response(&mut g, &resp, head_request, listener);
        };
        let length = match parse::content_length(headers) {
            Ok(l) => l,
            Err(_) => return own_response(&mut g, &LbResponse::error(400), false, listener),
        };
        let framing = match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None if hyper::body::Body::is_end_stream(&body) => Framing::None,
            None => Framing::Chunked,
        };
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        let url = ex
            .rewritten_url()
            .unwrap_or_else(|| parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        out.extend_from_slice(url.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let shaping = &routing.shaping;
        // A rule's Host rewrite is sent as written; the client's authority with
        // ALB's port rule unless the Host is preserved.
        if let Some(h) = ex.rewritten_host() {
            parse::push_header(&mut out, b"host", h.as_bytes());
        } else if let Some(h) = host {
            let preserve = shaping.preserve_host_header;
            app.write_host_line(&mut out, b"host", h.as_bytes(), preserve);
        }
        let mut cookies = 0;
        for h in headers.iter() {
            let name = h.name;
            if name == "cookie" {
                cookies += 1;
                continue;
            }
            let skip = name == "host"
                || parse::is_hop_by_hop(name)
                || name == "transfer-encoding"
                || name == "content-length"
                || forwarded::leaves_out(name, shaping, listener);
            if !skip {
                parse::push_header(&mut out, name.as_bytes(), h.value);
            }
        }
        if let Some(n) = length {
            // One line with the length the fields agreed on.
            let mut digits = itoa::Buffer::new();
            parse::push_header(&mut out, b"content-length", digits.format(n).as_bytes());
        }
        if cookies > 0 {
            // HTTP/2 splits the cookie into crumbs: one line again for HTTP/1.1, joined
            // with "; " (RFC 9113 §8.2.3).
            out.extend_from_slice(b"cookie: ");
            for (i, crumb) in headers.get_all("cookie").enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(crumb);
            }
            out.extend_from_slice(b"\r\n");
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        let trace = app.end_upstream_head(&mut out, &client, headers, &routing);
        if let Some(d) = g.rec.detail.as_mut() {
            d.trace_id = observe::text(&out[trace]);
        }
        (decision, out, framing)
    };
    let Decision::Forward(ex) = decision else {
        return error(500);
    };
    let mut ex = *ex;
    let mut body = body;
    if framing == Framing::None && !hyper::body::Body::is_end_stream(&body) {
        // `content-length: 0` with the stream still open: the DATA that follows must
        // be none (RFC 9113 §8.1.1) before the request goes on as bodiless.
        if !ends_empty(&mut body, ex.idle_timeout()).await {
            g.rec.forwarded(&ex, logging);
            return own_response(&mut g, &LbResponse::error(400), head_request, listener);
        }
    }
    let sent = Sent {
        head: upstream_head,
        framing,
        head_request,
        idempotent,
        client: client.addr(),
    };
    match forward(&mut ex, &app, sent, body, &mut g.rec).await {
        Ok((builder, body)) => {
            g.rec.forwarded(&ex, logging);
            let mut state = body;
            state.ex = Some(ex);
            state.record = Some(g);
            let stream = futures_util::stream::unfold(state, |mut s| async move {
                match s.next().await {
                    Ok(Some(data)) => Some((Ok(Frame::data(data)), s)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), s.end())),
                }
            });
            builder
                .body(StreamBody::new(stream).boxed())
                .unwrap_or_else(|_| error(502))
        }
        Err(failure) => {
            g.rec.forwarded(&ex, logging);
            g.rec.error_reason = Some(observe::error_reason(failure));
            let status = failure.status().unwrap_or(502);
            own_response(&mut g, &LbResponse::error(status), head_request, listener)
        }
    }
}

/// The host a request names: `:authority`, else its one `Host` line, in the Host
/// grammar of the HTTP/1 engine (so host rules see what targets see). `Err` is the
/// status: 405 for CONNECT (tether tunnels websockets only), 400 for userinfo, a bad
/// host or a `Host` that disagrees with `:authority` (RFC 9113 §8.3.1).
fn request_host<'a>(
    parts: &'a http::request::Parts,
    headers: Headers<'a>,
) -> Result<Option<&'a str>, u16> {
    if parts.method == http::Method::CONNECT {
        return Err(405);
    }
    if !parse::known_method(parts.method.as_str()) {
        return Err(400);
    }
    let mut hosts = headers.get_all("host");
    let (host_line, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(400);
    }
    if let Some(h) = host_line {
        if !valid_host(h) {
            return Err(400);
        }
    }
    let Some(authority) = parts.uri.authority() else {
        // Neither `:authority` nor `Host`: no host for the rules, none for the
        // target (HTTP/1.1 requires one).
        return match host_line.and_then(|h| std::str::from_utf8(h).ok()) {
            Some(h) => Ok(Some(h)),
            None => Err(400),
        };
    };
    let authority = authority.as_str();
    if !valid_host(authority.as_bytes()) {
        return Err(400);
    }
    if host_line.is_some_and(|h| !h.eq_ignore_ascii_case(authority.as_bytes())) {
        return Err(400);
    }
    Ok(Some(authority))
}

/// Whether a request body ends with no data (within the idle timeout).
async fn ends_empty(body: &mut Incoming, idle: Duration) -> bool {
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    return false;
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// One of tether's own responses, counted and logged.
fn own_response(
    g: &mut StreamRecord,
    resp: &LbResponse,
    head_only: bool,
    listener: &ListenerHeaders,
) -> Response<Body> {
    g.rec.responded(&g.app.listener.stats, resp);
    if !head_only {
        g.rec.tx += resp.body.len() as u64;
    }
    g.finish();
    lb_response(resp, head_only, listener)
}

/// A stream's record, finished exactly once: with an answer of tether's own, at the
/// end of the response body, or, when the client resets the stream before either,
/// when the stream's task drops it.
struct StreamRecord {
    rec: Record,
    app: Arc<ListenerApp>,
    client: ClientConn,
    finished: bool,
    /// Counts the stream open for the connection's watchdog while it lives.
    _open: watchdog::OpenStream,
}

impl StreamRecord {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let placeholder = Record::new(Kind::H2, self.rec.created, self.rec.received, 0);
        let rec = std::mem::replace(&mut self.rec, placeholder);
        rec.finish(&self.app.listener, &self.client);
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        if !self.finished && self.rec.target_status.is_none() {
            // Reset by the client before any response.
            self.rec.error_reason = Some("ClientClosedConnection");
        }
        self.finish();
    }
}

/// What [`forward`] sends.
struct Sent {
    head: Vec<u8>,
    framing: Framing,
    head_request: bool,
    idempotent: bool,
    /// The client's address, for the log line of a stall.
    client: Option<SocketAddr>,
}

/// Sends the request to its target and returns the response head, with the state
/// that streams its body (its exchange and record still to be set).
async fn forward(
    ex: &mut Exchange,
    app: &ListenerApp,
    sent: Sent,
    mut body: Incoming,
    rec: &mut Record,
) -> Result<(http::response::Builder, BodyStream), Failure> {
    let Sent {
        head,
        framing,
        head_request,
        idempotent,
        client,
    } = sent;
    let listener = app.listener.index;
    let idle = ex.idle_timeout();
    // A request without a body is sent whole at once, and can be sent again.
    let replayable = framing == Framing::None;
    let mut timer = crate::http1::relay::Timer::default();
    let stats = &app.listener.stats;
    let stall = (&**stats, client);
    let mut fresh_only = !Exchange::may_reuse(idempotent);
    let (target, mut rbuf, head_len) = loop {
        let (mut target, reused) = target::connect(ex, fresh_only).await?;
        if let Err(w) = target::write(&mut target, &head, &mut timer, idle, stall).await {
            let sent = target::Sent {
                reused,
                replayable,
                idempotent,
            };
            let retry = target::after_failed_write(ex, &target, w, sent)?;
            fresh_only = retry == Retry::SameTarget || !Exchange::may_reuse(idempotent);
            continue;
        }
        if framing != Framing::None {
            upload(
                &mut body,
                &mut target,
                framing == Framing::Chunked,
                (idle, &mut timer, stall),
                &mut rec.rx,
            )
            .await?;
        }
        // Sent whole: the target's time starts (ALB's target_processing_time).
        ex.request_sent();
        rec.dispatched = Some(std::time::Instant::now());
        // Known now, should the client reset the stream before the response.
        rec.forwarded(ex, app.listener.access_log.is_some());
        let mut rbuf = Vec::new();
        let mut result = response::read_head(&mut target, &mut rbuf, &mut timer, idle, stall).await;
        // Interim responses are not relayed over HTTP/2.
        while let Ok(end) = result {
            match response::status(&rbuf[..end]) {
                Some(s) if (100..200).contains(&s) && s != 101 => {
                    rbuf.drain(..end);
                    result = match parse::find_head_end(&rbuf, 0) {
                        Some(e) => Ok(e),
                        None => {
                            response::read_head(&mut target, &mut rbuf, &mut timer, idle, stall)
                                .await
                        }
                    };
                }
                _ => break,
            }
        }
        match result {
            Ok(end) => {
                rec.answered = Some(std::time::Instant::now());
                break (target, rbuf, end);
            }
            Err(f) => {
                let answered = !rbuf.is_empty();
                let sent = target::Sent {
                    reused,
                    replayable,
                    idempotent,
                };
                let retry = target::after_no_response(ex, f, answered, sent)?;
                fresh_only = retry == Retry::SameTarget || !Exchange::may_reuse(idempotent);
            }
        }
    };

    let routing = ex.routing.clone();
    let listener = routing.headers(listener);
    let (builder, resp_framing, keep_target) =
        response::parse(&rbuf[..head_len], head_request, |p| {
            if p.status == 101 {
                // No upgrade was asked for (HTTP/2 requests never carry one): the
                // target switched protocols on its own, and its connection is dropped.
                return Err(Failure::BadResponse);
            }
            if p.scan.other_codings {
                // `Transfer-Encoding: gzip`: HTTP/2 has no transfer codings to say so
                // with, and the coded bytes are no content.
                return Err(Failure::BadResponse);
            }
            // Bytes after a bodiless response: the target's framing is not ours; the
            // connection is not reused.
            let after_bodiless = p.scan.framing == Framing::None && rbuf.len() > head_len;
            ex.response_started(p.status);
            let mut builder = Response::builder().status(p.status);
            for h in p.headers.iter() {
                // HTTP/2 frames bodies itself: no Transfer-Encoding (RFC 9113 §8.2.2).
                if p.forwards(h.name, Some(listener))
                    && !h.name.eq_ignore_ascii_case("transfer-encoding")
                {
                    builder = builder.header(h.name, h.value);
                }
            }
            if let Some(n) = p.write_length() {
                builder = builder.header(http::header::CONTENT_LENGTH, n);
            }
            for cookie in ex.cookies(p.headers.get_all("set-cookie")) {
                builder = builder.header(http::header::SET_COOKIE, cookie);
            }
            for (name, value) in listener.response.iter() {
                builder = builder.header(*name, &**value);
            }
            Ok((builder, p.scan.framing, p.keep_target() && !after_bodiless))
        })
        .map_err(|_| Failure::BadResponse)??;
    rec.tx += head_len as u64;
    let rest = rbuf.split_off(head_len);
    let state = BodyStream {
        target: Some(target),
        ex: None,
        record: None,
        sent: 0,
        body: response::ResponseBody::new(resp_framing),
        pending: Some(rest),
        keep_target,
        idle,
    };
    Ok((builder, state))
}

/// Sends a request body from HTTP/2 DATA frames, chunked when it has no length;
/// each read and write within the idle timeout.
async fn upload(
    body: &mut Incoming,
    target: &mut TargetConn,
    chunked: bool,
    (idle, timer, (stats, client)): (Duration, &mut Timer, (&ListenerStats, Option<SocketAddr>)),
    received: &mut u64,
) -> Result<(), Failure> {
    let stall = (stats, client);
    let mut send = async |target: &mut TargetConn, bytes: &[u8]| {
        target::write(target, bytes, timer, idle, stall)
            .await
            .map_err(|w| {
                if w.timed_out {
                    Failure::TargetTimeout
                } else {
                    Failure::TargetClosed
                }
            })
    };
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                stats.stalled(Stall::ClientRead, client);
                return Err(Failure::ClientTimeout);
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Failure::ClientClosed),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        *received += data.len() as u64;
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            let mut out = Vec::with_capacity(size.len() + data.len() + 2);
            out.extend_from_slice(size.as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            send(target, &out).await?;
        } else {
            send(target, &data).await?;
        }
    }
    if chunked {
        send(target, b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// A response body read from the target, decoded from its framing.
struct BodyStream {
    target: Option<TargetConn>,
    ex: Option<Exchange>,
    /// The request's record, finished when the body ends or is dropped (a reset).
    record: Option<StreamRecord>,
    /// Body bytes given to the client.
    sent: u64,
    body: response::ResponseBody,
    /// Bytes read with the head, not yet used.
    pending: Option<Vec<u8>>,
    keep_target: bool,
    idle: Duration,
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        // The response is over (or the client reset the stream): the record, dropped
        // with the stream, logs it.
        if let Some(g) = self.record.as_mut() {
            g.rec.tx += self.sent;
        }
    }
}

impl BodyStream {
    /// The next piece of body; `None` at its end.
    async fn next(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        loop {
            if self.body.is_done() {
                self.finish(true);
                return Ok(None);
            }
            let input = match self.pending.take() {
                Some(p) if !p.is_empty() => p,
                _ => {
                    let Some(target) = self.target.as_mut() else {
                        return Ok(None);
                    };
                    let mut buf = Vec::new();
                    let read = relay::read_into(target, &mut buf);
                    let n = match tokio::time::timeout(self.idle, read).await {
                        Err(_) => {
                            if let Some(g) = &self.record {
                                let stats = &g.app.listener.stats;
                                stats.stalled(Stall::TargetRead, g.client.addr());
                            }
                            return Err(std::io::ErrorKind::TimedOut.into());
                        }
                        Ok(r) => r?,
                    };
                    if n == 0 {
                        if self.body.framing == Framing::Close {
                            self.finish(false);
                            return Ok(None);
                        }
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    buf
                }
            };
            let Some(ex) = self.ex.as_mut() else {
                return Err(std::io::ErrorKind::Other.into());
            };
            let mut data = Vec::new();
            let (used, _) = self
                .body
                .feed(&input, ex, Some(&mut data))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if ex.has_pin_to_publish() {
                ex.publish_pin().await;
            }
            if used < input.len() {
                // Bytes after the body: the connection is not reusable.
                self.keep_target = false;
            }
            if !data.is_empty() {
                self.sent += data.len() as u64;
                return Ok(Some(Bytes::from(data)));
            }
        }
    }

    /// The body ended: a clean end returns the target connection to the pool.
    fn finish(&mut self, clean: bool) {
        if let Some(target) = self.target.take() {
            if clean && self.keep_target {
                if let Some(ex) = &self.ex {
                    target::release(ex, target);
                }
            }
        }
    }

    fn end(mut self) -> Self {
        self.target = None;
        self.body = response::ResponseBody::new(Framing::None);
        self
    }
}
