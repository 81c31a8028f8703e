//! Moving bytes without holding buffers while idle: every read borrows this thread's
//! scratch buffer for the length of one `poll_read`, and only bytes that a write could
//! not take at once are copied to the heap, until they are written. A silent websocket
//! or keep-alive connection then holds its sockets and a few words of state.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::websocket::{FrameTracker, CLOSE_GOING_AWAY};

/// Size of the per-thread scratch buffer (one read's worth).
pub const SCRATCH: usize = 32 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Polls one read into the thread's scratch buffer and hands the bytes to `f` (an
/// empty slice at end of stream). Nothing is held when the read is pending.
pub fn poll_read_scratch<R, T>(
    cx: &mut Context<'_>,
    io: &mut R,
    f: impl FnOnce(&mut Context<'_>, &[u8]) -> T,
) -> Poll<io::Result<T>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    SCRATCH_BUF.with(|s| {
        let mut s = s.borrow_mut();
        let mut rb = ReadBuf::new(&mut s[..]);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(f(cx, rb.filled())))
    })
}

/// Reads once, appending what arrived to `buf`; 0 at end of stream.
pub async fn read_into<R>(io: &mut R, buf: &mut Vec<u8>) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
{
    poll_fn(|cx| {
        poll_read_scratch(cx, io, |_, bytes| {
            buf.extend_from_slice(bytes);
            bytes.len()
        })
    })
    .await
}

/// One direction of a relay: bytes read but not yet written.
#[derive(Default)]
struct Direction {
    pending: Vec<u8>,
    at: usize,
    /// The source ended (or failed); the destination was shut down.
    done: bool,
}

impl Direction {
    /// Whether every byte read was written.
    fn is_flushed(&self) -> bool {
        self.at >= self.pending.len()
    }

    /// Moves what it can from `src` to `dst`; `on_bytes` sees every byte read.
    /// Ready when the source ends; pending with wakers set otherwise.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        mut on_bytes: impl FnMut(&[u8]),
        active: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            // First the bytes a write left over.
            while self.at < self.pending.len() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.pending[self.at..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.at += n;
            }
            if !self.pending.is_empty() {
                // Drained: give the heap buffer back.
                self.pending = Vec::new();
                self.at = 0;
                ready!(Pin::new(&mut *dst).poll_flush(cx))?;
            }
            let pending = &mut self.pending;
            let read = ready!(poll_read_scratch(cx, src, |cx, bytes| {
                if bytes.is_empty() {
                    return Ok(0);
                }
                on_bytes(bytes);
                // Write straight from the scratch; keep what the write did not take.
                let mut at = 0;
                while at < bytes.len() {
                    match Pin::new(&mut *dst).poll_write(cx, &bytes[at..]) {
                        Poll::Ready(Ok(0)) => {
                            return Err(io::Error::from(io::ErrorKind::WriteZero))
                        }
                        Poll::Ready(Ok(n)) => at += n,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => break,
                    }
                }
                pending.extend_from_slice(&bytes[at..]);
                Ok(bytes.len())
            }))??;
            if read == 0 {
                return Poll::Ready(Ok(()));
            }
            *active = true;
            if self.pending.is_empty() {
                ready!(Pin::new(&mut *dst).poll_flush(cx))?;
            }
        }
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// One side closed (or failed) and the other was closed after it.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The target's deregistration delay ended: the client got a Close 1001.
    Drained,
}

/// Relays an upgraded connection both ways until both sides end (a side that ends
/// has its peer's write side shut down, as TCP half-close), no byte moves for `idle`
/// (counted on both directions together, as ALB does), or `closing` turns true (the
/// target's drain ended): then the client gets a websocket Close 1001 between two
/// frames of the target's stream. Time is coarse: the connection's [`Timer`] wakes
/// once per idle period, not once per read.
pub async fn tunnel<C, T>(
    client: &mut C,
    target: &mut T,
    idle: Duration,
    timer: &mut Timer,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    T: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut frames = FrameTracker::default();
    let mut last = Instant::now();
    let mut draining = *closing.borrow();
    loop {
        let step = poll_fn(|cx| {
            let mut active = false;
            let mut step = None;
            if !up.done && up.poll(cx, client, target, |_| {}, &mut active).is_ready() {
                up.done = true;
                step = Some(Step::UpEnded);
            }
            if step.is_none()
                && !down.done
                && down
                    .poll(cx, target, client, |b| frames.feed(b), &mut active)
                    .is_ready()
            {
                down.done = true;
                step = Some(Step::DownEnded);
            }
            if active {
                last = Instant::now();
            }
            // The goodbye goes between two frames, after all that was read of them.
            if draining && frames.at_boundary() && down.is_flushed() {
                return Poll::Ready(Step::Drained);
            }
            if let Some(s) = step {
                return Poll::Ready(s);
            }
            timer.poll_expired(cx, last + idle).map(|()| Step::Idle)
        });
        tokio::select! {
            biased;
            s = step => match s {
                Step::UpEnded => {
                    shutdown_within(target, idle).await;
                    if down.done {
                        return TunnelEnd::Closed;
                    }
                }
                Step::DownEnded => {
                    shutdown_within(client, idle).await;
                    if up.done {
                        return TunnelEnd::Closed;
                    }
                }
                Step::Drained => {
                    let _ = tokio::time::timeout(idle, client.write_all(&CLOSE_GOING_AWAY)).await;
                    shutdown_within(client, idle).await;
                    return TunnelEnd::Drained;
                }
                Step::Idle => return TunnelEnd::Idle,
            },
            changed = closing.changed(), if !draining => {
                if changed.is_err() || *closing.borrow() {
                    draining = true;
                    if frames.is_lost() {
                        // Not websocket framing: close without a goodbye.
                        shutdown_within(client, idle).await;
                        return TunnelEnd::Drained;
                    }
                }
            }
        }
    }
}

enum Step {
    UpEnded,
    DownEnded,
    Drained,
    Idle,
}

/// A connection's one timer, armed at most once per timeout period: each wait gives
/// its deadline (now + the timeout, from a clock read), and the timer, when it wakes
/// at the deadline it was armed with, re-arms itself if the wait's deadline has moved
/// on meanwhile. A request then costs a clock read, not a timer registration.
pub struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: tokio::time::Instant,
}

impl Default for Timer {
    fn default() -> Self {
        // Far away until the first wait brings it in.
        let armed = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(armed)),
            armed,
        }
    }
}

impl Timer {
    /// Ready once `deadline` has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(deadline);
        if deadline < self.armed {
            self.armed = deadline;
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.armed = deadline;
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Runs `fut` until `deadline`; `None` when the deadline came first.
    pub async fn run<F: std::future::Future>(
        &mut self,
        deadline: Instant,
        fut: F,
    ) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.poll_expired(cx, deadline).map(|()| None)
        })
        .await
    }
}

/// A write that did not finish: how many bytes went out first, and whether the
/// peer took nothing for the idle timeout (else it failed or closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFailed {
    pub written: usize,
    pub timed_out: bool,
}

/// Writes all of `bytes` (and flushes, when `flush`), failing when the peer takes
/// nothing for `idle`: every byte has a deadline. A write the socket takes at once
/// costs no timer; one that waits arms the connection's [`Timer`], and each byte
/// taken moves the deadline on.
pub async fn write_all_within<W>(
    io: &mut W,
    bytes: &[u8],
    flush: bool,
    timer: &mut Timer,
    idle: Duration,
) -> Result<(), WriteFailed>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut at = 0;
    let mut deadline = None;
    poll_fn(|cx| loop {
        let failed = |timed_out| WriteFailed {
            written: at,
            timed_out,
        };
        let step = if at < bytes.len() {
            Pin::new(&mut *io).poll_write(cx, &bytes[at..])
        } else if flush {
            Pin::new(&mut *io).poll_flush(cx).map_ok(|()| 0)
        } else {
            return Poll::Ready(Ok(()));
        };
        match step {
            Poll::Ready(Ok(0)) if at < bytes.len() => return Poll::Ready(Err(failed(false))),
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(n)) => {
                at += n;
                deadline = None;
            }
            Poll::Ready(Err(_)) => return Poll::Ready(Err(failed(false))),
            Poll::Pending => {
                let d = *deadline.get_or_insert_with(|| Instant::now() + idle);
                return timer.poll_expired(cx, d).map(|()| Err(failed(true)));
            }
        }
    })
    .await
}

/// Shuts a stream's write side down, waiting at most `grace` (a TLS close_notify
/// to a peer that reads nothing must not hold the connection).
pub async fn shutdown_within<W>(io: &mut W, grace: Duration)
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let _ = tokio::time::timeout(grace, io.shutdown()).await;
}

/// A client stream that counts the bytes it moves, for ALB's `ProcessedBytes` and
/// the access log's `received_bytes` and `sent_bytes` (TLS records' own bytes not
/// included: the counts are of HTTP bytes).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    /// Bytes read since the start.
    pub read: u64,
    /// Bytes written since the start.
    pub written: u64,
}

impl<S> Counted<S> {
    /// Counts what moves through `inner`, from zero.
    pub fn new(inner: S) -> Self {
        Counted {
            inner,
            read: 0,
            written: 0,
        }
    }

    /// The stream being counted.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.read += (buf.filled().len() - before) as u64;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
