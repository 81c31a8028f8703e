//! A listener's application, run by pingora on each accepted (and TLS-terminated)
//! client connection: the TLS policy's last check, the connection counted, then the
//! protocol ALPN chose: HTTP/2 ([`crate::http2`]) or HTTP/1.1 ([`crate::http1`]).
//! Both engines share the exchange core and the target side.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::listener::client::ClientConn;
use crate::listener::ListenerApp;
use crate::stats::ListenerStats;

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stats = &self.listener.stats;
        if self.tls13_only && !negotiated_tls13(&stream) {
            // The certificate resolver refuses hellos without TLS 1.3 suites; a client
            // that offered them but still settled on TLS 1.2 is closed here, unserved.
            ListenerStats::add(&stats.tls_negotiation_errors, 1);
            return None;
        }
        let guard = stats.connection_opened();
        let client = ClientConn::of(&stream);
        // ALB's client keep-alive runs from the connection's start.
        let keep_alive = self.routing.load().client_keep_alive;
        if stream.selected_alpn_proto() == Some(ALPN::H2) {
            crate::http2::serve(self.clone(), stream, client, keep_alive, shutdown.clone()).await;
            return None;
        }
        crate::http1::serve(self, stream, client, keep_alive, guard, shutdown).await;
        None
    }
}

fn negotiated_tls13(stream: &Stream) -> bool {
    let version = stream.get_ssl_digest().map(|d| d.version.clone());
    // rustls names it "TLSv1_3"; OpenSSL-style "TLSv1.3" too, to be safe.
    matches!(version.as_deref(), Some("TLSv1_3" | "TLSv1.3"))
}
