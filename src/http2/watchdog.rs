//! Deadlines for an HTTP/2 connection, which hyper does not keep: every byte has
//! one here too. The connection's socket counts what it moves, the streams count
//! themselves open, and a watchdog beside the connection decides, a few times per
//! timeout, whether it has gone quiet:
//!
//! - no stream open and nothing moved for `idle_timeout`: a GOAWAY, as ALB closes
//!   an idle connection;
//! - streams open and no byte moved either way for `idle_timeout` (a stream without
//!   flow-control window, a client that reads nothing): the connection is closed,
//!   and with it the streams and their target connections;
//! - bytes read with no stream open (a HEADERS block that never ends, or frames
//!   that never make a request) for `client_header_timeout`: closed, as an HTTP/1
//!   head that never ends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Stall;

/// What one connection did: bytes moved, and streams open.
#[derive(Debug, Default)]
pub struct Activity {
    read: AtomicU64,
    written: AtomicU64,
    /// Streams open now, and ever opened.
    streams: AtomicUsize,
    opened: AtomicU64,
}

/// A stream counted open while it lives (its request and response body).
#[derive(Debug)]
pub struct OpenStream(Arc<Activity>);

impl Activity {
    pub fn open_stream(self: &Arc<Self>) -> OpenStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's socket, counting what it moves.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.activity.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.activity.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.activity.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the watchdog found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Idle with no stream: send a GOAWAY.
    GoAway,
    /// A stall (see [`Stall`]): close the connection now.
    Close(Stall),
}

/// Watches one connection's [`Activity`].
#[derive(Debug)]
pub struct Watchdog {
    activity: Arc<Activity>,
    idle: Duration,
    header: Duration,
    /// The counts last seen (read, written, streams opened), and when the bytes last
    /// changed.
    seen: (u64, u64),
    opened: u64,
    moved_at: Instant,
    /// When bytes first came with no stream open (a request being started).
    pending_since: Option<Instant>,
}

impl Watchdog {
    pub fn new(activity: Arc<Activity>, idle: Duration, header: Duration) -> Self {
        Watchdog {
            activity,
            idle,
            header,
            seen: (0, 0),
            opened: 0,
            moved_at: Instant::now(),
            pending_since: None,
        }
    }

    /// How often to look: a few times per timeout, so that a stall is acted on
    /// within a quarter of it (and never more often than 10 times a second).
    pub fn period(&self) -> Duration {
        (self.idle.min(self.header) / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Looks at the counts as they are `now`.
    pub fn check(&mut self, now: Instant) -> Option<Verdict> {
        let a = &self.activity;
        let counts = (
            a.read.load(Ordering::Relaxed),
            a.written.load(Ordering::Relaxed),
        );
        let streams = a.streams.load(Ordering::Relaxed);
        let opened = a.opened.load(Ordering::Relaxed);
        let read_more = counts.0 != self.seen.0;
        if opened != self.opened {
            // What was read became requests.
            self.opened = opened;
            self.pending_since = None;
        }
        if counts != self.seen {
            self.seen = counts;
            self.moved_at = now;
        }
        if streams > 0 {
            self.pending_since = None;
            if now.duration_since(self.moved_at) >= self.idle {
                return Some(Verdict::Close(Stall::H2Stream));
            }
            return None;
        }
        if read_more && self.pending_since.is_none() && opened == self.opened && streams == 0 {
            self.pending_since = Some(now);
        }
        if let Some(since) = self.pending_since {
            if now.duration_since(since) >= self.header {
                return Some(Verdict::Close(Stall::ClientRead));
            }
        }
        if now.duration_since(self.moved_at) >= self.idle {
            return Some(Verdict::GoAway);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_tell_an_idle_connection_from_a_stalled_stream_and_an_endless_head() {
        let idle = Duration::from_secs(10);
        let header = Duration::from_secs(4);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);

        // Nothing at all: a GOAWAY at the idle timeout.
        let activity = Arc::new(Activity::default());
        let mut w = Watchdog::new(activity.clone(), idle, header);
        w.moved_at = t0;
        assert_eq!(w.check(at(9)), None);
        assert_eq!(w.check(at(10)), Some(Verdict::GoAway));

        // A stream open that moves nothing: closed at the idle timeout.
        let mut w = Watchdog::new(activity.clone(), idle, header);
        w.moved_at = t0;
        let stream = activity.open_stream();
        w.opened = 1;
        activity.written.fetch_add(100, Ordering::Relaxed);
        assert_eq!(w.check(at(1)), None);
        assert_eq!(w.check(at(10)), None, "moved at 1 s");
        assert_eq!(w.check(at(11)), Some(Verdict::Close(Stall::H2Stream)));
        drop(stream);

        // Bytes with no stream that never becomes one: the header timeout.
        let mut w = Watchdog::new(activity.clone(), idle, header);
        w.moved_at = t0;
        w.seen = (
            activity.read.load(Ordering::Relaxed),
            activity.written.load(Ordering::Relaxed),
        );
        activity.read.fetch_add(9, Ordering::Relaxed);
        assert_eq!(w.check(at(1)), None);
        activity.read.fetch_add(9, Ordering::Relaxed);
        assert_eq!(w.check(at(3)), None);
        assert_eq!(w.check(at(5)), Some(Verdict::Close(Stall::ClientRead)));

        // Bytes that became a request (opened and done between two looks) are not a
        // head that never ends.
        let mut w = Watchdog::new(activity.clone(), idle, header);
        w.moved_at = t0;
        w.opened = 1;
        activity.read.fetch_add(9, Ordering::Relaxed);
        assert_eq!(w.check(at(1)), None);
        drop(activity.open_stream());
        assert_eq!(w.check(at(6)), None);
    }
}
