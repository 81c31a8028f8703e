//! Deregistration and draining, as ALB does them: a target that leaves its group
//! (removed from the config, gone from ECS or a targets file) stops taking new
//! requests and keeps what it has open for the group's `deregistration_delay`;
//! its drain ends early once nothing is open, else at the deadline, when what is
//! still open is closed (websockets with a Close 1001 between two frames). A
//! draining target listed again is registered anew. Routing rebuilds call
//! [`deregister`] and [`reregister`]; the lifecycle service calls [`finish`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::health::{Reason, State};
use crate::target_group::{now_ms, Target, TargetGroup};

/// A draining target of `old_draining` at `addr`, registered anew in `state` for
/// `reason`, if there is one.
pub fn reregister(
    old_draining: &[Arc<Target>],
    addr: SocketAddr,
    state: State,
    reason: Reason,
) -> Option<Arc<Target>> {
    let t = old_draining.iter().find(|t| t.addr == addr)?;
    t.stop_draining(state, reason);
    Some(t.clone())
}

/// The targets that drain after a rebuild: those still draining that are not
/// `listed` again, and those of `old_targets` that are no longer `listed`, which
/// start draining now for `delay` (or, with no delay, have what they hold closed
/// at once and are gone).
pub fn deregister(
    old_targets: &[Arc<Target>],
    old_draining: Vec<Arc<Target>>,
    listed: impl Fn(&Arc<Target>) -> bool,
    delay: Duration,
) -> Vec<Arc<Target>> {
    let mut draining: Vec<Arc<Target>> = old_draining.into_iter().filter(|t| !listed(t)).collect();
    for t in old_targets {
        if listed(t) {
            continue;
        }
        if delay.is_zero() {
            t.close_connections();
        } else {
            t.start_draining(now_ms() + delay.as_millis() as u64);
            draining.push(t.clone());
        }
    }
    draining
}

/// Ends the drains that are over: early when a target has nothing open, else at its
/// deadline, closing what is still open.
pub fn finish(groups: &[Arc<TargetGroup>]) {
    let now = now_ms();
    for g in groups {
        g.retain_draining(|t| {
            let Some(deadline) = t.drain_deadline() else {
                return false;
            };
            if t.connections() == 0 {
                tracing::info!(group = %g.name, target = %t.addr, "drained: nothing open");
                return false;
            }
            if now >= deadline {
                tracing::info!(
                    group = %g.name,
                    target = %t.addr,
                    open = t.connections(),
                    "deregistration delay over: closing what is still open"
                );
                t.close_connections();
                return false;
            }
            true
        });
    }
}
