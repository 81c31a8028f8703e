//! The way out of a process that was told to stop gracefully.
//!
//! pingora stops the listeners (on SIGQUIT after handing them to the new process of
//! an upgrade, on SIGTERM at once) and then only sleeps its grace period before it
//! drops every connection. This service makes that end clean and no longer than
//! needed: requests in flight finish; HTTP/1 clients are told `Connection: close`
//! on their next response; websockets stay for `upgrade_grace` after an upgrade (not
//! at all on SIGTERM) and are then closed with a Close 1001 between two frames, as a
//! drained target's are; and the process exits as soon as nothing is open.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::routing::SharedRouting;

/// Once the websockets are closed, how long requests still in flight (and the
/// Close frames) get before the process exits anyway.
pub const LINGER: Duration = Duration::from_secs(5);
/// The process stays at least this long after the listeners stop, even with
/// nothing open: a keep-alive client between two requests gets its next response
/// with `Connection: close` rather than a connection closed under it.
const MIN_LINGER: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

pub struct ShutdownService {
    routing: SharedRouting,
    upgrade_grace: Duration,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl ShutdownService {
    /// `phases` is the server's execution phase watch (subscribed before it runs),
    /// from which the service learns whether the stop is an upgrade.
    pub fn new(
        routing: SharedRouting,
        upgrade_grace: Duration,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        ShutdownService {
            routing,
            upgrade_grace,
            phases: Mutex::new(Some(phases)),
        }
    }

    /// Requests in flight and open websockets, over every target (draining ones too).
    fn open(&self) -> u64 {
        let routing = self.routing.load();
        routing
            .groups
            .iter()
            .flat_map(|g| g.all_targets())
            .map(|t| t.connections())
            .sum()
    }

    fn close_websockets(&self) {
        let routing = self.routing.load();
        for g in &routing.groups {
            for t in g.all_targets() {
                t.close_connections();
            }
        }
    }
}

/// Whether the phases seen so far include the hand-over of an upgrade.
fn upgrading(phases: &mut broadcast::Receiver<ExecutionPhase>) -> bool {
    let mut seen = false;
    loop {
        match phases.try_recv() {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout,
            ) => seen = true,
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return seen,
        }
    }
}

#[async_trait]
impl BackgroundService for ShutdownService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.phases.lock().take();
        if shutdown.changed().await.is_err() {
            return;
        }
        let stopped = Instant::now();
        let upgrade = phases.is_some_and(|mut p| upgrading(&mut p));
        let grace = if upgrade {
            self.upgrade_grace
        } else {
            Duration::ZERO
        };
        tracing::info!(
            "listeners stopped ({}): websockets close in {grace:?}",
            if upgrade { "upgrade" } else { "stop" }
        );
        let close_at = stopped + grace;
        loop {
            let now = Instant::now();
            if now >= close_at {
                break;
            }
            if now >= stopped + MIN_LINGER && self.open() == 0 {
                tracing::info!("nothing open: exiting");
                std::process::exit(0);
            }
            tokio::time::sleep(POLL.min(close_at - now)).await;
        }
        let open = self.open();
        if open > 0 {
            tracing::info!("closing what is still open ({open})");
            self.close_websockets();
        }
        let give_up = Instant::now() + LINGER;
        while Instant::now() < give_up && (Instant::now() < stopped + MIN_LINGER || self.open() > 0)
        {
            tokio::time::sleep(POLL).await;
        }
        // pingora would sleep out the rest of its grace period and then drop what is
        // left; there is nothing left.
        std::process::exit(0);
    }
}
