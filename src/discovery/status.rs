//! What the poll loop last saw, per discovering group, for the status page: when it
//! last polled, when a poll last succeeded, since when polls have been failing and
//! why. Written by [`super::follow`], read by the admin API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

/// One group's discovery, as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStatus {
    pub last_poll: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    /// The first failed poll of the outage in course; `None` when the last poll
    /// succeeded.
    pub failing_since: Option<SystemTime>,
    /// The last failure's message (kept after recovery, for the record).
    pub last_error: Option<String>,
    /// Failed polls in a row.
    pub failures: u32,
    /// Targets in the last good answer (draining ones included).
    pub targets: usize,
    /// Polls since start, and how many of them failed (for `GET /metrics`).
    pub polls: u64,
    pub poll_failures: u64,
}

/// Every discovering group's [`PollStatus`], shared by the poll loops and the admin
/// API (a lock taken once per poll and once per status page refresh).
#[derive(Debug, Clone, Default)]
pub struct DiscoveryStatus(Arc<Mutex<HashMap<String, PollStatus>>>);

impl DiscoveryStatus {
    /// A poll of `group` answered with `targets` targets at `now`.
    pub fn record_success(&self, group: &str, now: SystemTime, targets: usize) {
        let mut all = self.0.lock();
        let s = all.entry(group.to_string()).or_default();
        s.last_poll = Some(now);
        s.last_success = Some(now);
        s.failing_since = None;
        s.failures = 0;
        s.targets = targets;
        s.polls += 1;
    }

    /// A poll of `group` failed at `now` with `error`.
    pub fn record_failure(&self, group: &str, now: SystemTime, error: &str) {
        let mut all = self.0.lock();
        let s = all.entry(group.to_string()).or_default();
        s.last_poll = Some(now);
        s.failing_since.get_or_insert(now);
        s.last_error = Some(error.to_string());
        s.failures = s.failures.saturating_add(1);
        s.polls += 1;
        s.poll_failures += 1;
    }

    /// Every group's status, by group name.
    pub fn snapshot(&self) -> Vec<(String, PollStatus)> {
        let mut all: Vec<_> = self
            .0
            .lock()
            .iter()
            .map(|(g, s)| (g.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn it_should_keep_the_start_of_an_outage_until_a_poll_succeeds() {
        let status = DiscoveryStatus::default();
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        status.record_success("g", t(10), 3);
        status.record_failure("g", t(20), "ListTasks: ThrottlingException");
        status.record_failure("g", t(40), "ListTasks: timeout");
        let s = &status.snapshot()[0].1;
        assert_eq!(s.last_poll, Some(t(40)));
        assert_eq!(s.last_success, Some(t(10)));
        assert_eq!(s.failing_since, Some(t(20)));
        assert_eq!(s.last_error.as_deref(), Some("ListTasks: timeout"));
        assert_eq!((s.failures, s.targets), (2, 3));
        status.record_success("g", t(80), 2);
        let s = &status.snapshot()[0].1;
        assert_eq!(s.failing_since, None);
        assert_eq!((s.last_success, s.failures, s.targets), (Some(t(80)), 0, 2));
    }
}
