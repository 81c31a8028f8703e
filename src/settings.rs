//! The validated settings that config, target groups, rules and the engines share:
//! plain values with ALB's defaults and nothing that acts on them. It depends on no
//! other tether module, so the modules that share these types do not depend on each
//! other for them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

// === Listener protocols ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

impl Protocol {
    /// The protocol as ALB writes it (`HTTP`, `HTTPS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
        }
    }
}

// === Load balancer attributes ===

/// ALB's `routing.http.desync_mitigation_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DesyncMode {
    /// Pass every request the engine can frame.
    Monitor,
    /// Pass Acceptable; pass Ambiguous then close both connections; 400 Severe.
    #[default]
    Defensive,
    /// 400 for anything not Compliant.
    Strictest,
}

impl DesyncMode {
    /// The mode called `name` in the config (`monitor`, `defensive`, `strictest`).
    pub fn from_name(name: &str) -> Option<DesyncMode> {
        match name {
            "monitor" => Some(DesyncMode::Monitor),
            "defensive" => Some(DesyncMode::Defensive),
            "strictest" => Some(DesyncMode::Strictest),
            _ => None,
        }
    }
}

/// Default `client_header_timeout`.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// ALB's `routing.http.xff_header_processing.mode`: what happens to
/// `X-Forwarded-For` on the way to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XffMode {
    /// The client's address is appended (a header is made when none came in).
    #[default]
    Append,
    /// The client's `X-Forwarded-For` goes to the target as it is; none is added.
    Preserve,
    /// Every `X-Forwarded-For` line is removed; none is added.
    Remove,
}

impl XffMode {
    /// The mode called `name` in the config (`append`, `preserve`, `remove`).
    pub fn from_name(name: &str) -> Option<XffMode> {
        match name {
            "append" => Some(XffMode::Append),
            "preserve" => Some(XffMode::Preserve),
            "remove" => Some(XffMode::Remove),
            _ => None,
        }
    }
}

/// The load balancer attributes that shape the request sent to a target. The
/// default is ALB's: every one off, `X-Forwarded-For` appended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestShaping {
    /// `routing.http.xff_header_processing.mode`.
    pub xff_mode: XffMode,
    /// `routing.http.xff_client_port.enabled`: append `ip:port`, not the bare ip.
    pub xff_client_port: bool,
    /// `routing.http.preserve_host_header.enabled`: the Host goes as the client sent
    /// it; otherwise ALB drops the port on listeners on 80 or 443 and adds the
    /// listener's port on others.
    pub preserve_host_header: bool,
    /// `routing.http.drop_invalid_header_fields.enabled`: header lines whose names
    /// are not `[-A-Za-z0-9]+` are removed.
    pub drop_invalid_header_fields: bool,
    /// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled`: HTTPS requests
    /// carry `X-Amzn-Tls-Version` and `X-Amzn-Tls-Cipher-Suite`.
    pub tls_version_and_cipher_headers: bool,
}

/// ALB's `client_keep_alive.seconds`: default 3600 s, 60 s – 7 days.
pub const DEFAULT_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(3600);
pub const MIN_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(60);
pub const MAX_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(7 * 86400);

// === Listener attributes ===

/// ALB's default names of the TLS request headers.
pub const X_AMZN_TLS_VERSION: &str = "X-Amzn-Tls-Version";
pub const X_AMZN_TLS_CIPHER_SUITE: &str = "X-Amzn-Tls-Cipher-Suite";

/// A listener's header attributes: the response headers it sets and the names of
/// the TLS request headers. The default sets nothing, keeps `Server`, and uses
/// ALB's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerHeaders {
    /// Lines set on every response (the target's own line of the same name is
    /// replaced, as ALB does): lower-case name and value.
    pub response: Box<[(&'static str, Box<str>)]>,
    /// `routing.http.response.server.enabled` (default true): false removes the
    /// `Server` header, the target's included.
    pub server: bool,
    /// `routing.http.request.x_amzn_tls_version.header_name`.
    pub tls_version_name: Box<str>,
    /// `routing.http.request.x_amzn_tls_cipher_suite.header_name`.
    pub tls_cipher_suite_name: Box<str>,
}

impl Default for ListenerHeaders {
    fn default() -> Self {
        ListenerHeaders {
            response: Box::new([]),
            server: true,
            tls_version_name: X_AMZN_TLS_VERSION.into(),
            tls_cipher_suite_name: X_AMZN_TLS_CIPHER_SUITE.into(),
        }
    }
}

impl ListenerHeaders {
    /// Whether a response line from the target is left out: one the listener sets
    /// itself, or `Server` when it is turned off.
    pub fn replaces(&self, name: &str) -> bool {
        (!self.server && name.eq_ignore_ascii_case("server"))
            || self
                .response
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Whether responses need any change.
    pub fn is_noop(&self) -> bool {
        self.server && self.response.is_empty()
    }
}

// === Target group attributes ===

/// How many healthy targets a group needs before it fails open to all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinHealthy {
    Count(u32),
    Percentage(u32),
}

impl Default for MinHealthy {
    /// ALB's default: fail open when no target is healthy.
    fn default() -> Self {
        MinHealthy::Count(1)
    }
}

impl MinHealthy {
    /// Healthy targets required among `registered`.
    pub fn required(self, registered: usize) -> usize {
        match self {
            MinHealthy::Count(c) => (c as usize).min(registered.max(1)),
            MinHealthy::Percentage(p) => (registered * p as usize).div_ceil(100).max(1),
        }
    }
}

/// Passive failure marks (beyond ALB): a connect failure or reset makes a target
/// skipped for `backoff`, doubled on each failure in a row up to `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    pub enabled: bool,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            enabled: true,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// ALB's default deregistration delay.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// ALB's default stickiness duration.
pub const DEFAULT_STICKINESS: Duration = Duration::from_secs(86400);
pub const MAX_STICKINESS: Duration = Duration::from_secs(7 * 86400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickinessKind {
    /// `AWSALB` / `AWSALBCORS`, made by the load balancer.
    LbCookie,
    /// `AWSALBAPP-0` next to the application's own cookie.
    AppCookie { cookie_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stickiness {
    pub kind: StickinessKind,
    /// How long a client stays pinned after its last request (1 s – 7 d, default 1 d).
    pub duration: Duration,
    /// Opt-in attributes for `AWSALB` (ALB adds neither).
    pub secure: bool,
    pub http_only: bool,
}

/// How long a request whose sid no replica-local pin knows waits for the shared
/// store by default: a loopback or same-zone Redis answers in well under a millisecond.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_millis(5);

/// `[load_balancer] shared_state`: where replicas share Socket.IO pins.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedStateSpec {
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS) or `unix:/path`.
    pub redis: String,
    /// Prefix of every key tether writes (default `tether:`).
    pub key_prefix: String,
    /// The longest a request whose sid is not known here waits for Redis before it is
    /// routed as without it (default 5 ms).
    pub lookup_timeout: Duration,
    /// PEM CA certificates that verify a `rediss://` server (default: the system's).
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl SharedStateSpec {
    /// The Redis address with any password hidden, for logs and the status page.
    pub fn redacted(&self) -> String {
        redact_password(&self.redis)
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`; anything else unchanged.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    format!("{scheme}://{user}:***{}", &rest[at..])
}

impl fmt::Debug for SharedStateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStateSpec")
            .field("redis", &self.redacted())
            .field("key_prefix", &self.key_prefix)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIo {
    /// Engine.IO path prefix (default `/socket.io/`).
    pub path: String,
    /// Bound on remembered sessions (default 1,048,576).
    pub max_sessions: usize,
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
    /// Fewest open connections, websockets included (beyond ALB).
    LeastConnections,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastOutstandingRequests => "least_outstanding_requests",
            Algorithm::WeightedRandom => "weighted_random",
            Algorithm::LeastConnections => "least_connections",
        })
    }
}

/// Default time to establish a connection to a target (ALB: 10 s, then 504).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// === Targets over TLS and the lifecycle ===

/// HTTPS to a group's targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Name to send (SNI) and verify; the target's IP when absent.
    pub server_name: Option<String>,
    /// CA certificates (DER) to verify targets with; the system roots when absent.
    pub ca: Option<Arc<Vec<Vec<u8>>>>,
    /// A digest of everything above: connections made with different settings are
    /// different connections (the target pool's key), and comparing this per
    /// request costs nothing.
    identity: u64,
}

impl UpstreamTls {
    /// TLS to targets with `server_name` (else the target's IP) verified by `ca` (else the system's roots).
    pub fn new(server_name: Option<String>, ca: Option<Arc<Vec<Vec<u8>>>>) -> Self {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same settings give the same identity after a
        // reload, so pooled connections stay usable.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        server_name.hash(&mut h);
        ca.as_deref().hash(&mut h);
        UpstreamTls {
            server_name,
            ca,
            identity: h.finish(),
        }
    }

    /// A digest of the settings: equal settings, equal identity (the target pool's key).
    pub fn identity(&self) -> u64 {
        self.identity
    }
}

/// The lifecycle settings of a group (health, draining, slow start, passive marks).
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub health_check: HealthCheck,
    pub min_healthy: MinHealthy,
    pub deregistration_delay: Duration,
    pub slow_start: Duration,
    pub passive: PassiveHealth,
}

// === Health checks ===

/// ALB's defaults.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 5;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;

/// A validated health check of a target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub enabled: bool,
    /// Checks over TLS (the certificate is not verified, as on ALB).
    pub https: bool,
    /// `None`: the target's own (traffic) port.
    pub port: Option<u16>,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Matcher,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            https: false,
            port: None,
            path: "/".to_string(),
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            matcher: Matcher::default(),
        }
    }
}

// === impl Matcher ===

/// Success codes: `"200"`, `"200,202"`, `"200-299"` (ALB allows 200–499).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher(Vec<(u16, u16)>);

impl Default for Matcher {
    fn default() -> Self {
        Matcher(vec![(200, 200)])
    }
}

impl Matcher {
    /// Parses ALB's matcher syntax: codes and ranges, comma-separated (`200,300-399`).
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let parse = |v: &str| -> Result<u16, String> {
                v.parse::<u16>()
                    .ok()
                    .filter(|c| (200..=499).contains(c))
                    .ok_or_else(|| format!("invalid matcher \"{s}\": codes are 200-499, like \"200\", \"200,202\" or \"200-299\""))
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!(
                    "invalid matcher \"{s}\": range {lo}-{hi} is backwards"
                ));
            }
            ranges.push((lo, hi));
        }
        Ok(Matcher(ranges))
    }

    /// Whether `status` is one of the matcher's codes.
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_take_lists_and_ranges_within_200_499() {
        let m = Matcher::parse("200,202, 300-399").unwrap();
        assert!(m.matches(200) && m.matches(202) && m.matches(350));
        assert!(!m.matches(201) && !m.matches(400));
        assert!(Matcher::parse("199").is_err());
        assert!(Matcher::parse("500").is_err());
        assert!(Matcher::parse("299-200").is_err());
        assert!(Matcher::parse("ok").is_err());
    }
}
