//! The routing snapshot the data path reads without locks: each listener's rules with
//! live target groups. Built from a validated [`Config`]; replaced whole on reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use std::collections::{HashMap, HashSet};

use crate::config::{Config, TargetGroupConfig};
use crate::discovery::Discovered;
use crate::drain;
use crate::health::{Reason, State};
use crate::rules::RuleSet;
use crate::settings::{ListenerHeaders, RequestShaping};
use crate::shared_state::SharedState;
use crate::socketio::SidTable;
use crate::sticky::KeyRing;
use crate::target_group::{SocketIoPinning, Target, TargetGroup};

#[derive(Debug)]
pub struct Routing {
    /// One rule set per listener, in config order.
    pub listeners: Vec<RuleSet>,
    pub groups: Vec<Arc<TargetGroup>>,
    pub idle_timeout: Duration,
    pub keys: KeyRing,
    /// The load balancer's request header attributes.
    pub shaping: RequestShaping,
    /// How long a client connection is kept (ALB's `client_keep_alive`).
    pub client_keep_alive: Duration,
    /// Each listener's header attributes, in config order.
    pub listener_headers: Vec<ListenerHeaders>,
    /// The store replicas share Socket.IO pins through (`shared_state`), if any.
    pub shared: Option<Arc<SharedState>>,
}

impl Routing {
    /// Listener `index`'s header attributes (ALB's defaults for an unknown index).
    pub fn headers(&self, index: usize) -> &ListenerHeaders {
        static DEFAULT: std::sync::OnceLock<ListenerHeaders> = std::sync::OnceLock::new();
        self.listener_headers
            .get(index)
            .unwrap_or_else(|| DEFAULT.get_or_init(ListenerHeaders::default))
    }
}

impl Routing {
    /// Builds live groups. A target already known to `previous` (same group, same
    /// address) keeps its counters, so a reload does not reset outstanding requests.
    /// The shared store, if any, is `previous`'s.
    pub fn build(
        config: &Config,
        previous: Option<&Routing>,
        discovered: &HashMap<String, Vec<Discovered>>,
    ) -> Routing {
        let shared = previous.and_then(|p| p.shared.clone());
        Routing::build_with(config, previous, discovered, shared)
    }

    /// [`Routing::build`] with the store replicas share Socket.IO pins through.
    pub fn build_with(
        config: &Config,
        previous: Option<&Routing>,
        discovered: &HashMap<String, Vec<Discovered>>,
        shared: Option<Arc<SharedState>>,
    ) -> Routing {
        let in_use: HashSet<usize> = config
            .listeners
            .iter()
            .flat_map(|l| l.rules.groups().copied())
            .collect();
        let groups: Vec<Arc<TargetGroup>> = config
            .target_groups
            .iter()
            .enumerate()
            .map(|(index, g)| {
                let old = previous.and_then(|p| p.groups.iter().find(|o| o.name == g.name));
                build_group(
                    g,
                    old.map(|o| o.as_ref()),
                    in_use.contains(&index),
                    discovered.get(&g.name).map(Vec::as_slice),
                    shared.as_ref(),
                )
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .map(|l| l.rules.map_groups(&|i: &usize| groups[*i].clone()))
            .collect();
        // Without configured keys, keep the key made at start across reloads so that
        // cookies already issued still open.
        let keys = KeyRing::new(&config.load_balancer.sticky_keys)
            .or_else(|| previous.map(|p| p.keys.clone()))
            .unwrap_or_else(|| {
                if config.target_groups.iter().any(|g| g.stickiness.is_some())
                    || config.listeners.iter().any(|l| l.rules.uses_group_stickiness())
                {
                    tracing::warn!(
                        "no [load_balancer] sticky_keys: sticky cookies are sealed with a random key made at start; \
                         other tether replicas (and this one after a restart) will not honour them"
                    );
                }
                KeyRing::random()
            });
        Routing {
            listeners,
            groups,
            idle_timeout: config.load_balancer.idle_timeout,
            keys,
            shaping: config.load_balancer.shaping,
            client_keep_alive: config.load_balancer.client_keep_alive,
            listener_headers: config.listeners.iter().map(|l| l.headers.clone()).collect(),
            shared,
        }
    }
}

/// A live group from its config. Targets the previous group had keep their state
/// and counters; targets it had that the config no longer lists start draining for
/// the deregistration delay; a draining target listed again is registered anew.
fn build_group(
    g: &TargetGroupConfig,
    old: Option<&TargetGroup>,
    in_use: bool,
    discovered: Option<&[Discovered]>,
    shared: Option<&Arc<SharedState>>,
) -> Arc<TargetGroup> {
    // A discovering group's targets are those that take traffic (a stopping task,
    // or a file's draining entry, is left out, so it drains like a target removed
    // from the config).
    let addrs: Vec<std::net::SocketAddr> = match (&g.discovery, discovered) {
        (Some(_), Some(found)) => found
            .iter()
            .filter(|d| !d.draining)
            .map(|d| d.addr)
            .collect(),
        (Some(_), None) => Vec::new(),
        (None, _) => g.targets.clone(),
    };
    let task_of = |addr: std::net::SocketAddr| {
        discovered.and_then(|found| {
            found
                .iter()
                .find(|d| d.addr == addr)
                .and_then(|d| d.task_arn.clone())
        })
    };
    let checked = g.lifecycle.health_check.enabled;
    let (fresh_state, fresh_reason) = match (in_use, checked) {
        (false, _) => (State::Unused, Reason::NotInUse),
        (true, true) => (State::Initial, Reason::InitialHealthChecking),
        (true, false) => (State::Unavailable, Reason::HealthCheckDisabled),
    };
    let old_draining = old.map(|o| o.draining()).unwrap_or_default();
    let targets: Vec<Arc<Target>> = addrs
        .iter()
        .map(|addr| {
            let known = old.and_then(|o| o.target(*addr).cloned());
            if let Some(t) = known {
                // Same target: keep its health unless what decides it changed.
                let (state, _) = t.state();
                let stale = match state {
                    State::Unused => in_use,
                    State::Unavailable => checked || !in_use,
                    State::Initial | State::Healthy | State::Unhealthy => !checked || !in_use,
                    State::Draining => true,
                };
                if stale {
                    t.set_state(fresh_state, fresh_reason);
                }
                return t;
            }
            if let Some(t) = drain::reregister(&old_draining, *addr, fresh_state, fresh_reason) {
                return t;
            }
            let t = Target::new(*addr);
            t.set_state(fresh_state, fresh_reason);
            Arc::new(t)
        })
        .collect();
    for t in &targets {
        t.set_label(task_of(t.addr));
    }
    // A target that leaves takes its Socket.IO pins with it: no replica sends a
    // session to a target this one drains.
    if let (Some(shared), Some(old), true) = (shared, old, g.socketio.is_some()) {
        for t in old.targets().iter().filter(|t| !addrs.contains(&t.addr)) {
            shared.forget_target(&g.name, t.addr);
        }
    }
    let draining = drain::deregister(
        old.map(|o| o.targets()).unwrap_or_default(),
        old_draining,
        |t| addrs.contains(&t.addr),
        g.lifecycle.deregistration_delay,
    );
    Arc::new(
        TargetGroup::new(g.name.clone(), g.algorithm, g.connect_timeout, targets)
            .with_stickiness(g.stickiness.clone())
            .with_socketio(g.socketio.as_ref().map(|s| {
                SocketIoPinning {
                    path: s.path.clone(),
                    // Socket.IO sessions outlive a reload of the group.
                    sessions: old
                        .and_then(|o| o.socketio.as_ref())
                        .map(|o| o.sessions.clone())
                        .unwrap_or_else(|| Arc::new(SidTable::new(s.max_sessions))),
                    shared: shared.cloned(),
                }
            }))
            .with_lifecycle(g.lifecycle.clone(), in_use)
            .with_upstream_tls(g.upstream_tls.clone())
            .with_draining(draining),
    )
}

/// Shared handle to the current routing snapshot.
pub type SharedRouting = Arc<ArcSwap<Routing>>;
