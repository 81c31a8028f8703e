//! Target groups: registered targets, per-target counters, and the selection
//! algorithms (ALB's `round_robin`, `least_outstanding_requests`, `weighted_random`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use crate::config::{Stickiness, StickinessKind};
use crate::socketio::SidTable;
use crate::sticky::{unix_now, KeyRing, Purpose};

/// One registered target. Counters are shared by every thread of the proxy.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    outstanding: AtomicU64,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Self {
        Target {
            addr,
            outstanding: AtomicU64::new(0),
        }
    }

    /// Requests sent to this target and not yet finished (an upgraded websocket counts
    /// until it closes).
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Counts one request as outstanding on a target for as long as it lives.
#[derive(Debug)]
pub struct Outstanding(Arc<Target>);

impl Outstanding {
    pub fn new(target: Arc<Target>) -> Self {
        target.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(target)
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

// === Selection ===

/// The target selection algorithm of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastOutstandingRequests,
    WeightedRandom,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastOutstandingRequests => "least_outstanding_requests",
            Algorithm::WeightedRandom => "weighted_random",
        })
    }
}

/// Picks one target among those a caller deems eligible.
///
/// Contract: `select` returns the index of a target `i` with `eligible(i)` true, or
/// `None` when no target is eligible. It never blocks and may be called from any
/// thread at once. `weight(i)` is the relative share of an eligible target (1 for all
/// by default; slow start lowers it); algorithms that ignore weights document it.
pub trait Selector: Send + Sync + fmt::Debug {
    fn select(
        &self,
        targets: &[Arc<Target>],
        eligible: &dyn Fn(usize) -> bool,
        weight: &dyn Fn(usize) -> u32,
    ) -> Option<usize>;
}

/// Each eligible target in turn. Ignores weights.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selector for RoundRobin {
    fn select(
        &self,
        targets: &[Arc<Target>],
        eligible: &dyn Fn(usize) -> bool,
        _weight: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
    }
}

/// The eligible target with the fewest outstanding requests; ties go round robin so
/// that an idle group still spreads. Ignores weights.
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    tie: AtomicUsize,
}

impl Selector for LeastOutstanding {
    fn select(
        &self,
        targets: &[Arc<Target>],
        eligible: &dyn Fn(usize) -> bool,
        _weight: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let start = self.tie.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !eligible(i) {
                continue;
            }
            let load = targets[i].outstanding();
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// A random eligible target, in proportion to its weight.
#[derive(Debug, Default)]
pub struct WeightedRandom;

impl Selector for WeightedRandom {
    fn select(
        &self,
        targets: &[Arc<Target>],
        eligible: &dyn Fn(usize) -> bool,
        weight: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        let weights =
            || (0..targets.len()).map(|i| if eligible(i) { u64::from(weight(i)) } else { 0 });
        let total: u64 = weights().sum();
        if total == 0 {
            return None;
        }
        let mut n = rand::thread_rng().gen_range(0..total);
        for (i, w) in weights().enumerate() {
            if n < w {
                return Some(i);
            }
            n -= w;
        }
        None
    }
}

pub fn selector(algorithm: Algorithm) -> Box<dyn Selector> {
    match algorithm {
        Algorithm::RoundRobin => Box::<RoundRobin>::default(),
        Algorithm::LeastOutstandingRequests => Box::<LeastOutstanding>::default(),
        Algorithm::WeightedRandom => Box::<WeightedRandom>::default(),
    }
}

// === impl TargetGroup ===

/// Default time to establish a connection to a target (ALB: 10 s, then 504).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket.IO sid pinning of a group.
#[derive(Debug)]
pub struct SocketIoPinning {
    pub path: String,
    pub sessions: Arc<SidTable>,
}

#[derive(Debug)]
pub struct TargetGroup {
    pub name: String,
    pub algorithm: Algorithm,
    pub connect_timeout: Duration,
    pub stickiness: Option<Stickiness>,
    pub socketio: Option<SocketIoPinning>,
    targets: Vec<Arc<Target>>,
    selector: Box<dyn Selector>,
}

/// What a request brings that may pin it to a target.
#[derive(Debug, Default, Clone, Copy)]
pub struct PinHints<'a> {
    /// `AWSALB` (or `AWSALBCORS` when the browser sent only that one).
    pub lb_cookie: Option<&'a str>,
    /// `AWSALBAPP-0`, with whether the application's own cookie came too.
    pub app_pin: Option<&'a str>,
    pub has_app_cookie: bool,
    /// Engine.IO session id from the query string.
    pub sid: Option<&'a str>,
}

/// How a target was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickedBy {
    Cookie,
    SocketIoSid,
    Algorithm,
}

impl TargetGroup {
    pub fn new(
        name: impl Into<String>,
        algorithm: Algorithm,
        connect_timeout: Duration,
        targets: Vec<Arc<Target>>,
    ) -> Self {
        TargetGroup {
            name: name.into(),
            algorithm,
            connect_timeout,
            stickiness: None,
            socketio: None,
            targets,
            selector: selector(algorithm),
        }
    }

    pub fn with_stickiness(mut self, stickiness: Option<Stickiness>) -> Self {
        self.stickiness = stickiness;
        self
    }

    pub fn with_socketio(mut self, socketio: Option<SocketIoPinning>) -> Self {
        self.socketio = socketio;
        self
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// A registered target by address.
    pub fn target(&self, addr: SocketAddr) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.addr == addr)
    }

    /// The target a request is pinned to, if its pin is valid: a cookie sealed by
    /// `keys` for this group, fresh, naming a registered target; else a live Socket.IO
    /// session. A cookie, when valid, wins over the sid.
    pub fn pinned(
        &self,
        hints: &PinHints<'_>,
        keys: &KeyRing,
        now: SystemTime,
    ) -> Option<(&Arc<Target>, PickedBy)> {
        if let Some(st) = &self.stickiness {
            let sealed = match &st.kind {
                StickinessKind::LbCookie => hints.lb_cookie.map(|v| (Purpose::LbCookie, v)),
                StickinessKind::AppCookie { .. } if hints.has_app_cookie => {
                    hints.app_pin.map(|v| (Purpose::AppCookie, v))
                }
                StickinessKind::AppCookie { .. } => None,
            };
            let by_cookie = sealed
                .and_then(|(purpose, value)| keys.open(purpose, value))
                .filter(|pin| pin.group == self.name && pin.is_fresh(unix_now(now), st.duration))
                .and_then(|pin| pin.target)
                .and_then(|addr| self.target(addr));
            if let Some(t) = by_cookie {
                return Some((t, PickedBy::Cookie));
            }
        }
        let sio = self.socketio.as_ref()?;
        let addr = sio.sessions.touch(hints.sid?, Instant::now())?;
        self.target(addr).map(|t| (t, PickedBy::SocketIoSid))
    }

    /// The pinned target if any, else one picked by the algorithm.
    pub fn pick(
        &self,
        hints: &PinHints<'_>,
        keys: &KeyRing,
        now: SystemTime,
        exclude: Option<SocketAddr>,
    ) -> Option<(&Arc<Target>, PickedBy)> {
        if let Some(pinned) = self.pinned(hints, keys, now) {
            if Some(pinned.0.addr) != exclude {
                return Some(pinned);
            }
        }
        self.select(exclude).map(|t| (t, PickedBy::Algorithm))
    }

    /// Picks a target by the group's algorithm, skipping `exclude` (a target that just
    /// failed, for a retry) when another one is available.
    pub fn select(&self, exclude: Option<SocketAddr>) -> Option<&Arc<Target>> {
        let eligible = |i: usize| Some(self.targets[i].addr) != exclude;
        let weight = |_: usize| 1;
        self.selector
            .select(&self.targets, &eligible, &weight)
            .or_else(|| self.selector.select(&self.targets, &|_| true, &weight))
            .map(|i| &self.targets[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: u16) -> Vec<Arc<Target>> {
        (0..n)
            .map(|i| Arc::new(Target::new(SocketAddr::from(([127, 0, 0, 1], 9000 + i)))))
            .collect()
    }

    #[test]
    fn round_robin_visits_each_target_in_turn() {
        let g = TargetGroup::new(
            "g",
            Algorithm::RoundRobin,
            DEFAULT_CONNECT_TIMEOUT,
            targets(3),
        );
        let picks: Vec<u16> = (0..6)
            .map(|_| g.select(None).unwrap().addr.port())
            .collect();
        assert_eq!(picks, [9000, 9001, 9002, 9000, 9001, 9002]);
    }

    #[test]
    fn round_robin_skips_ineligible_targets() {
        let ts = targets(3);
        let rr = RoundRobin::default();
        for _ in 0..10 {
            let i = rr.select(&ts, &|i| i != 1, &|_| 1).unwrap();
            assert_ne!(i, 1);
        }
        assert_eq!(rr.select(&ts, &|_| false, &|_| 1), None);
    }

    #[test]
    fn least_outstanding_prefers_the_idle_target() {
        let ts = targets(3);
        let _busy0 = Outstanding::new(ts[0].clone());
        let _busy2 = Outstanding::new(ts[2].clone());
        let lo = LeastOutstanding::default();
        for _ in 0..5 {
            assert_eq!(lo.select(&ts, &|_| true, &|_| 1), Some(1));
        }
        drop(_busy0);
        assert_ne!(lo.select(&ts, &|_| true, &|_| 1), Some(2));
    }

    #[test]
    fn weighted_random_follows_weights() {
        let ts = targets(2);
        let wr = WeightedRandom;
        let mut counts = [0u32; 2];
        for _ in 0..4000 {
            counts[wr
                .select(&ts, &|_| true, &|i| if i == 0 { 3 } else { 1 })
                .unwrap()] += 1;
        }
        assert!((2700..3300).contains(&counts[0]), "{counts:?}");
        assert_eq!(wr.select(&ts, &|_| true, &|_| 0), None);
    }

    fn sticky_group(ts: Vec<Arc<Target>>) -> TargetGroup {
        TargetGroup::new("g", Algorithm::RoundRobin, DEFAULT_CONNECT_TIMEOUT, ts).with_stickiness(
            Some(Stickiness {
                kind: StickinessKind::LbCookie,
                duration: Duration::from_secs(60),
                secure: false,
                http_only: false,
            }),
        )
    }

    fn seal(keys: &KeyRing, group: &str, port: u16, issued: SystemTime) -> String {
        let pin = crate::sticky::Pin {
            group: group.into(),
            target: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            issued: unix_now(issued),
        };
        keys.seal(Purpose::LbCookie, &pin)
    }

    #[test]
    fn a_valid_cookie_pins_and_anything_else_repins_by_the_algorithm() {
        let keys = KeyRing::random();
        let g = sticky_group(targets(3));
        let now = SystemTime::now();
        let good = seal(&keys, "g", 9002, now);
        for _ in 0..5 {
            let hints = PinHints {
                lb_cookie: Some(&good),
                ..Default::default()
            };
            let (t, by) = g.pick(&hints, &keys, now, None).unwrap();
            assert_eq!((t.addr.port(), by), (9002, PickedBy::Cookie));
        }
        let expired = seal(&keys, "g", 9002, now - Duration::from_secs(61));
        let other_group = seal(&keys, "h", 9002, now);
        let gone = seal(&keys, "g", 9009, now);
        let other_key = seal(&KeyRing::random(), "g", 9002, now);
        for bad in [
            &expired,
            &other_group,
            &gone,
            &other_key,
            &"garbage".to_string(),
        ] {
            let hints = PinHints {
                lb_cookie: Some(bad),
                ..Default::default()
            };
            let (_, by) = g.pick(&hints, &keys, now, None).unwrap();
            assert_eq!(by, PickedBy::Algorithm);
        }
    }

    #[test]
    fn a_socketio_sid_pins_when_no_cookie_does() {
        let keys = KeyRing::random();
        let sessions = Arc::new(SidTable::new(100));
        let g = sticky_group(targets(3)).with_socketio(Some(SocketIoPinning {
            path: "/socket.io/".into(),
            sessions: sessions.clone(),
        }));
        sessions.insert(
            "abc",
            SocketAddr::from(([127, 0, 0, 1], 9001)),
            Duration::from_secs(45),
            Instant::now(),
        );
        let now = SystemTime::now();
        let hints = PinHints {
            sid: Some("abc"),
            ..Default::default()
        };
        let (t, by) = g.pick(&hints, &keys, now, None).unwrap();
        assert_eq!((t.addr.port(), by), (9001, PickedBy::SocketIoSid));
        // A valid cookie wins over the sid.
        let cookie = seal(&keys, "g", 9002, now);
        let hints = PinHints {
            sid: Some("abc"),
            lb_cookie: Some(&cookie),
            ..Default::default()
        };
        assert_eq!(
            g.pick(&hints, &keys, now, None).unwrap().0.addr.port(),
            9002
        );
    }

    #[test]
    fn a_retry_avoids_the_failed_target_when_it_can() {
        let g = TargetGroup::new(
            "g",
            Algorithm::RoundRobin,
            DEFAULT_CONNECT_TIMEOUT,
            targets(2),
        );
        let failed = SocketAddr::from(([127, 0, 0, 1], 9000));
        for _ in 0..4 {
            assert_ne!(g.select(Some(failed)).unwrap().addr, failed);
        }
        let one = TargetGroup::new(
            "g",
            Algorithm::RoundRobin,
            DEFAULT_CONNECT_TIMEOUT,
            targets(1),
        );
        assert_eq!(one.select(Some(failed)).unwrap().addr, failed);
    }
}
