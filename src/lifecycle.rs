//! The background side of target health: one check task per checked target, spread
//! over the interval, and the end of draining (early when nothing is open, else at
//! the deregistration delay, closing what is still open).
//!
//! It follows the routing snapshot: after a reload, new targets get a task, removed
//! ones lose theirs. It never touches the request path; a group's health snapshot is
//! republished only when a target's state changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinHandle;

use crate::drain;
use crate::health::{self, Reason, State, Tracker};
use crate::routing::SharedRouting;
use crate::settings::HealthCheck;
use crate::target_group::Target;

/// How often the service looks for routing changes and drain ends.
const TICK: Duration = Duration::from_millis(100);

pub struct LifecycleService {
    routing: SharedRouting,
}

impl LifecycleService {
    /// Moves targets through their lifecycle (draining, slow start) on `routing`.
    pub fn new(routing: SharedRouting) -> Self {
        LifecycleService { routing }
    }
}

struct CheckTask {
    check: HealthCheck,
    target: Arc<Target>,
    handle: JoinHandle<()>,
}

impl Drop for CheckTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

type Key = (String, SocketAddr);

impl LifecycleService {
    /// Starts check tasks for checked targets that have none, and stops those whose
    /// target left (or whose check changed).
    fn reconcile(&self, tasks: &mut HashMap<Key, CheckTask>) {
        let routing = self.routing.load();
        let mut wanted: HashMap<Key, (Arc<Target>, HealthCheck, usize, usize)> = HashMap::new();
        for g in &routing.groups {
            let check = &g.lifecycle.health_check;
            if !check.enabled || !g.in_use {
                continue;
            }
            let n = g.targets().len();
            for (i, t) in g.targets().iter().enumerate() {
                wanted.insert((g.name.clone(), t.addr), (t.clone(), check.clone(), i, n));
            }
        }
        tasks.retain(|key, task| {
            wanted.get(key).is_some_and(|(t, check, _, _)| {
                Arc::ptr_eq(t, &task.target) && *check == task.check
            })
        });
        for (key, (target, check, i, n)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(check_loop(
                self.routing.clone(),
                key.0.clone(),
                target.clone(),
                check.clone(),
                i as f64 / n.max(1) as f64,
            ));
            tasks.insert(
                key,
                CheckTask {
                    check,
                    target,
                    handle,
                },
            );
        }
    }

    /// Ends the drains that are over ([`drain::finish`]).
    fn finish_drains(&self) {
        drain::finish(&self.routing.load().groups);
    }
}

/// Checks one target forever. `phase` (0..1) is the target's place in its group: the
/// first check comes at once (a new target gets traffic only after its first pass, so
/// the group's targets should pass together rather than one by one over an
/// interval), the following ones are spread over the interval by phase.
async fn check_loop(
    routing: SharedRouting,
    group: String,
    target: Arc<Target>,
    check: HealthCheck,
    phase: f64,
) {
    let (state, reason) = match target.state() {
        (s @ (State::Healthy | State::Unhealthy), r) => (s, r),
        _ => (State::Initial, Reason::InitialHealthChecking),
    };
    let mut tracker = Tracker::new(state, reason);
    let start = tokio::time::Instant::now() + check.interval.mul_f64(phase);
    let mut interval = tokio::time::interval_at(start, check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first_check = true;
    loop {
        if !std::mem::take(&mut first_check) {
            interval.tick().await;
        }
        let result = health::check(target.addr, &check).await;
        if let Some((state, reason)) = tracker.record(&result, &check) {
            if target.is_draining() {
                return;
            }
            target.set_state(state, reason);
            tracing::info!(
                group = %group,
                target = %target.addr,
                state = %state,
                reason = reason.code(),
                "target health changed ({result:?})"
            );
            if let Some(g) = routing.load().groups.iter().find(|g| g.name == group) {
                g.refresh_view();
            }
        }
    }
}

#[async_trait]
impl BackgroundService for LifecycleService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        // The snapshot last reconciled: check tasks change only when routing does.
        let mut seen: Option<Arc<crate::routing::Routing>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let current = self.routing.load_full();
                    if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
                        self.reconcile(&mut tasks);
                        seen = Some(current);
                    }
                    self.finish_drains();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
