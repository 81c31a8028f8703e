//! tether's HTTP/1.1 engine, for the client connections [`crate::listener`] hands it
//! (HTTP/2 ones go to [`crate::http2`]). It reads request heads, asks the exchange
//! core what to do, and moves bytes: request heads forwarded as the client's own
//! lines less hop-by-hop ones plus ALB's headers, bodies in their own framing,
//! responses the same way back, websockets relayed after the 101. Both engines share
//! the exchange core and the target side ([`crate::target`]). Request heads are
//! [`request`]'s, response heads to the client [`reply`]'s.

pub mod chunked;
pub mod parse;
pub mod relay;
mod reply;
mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::access_log::Kind;
use crate::exchange::{self, Decision, Exchange, Failure, LbResponse, Retry};
pub use crate::listener::client::ClientConn;
pub use crate::listener::ListenerApp;
use crate::observe::{self, Record};
use crate::stats::{ConnectionGuard, ListenerStats, Stall};
use crate::target::{self, response, TargetConn};
use parse::Framing;
use relay::Counted;
pub(crate) use reply::lb_response_bytes;
use reply::response_head;
pub use request::{prepare, Plan, Prepared};
use request::{refused_detail, BodyState, Refused};

/// Serves an HTTP/1 client connection (after the listener's checks): requests until
/// the connection ends, then its websocket, if it became one, in a task of its own.
pub(crate) async fn serve(
    app: &Arc<ListenerApp>,
    stream: Stream,
    client: ClientConn,
    keep_alive: Duration,
    guard: ConnectionGuard,
    shutdown: &ShutdownWatch,
) {
    let mut conn = Conn {
        app,
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
        tokio::spawn(tunnel.run(app.clone(), io, timer, guard));
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
        app: Arc<ListenerApp>,
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

/// One client connection.
struct Conn<'a> {
    app: &'a Arc<ListenerApp>,
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
            if self.app.routing.load().shared.is_some() {
                self.recall_pin(head_len).await;
            }
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
                None if started.is_some() => {
                    let stats = &self.app.listener.stats;
                    stats.stalled(Stall::ClientRead, self.client.addr());
                    return Err(Refused::Status(408));
                }
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

    /// With a shared store: a Socket.IO sid that this replica does not know is
    /// looked up there before the request is decided (at most `lookup_timeout`).
    async fn recall_pin(&self, head_len: usize) {
        let Some((path, query)) = request_target(&self.buf[..head_len]) else {
            return;
        };
        if !query.contains("sid=") {
            return;
        }
        let (path, query) = (path.to_owned(), query.to_owned());
        let routing = self.app.routing.load_full();
        exchange::recall_pin(&routing, &path, Some(&query)).await;
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

    /// Writes to the target within the idle timeout.
    async fn write_target(
        &mut self,
        target: &mut TargetConn,
        bytes: &[u8],
        idle: Duration,
    ) -> Result<(), relay::WriteFailed> {
        let stall = (&*self.app.listener.stats, self.client.addr());
        target::write(target, bytes, &mut self.timer, idle, stall).await
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
            Err(_) => {
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
            let (mut target, reused) = match target::connect(ex, fresh_only).await {
                Ok(c) => c,
                Err(failure) => return self.fail(rec, failure, false).await,
            };
            if let Err(w) = self.write_target(&mut target, &out, idle).await {
                let sent = target::Sent {
                    reused,
                    replayable,
                    idempotent: p.idempotent,
                };
                match target::after_failed_write(ex, &target, w, sent) {
                    Ok(retry) => {
                        fresh_only =
                            retry == Retry::SameTarget || !Exchange::may_reuse(p.idempotent);
                        continue;
                    }
                    Err(f) => return self.fail(rec, f, false).await,
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
            let stall = (&*self.app.listener.stats, self.client.addr());
            match response::read_head(&mut target, &mut rbuf, &mut self.timer, idle, stall).await {
                Ok(head) => break (target, (head, rbuf)),
                Err(f) => {
                    let answered = !rbuf.is_empty();
                    let sent = target::Sent {
                        reused,
                        replayable,
                        idempotent: p.idempotent,
                    };
                    match target::after_no_response(ex, f, answered, sent) {
                        Ok(retry) => {
                            fresh_only =
                                retry == Retry::SameTarget || !Exchange::may_reuse(p.idempotent);
                            continue;
                        }
                        Err(f) => return self.fail(rec, f, false).await,
                    }
                }
            }
        };
        let (mut head_len, mut rbuf) = head;

        // Interim responses (100 Continue, 103 Early Hints) go to the client as they are.
        loop {
            let status = match response::status(&rbuf[..head_len]) {
                Some(s) => s,
                None => return self.fail(rec, Failure::BadResponse, false).await,
            };
            if !(100..200).contains(&status) || status == 101 {
                break;
            }
            // Relayed less its hop-by-hop lines; an HTTP/1.0 client gets none
            // (RFC 9110 §15.2).
            if !p.http10 {
                let Ok(interim) = response::interim_head(&rbuf[..head_len]) else {
                    return self.fail(rec, Failure::BadResponse, false).await;
                };
                if self.write_client(&interim, true, idle).await.is_err() {
                    return Next::Close;
                }
                // An interim response does not stand for the final one: a failure
                // after it is still answered with its status.
            }
            rbuf.drain(..head_len);
            if status == 100 && !body.is_done() {
                match self.upload(&mut target, &mut body, idle).await {
                    Ok(()) => {}
                    Err(UploadError::Client(f)) => return self.fail(rec, f, false).await,
                    Err(UploadError::Target) => keep = false,
                }
            }
            match parse::find_head_end(&rbuf, 0) {
                Some(end) => head_len = end,
                None => {
                    let stall = (&*self.app.listener.stats, self.client.addr());
                    let timer = &mut self.timer;
                    match response::read_head(&mut target, &mut rbuf, timer, idle, stall).await {
                        Ok(end) => head_len = end,
                        Err(f) => return self.fail(rec, f, false).await,
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
            Err(_) => return self.fail(rec, Failure::BadResponse, false).await,
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
                return self.fail(rec, Failure::BadResponse, false).await;
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
        let mut framing = response::ResponseBody::new(resp.framing);
        let (used, complete) = match framing.feed(&rest, ex, None) {
            Ok(x) => x,
            Err(_) => return self.fail(rec, Failure::BadResponse, false).await,
        };
        if ex.has_pin_to_publish() {
            ex.publish_pin().await;
        }
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
        // A websocket request answered without a switch goes no further: the target
        // may have handed its socket to an upgrade handler that parses no more.
        if target_reusable && body.is_done() && resp.framing != Framing::Close && !p.upgrade {
            target::release(ex, target);
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
        framing: &mut response::ResponseBody,
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
                .feed(&chunk, ex, None)
                .map_err(|_| Failure::BadResponse)?;
            if ex.has_pin_to_publish() {
                ex.publish_pin().await;
            }
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

/// The path and query of a request head's target (origin or absolute form), read
/// from its first line without checking it: only to look a sid up early.
fn request_target(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let mut parts = line.split(|&b| b == b' ');
    let target = std::str::from_utf8(parts.nth(1)?).ok()?;
    let target = match target.find("://") {
        Some(i) => &target[i + 3..][target[i + 3..].find('/')?..],
        None => target,
    };
    target.split_once('?')
}

enum UploadError {
    Client(Failure),
    Target,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_find_the_path_and_query_of_a_head_early() {
        let head = b"GET /socket.io/?EIO=4&sid=abc HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(request_target(head), Some(("/socket.io/", "EIO=4&sid=abc")));
        let absolute = b"GET http://a:80/socket.io/?sid=x HTTP/1.1\r\n\r\n";
        assert_eq!(request_target(absolute), Some(("/socket.io/", "sid=x")));
        assert_eq!(request_target(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_target(b"GET http://a?sid=x HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_target(b"\xff\xfe"), None);
    }

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
        let app = Arc::new(ListenerApp {
            listener: crate::listener::ListenerInfo::new(0, 1, crate::settings::Protocol::Http),
            routing: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::routing::Routing::build(&config, None, &Default::default()),
            )),
            client_header_timeout: Duration::from_secs(60),
            desync: crate::settings::DesyncMode::default(),
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
