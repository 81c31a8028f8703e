//! The routing snapshot the data path reads without locks: each listener's rules with
//! live target groups. Built from a validated [`Config`]; replaced whole on reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::rules::RuleSet;
use crate::target_group::{Target, TargetGroup};

#[derive(Debug)]
pub struct Routing {
    /// One rule set per listener, in config order.
    pub listeners: Vec<RuleSet>,
    pub groups: Vec<Arc<TargetGroup>>,
    pub idle_timeout: Duration,
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
                Arc::new(TargetGroup::new(
                    g.name.clone(),
                    g.algorithm,
                    g.connect_timeout,
                    targets,
                ))
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .map(|l| l.rules.map_groups(&|i: &usize| groups[*i].clone()))
            .collect();
        Routing {
            listeners,
            groups,
            idle_timeout: config.load_balancer.idle_timeout,
        }
    }
}

/// Shared handle to the current routing snapshot.
pub type SharedRouting = Arc<ArcSwap<Routing>>;
