//! The routing snapshot the data path reads without locks: each listener's rules with
//! live target groups. Built from a validated [`Config`]; replaced whole on reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::rules::RuleSet;
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
}

impl Routing {
    /// Builds live groups. A target already known to `previous` (same group, same
    /// address) keeps its counters, so a reload does not reset outstanding requests.
    pub fn build(config: &Config, previous: Option<&Routing>) -> Routing {
        let groups: Vec<Arc<TargetGroup>> = config
            .target_groups
            .iter()
            .map(|g| {
                let old = previous.and_then(|p| p.groups.iter().find(|o| o.name == g.name));
                let targets = g
                    .targets
                    .iter()
                    .map(|addr| {
                        old.and_then(|o| o.targets().iter().find(|t| t.addr == *addr).cloned())
                            .unwrap_or_else(|| Arc::new(Target::new(*addr)))
                    })
                    .collect();
                // Socket.IO sessions outlive a reload of an unchanged group.
                let socketio = g.socketio.as_ref().map(|s| SocketIoPinning {
                    path: s.path.clone(),
                    sessions: old
                        .and_then(|o| o.socketio.as_ref())
                        .map(|o| o.sessions.clone())
                        .unwrap_or_else(|| Arc::new(SidTable::new(s.max_sessions))),
                });
                Arc::new(
                    TargetGroup::new(g.name.clone(), g.algorithm, g.connect_timeout, targets)
                        .with_stickiness(g.stickiness.clone())
                        .with_socketio(socketio),
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
        }
    }
}

/// Shared handle to the current routing snapshot.
pub type SharedRouting = Arc<ArcSwap<Routing>>;
