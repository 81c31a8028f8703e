//! Target groups: registered targets, per-target counters, and the selection
//! algorithms (ALB's `round_robin`, `least_outstanding_requests`, `weighted_random`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

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

#[derive(Debug)]
pub struct TargetGroup {
    pub name: String,
    pub algorithm: Algorithm,
    pub connect_timeout: Duration,
    targets: Vec<Arc<Target>>,
    selector: Box<dyn Selector>,
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
            targets,
            selector: selector(algorithm),
        }
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
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
