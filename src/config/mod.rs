//! The TOML config file: raw serde structs (`deny_unknown_fields`) → validated
//! [`Config`]. The rest of tether sees only the validated model.
//!
//! Every error names the file, line and column of the offending value:
//! `config/demo.toml:12:14: unknown target group "apii"`.

mod attributes;
mod error;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rules::RuleSet;
use crate::settings::{
    Algorithm, DesyncMode, Lifecycle, ListenerHeaders, Protocol, RequestShaping, SharedStateSpec,
    SocketIo, Stickiness, UpstreamTls,
};

pub use error::{ConfigError, Duplicate, Problem, Span};
pub use raw::HumanDuration;
use raw::RawConfig;
use validate::build;

/// ALB's default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

// === Errors ===

/// Line and column (both from 1; column in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Collects the first validation error with its span.
struct Ctx<'a> {
    path: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    /// The error for `problem` at the value in `bytes`.
    fn err(&self, bytes: Range<usize>, problem: Problem) -> ConfigError {
        let (line, column) = line_column(self.source, bytes.start);
        ConfigError::Invalid {
            path: self.path.to_string(),
            span: Span {
                line,
                column,
                bytes,
            },
            problem,
        }
    }
}

// === Validated model ===

/// A validated config. Target groups are referred to by index into `target_groups`.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// Things worth saying that do not stop the config (an expired certificate).
    pub warnings: Vec<String>,
    pub load_balancer: LoadBalancer,
    pub listeners: Vec<ListenerConfig>,
    pub target_groups: Vec<TargetGroupConfig>,
}

#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// Default "tether".
    pub name: String,
    /// No bytes either way for this long closes a connection, websockets included
    /// (default 60 s, 1 s – 4000 s).
    pub idle_timeout: Duration,
    /// Worker threads per listener (default: the number of CPUs).
    pub threads: usize,
    /// Decoded sticky key materials, newest first (empty: a random key at start).
    pub sticky_keys: Vec<Vec<u8>>,
    /// Admin API address (target health, reload); none by default.
    pub admin: Option<SocketAddr>,
    /// The bearer token admin writes (`POST /reload`) need; required when `admin`
    /// is not loopback, none by default.
    pub admin_token: Option<AdminToken>,
    /// A client that has not sent a whole request head this long after it began one
    /// (or after connecting) is closed (default 60 s, 1 s – 4000 s).
    pub client_header_timeout: Duration,
    /// What to do with requests `http_desync_guardian` classes as risky (default
    /// `defensive`).
    pub desync_mitigation_mode: DesyncMode,
    /// How requests are shaped for targets: `X-Forwarded-For`, Host, invalid header
    /// fields, TLS headers (ALB's defaults: append, all else off).
    pub shaping: RequestShaping,
    /// The longest a client connection is kept (default 3600 s, 60 s – 7 days); it
    /// then closes after its next response (HTTP/1) or with a GOAWAY (HTTP/2).
    pub client_keep_alive: Duration,
    /// HTTPS listeners offer `h2` in ALPN (default true).
    pub http2_enabled: bool,
    /// After a graceful upgrade hands the listeners to a new process (or a SIGTERM),
    /// how long the old process keeps its websockets before closing them with Close
    /// 1001 (0 s – 1 h; default the longest `deregistration_delay` among the target
    /// groups, 300 s without groups). Read at start: a reload does not change it.
    pub upgrade_grace: Duration,
    /// Where ALB-format access log lines go; none by default. Fixed at start: a
    /// reload that changes it is refused.
    pub access_log: Option<crate::access_log::LogTarget>,
    /// Where replicas share Socket.IO pins (none by default).
    pub shared_state: Option<SharedStateSpec>,
}

/// The admin API's bearer token. Its `Debug` does not show it, so that a config
/// printed in a log does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(token.to_string())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub rules: RuleSet<usize>,
    /// Certificates and policy of an HTTPS listener.
    pub tls: Option<ListenerTls>,
    /// Response headers, `Server`, and the TLS headers' names.
    pub headers: ListenerHeaders,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The first is the default certificate.
    pub certificates: Vec<crate::listener::tls::CertSpec>,
    pub policy: crate::listener::tls::SslPolicy,
    /// `mutual_authentication` (mode off by default).
    pub mutual_auth: crate::listener::mtls::MutualAuth,
}

#[derive(Debug, Clone)]
pub struct TargetGroupConfig {
    pub name: String,
    pub algorithm: Algorithm,
    pub targets: Vec<SocketAddr>,
    /// Default 10 s (ALB's fixed connect timeout).
    pub connect_timeout: Duration,
    pub stickiness: Option<Stickiness>,
    pub socketio: Option<SocketIo>,
    pub lifecycle: Lifecycle,
    /// HTTPS to the targets (`protocol = "HTTPS"`).
    pub upstream_tls: Option<UpstreamTls>,
    /// Targets from a discovery source (ECS, a file) instead of `targets`.
    pub discovery: Option<crate::discovery::DiscoverySpec>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&source, path)
    }

    /// Validates config text; `path` is used in error messages.
    pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let ctx = Ctx {
            path: &display,
            source,
        };
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, Problem::Syntax(e.message().trim_end().to_string()))
        })?;
        build(&ctx, raw, path)
    }

    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.target_groups.iter().position(|g| g.name == name)
    }

    /// One line: what this config serves.
    pub fn summary(&self) -> String {
        let rules: usize = self.listeners.iter().map(|l| l.rules.rules().len()).sum();
        let targets: usize = self.target_groups.iter().map(|g| g.targets.len()).sum();
        let listeners: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{} {}", l.protocol.as_str(), l.addr))
            .collect();
        format!(
            "{}: ok: load balancer \"{}\", {} listener(s) [{}], {} rule(s), {} target group(s), {} target(s)",
            self.path.display(),
            self.load_balancer.name,
            self.listeners.len(),
            listeners.join(", "),
            rules,
            self.target_groups.len(),
            targets
        )
    }
}
