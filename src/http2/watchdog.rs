//! Deadlines for an HTTP/2 connection, which hyper does not keep: every byte has
//! one here too. The connection's socket counts the request and response frames it
//! moves (HEADERS, CONTINUATION, DATA; not PING, SETTINGS or WINDOW_UPDATE, which
//! keep nothing alive), the streams count
//! themselves open, and a watchdog beside the connection decides, a few times per
//! timeout, whether it has gone quiet:
//!
//! - no stream open and nothing moved for `idle_timeout`: a GOAWAY, as ALB closes
//!   an idle connection;
//! - streams open and no byte moved either way for `idle_timeout` (a stream without
//!   flow-control window, a client that reads nothing): the connection is closed,
//!   and with it the streams and their target connections;
//! - a HEADERS block begun and not ended (no `END_HEADERS`, CONTINUATION frames
//!   trickling or none) for `client_header_timeout`: closed, as an HTTP/1 head that
//!   never ends. The socket's reader follows the frame headers for this (it skips
//!   the payloads: a few comparisons per frame).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stats::Stall;

/// What one connection did: bytes moved, and streams open.
#[derive(Debug, Default)]
pub struct Activity {
    read: AtomicU64,
    written: AtomicU64,
    /// Streams open now.
    streams: AtomicUsize,
    /// A HEADERS block has begun and not ended.
    head_open: AtomicBool,
}

/// A stream counted open while it lives (its request and response body).
#[derive(Debug)]
pub struct OpenStream(Arc<Activity>);

impl Activity {
    /// Counts a stream open until the returned guard drops.
    pub fn open_stream(self: &Arc<Self>) -> OpenStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's socket, following the frames it moves both ways: only request and
/// response frames (HEADERS, CONTINUATION, DATA) count as progress, so that a
/// client's PINGs or WINDOW_UPDATEs keep neither an idle connection nor a stalled
/// stream open.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    read: FrameScan,
    written: FrameScan,
}

impl<S> Watched<S> {
    /// Watches `inner`, the client's socket, reporting to `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched {
            inner,
            activity,
            read: FrameScan::after(CLIENT_PREFACE),
            written: FrameScan::after(0),
        }
    }

    /// Follows the first `n` bytes of `bufs`, written.
    fn wrote(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        let mut progress = 0;
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            progress += self.written.feed(&b[..take]).1;
            n -= take;
        }
        if progress > 0 {
            self.activity
                .written
                .fetch_add(progress as u64, Ordering::Relaxed);
        }
    }
}

/// The client's connection preface, before its first frame.
const CLIENT_PREFACE: usize = 24;

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            let (open, progress) = this.read.feed(read);
            if progress > 0 {
                this.activity
                    .read
                    .fetch_add(progress as u64, Ordering::Relaxed);
            }
            if let Some(open) = open {
                this.activity.head_open.store(open, Ordering::Relaxed);
            }
        }
        r
    }
}

/// Follows the frames of one direction (RFC 9113 §4.1) far enough to know whether
/// a header block is open (after a HEADERS or PUSH_PROMISE frame without
/// `END_HEADERS`, until a CONTINUATION frame with it), and how many bytes of request
/// and response frames passed.
#[derive(Debug)]
struct FrameScan {
    /// Bytes still to skip: the connection preface, then each frame's payload.
    skip: usize,
    /// The payload being skipped is a request's or response's (progress).
    counts: bool,
    header: [u8; 9],
    have: usize,
}

impl FrameScan {
    const END_HEADERS: u8 = 0x4;

    /// A scan that starts after `preface` bytes.
    fn after(preface: usize) -> Self {
        FrameScan {
            skip: preface,
            counts: false,
            header: [0; 9],
            have: 0,
        }
    }

    /// Reads `bytes`; returns whether a header block is open (when a frame said),
    /// and how many bytes of HEADERS, CONTINUATION and DATA frames passed.
    fn feed(&mut self, mut bytes: &[u8]) -> (Option<bool>, usize) {
        let mut open = None;
        let mut progress = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                if self.counts {
                    progress += n;
                }
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = self.header;
            let length = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let ends = h[4] & Self::END_HEADERS != 0;
            match h[3] {
                // HEADERS, PUSH_PROMISE, CONTINUATION.
                0x1 | 0x5 | 0x9 => open = Some(!ends),
                _ => {}
            }
            // DATA, HEADERS, CONTINUATION: a request or response moving (an empty
            // one too: a frame that ends a stream).
            self.counts = matches!(h[3], 0x0 | 0x1 | 0x9);
            if self.counts {
                progress += 9;
            }
            self.skip = length;
        }
        (open, progress)
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
            this.wrote(&[io::IoSlice::new(buf)], n);
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
            this.wrote(bufs, n);
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
    /// The byte counts last seen (read, written), and when they last changed.
    seen: (u64, u64),
    moved_at: Instant,
    /// Since when a header block has been open.
    head_since: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for one connection, with its idle and header timeouts.
    pub fn new(activity: Arc<Activity>, idle: Duration, header: Duration) -> Self {
        Watchdog {
            activity,
            idle,
            header,
            seen: (0, 0),
            moved_at: Instant::now(),
            head_since: None,
        }
    }

    /// How often to look: ten times per timeout, at least twice a second, and never
    /// more often than 20 times a second. A move is seen up to one period late and
    /// a stall acted on up to one period late: within the timeout + 2 periods.
    pub fn period(&self) -> Duration {
        (self.idle.min(self.header) / 10)
            .clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// Starts the idle clock again (after a GOAWAY: the client gets one more idle
    /// timeout to finish).
    pub fn restart(&mut self, now: Instant) {
        self.moved_at = now;
    }

    /// Looks at the counts as they are `now`.
    pub fn check(&mut self, now: Instant) -> Option<Verdict> {
        let a = &self.activity;
        let counts = (
            a.read.load(Ordering::Relaxed),
            a.written.load(Ordering::Relaxed),
        );
        if counts != self.seen {
            self.seen = counts;
            self.moved_at = now;
        }
        if a.head_open.load(Ordering::Relaxed) {
            let since = *self.head_since.get_or_insert(now);
            if now.duration_since(since) >= self.header {
                return Some(Verdict::Close(Stall::ClientRead));
            }
        } else {
            self.head_since = None;
        }
        if now.duration_since(self.moved_at) < self.idle {
            return None;
        }
        if a.streams.load(Ordering::Relaxed) > 0 {
            Some(Verdict::Close(Stall::H2Stream))
        } else {
            Some(Verdict::GoAway)
        }
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
        activity.written.fetch_add(100, Ordering::Relaxed);
        assert_eq!(w.check(at(1)), None);
        assert_eq!(w.check(at(10)), None, "moved at 1 s");
        assert_eq!(w.check(at(11)), Some(Verdict::Close(Stall::H2Stream)));
        drop(stream);

        // A header block that stays open, however much trickles: the header timeout.
        let mut w = Watchdog::new(activity.clone(), idle, header);
        w.moved_at = t0;
        activity.head_open.store(true, Ordering::Relaxed);
        assert_eq!(w.check(at(1)), None);
        activity.read.fetch_add(9, Ordering::Relaxed);
        assert_eq!(w.check(at(3)), None);
        assert_eq!(w.check(at(5)), Some(Verdict::Close(Stall::ClientRead)));
    }

    #[test]
    fn it_should_follow_header_blocks_through_any_split_of_the_frames() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS with one setting, HEADERS without END_HEADERS, CONTINUATION with.
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        let headers_at = bytes.len();
        bytes.extend_from_slice(&[0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82]);
        let continuation_at = bytes.len();
        bytes.extend_from_slice(&[0, 0, 1, 9, 4, 0, 0, 0, 1, 0x84]);
        for split in [1, 2, 5, 9, 64] {
            let mut scan = FrameScan::after(CLIENT_PREFACE);
            let mut open = false;
            let mut progress = 0;
            let mut feed = |part: &[u8]| {
                for piece in part.chunks(split) {
                    let (o, p) = scan.feed(piece);
                    if let Some(o) = o {
                        open = o;
                    }
                    progress += p;
                }
                (open, progress)
            };
            // SETTINGS is no progress; HEADERS and CONTINUATION are, 10 bytes each.
            assert_eq!(feed(&bytes[..headers_at]), (false, 0), "split {split}");
            assert_eq!(
                feed(&bytes[headers_at..continuation_at]),
                (true, 10),
                "split {split}"
            );
            assert_eq!(
                feed(&bytes[continuation_at..]),
                (false, 20),
                "split {split}"
            );
        }
    }
}
