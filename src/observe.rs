//! The one place a finished request is counted and logged, for HTTP/1, HTTP/2 and
//! websockets alike. An engine keeps a [`Record`] per request, adds what it sees
//! (bytes, times, its own responses), and calls [`Record::finish`] when the request
//! ends, or when its websocket closes: the listener's byte count goes up and, when
//! an access log is configured, one ALB line is queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{ActionKind, Entry, Kind};
use crate::exchange::{Exchange, LbResponse, ListenerInfo};
use crate::listener::client::ClientConn;
use crate::stats::ListenerStats;

/// What the access log needs beyond the counters: taken only when it is on.
#[derive(Debug, Default)]
pub struct Detail {
    /// `METHOD scheme://host:port/path?query HTTP/version`.
    pub request: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    pub trace_id: Option<Box<str>>,
    pub classification: Option<(&'static str, &'static str)>,
}

/// One request, as the engine saw it.
#[derive(Debug)]
pub struct Record {
    pub kind: Kind,
    /// When the first byte of its head came (ALB's `request_creation_time`).
    pub created: SystemTime,
    /// When its head was whole.
    pub received: Instant,
    pub rx: u64,
    pub tx: u64,
    /// When it went to the target.
    pub dispatched: Option<Instant>,
    /// When the target's response head came.
    pub answered: Option<Instant>,
    /// tether's own status (an error, a fixed response, a redirect).
    pub elb_status: Option<u16>,
    pub action: Option<ActionKind>,
    pub rule_priority: Option<u32>,
    pub redirect_url: Option<Box<str>>,
    pub error_reason: Option<&'static str>,
    /// The forward's group, targets tried and the answering one's status.
    pub target_group: Option<Arc<str>>,
    pub targets: Vec<SocketAddr>,
    pub target_status: Option<u16>,
    /// The Host and URL a rule's transforms made (logged only).
    pub transformed_host: Option<Box<str>>,
    pub transformed_uri: Option<Box<str>>,
    pub detail: Option<Box<Detail>>,
}

impl Record {
    /// A request whose head began at `created` (wall clock) and was whole at
    /// `received`, after `rx` bytes.
    pub fn new(kind: Kind, created: SystemTime, received: Instant, rx: u64) -> Record {
        Record {
            kind,
            created,
            received,
            rx,
            tx: 0,
            dispatched: None,
            answered: None,
            elb_status: None,
            action: None,
            rule_priority: None,
            redirect_url: None,
            error_reason: None,
            target_group: None,
            targets: Vec::new(),
            target_status: None,
            transformed_host: None,
            transformed_uri: None,
            detail: None,
        }
    }

    /// tether answered the request itself with `resp`.
    pub fn responded(&mut self, stats: &ListenerStats, resp: &LbResponse) {
        stats.lb_response(resp.status);
        self.elb_status = Some(resp.status);
        if resp.action.is_some() {
            self.action = resp.action;
            self.rule_priority = resp.rule_priority;
        }
        if self.detail.is_some() {
            self.redirect_url = resp.location.as_deref().map(Box::from);
        }
    }

    /// Takes what the access log wants from the exchange (a forward).
    pub fn forwarded(&mut self, ex: &Exchange, logging: bool) {
        self.action = Some(if ex.jwt_validated {
            ActionKind::JwtValidationForward
        } else {
            ActionKind::Forward
        });
        self.rule_priority = ex.rule_priority;
        self.target_status = ex.target_status;
        if logging {
            self.target_group = Some(Arc::from(ex.group.name.as_str()));
            self.targets = ex.tried().collect();
            self.transformed_host = ex.rewritten_host().map(Box::from);
            self.transformed_uri = ex.rewritten_url().map(Box::from);
        }
    }

    /// The request is over (a websocket: closed): counts its bytes and logs it.
    pub fn finish(self, listener: &ListenerInfo, client: &ClientConn) {
        ListenerStats::add(&listener.stats.processed_bytes, self.rx + self.tx);
        let Some(log) = &listener.access_log else {
            return;
        };
        let now = Instant::now();
        let secs = |from: Instant, to: Instant| to.saturating_duration_since(from);
        let dispatched = self.dispatched;
        // ALB: -1 for all three when the request could not be dispatched to a target
        // (no target, a failed connect, a malformed request), and for the target's
        // and the response's when the target did not answer. A fixed response or a
        // redirect is the load balancer's own processing, and so is the 401 of a
        // `jwt_validation`.
        let own_action = matches!(
            self.action,
            Some(ActionKind::FixedResponse | ActionKind::Redirect | ActionKind::JwtValidation)
        );
        let (request_processing, target_processing, response_processing) =
            match (dispatched, self.answered) {
                (Some(d), Some(a)) => (
                    Some(secs(self.received, d)),
                    Some(secs(d, a)),
                    Some(secs(a, now)),
                ),
                (Some(d), None) => (Some(secs(self.received, d)), None, None),
                (None, _) if own_action => (Some(secs(self.received, now)), None, None),
                (None, _) => (None, None, None),
            };
        let detail = self.detail.unwrap_or_default();
        let target = self.targets.last().copied();
        let n = self.targets.len();
        let target_statuses = (0..n)
            .map(|i| if i + 1 == n { self.target_status } else { None })
            .collect();
        let (classification, classification_reason) = detail
            .classification
            .map_or((None, None), |(c, r)| (Some(c), Some(r)));
        log.push(Entry {
            kind: self.kind,
            time: SystemTime::now(),
            client: client.addr(),
            target,
            request_processing,
            target_processing,
            response_processing,
            elb_status: self.elb_status.or(self.target_status),
            target_status: self.target_status,
            received_bytes: self.rx,
            sent_bytes: self.tx,
            request: detail.request,
            user_agent: detail.user_agent,
            tls: client.tls,
            target_group: self.target_group,
            trace_id: detail.trace_id,
            domain_name: client.server_name.as_deref().map(Box::from),
            chosen_cert: None,
            matched_rule_priority: self.rule_priority,
            request_creation_time: self.created,
            actions_executed: self.action,
            redirect_url: self.redirect_url,
            error_reason: self.error_reason,
            targets: self.targets,
            target_statuses,
            classification,
            classification_reason,
            transformed_host: self.transformed_host,
            transformed_uri: self.transformed_uri,
        });
    }
}

/// Bytes of a head as a log field (`None` when not UTF-8).
pub fn text(bytes: &[u8]) -> Option<Box<str>> {
    std::str::from_utf8(bytes).ok().map(Box::from)
}

/// Wall-clock time `ago` before now.
pub fn wall_clock_before(ago: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// ALB's `error_reason` for a failure.
pub fn error_reason(failure: crate::exchange::Failure) -> &'static str {
    use crate::exchange::Failure;
    match failure {
        Failure::ConnectTimeout => "TargetConnectionErrorCode",
        Failure::ConnectError => "TargetConnectionErrorCode",
        Failure::TargetClosed | Failure::TargetReset => "TargetConnectionErrorCode",
        Failure::TargetTimeout => "TargetResponseTimeout",
        Failure::BadResponse => "TargetInvalidResponse",
        Failure::BadRequest => "ClientInvalidRequest",
        Failure::ClientTimeout => "ClientRequestTimeout",
        Failure::ClientClosed => "ClientClosedConnection",
    }
}
