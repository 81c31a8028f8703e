//! Target groups: registered targets, per-target counters, and the selection
//! algorithms (ALB's `round_robin`, `least_outstanding_requests`, `weighted_random`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::watch;

use crate::health::{Reason, State};
use crate::settings::{
    Algorithm, HealthCheck, Lifecycle, PassiveHealth, Stickiness, StickinessKind, UpstreamTls,
};
use crate::shared_state::SharedState;
use crate::socketio::SidTable;
use crate::sticky::{unix_now, KeyRing, Purpose};

/// Milliseconds on a monotonic clock that starts with the process (0 means "never").
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| Instant::now() - Duration::from_millis(1));
    start.elapsed().as_millis() as u64
}

/// One registered target. Counters and states are shared by every thread of the
/// proxy, and survive config reloads that keep the target.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// In-flight requests, upgraded websockets not included.
    outstanding: AtomicU64,
    /// Open websockets (upgraded connections).
    tunnels: AtomicU64,
    /// Requests sent to this target since it was registered (the status page's
    /// request rate is the change of it between two looks).
    requests: AtomicU64,
    state: AtomicU8,
    reason: AtomicU8,
    /// When the target last became healthy ([`now_ms`]), for slow start.
    healthy_since: AtomicU64,
    /// Passive failures: skipped until this time ([`now_ms`]).
    suspect_until: AtomicU64,
    passive_failures: AtomicU32,
    /// When draining ends ([`now_ms`]); 0 when not draining.
    drain_deadline: AtomicU64,
    /// Set to true when the target's open connections must be closed.
    closing: watch::Sender<bool>,
    /// Where the target comes from, when known (an ECS task ARN).
    label: Mutex<Option<String>>,
    /// Its responses, connection errors and response times, for `GET /metrics`.
    pub stats: crate::stats::TargetStats,
}

impl Target {
    /// A target at `addr`, in the initial state, with no requests yet.
    pub fn new(addr: SocketAddr) -> Self {
        Target {
            addr,
            outstanding: AtomicU64::new(0),
            tunnels: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            state: AtomicU8::new(State::Initial as u8),
            reason: AtomicU8::new(Reason::InitialHealthChecking as u8),
            healthy_since: AtomicU64::new(0),
            suspect_until: AtomicU64::new(0),
            passive_failures: AtomicU32::new(0),
            drain_deadline: AtomicU64::new(0),
            closing: watch::channel(false).0,
            label: Mutex::new(None),
            stats: crate::stats::TargetStats::default(),
        }
    }

    /// The ECS task ARN (or other origin) of the target.
    pub fn label(&self) -> Option<String> {
        self.label.lock().clone()
    }

    /// Sets what the status page shows beside the address (an ECS task's name, say).
    pub fn set_label(&self, label: Option<String>) {
        *self.label.lock() = label;
    }

    /// Requests sent to this target and not yet finished (websockets excluded).
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Open connections in use: in-flight requests and open websockets.
    pub fn connections(&self) -> u64 {
        self.outstanding() + self.tunnels.load(Ordering::Relaxed)
    }

    /// Open websockets.
    pub fn websockets(&self) -> u64 {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Requests sent to this target since it was registered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Its health state and ALB's reason for it.
    pub fn state(&self) -> (State, Reason) {
        (
            State::from_u8(self.state.load(Ordering::Relaxed)),
            Reason::from_u8(self.reason.load(Ordering::Relaxed)),
        )
    }

    /// Sets the health state (the group's snapshot must be refreshed after).
    pub fn set_state(&self, state: State, reason: Reason) {
        let was = State::from_u8(self.state.swap(state as u8, Ordering::Relaxed));
        self.reason.store(reason as u8, Ordering::Relaxed);
        if state == State::Healthy && was != State::Healthy {
            self.healthy_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Skipped for now by passive failures?
    pub fn is_suspect(&self, now: u64) -> bool {
        self.suspect_until.load(Ordering::Relaxed) > now
    }

    /// A connect failure or reset: skip the target for a back-off that doubles with
    /// each failure in a row.
    pub fn mark_failure(&self, passive: &PassiveHealth) {
        if !passive.enabled {
            return;
        }
        let n = self
            .passive_failures
            .fetch_add(1, Ordering::Relaxed)
            .min(16);
        let backoff = passive
            .backoff
            .saturating_mul(1 << n)
            .min(passive.max_backoff);
        self.suspect_until
            .store(now_ms() + backoff.as_millis() as u64, Ordering::Relaxed);
    }

    /// A response came back: the target is fine again.
    pub fn mark_success(&self) {
        // Read first: writing a shared line on every request would cost more.
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
            self.suspect_until.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the target is draining (deregistered, finishing what it has).
    pub fn is_draining(&self) -> bool {
        self.drain_deadline.load(Ordering::Relaxed) != 0
    }

    /// Starts draining until `deadline` ([`now_ms`]).
    pub fn start_draining(&self, deadline: u64) {
        self.drain_deadline
            .store(deadline.max(1), Ordering::Relaxed);
        self.set_state(State::Draining, Reason::DeregistrationInProgress);
    }

    /// When its drain ends (milliseconds of [`now_ms`]), if it is draining.
    pub fn drain_deadline(&self) -> Option<u64> {
        Some(self.drain_deadline.load(Ordering::Relaxed)).filter(|d| *d != 0)
    }

    /// Registered again while draining: back to a new target's life.
    pub fn stop_draining(&self, state: State, reason: Reason) {
        self.drain_deadline.store(0, Ordering::Relaxed);
        self.closing.send_replace(false);
        self.set_state(state, reason);
    }

    /// Closes the connections still open to the target (drain deadline reached).
    pub fn close_connections(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when [`Target::close_connections`] is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// Counts one request as outstanding on a target for as long as it lives; after a
/// websocket upgrade it counts as an open tunnel instead.
#[derive(Debug)]
pub struct Outstanding {
    target: Arc<Target>,
    upgraded: bool,
}

impl Outstanding {
    /// Counts a request outstanding on `target` until this drops.
    pub fn new(target: Arc<Target>) -> Self {
        target.outstanding.fetch_add(1, Ordering::Relaxed);
        target.requests.fetch_add(1, Ordering::Relaxed);
        Outstanding {
            target,
            upgraded: false,
        }
    }

    /// The target the request is outstanding on.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The request became a websocket (101).
    pub fn upgraded(&mut self) {
        if !self.upgraded {
            self.upgraded = true;
            self.target.tunnels.fetch_add(1, Ordering::Relaxed);
            self.target.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let counter = if self.upgraded {
            &self.target.tunnels
        } else {
            &self.target.outstanding
        };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

// === Selection ===

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

/// The eligible target with the least load; ties go round robin so that an idle
/// group still spreads. Ignores weights. The load is outstanding requests
/// (`least_outstanding_requests`) or open connections including websockets
/// (`least_connections`).
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    tie: AtomicUsize,
    count_tunnels: bool,
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
            let load = if self.count_tunnels {
                targets[i].connections()
            } else {
                targets[i].outstanding()
            };
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

/// The target picker for `algorithm`.
pub fn selector(algorithm: Algorithm) -> Box<dyn Selector> {
    match algorithm {
        Algorithm::RoundRobin => Box::<RoundRobin>::default(),
        Algorithm::LeastOutstandingRequests => Box::<LeastOutstanding>::default(),
        Algorithm::WeightedRandom => Box::<WeightedRandom>::default(),
        Algorithm::LeastConnections => Box::new(LeastOutstanding {
            tie: AtomicUsize::new(0),
            count_tunnels: true,
        }),
    }
}

// === impl TargetGroup ===

/// Socket.IO sid pinning of a group: this replica's sessions, and the store it
/// shares them through with other replicas, if any.
#[derive(Debug)]
pub struct SocketIoPinning {
    pub path: String,
    pub sessions: Arc<SidTable>,
    pub shared: Option<Arc<SharedState>>,
}

impl SocketIoPinning {
    /// The target of a live session of `group`, from this replica's pins; a pin in
    /// use has its shared copy's expiry pushed back (queued, never waited on).
    pub fn target_of(&self, group: &str, sid: &str, now: Instant) -> Option<SocketAddr> {
        let visit = self.sessions.visit(sid, now)?;
        if let (true, Some(shared)) = (visit.refresh, &self.shared) {
            shared.refresh(group, sid, visit.target, visit.idle);
        }
        Some(visit.target)
    }

    /// A session ended (its websocket closed): this replica forgets its pin. The
    /// shared copy is left to expire (idle time + 10 s): Engine.IO never reuses a
    /// sid, so it can route nothing, and deleting it would cost a Redis round trip
    /// per session.
    pub fn end(&self, sid: &str) {
        self.sessions.remove(sid);
    }
}

/// What the data path knows of a group's health: one snapshot, loaded once per
/// request.
#[derive(Debug, Default)]
pub struct HealthView {
    /// Per target (same index as the group's targets): routable by health.
    routable: Vec<bool>,
    /// When each target became healthy ([`now_ms`]), for slow start.
    healthy_since: Vec<u64>,
    /// Too few healthy targets: route to all registered targets.
    fail_open: bool,
}

#[derive(Debug)]
pub struct TargetGroup {
    pub name: String,
    pub algorithm: Algorithm,
    pub connect_timeout: Duration,
    pub stickiness: Option<Stickiness>,
    pub socketio: Option<SocketIoPinning>,
    pub lifecycle: Lifecycle,
    /// Whether a listener rule forwards to the group (else its targets are `unused`).
    pub in_use: bool,
    pub upstream_tls: Option<UpstreamTls>,
    targets: Vec<Arc<Target>>,
    /// Targets deregistered and still draining (never picked).
    draining: Mutex<Vec<Arc<Target>>>,
    view: ArcSwap<HealthView>,
    selector: Box<dyn Selector>,
    /// Used instead of round robin while a target ramps up in slow start.
    ramp: WeightedRandom,
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
    /// `current`: the cookie was sealed by the sealing key within the current second,
    /// for this group and target, so the response may send the same value back: it is
    /// what sealing the pin again would give, but for the nonce.
    Cookie {
        current: bool,
    },
    SocketIoSid,
    Algorithm,
}

/// Full weight of a target outside slow start.
const FULL_WEIGHT: u32 = 1000;

impl TargetGroup {
    /// A group called `name` of `targets`, picked by `algorithm`. Its lifecycle starts with
    /// health checks off (every target takes traffic as it is); the config's groups set
    /// theirs with [`TargetGroup::with_lifecycle`].
    pub fn new(
        name: impl Into<String>,
        algorithm: Algorithm,
        connect_timeout: Duration,
        targets: Vec<Arc<Target>>,
    ) -> Self {
        let group = TargetGroup {
            name: name.into(),
            algorithm,
            connect_timeout,
            stickiness: None,
            socketio: None,
            lifecycle: Lifecycle {
                health_check: HealthCheck {
                    enabled: false,
                    ..HealthCheck::default()
                },
                ..Lifecycle::default()
            },
            in_use: true,
            upstream_tls: None,
            targets,
            draining: Mutex::new(Vec::new()),
            view: ArcSwap::from_pointee(HealthView::default()),
            selector: selector(algorithm),
            ramp: WeightedRandom,
        };
        group.refresh_view();
        group
    }

    /// The same group with cookie stickiness (`AWSALB`, `AWSALBAPP-0`), or none.
    pub fn with_stickiness(mut self, stickiness: Option<Stickiness>) -> Self {
        self.stickiness = stickiness;
        self
    }

    /// The same group with Socket.IO `sid` pinning, or none.
    pub fn with_socketio(mut self, socketio: Option<SocketIoPinning>) -> Self {
        self.socketio = socketio;
        self
    }

    /// The same group with `lifecycle` (health checks, draining, slow start); `in_use`:
    /// some rule forwards to it (a group no rule uses is not health-checked, as on ALB).
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle, in_use: bool) -> Self {
        self.lifecycle = lifecycle;
        self.in_use = in_use;
        self.refresh_view();
        self
    }

    /// The same group speaking HTTPS to its targets with `tls`, or HTTP.
    pub fn with_upstream_tls(mut self, tls: Option<UpstreamTls>) -> Self {
        self.upstream_tls = tls;
        self
    }

    /// The same group with `draining` targets carried over (a rebuild keeps drains going).
    pub fn with_draining(self, draining: Vec<Arc<Target>>) -> Self {
        *self.draining.lock() = draining;
        self
    }

    /// The registered targets (draining ones are not among them).
    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// Targets still draining.
    pub fn draining(&self) -> Vec<Arc<Target>> {
        self.draining.lock().clone()
    }

    /// Every target: the registered ones, then those still draining.
    pub fn all_targets(&self) -> Vec<Arc<Target>> {
        let mut all = self.targets.to_vec();
        all.extend(self.draining.lock().iter().cloned());
        all
    }

    /// Keeps the draining targets for which `keep` is true, and drops the others
    /// (those whose drain has ended).
    pub fn retain_draining(&self, mut keep: impl FnMut(&Arc<Target>) -> bool) {
        self.draining.lock().retain(|t| keep(t));
    }

    /// A registered target by address.
    pub fn target(&self, addr: SocketAddr) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.addr == addr)
    }

    /// Rebuilds the health snapshot from the targets' states. Called by the health
    /// checker on every state change and when the group is built.
    pub fn refresh_view(&self) {
        let health_checked = self.lifecycle.health_check.enabled;
        let routable: Vec<bool> = self
            .targets
            .iter()
            .map(|t| match t.state().0 {
                State::Healthy | State::Unavailable => true,
                // Without checks every registered target takes traffic.
                _ => !health_checked,
            })
            .collect();
        let healthy = routable.iter().filter(|r| **r).count();
        let fail_open = healthy < self.lifecycle.min_healthy.required(self.targets.len());
        let healthy_since = self
            .targets
            .iter()
            .map(|t| t.healthy_since.load(Ordering::Relaxed))
            .collect();
        self.view.store(Arc::new(HealthView {
            routable,
            healthy_since,
            fail_open,
        }));
    }

    /// Whether the group is failing open (too few healthy targets).
    pub fn fails_open(&self) -> bool {
        self.view.load().fail_open
    }

    /// Slow-start weight of target `i` at `now` (out of [`FULL_WEIGHT`]).
    fn weight(&self, view: &HealthView, i: usize, now: u64) -> u32 {
        let ramp = self.lifecycle.slow_start.as_millis() as u64;
        let since = view.healthy_since.get(i).copied().unwrap_or(0);
        if ramp == 0 || since == 0 || view.fail_open {
            return FULL_WEIGHT;
        }
        let elapsed = now.saturating_sub(since);
        if elapsed >= ramp {
            FULL_WEIGHT
        } else {
            ((elapsed * u64::from(FULL_WEIGHT) / ramp) as u32).max(1)
        }
    }

    /// The target a request is pinned to, if its pin is valid: a cookie sealed by
    /// `keys` for this group, fresh, naming a registered target that may take traffic;
    /// else a live Socket.IO session. A cookie, when valid, wins over the sid.
    pub fn pinned(
        &self,
        hints: &PinHints<'_>,
        keys: &KeyRing,
        now: SystemTime,
    ) -> Option<(&Arc<Target>, PickedBy)> {
        let view = self.view.load();
        let clock = now_ms();
        // One scan finds the pinned target and its place in the health snapshot.
        let usable = |addr: SocketAddr| {
            let i = self.targets.iter().position(|t| t.addr == addr)?;
            let t = &self.targets[i];
            let routable = view.fail_open || view.routable.get(i).copied().unwrap_or(false);
            (routable && !t.is_suspect(clock)).then_some(t)
        };
        if let Some(st) = &self.stickiness {
            let sealed = match &st.kind {
                StickinessKind::LbCookie => hints.lb_cookie.map(|v| (Purpose::LbCookie, v)),
                StickinessKind::AppCookie { .. } if hints.has_app_cookie => {
                    hints.app_pin.map(|v| (Purpose::AppCookie, v))
                }
                StickinessKind::AppCookie { .. } => None,
            };
            let now_secs = unix_now(now);
            let by_cookie = sealed
                .and_then(|(purpose, value)| keys.open_keyed(purpose, value))
                .filter(|(pin, _)| pin.group == self.name && pin.is_fresh(now_secs, st.duration))
                .and_then(|(pin, primary)| {
                    let current = primary && pin.issued == now_secs;
                    pin.target.and_then(usable).map(|t| (t, current))
                });
            if let Some((t, current)) = by_cookie {
                return Some((t, PickedBy::Cookie { current }));
            }
        }
        let sio = self.socketio.as_ref()?;
        let addr = sio.target_of(&self.name, hints.sid?, Instant::now())?;
        usable(addr).map(|t| (t, PickedBy::SocketIoSid))
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

    /// Picks a target by the group's algorithm among those that may take traffic:
    /// healthy (or all registered when failing open), not excluded (a target that just
    /// failed, for a retry), preferring targets not marked by passive failures.
    pub fn select(&self, exclude: Option<SocketAddr>) -> Option<&Arc<Target>> {
        let view = self.view.load();
        let now = now_ms();
        let targets = &self.targets;
        let usable = |i: usize| {
            (view.fail_open || view.routable.get(i).copied().unwrap_or(false))
                && Some(targets[i].addr) != exclude
        };
        let fresh = |i: usize| usable(i) && !targets[i].is_suspect(now);
        let weight = |i: usize| self.weight(&view, i, now);
        let ramping = !self.lifecycle.slow_start.is_zero()
            && (0..targets.len()).any(|i| fresh(i) && weight(i) < FULL_WEIGHT);
        let selector: &dyn Selector = if ramping && self.algorithm == Algorithm::RoundRobin {
            &self.ramp
        } else {
            self.selector.as_ref()
        };
        selector
            .select(targets, &fresh, &weight)
            .or_else(|| selector.select(targets, &usable, &weight))
            .map(|i| &targets[i])
    }

    /// Whether a retry could go to a target other than `addr`.
    pub fn has_alternative(&self, addr: SocketAddr) -> bool {
        let view = self.view.load();
        self.targets.iter().enumerate().any(|(i, t)| {
            t.addr != addr && (view.fail_open || view.routable.get(i).copied().unwrap_or(false))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DEFAULT_CONNECT_TIMEOUT;

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
            assert_eq!(t.addr.port(), 9002);
            assert!(matches!(by, PickedBy::Cookie { .. }), "{by:?}");
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
    fn only_a_cookie_sealed_this_second_by_the_sealing_key_may_be_sent_back_as_is() {
        let (old, new) = (vec![1u8; 32], vec![2u8; 32]);
        let keys = KeyRing::new(&[new.clone(), old.clone()]).unwrap();
        let g = sticky_group(targets(3));
        let now = SystemTime::now();
        let by = |cookie: &String| {
            let hints = PinHints {
                lb_cookie: Some(cookie),
                ..Default::default()
            };
            g.pick(&hints, &keys, now, None).unwrap().1
        };
        let this_second = seal(&keys, "g", 9002, now);
        assert_eq!(by(&this_second), PickedBy::Cookie { current: true });
        let last_second = seal(&keys, "g", 9002, now - Duration::from_secs(1));
        assert_eq!(by(&last_second), PickedBy::Cookie { current: false });
        // Sealed by a key that now only opens: re-sealed under the new one.
        let rotated_out = seal(&KeyRing::new(&[old]).unwrap(), "g", 9002, now);
        assert_eq!(by(&rotated_out), PickedBy::Cookie { current: false });
    }

    #[test]
    fn a_socketio_sid_pins_when_no_cookie_does() {
        let keys = KeyRing::random();
        let sessions = Arc::new(SidTable::new(100));
        let g = sticky_group(targets(3)).with_socketio(Some(SocketIoPinning {
            path: "/socket.io/".into(),
            sessions: sessions.clone(),
            shared: None,
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
        assert!(
            one.select(Some(failed)).is_none(),
            "no other target: no retry"
        );
        assert!(!one.has_alternative(failed));
        assert!(g.has_alternative(failed));
    }
}
