//! Binding a listener: its address checked (or, for port 0, reserved) before
//! anything starts, so that a port in use is a clear error, and the pingora service
//! that accepts on it: TCP, or TLS with the listener's certificates, policy and
//! ALPN (`h2` unless HTTP/2 is off), running a [`ListenerApp`] on each connection.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{ListenerConfig as Endpoint, TcpSocketOptions};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::config::{Config, ListenerConfig};
use crate::listener::mtls::{ClientCert, MtlsMode, MtlsVerifier, TrustStoreError};
use crate::listener::tls::{CertResolver, CertStore, SslPolicy, TlsError};
use crate::listener::{ListenerApp, ListenerInfo};
use crate::metrics::Metrics;
use crate::routing::SharedRouting;
use crate::stats::ListenerStats;
use crate::upgrade::Start;

/// Bytes of the read buffer pingora puts in front of each client connection (its
/// default is 64 KiB, allocated zeroed per connection, so resident for every idle
/// websocket). HTTP/1 parsing and TLS read into buffers of their own.
const DOWNSTREAM_READ_BUFFER: usize = 0;
/// No write buffer either: the engine writes whole heads (and body pieces) at once.
const DOWNSTREAM_WRITE_BUFFER: usize = 0;

/// Each listener's address to bind, in config order, and the sockets that hold the
/// ports picked for port-0 listeners (kept until the process exits). On an upgrade
/// the running tether holds the ports: its sockets come over the upgrade socket,
/// known by the addresses it bound. `Err` names the address that cannot be had.
pub fn addresses(
    listeners: &[ListenerConfig],
    start: &Start,
) -> Result<(Vec<socket2::Socket>, Vec<SocketAddr>), (SocketAddr, std::io::Error)> {
    let mut reserved = Vec::new();
    let mut bound = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        if start.upgrade {
            bound.push(start.inherited(i, l.addr).unwrap_or(l.addr));
        } else if l.addr.port() == 0 {
            let (socket, addr) = reserve_port(l.addr).map_err(|e| (l.addr, e))?;
            reserved.push(socket);
            bound.push(addr);
        } else {
            TcpListener::bind(l.addr).map_err(|e| (l.addr, e))?;
            bound.push(l.addr);
        }
    }
    Ok((reserved, bound))
}

/// Picks a free port for a listener configured with port 0 and holds it: a socket
/// bound with `SO_REUSEPORT` but never listening keeps every other program off the
/// port (binding it needs `SO_REUSEPORT` under the same user) while receiving no
/// connections itself; pingora then binds the same port with `SO_REUSEPORT` and
/// listens. Unlike picking a port and releasing it, no other program can take the
/// port in between.
fn reserve_port(addr: SocketAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound a non-IP address"))?;
    Ok((socket, bound))
}

/// A listener's service, ready for pingora, with what the rest of the server needs
/// of it.
pub struct Built {
    pub service: Service<ListenerApp>,
    /// Its `listener` label in the metrics.
    pub label: String,
    pub stats: Arc<ListenerStats>,
    /// Its certificate resolver (HTTPS), for reloads.
    pub resolver: Option<Arc<CertResolver>>,
    /// Its client certificate verifier (mutual TLS), for reloads and metrics.
    pub mtls: Option<Arc<MtlsVerifier>>,
}

/// Why a listener's service could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Tls(TlsError),
    #[error("{0}")]
    Engine(String),
    #[error(transparent)]
    TrustStore(TrustStoreError),
}

/// The service of listener `i` (`l`, bound at `addr`; `shared`: another listener
/// has the same port on another address, so the metrics label names the address).
pub fn service(
    (i, l, addr, shared): (usize, &ListenerConfig, SocketAddr, bool),
    config: &Config,
    routing: SharedRouting,
    access_log: Option<Arc<AccessLog>>,
) -> Result<Built, BindError> {
    let lb = &config.load_balancer;
    let tls13_only = l
        .tls
        .as_ref()
        .is_some_and(|t| t.policy == SslPolicy::Tls13Only);
    let mut listener = ListenerInfo::new(i, addr.port(), l.protocol);
    listener.access_log = access_log;
    let label = if shared {
        format!("{}:{addr}", l.protocol.as_str())
    } else {
        Metrics::listener_label(l.protocol, addr.port())
    };
    let stats = listener.stats.clone();
    let app = ListenerApp {
        listener,
        routing,
        client_header_timeout: lb.client_header_timeout,
        desync: lb.desync_mitigation_mode,
        tls13_only,
    };
    let mut service = Service::new(format!("listener {} {}", l.protocol.as_str(), addr), app);
    let mut endpoint = Endpoint::tcp(addr.to_string()).l4_buffer(L4BufferSettings::new(
        DOWNSTREAM_READ_BUFFER,
        DOWNSTREAM_WRITE_BUFFER,
    ));
    if l.addr.port() == 0 {
        let mut options = TcpSocketOptions::default();
        options.so_reuseport = Some(true);
        endpoint = endpoint.tcp_socket_options(options);
    }
    let mut resolver = None;
    let mut mtls = None;
    match &l.tls {
        None => service.add_listener(endpoint),
        Some(tls) => {
            let store = CertStore::load(&tls.certificates).map_err(BindError::Tls)?;
            let r = Arc::new(
                CertResolver::new(store, tls.certificates.clone(), tls.policy)
                    .counting_refusals(Some(stats.clone())),
            );
            let mode = tls.mutual_auth.mode;
            let mut settings = TlsSettings::with_callbacks(Box::new(KeepHandshake { mode }))
                .map_err(|e| BindError::Engine(e.to_string()))?;
            settings.set_cert_resolver(r.clone());
            if mode != MtlsMode::Off {
                let verifier = MtlsVerifier::new(&tls.mutual_auth, Some(stats.clone()))
                    .map_err(BindError::TrustStore)?;
                settings.set_client_cert_verifier(verifier.clone());
                mtls = Some(verifier);
            }
            // HTTP/2 for clients that offer it (unless `http2_enabled` is off: ALPN
            // then offers HTTP/1.1 alone); targets get HTTP/1.1.
            if lb.http2_enabled {
                settings.enable_h2();
            } else {
                settings.set_alpn(pingora::protocols::ALPN::H1);
            }
            service.add_listener(endpoint.tls(settings));
            resolver = Some(r);
        }
    }
    service.threads = Some(lb.threads);
    Ok(Built {
        service,
        label,
        stats,
        resolver,
        mtls,
    })
}

/// After a handshake: keeps the client's SNI name (for the access log's
/// `domain_name`) and, with mutual TLS, its certificate as targets will see it.
struct KeepHandshake {
    mode: MtlsMode,
}

#[async_trait]
impl pingora::listeners::TlsAccept for KeepHandshake {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let server_name = tls.server_name().map(Arc::from);
        let client_cert = match self.mode {
            MtlsMode::Off => None,
            mode => tls
                .peer_cert_chain_der()
                .and_then(|chain| ClientCert::of(mode, chain))
                .map(Arc::new),
        };
        if server_name.is_none() && client_cert.is_none() {
            return None;
        }
        Some(Arc::new(crate::listener::client::Handshake {
            server_name,
            client_cert,
        }))
    }
}
