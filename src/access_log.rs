//! ALB access logs: one line per request (a websocket's when it closes), in ALB's
//! field order and quoting, written off the data path.
//!
//! The engines fill an [`Entry`] and hand it to [`AccessLog::push`]; a bounded queue
//! takes it to a writer thread that formats and writes the line. A full queue drops
//! the entry and counts it: logging never makes a request wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::tls_session::TlsSession;

/// ALB's `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    H2,
    Ws,
    Wss,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::H2 => "h2",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }
}

/// What ALB's `actions_executed` lists (tether runs one action per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Forward,
    FixedResponse,
    Redirect,
}

/// The facts of one access log line, in ALB's field order. `None` is written as ALB
/// writes a missing value (`-`, or `-1` for the processing times).
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// When the response ended (a websocket: when it closed).
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    /// The target that answered (the last one tried).
    pub target: Option<SocketAddr>,
    /// From the request head read to the request sent to the target (or to tether's
    /// own response).
    pub request_processing: Option<Duration>,
    /// From the request sent to the response head from the target.
    pub target_processing: Option<Duration>,
    /// From the response head to the end of the response.
    pub response_processing: Option<Duration>,
    pub elb_status: Option<u16>,
    pub target_status: Option<u16>,
    /// Bytes from the client (head and body).
    pub received_bytes: u64,
    /// Bytes to the client (head and body).
    pub sent_bytes: u64,
    /// `METHOD scheme://host:port/path?query HTTP/version`, as ALB writes it; `None`
    /// for a request that could not be parsed (ALB writes `"- - - "`).
    pub request: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    pub tls: Option<TlsSession>,
    pub target_group: Option<Arc<str>>,
    /// The `X-Amzn-Trace-Id` sent to the target.
    pub trace_id: Option<Box<str>>,
    /// The SNI name of a TLS connection.
    pub domain_name: Option<Box<str>>,
    /// The certificate presented (its file, in place of an ARN).
    pub chosen_cert: Option<Arc<str>>,
    /// The priority of the matched rule; 0 for the default action.
    pub matched_rule_priority: Option<u32>,
    /// When the first byte of the request head arrived.
    pub request_creation_time: SystemTime,
    pub actions_executed: Option<ActionKind>,
    pub redirect_url: Option<Box<str>>,
    /// ALB's `error_reason` (e.g. `TargetConnectionErrorCode`).
    pub error_reason: Option<&'static str>,
    /// Every target tried, in order.
    pub targets: Vec<SocketAddr>,
    /// The status each of them answered (`-` written for one that did not).
    pub target_statuses: Vec<Option<u16>>,
    /// The desync class of a request that is not compliant (`Acceptable`,
    /// `Ambiguous`, `Severe`) and its reason.
    pub classification: Option<&'static str>,
    pub classification_reason: Option<&'static str>,
}

/// Stub until the writer lands (merged from the i12log branch).
#[derive(Debug)]
pub struct AccessLog;

impl AccessLog {
    pub fn dropped(&self) -> u64 {
        0
    }
    pub fn written(&self) -> u64 {
        0
    }
}
impl AccessLog {
    pub fn push(&self, _entry: Entry) {}
}
