//! Connections to targets: a new one (TCP, or TLS with the group's settings) or an
//! idle one from this thread's pool. The pool is per thread (each client connection
//! stays on its thread), so taking and returning a connection is a map lookup: no
//! lock, no task per pooled connection. It is keyed by everything that makes one
//! connection differ from another ([`PoolKey`]): a connection made for one group's
//! TLS settings never serves a group with others at the same address.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::settings::UpstreamTls;

/// How long an idle pooled connection is kept: less than the 5 s after which Node.js
/// (the most common target) closes idle keep-alive connections.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// Most idle connections kept per target and thread.
const POOL_PER_TARGET: usize = 256;

/// A connection to a target.
pub enum TargetConn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for TargetConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetConn::Plain(s) => write!(f, "TargetConn::Plain({:?})", s.peer_addr().ok()),
            TargetConn::Tls(_) => write!(f, "TargetConn::Tls"),
        }
    }
}

impl TargetConn {
    /// Whether the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, TargetConn::Tls(_))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            TargetConn::Plain(s) => s,
            TargetConn::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether an idle connection is still usable: the target has neither closed it
    /// nor sent anything unasked. What the reactor already saw of the socket (a FIN,
    /// bytes) is checked for free; only a socket it marked readable, or one idle for
    /// [`PEEK_AFTER`] or more, costs a `recv(MSG_PEEK)`.
    fn is_idle_and_open(&self, idle_for: Duration) -> bool {
        let tcp = self.tcp();
        let peek = || {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            socket2::SockRef::from(tcp).peek(&mut byte)
        };
        let would_block =
            |r: io::Result<usize>| matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        // Runs the peek only when the reactor says readable (and clears that
        // readiness when the peek finds nothing).
        if !would_block(tcp.try_io(tokio::io::Interest::READABLE, peek)) {
            return false;
        }
        idle_for < PEEK_AFTER || would_block(peek())
    }
}

/// Idle pooled connections older than this are checked with a peek even when the
/// reactor saw nothing: a keep-alive timeout of the target may just have closed them.
const PEEK_AFTER: Duration = Duration::from_millis(500);

impl AsyncRead for TargetConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TargetConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            TargetConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetConn::Plain(s) => Pin::new(s).poll_flush(cx),
            TargetConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TargetConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetConn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TargetConn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TargetConn::Plain(s) => s.is_write_vectored(),
            TargetConn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Failed(io::Error),
}

/// A new connection to `addr`, within `timeout`, TLS when the group says so.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<TargetConn, ConnectError> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(TargetConn::Plain(tcp));
        };
        let name = match &tls.server_name {
            Some(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(client_config(tls));
        let stream = connector.connect(name, tcp).await?;
        Ok(TargetConn::Tls(Box::new(stream)))
    };
    // Boxed: a TLS handshake's state is large, and would otherwise size every client
    // connection's task, idle ones included.
    match tokio::time::timeout(timeout, Box::pin(attempt)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// The rustls client settings of a group's HTTPS targets, made once per settings.
fn client_config(tls: &UpstreamTls) -> Arc<rustls::ClientConfig> {
    static SYSTEM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    type ByCa = HashMap<Arc<Vec<Vec<u8>>>, Arc<rustls::ClientConfig>>;
    static BY_CA: OnceLock<parking_lot::Mutex<ByCa>> = OnceLock::new();
    let build = |roots: rustls::RootCertStore| {
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    match &tls.ca {
        None => SYSTEM
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                build(roots)
            })
            .clone(),
        Some(ders) => {
            // Keyed by the CA certificates themselves (not by where the list lives:
            // a list made by a later reload may reuse a freed one's address).
            let mut map = BY_CA.get_or_init(Default::default).lock();
            map.entry(ders.clone())
                .or_insert_with(|| {
                    let mut roots = rustls::RootCertStore::empty();
                    for der in ders.iter() {
                        let _ = roots.add(rustls::pki_types::CertificateDer::from(der.clone()));
                    }
                    build(roots)
                })
                .clone()
        }
    }
}

/// What makes a connection to a target what it is: the address, and TLS on or off
/// with its settings (server name, CA; a client certificate would join them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    addr: SocketAddr,
    /// `UpstreamTls::identity` when TLS is on.
    tls: Option<u64>,
}

impl PoolKey {
    /// The key of a connection to `addr`, with `tls` when it speaks TLS.
    pub fn new(addr: SocketAddr, tls: Option<&UpstreamTls>) -> Self {
        PoolKey {
            addr,
            tls: tls.map(UpstreamTls::identity),
        }
    }
}

struct Idle {
    conn: TargetConn,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: HashMap<PoolKey, Vec<Idle>, foldhash::fast::FixedState>,
    last_sweep: Option<Instant>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle connection made as `key` says, kept by this thread, if one is still open.
pub fn take(key: &PoolKey) -> Option<TargetConn> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let list = pool.idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            let idle_for = now.duration_since(idle.since);
            if idle_for < POOL_IDLE && idle.conn.is_idle_and_open(idle_for) {
                return Some(idle.conn);
            }
        }
        None
    })
}

/// Keeps a connection whose exchange ended cleanly for the next request that needs
/// one made as `key` says.
pub fn put(key: PoolKey, conn: TargetConn) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let now = Instant::now();
        // Now and then, close what idled too long.
        if pool
            .last_sweep
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            pool.last_sweep = Some(now);
            pool.idle.retain(|_, list| {
                list.retain(|i| now.duration_since(i.since) < POOL_IDLE);
                !list.is_empty()
            });
        }
        let list = pool.idle.entry(key).or_default();
        if list.len() < POOL_PER_TARGET {
            list.push(Idle { conn, since: now });
        }
    })
}
