//! A listener, as ALB's docs call it: a port and protocol that take client
//! connections. [`ListenerInfo`] is what every request knows of its listener (its
//! port, its counters, its access log); [`ListenerApp`] is what pingora runs on each
//! of its accepted connections, HTTP/1.1 or HTTP/2 ([`accept`]); [`tls`] holds its
//! certificates and policies, and [`client`] what it learns of each client.
//!
//! [`bind`] checks its address and makes its pingora service. Still elsewhere: the
//! listener's response headers (`settings::ListenerHeaders`, part of the config
//! model) and counters (`stats::ListenerStats`, a leaf every module may count in).

pub mod accept;
pub mod bind;
pub mod client;
pub mod mtls;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use crate::access_log::AccessLog;
use crate::routing::SharedRouting;
use crate::settings::{DesyncMode, Protocol};
use crate::stats::ListenerStats;

/// What a listener's engines need: the listener, the routing snapshot, and the
/// limits of its protocol. Serves both HTTP/1.1 and HTTP/2.
#[derive(Debug)]
pub struct ListenerApp {
    pub listener: ListenerInfo,
    pub routing: SharedRouting,
    pub client_header_timeout: Duration,
    pub desync: DesyncMode,
    /// The listener's policy allows TLS 1.3 only.
    pub tls13_only: bool,
}

/// What an engine knows of the listener a request came in on.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Index of the listener in the config (its rule set in [`Routing::listeners`]).
    pub index: usize,
    pub port: u16,
    pub protocol: Protocol,
    /// `X-Forwarded-Port` and `-Proto` values, made once.
    pub forwarded_port: Box<[u8]>,
    pub forwarded_proto: &'static [u8],
    /// The listener's counters (`GET /metrics`).
    pub stats: Arc<ListenerStats>,
    /// The access log, when one is configured.
    pub access_log: Option<Arc<AccessLog>>,
}

impl ListenerInfo {
    /// Listener `index` of the config, on `port`, with fresh counters and no access log.
    pub fn new(index: usize, port: u16, protocol: Protocol) -> Self {
        ListenerInfo {
            index,
            port,
            protocol,
            forwarded_port: port.to_string().into_bytes().into_boxed_slice(),
            forwarded_proto: match protocol {
                Protocol::Http => b"http",
                Protocol::Https => b"https",
            },
            stats: Arc::default(),
            access_log: None,
        }
    }
}
