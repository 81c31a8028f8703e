//! The counters the data path adds to: a listener's ([`ListenerStats`]), a
//! target's ([`TargetStats`], with its response-time [`Histogram`]) and the config
//! reloads' ([`ReloadStats`]). Plain atomics, reached from what the data path
//! already holds; nothing here knows how they are shown (that is
//! [`crate::metrics`]), so every module may count without importing the exposition.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A counter's value.
pub fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What the load balancer counts for one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Requests the load balancer decided (answered itself or forwarded).
    pub requests: AtomicU64,
    pub new_connections: AtomicU64,
    pub active_connections: AtomicI64,
    pub rejected_connections: AtomicU64,
    /// Bytes from and to clients, heads and bodies.
    pub processed_bytes: AtomicU64,
    /// The load balancer's own responses, by class (3XX, 4XX, 5XX) and for 502–504.
    pub(crate) elb: [AtomicU64; 3],
    pub(crate) elb_5xx: [AtomicU64; 3],
    pub fixed_responses: AtomicU64,
    pub redirects: AtomicU64,
    pub tls_negotiation_errors: AtomicU64,
    pub desync_non_compliant: AtomicU64,
    /// Requests to a sticky group that could not use a pin and got a new target.
    pub non_sticky: AtomicU64,
    /// Connections (or HTTP/2 streams) closed because a peer stalled, by [`Stall`].
    stalls: [AtomicU64; Stall::ALL.len()],
}

/// What a connection closed for lack of progress was waiting on: every read and
/// write has a deadline (the idle timeout; the header timeout for a head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// A client that sent nothing (a body, or the rest of a head) in time.
    ClientRead,
    /// A client that read nothing of its response in time.
    ClientWrite,
    /// A target that sent nothing of its response in time.
    TargetRead,
    /// A target that read nothing of its request (a body) in time.
    TargetWrite,
    /// An HTTP/2 stream that moved no byte in time (e.g. no flow-control window).
    H2Stream,
    /// An HTTP/2 connection with no stream for the idle timeout (closed with GOAWAY).
    H2Idle,
}

impl Stall {
    pub const ALL: [Stall; 6] = [
        Stall::ClientRead,
        Stall::ClientWrite,
        Stall::TargetRead,
        Stall::TargetWrite,
        Stall::H2Stream,
        Stall::H2Idle,
    ];

    /// The `stalled` label value.
    pub fn name(self) -> &'static str {
        match self {
            Stall::ClientRead => "client_read",
            Stall::ClientWrite => "client_write",
            Stall::TargetRead => "target_read",
            Stall::TargetWrite => "target_write",
            Stall::H2Stream => "h2_stream",
            Stall::H2Idle => "h2_idle",
        }
    }
}

impl ListenerStats {
    /// A client connection opened: counted until the guard drops.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.new_connections.fetch_add(1, Ordering::Relaxed);
        self.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// A response of the load balancer's own (an error, a fixed response or a
    /// redirect) with `status`.
    pub fn lb_response(&self, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(3)
            .and_then(|i| self.elb.get(i as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = status
            .checked_sub(502)
            .and_then(|i| self.elb_5xx.get(i as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection or stream closed because a peer stalled: counted, and logged
    /// (at most a few lines a second, whatever a flood of stalls does).
    pub fn stalled(&self, stall: Stall, peer: Option<std::net::SocketAddr>) {
        if let Some(c) = self.stalls.get(stall as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if log_allowed() {
            tracing::warn!(
                "closed on timeout: {} stalled (client {})",
                stall.name(),
                peer.map_or_else(|| "-".to_string(), |p| p.to_string())
            );
        }
    }

    /// How many connections closed for `stall`.
    pub fn stalls(&self, stall: Stall) -> u64 {
        self.stalls.get(stall as usize).map_or(0, load)
    }
}

/// A process-wide limit on log lines about what peers do: 20 a second.
pub fn log_allowed() -> bool {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if WINDOW.swap(second, Ordering::Relaxed) != second {
        COUNT.store(0, Ordering::Relaxed);
    }
    COUNT.fetch_add(1, Ordering::Relaxed) < 20
}

/// Counts a client connection as active while it lives.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ListenerStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one target's requests did. Kept with the target across reloads.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Responses from the target by class: 2XX, 3XX, 4XX, 5XX.
    codes: [AtomicU64; 4],
    pub connection_errors: AtomicU64,
    pub response_time: Histogram,
}

impl TargetStats {
    /// The target answered `status` `elapsed` after the request was sent.
    pub fn responded(&self, status: u16, elapsed: Duration) {
        if let Some(c) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.codes.get(i as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.response_time.observe(elapsed);
    }

    /// Counts a connection to the target that could not be made.
    pub fn connection_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bucket bounds of `TargetResponseTime`, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A histogram of durations on atomics: one add to a bucket and one to the sum per
/// observation, no lock.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one past every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one response time, `d`, in its bucket.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.partition_point(|&b| b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// The sum in seconds, the count, and each bucket's own count (`+Inf` last; the
    /// encoder makes them cumulative).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            total += n;
            buckets.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, total, buckets)
    }
}

/// Outcomes of config reloads (admin API and SIGHUP), by result.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub(crate) counts: [AtomicU64; RELOAD_RESULTS.len()],
}

/// The `result` label values of `tether_config_reloads_total`.
pub const RELOAD_RESULTS: [&str; 3] = ["success", "invalid_config", "refused"];

impl ReloadStats {
    /// Counts a reload with result `RELOAD_RESULTS[i]`.
    pub fn record(&self, result: &str) {
        if let Some(i) = RELOAD_RESULTS.iter().position(|r| *r == result) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl TargetStats {
    /// Responses of class `class` (0: 2XX … 3: 5XX).
    pub fn code(&self, class: usize) -> u64 {
        self.codes.get(class).map_or(0, load)
    }
}
