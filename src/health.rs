//! Target health: ALB's active HTTP checks, the target states and reason codes, and
//! the state machine that turns check results into states.
//!
//! Checks run in the background ([`crate::lifecycle`]), never on the request path; a
//! target's state is published to the data path through its group's health snapshot.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::settings::HealthCheck;

/// The User-Agent ALB's checks send; kept so that targets' log filters still work.
pub const USER_AGENT: &str = "ELB-HealthChecker/2.0";

// === States and reasons ===

/// ALB target states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
    Draining = 3,
    /// Registered in a group that no rule forwards to.
    Unused = 4,
    /// Health checks disabled: routable, health unknown.
    Unavailable = 5,
}

impl State {
    /// The state stored as `v` ([`State`] as `u8`); an unknown value reads as initial.
    pub fn from_u8(v: u8) -> State {
        match v {
            1 => State::Healthy,
            2 => State::Unhealthy,
            3 => State::Draining,
            4 => State::Unused,
            5 => State::Unavailable,
            _ => State::Initial,
        }
    }

    /// The state's name as ALB's API writes it (`healthy`, `draining`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Draining => "draining",
            State::Unused => "unused",
            State::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ALB reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    None = 0,
    InitialHealthChecking = 1,
    ResponseCodeMismatch = 2,
    Timeout = 3,
    FailedHealthChecks = 4,
    DeregistrationInProgress = 5,
    NotInUse = 6,
    HealthCheckDisabled = 7,
}

impl Reason {
    /// The reason stored as `v` ([`Reason`] as `u8`); an unknown value reads as none.
    pub fn from_u8(v: u8) -> Reason {
        match v {
            1 => Reason::InitialHealthChecking,
            2 => Reason::ResponseCodeMismatch,
            3 => Reason::Timeout,
            4 => Reason::FailedHealthChecks,
            5 => Reason::DeregistrationInProgress,
            6 => Reason::NotInUse,
            7 => Reason::HealthCheckDisabled,
            _ => Reason::None,
        }
    }

    /// ALB's reason code (`Elb.InitialHealthChecking`, `Target.Timeout`, …); empty for none.
    pub fn code(self) -> &'static str {
        match self {
            Reason::None => "",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Reason::Timeout => "Target.Timeout",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::NotInUse => "Target.NotInUse",
            Reason::HealthCheckDisabled => "Target.HealthCheckDisabled",
        }
    }

    /// ALB's description of the reason; empty for none.
    pub fn description(self) -> &'static str {
        match self {
            Reason::None => "",
            Reason::InitialHealthChecking => "Initial health checks in progress",
            Reason::ResponseCodeMismatch => "Health checks failed with these codes",
            Reason::Timeout => "Request timed out",
            Reason::FailedHealthChecks => "Health checks failed",
            Reason::DeregistrationInProgress => "Target deregistration is in progress",
            Reason::NotInUse => {
                "Target group is not configured to receive traffic from the load balancer"
            }
            Reason::HealthCheckDisabled => "Health checks are disabled",
        }
    }
}

// === The state machine ===

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    /// The target answered with a code the matcher refuses.
    Mismatch(u16),
    Timeout,
    /// Connection refused, reset, or a malformed answer.
    Failed,
}

impl CheckResult {
    fn reason(&self) -> Reason {
        match self {
            CheckResult::Pass => Reason::None,
            CheckResult::Mismatch(_) => Reason::ResponseCodeMismatch,
            CheckResult::Timeout => Reason::Timeout,
            CheckResult::Failed => Reason::FailedHealthChecks,
        }
    }
}

/// Consecutive results of one target, turned into ALB states: an `initial` target is
/// healthy after one pass and unhealthy after `unhealthy_threshold` failures; a
/// healthy one is unhealthy after `unhealthy_threshold` failures in a row; an
/// unhealthy one is healthy again after `healthy_threshold` passes in a row.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub state: State,
    pub reason: Reason,
    passes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker starting in `state` for `reason`, with no check results counted yet.
    pub fn new(state: State, reason: Reason) -> Self {
        Tracker {
            state,
            reason,
            passes: 0,
            failures: 0,
        }
    }

    /// Records one result; returns the new `(state, reason)` when either changed.
    pub fn record(&mut self, result: &CheckResult, check: &HealthCheck) -> Option<(State, Reason)> {
        let before = (self.state, self.reason);
        if *result == CheckResult::Pass {
            self.passes += 1;
            self.failures = 0;
            let needed = if self.state == State::Initial {
                1
            } else {
                check.healthy_threshold
            };
            if self.state != State::Healthy && self.passes >= needed {
                self.state = State::Healthy;
                self.reason = Reason::None;
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            if self.failures >= check.unhealthy_threshold {
                self.state = State::Unhealthy;
                self.reason = result.reason();
            }
        }
        let after = (self.state, self.reason);
        (after != before).then_some(after)
    }
}

// === The check ===

/// One HTTP health check: `GET path` on a new connection, within `timeout`.
pub async fn check(addr: SocketAddr, check: &HealthCheck) -> CheckResult {
    let addr = SocketAddr::new(addr.ip(), check.port.unwrap_or(addr.port()));
    match tokio::time::timeout(check.timeout, probe(addr, &check.path, check.https)).await {
        Err(_) => CheckResult::Timeout,
        Ok(Err(_)) => CheckResult::Failed,
        Ok(Ok(status)) if check.matcher.matches(status) => CheckResult::Pass,
        Ok(Ok(status)) => CheckResult::Mismatch(status),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn probe(addr: SocketAddr, path: &str, https: bool) -> Result<u16, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    if https {
        let connector = tokio_rustls::TlsConnector::from(crate::listener::tls::no_verify_client());
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, stream).await?;
        return request(tls, addr, path).await;
    }
    request(stream, addr, path).await
}

async fn request<S>(io: S, addr: SocketAddr, path: &str) -> Result<u16, BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await;
    driver.abort();
    Ok(resp?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc() -> HealthCheck {
        HealthCheck {
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            ..HealthCheck::default()
        }
    }

    #[test]
    fn a_new_target_is_healthy_after_one_pass() {
        let mut t = Tracker::new(State::Initial, Reason::InitialHealthChecking);
        assert_eq!(
            t.record(&CheckResult::Pass, &hc()),
            Some((State::Healthy, Reason::None))
        );
    }

    #[test]
    fn a_healthy_target_goes_unhealthy_after_the_threshold_and_back_after_passes() {
        let c = hc();
        let mut t = Tracker::new(State::Healthy, Reason::None);
        assert_eq!(t.record(&CheckResult::Mismatch(500), &c), None);
        assert_eq!(
            t.record(&CheckResult::Mismatch(500), &c),
            Some((State::Unhealthy, Reason::ResponseCodeMismatch))
        );
        assert_eq!(
            t.record(&CheckResult::Timeout, &c),
            Some((State::Unhealthy, Reason::Timeout))
        );
        assert_eq!(t.record(&CheckResult::Pass, &c), None);
        assert_eq!(t.record(&CheckResult::Pass, &c), None);
        assert_eq!(
            t.record(&CheckResult::Pass, &c),
            Some((State::Healthy, Reason::None))
        );
    }

    #[test]
    fn a_pass_between_failures_resets_the_count() {
        let c = hc();
        let mut t = Tracker::new(State::Healthy, Reason::None);
        t.record(&CheckResult::Failed, &c);
        t.record(&CheckResult::Pass, &c);
        assert_eq!(t.record(&CheckResult::Failed, &c), None);
        assert_eq!(t.state, State::Healthy);
    }

    #[test]
    fn an_initial_target_that_fails_becomes_unhealthy() {
        let c = hc();
        let mut t = Tracker::new(State::Initial, Reason::InitialHealthChecking);
        assert_eq!(t.record(&CheckResult::Failed, &c), None);
        assert_eq!(
            t.record(&CheckResult::Failed, &c),
            Some((State::Unhealthy, Reason::FailedHealthChecks))
        );
    }
}
