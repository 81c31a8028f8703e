//! Targets that follow a discovery source: each discovering group polls its
//! [`Source`], keeps the last good answer when a poll fails, backs off with jitter,
//! and republishes routing when its targets change. Two sources: ECS ([`ecs`], behind
//! the `ecs` cargo feature, on by default) and a file of targets ([`file`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;

#[cfg(feature = "ecs")]
pub mod ecs;
pub mod file;
mod status;

pub use file::{FileDiscovery, FileError};
pub use status::{DiscoveryStatus, PollStatus};

/// Where a group's targets come from (validated config): one source per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySpec {
    Ecs(EcsDiscovery),
    File(FileDiscovery),
}

impl DiscoverySpec {
    /// How often the source is polled (while it answers).
    pub fn interval(&self) -> Duration {
        match self {
            DiscoverySpec::Ecs(ecs) => ecs.interval,
            DiscoverySpec::File(file) => file.interval,
        }
    }

    /// The source that follows this spec (ECS: its SDK clients, made from the AWS
    /// chain; without the `ecs` feature, a source that always fails).
    async fn open(self) -> Box<dyn Source> {
        match self {
            #[cfg(feature = "ecs")]
            DiscoverySpec::Ecs(ecs) => Box::new(ecs::EcsSource::new(ecs).await),
            #[cfg(not(feature = "ecs"))]
            DiscoverySpec::Ecs(ecs) => Box::new(Unavailable(ecs)),
            DiscoverySpec::File(file) => Box::new(file::FileSource::new(file)),
        }
    }
}

/// Where a group's targets come from in ECS (validated config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsDiscovery {
    pub cluster: String,
    /// The service whose tasks are targets; or find services by `target_group_arn`.
    pub service: Option<String>,
    /// The ALB target group ARN the services are bound to (their `loadBalancers`).
    pub target_group_arn: Option<String>,
    pub container_name: Option<String>,
    pub container_port: Option<u16>,
    /// Default 10 s.
    pub interval: Duration,
    pub region: Option<String>,
    /// For emulators and VPC endpoints.
    pub endpoint_url: Option<String>,
}

/// One discovered target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Discovered {
    pub addr: SocketAddr,
    /// The ECS task behind the target (shown by `tether targets`); none from a file.
    pub task_arn: Option<String>,
    /// Listed but not to take new requests (ECS: the task is stopping, desiredStatus
    /// STOPPED, but still running; a file: `"draining": true`): drain it.
    pub draining: bool,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A call to the source's API: which call, and what it said.
    #[error("{call}: {message}")]
    Call { call: &'static str, message: String },
    /// The targets file: unreadable, empty, or wrong at a line.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Where one group's targets come from. The poll loop ([`follow`]) calls `poll` once
/// per interval, one call at a time, and each answer is a full look at the group:
///
/// - `Ok(targets)` is the whole truth, sorted by address (an unchanged answer must
///   compare equal, or it is republished). The targets listed take traffic (after
///   their first passing health check), those marked `draining` drain, and every
///   target of the group left out drains for the deregistration delay, as a target
///   removed from the config does.
/// - `Ok(vec![])` therefore drains the whole group: new requests get 503 at once. A
///   source answers it only when it knows the group has no targets (ECS: the service
///   runs no task; a file that lists `[]`), never because it could not tell.
/// - `Err(_)` means "could not tell": the loop keeps the last good targets (a group is
///   never emptied by a failure), shows the error on the status page, and backs off
///   (doubling from the interval to 8 intervals, at most 2 minutes, with jitter). A
///   source unsure of its answer (a call failed, a file unreadable, half written,
///   empty or unparsable) answers `Err` rather than a guess.
/// - Cancellation: at shutdown the loop's task is aborted, so a `poll` future may be
///   dropped at any await point. It must hold nothing that needs cleanup (no lock or
///   temporary file across an await) and leave `self` fit for a next poll: state it
///   keeps between polls (a cache) is updated only with what it has finished reading.
#[async_trait]
pub trait Source: Send {
    async fn poll(&mut self) -> Result<Vec<Discovered>, DiscoveryError>;
}

// === The poll loop ===

/// Discovered targets by group name.
pub type DiscoveredTargets = Arc<ArcSwap<HashMap<String, Vec<Discovered>>>>;

/// Polls the source of each discovering group; on a change, stores the targets and
/// asks for a routing rebuild.
pub struct DiscoveryService {
    pub groups: Vec<(String, DiscoverySpec)>,
    pub discovered: DiscoveredTargets,
    pub rebuild: Arc<dyn Fn() + Send + Sync>,
    /// What each group's polls last saw, for the status page.
    pub status: DiscoveryStatus,
}

/// The back-off after failures doubles from the interval up to 8 intervals, and
/// never past two minutes, so that discovery resumes soon after the source is back.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
const MAX_BACKOFF_INTERVALS: u32 = 8;

/// The wait before the next poll after `failures` failed polls in a row, before
/// jitter (the caller waits between half of it and all of it).
fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval
        .saturating_mul(1 << failures.min(3))
        .min(interval.saturating_mul(MAX_BACKOFF_INTERVALS))
        .min(MAX_BACKOFF)
}

/// Follows one group's source forever: publishes each answer that differs from the
/// last, and keeps the last good one while polls fail.
async fn follow(
    group: String,
    mut source: Box<dyn Source>,
    interval: Duration,
    discovered: DiscoveredTargets,
    rebuild: Arc<dyn Fn() + Send + Sync>,
    status: DiscoveryStatus,
) {
    let mut failures: u32 = 0;
    loop {
        match source.poll().await {
            Ok(targets) => {
                status.record_success(&group, std::time::SystemTime::now(), targets.len());
                if failures > 0 {
                    tracing::info!(group = %group, "discovery works again");
                }
                failures = 0;
                let current = discovered.load();
                if current.get(&group) != Some(&targets) {
                    tracing::info!(
                        group = %group,
                        targets = targets.iter().filter(|t| !t.draining).count(),
                        draining = targets.iter().filter(|t| t.draining).count(),
                        "discovered targets changed"
                    );
                    let mut next = (**current).clone();
                    next.insert(group.clone(), targets);
                    discovered.store(Arc::new(next));
                    rebuild();
                }
            }
            Err(e) => {
                status.record_failure(&group, std::time::SystemTime::now(), &e.to_string());
                tracing::debug!(group = %group, "discovery attempt failed: {e:?}");
                // Keep the last known targets; say so once per outage.
                if failures == 0 {
                    tracing::warn!(group = %group, "discovery failed, keeping the last known targets: {e}");
                }
                failures = failures.saturating_add(1);
            }
        }
        let mut wait = backoff(interval, failures);
        if failures > 0 {
            wait = wait.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
        }
        tracing::debug!(group = %group, failures, "next discovery poll in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

#[async_trait]
impl BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks: Vec<_> = self
            .groups
            .iter()
            .map(|(group, spec)| {
                let (group, spec) = (group.clone(), spec.clone());
                let (discovered, rebuild) = (self.discovered.clone(), self.rebuild.clone());
                let status = self.status.clone();
                tokio::spawn(async move {
                    let interval = spec.interval();
                    let source = spec.open().await;
                    follow(group, source, interval, discovered, rebuild, status).await
                })
            })
            .collect();
        let _ = shutdown.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}

/// ECS discovery in a build without the `ecs` feature: config validation refuses
/// such groups, so this only answers (with an error) if that check is bypassed.
#[cfg(not(feature = "ecs"))]
struct Unavailable(EcsDiscovery);

#[cfg(not(feature = "ecs"))]
#[async_trait]
impl Source for Unavailable {
    async fn poll(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        Err(DiscoveryError::Call {
            call: "ecs",
            message: format!(
                "cluster {}: this tether was built without the `ecs` feature",
                self.0.cluster
            ),
        })
    }
}

#[cfg(test)]
mod tests;
