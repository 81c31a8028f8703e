//! Config errors: where in the file ([`Span`]) and what is wrong ([`Problem`]), as
//! values a caller can match. Their text is what `tether check` prints:
//! `path:line:column: message`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;

/// Why a config file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: io::Error },
    /// A value at a known place in the file.
    #[error("{path}:{}:{}: {problem}", .span.line, .span.column)]
    Invalid {
        path: String,
        span: Span,
        problem: Problem,
    },
}

/// Where in the file: line and column (both from 1; the column counts
/// characters), and the byte range of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub bytes: Range<usize>,
}

/// What is wrong with a value. `field` is a key as the file spells it
/// (`idle_timeout`); `what` is the thing in words, as the message names it
/// (`ecs discovery`). The text is the message after `path:line:column: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not TOML, or not the shape tether reads (an unknown key, a wrong type): the
    /// TOML parser's message.
    #[error("{0}")]
    Syntax(String),
    /// A number, duration or size outside what the key takes:
    /// `idle_timeout must be between 1s and 4000s`, `threads must be at least 1`.
    #[error("{field} must be {allowed}")]
    OutOfRange {
        field: &'static str,
        allowed: String,
    },
    /// A value that is none of the few the key takes, or not of its form:
    /// `status must be 301 or 302`, `path must start with '/', like "/socket.io/"`.
    #[error("{field} must {rule}")]
    NotAllowed { field: &'static str, rule: String },
    /// A name the key does not know:
    /// `unknown ssl_policy "x": use one of …`.
    #[error("unknown {what} \"{value}\": {hint}")]
    UnknownName {
        what: &'static str,
        value: String,
        hint: String,
    },
    /// A forward to a group that no `[target_group.NAME]` defines.
    #[error("unknown target group \"{0}\": define it as [target_group.{0}]")]
    UnknownTargetGroup(String),
    /// A value that does not parse as what it is:
    /// `invalid address "x": expected an IP address`.
    #[error("invalid {what} \"{value}\"{}", colon(.hint))]
    Malformed {
        what: &'static str,
        value: String,
        hint: Option<&'static str>,
    },
    /// Something the file may have once, twice.
    #[error("{0}")]
    Duplicate(Duplicate),
    /// Something that needs what the file does not give:
    /// `type = "app_cookie" needs cookie_name`, `query_string needs at least one value`.
    #[error("{what} needs {needs}")]
    Missing {
        what: &'static str,
        needs: &'static str,
    },
    /// A file without a `[[listener]]`.
    #[error("no [[listener]]: a load balancer needs at least one")]
    NoListener,
    /// A key that only means something with another setting:
    /// `ssl_policy goes with protocol = "HTTPS"`.
    #[error("{field} {} with {with}", go(.field))]
    OnlyWith {
        field: &'static str,
        with: &'static str,
    },
    /// Two keys (or a key and a value) that do not go together as written: both of
    /// a pair that takes one, neither of them, or a key without the one it serves.
    /// `field` is where the error points, `other` what it clashes with, and `why`
    /// says how, in the file's words.
    #[error("{why}")]
    Conflict {
        field: &'static str,
        other: &'static str,
        why: &'static str,
    },
    /// More (or fewer) of something than ALB takes:
    /// `a rule takes at most one url_rewrite`, `a weighted forward takes 1 to 5 target groups`.
    #[error("{what} takes {limit}")]
    Limit { what: &'static str, limit: String },
    /// An admin API on an address other hosts reach, without a token for writes.
    #[error(
        "admin address {0} is not loopback: set admin_token (\"env:NAME\", \"file:PATH\" or the token) so that writes (POST /reload) need it, or bind the admin API to 127.0.0.1"
    )]
    AdminUnprotected(SocketAddr),
    /// A setting this build of tether was compiled without.
    #[error("{what}: this tether was built without the `{feature}` feature (cargo build --features {feature})")]
    FeatureOff {
        what: &'static str,
        feature: &'static str,
    },
    /// A value its field's own checks refuse (a regex, a CIDR, a certificate file, a
    /// health check matcher, a key source, a header value …), with their reason.
    #[error("{reason}")]
    Rejected { field: &'static str, reason: String },
}

/// The second of something the file may have once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Duplicate {
    /// Two listeners on one address and port.
    #[error("a listener on {0} is already defined")]
    Listener(SocketAddr),
    /// Two rules of a listener with one priority.
    #[error("duplicate priority {0}: each rule of a listener needs its own")]
    Priority(u32),
    /// One group twice in a weighted forward.
    #[error("target group \"{0}\" is listed twice")]
    TargetGroup(String),
}

/// `: hint`, or nothing.
fn colon(hint: &Option<&'static str>) -> String {
    hint.map_or(String::new(), |h| format!(": {h}"))
}

/// The verb for a key: "certificates go", "ssl_policy goes".
fn go(field: &str) -> &'static str {
    if field.ends_with('s') {
        "go"
    } else {
        "goes"
    }
}
