//! What the engines know of a client connection: its address, its TLS session and
//! the name it asked for, read once from the accepted stream. A leaf below the
//! engines and the access log, which all speak of the client.

use std::net::IpAddr;
use std::sync::Arc;

use pingora::protocols::Stream;

use crate::listener::mtls::ClientCert;
use crate::tls_session::TlsSession;

/// What the engines know of a client connection.
#[derive(Debug, Clone, Default)]
pub struct ClientConn {
    /// The socket peer (unknown for a Unix socket client).
    pub ip: Option<IpAddr>,
    /// The peer's port (0 when unknown).
    pub port: u16,
    /// The TLS session of an HTTPS connection, in OpenSSL's names.
    pub tls: Option<TlsSession>,
    /// The SNI name the TLS client sent.
    pub server_name: Option<Arc<str>>,
    /// The client's certificate (mutual TLS), rendered as targets see it.
    pub client_cert: Option<Arc<ClientCert>>,
}

impl ClientConn {
    /// The client's address, when known.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.ip.map(|ip| std::net::SocketAddr::new(ip, self.port))
    }

    /// What the accepted (and TLS-terminated) `stream` says of its client.
    pub fn of(stream: &Stream) -> ClientConn {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let digest = stream.get_ssl_digest();
        let tls = digest
            .as_ref()
            .and_then(|d| TlsSession::from_rustls(&d.version, &d.cipher));
        let handshake = digest.as_ref().and_then(|d| d.extension.get::<Handshake>());
        ClientConn {
            ip: peer.map(|a| a.ip()),
            port: peer.map_or(0, |a| a.port()),
            tls,
            server_name: handshake.and_then(|h| h.server_name.clone()),
            client_cert: handshake.and_then(|h| h.client_cert.clone()),
        }
    }
}

/// What the listener's handshake callback keeps in pingora's TLS digest: the SNI name
/// the client sent, and its certificate with mutual TLS.
#[derive(Debug)]
pub struct Handshake {
    pub server_name: Option<Arc<str>>,
    pub client_cert: Option<Arc<ClientCert>>,
}
