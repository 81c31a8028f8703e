//! The target side, one for both engines: HTTP/1 clients ([`crate::http1`]) and
//! HTTP/2 clients ([`crate::http2`]) reach targets over HTTP/1.1 through these
//! functions, so each rule of the target side is written once:
//!
//! - a connection is new or taken from this thread's pool by everything that makes
//!   it what it is ([`pool::PoolKey`]); a request that is not idempotent always takes
//!   a new one ([`Exchange::may_reuse`]);
//! - every write and read has a deadline, the idle timeout, and a peer that stalls
//!   is counted and logged ([`crate::stats::Stall`]);
//! - a request that failed before any response is sent again only as the exchange
//!   core allows ([`Exchange::failed_before_response`]): never one that was written
//!   and is not idempotent;
//! - the response head is parsed and filtered by one rule ([`response::Parsed`]), and
//!   its body followed in the target's framing ([`response::ResponseBody`]); a
//!   connection goes back to the pool only after a clean end with nothing after it.

pub mod pool;
pub mod response;

use std::net::SocketAddr;
use std::time::Duration;

use crate::exchange::{Attempt, Exchange, Failure, Retry};
use crate::http1::relay::{self, Timer, WriteFailed};
use crate::stats::{ListenerStats, Stall};
pub use pool::{PoolKey, TargetConn};

/// How a request went out on a connection: what the retry decisions need.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The connection came from the pool.
    pub reused: bool,
    /// The whole request is still at hand.
    pub replayable: bool,
    /// Its method is idempotent.
    pub idempotent: bool,
}

/// Where a stall on the target side is counted: the listener's stats and the
/// client's address (for the log line).
pub type StallTo<'a> = (&'a ListenerStats, Option<SocketAddr>);

/// The pool key of the exchange's current target.
pub fn key(ex: &Exchange) -> PoolKey {
    PoolKey::new(ex.addr(), ex.upstream_tls())
}

/// A connection to the exchange's target and whether it came from the pool: an idle
/// pooled one unless `fresh_only` (a replay after a pooled connection failed, or a
/// request that is not idempotent), else a new one. When connecting fails the core
/// may move the exchange to another target, which is tried in turn.
pub async fn connect(ex: &mut Exchange, fresh_only: bool) -> Result<(TargetConn, bool), Failure> {
    loop {
        if !fresh_only {
            if let Some(conn) = pool::take(&key(ex)) {
                return Ok((conn, true));
            }
        }
        match pool::connect(ex.addr(), ex.upstream_tls(), ex.connect_timeout()).await {
            Ok(conn) => return Ok((conn, false)),
            Err(e) => {
                tracing::debug!("connect to {} failed: {e:?}", ex.addr());
                if ex.connect_failed() == Retry::Elsewhere {
                    continue;
                }
                return Err(match e {
                    pool::ConnectError::Timeout => Failure::ConnectTimeout,
                    pool::ConnectError::Failed(_) => Failure::ConnectError,
                });
            }
        }
    }
}

/// Keeps a connection whose exchange ended cleanly for the next request.
pub fn release(ex: &Exchange, conn: TargetConn) {
    pool::put(key(ex), conn);
}

/// Writes request bytes to the target within the idle timeout; a target that reads
/// nothing for that long is counted.
pub async fn write(
    target: &mut TargetConn,
    bytes: &[u8],
    timer: &mut Timer,
    idle: Duration,
    (stats, client): StallTo<'_>,
) -> Result<(), WriteFailed> {
    let r = relay::write_all_within(target, bytes, false, timer, idle).await;
    if let Err(WriteFailed {
        timed_out: true, ..
    }) = r
    {
        stats.stalled(Stall::TargetWrite, client);
    }
    r
}

/// What follows a write of the request's first bytes that failed: the same request
/// again (on a new connection, or to another target), or the failure to answer.
pub fn after_failed_write(
    ex: &mut Exchange,
    target: &TargetConn,
    w: WriteFailed,
    sent: Sent,
) -> Result<Retry, Failure> {
    if w.timed_out {
        return Err(Failure::TargetTimeout);
    }
    // The target refused the bytes: it has closed the connection. Nothing written
    // means nothing to act on, whatever the method. Over TLS a failed write may
    // have sent records before it failed and still say 0: not proof.
    let nothing_sent = w.written == 0 && !target.is_tls();
    let attempt = Attempt {
        reused: sent.reused,
        replayable: sent.replayable,
        safe: nothing_sent || sent.idempotent,
    };
    match ex.failed_before_response(attempt) {
        Retry::No => Err(Failure::TargetClosed),
        retry => Ok(retry),
    }
}

/// What follows a response head that never came: the request was written whole, so
/// it goes again only if idempotent and the connection closed with no byte of a
/// response (`answered`: some came).
pub fn after_no_response(
    ex: &mut Exchange,
    failure: Failure,
    answered: bool,
    sent: Sent,
) -> Result<Retry, Failure> {
    if answered || !matches!(failure, Failure::TargetClosed | Failure::TargetReset) {
        return Err(failure);
    }
    let attempt = Attempt {
        reused: sent.reused,
        replayable: sent.replayable,
        safe: sent.idempotent,
    };
    match ex.failed_before_response(attempt) {
        Retry::No => Err(failure),
        retry => Ok(retry),
    }
}
