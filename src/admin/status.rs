//! The status page's model (`GET /status`, JSON): listeners with their rules in
//! priority order, every target group's targets with state, reason, open
//! connections, websockets and a request counter, and what discovery last saw. The
//! page (`status.html`, served at `GET /`) renders it and refreshes itself; the
//! request rate is the change of each target's counter between two refreshes.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::discovery::PollStatus;
use crate::routing::Routing;
use crate::rules::{Action, Condition, Rule, Values};
use crate::settings::Protocol;

use super::GroupHealth;

/// The page itself: one file, no external resources.
pub const PAGE: &str = include_str!("status.html");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub load_balancer: String,
    /// When this was taken (Unix milliseconds): the page computes ages and rates
    /// against it rather than against the browser's clock.
    pub now_ms: u64,
    pub listeners: Vec<ListenerStatus>,
    pub target_groups: Vec<GroupHealth>,
    pub discovery: Vec<DiscoveryView>,
    /// The store replicas share Socket.IO pins through, if any.
    #[serde(default)]
    pub shared_state: Option<SharedStateView>,
}

/// The shared store as the status page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SharedStateView {
    /// The Redis address, its password hidden.
    pub redis: String,
    pub key_prefix: String,
    /// Whether Redis answered its last command.
    pub up: bool,
    /// Lookups of sids not known here: hit, miss, error, timeout.
    pub lookups: [u64; 4],
    /// Sessions this replica published.
    pub published: u64,
    pub write_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListenerStatus {
    pub protocol: String,
    /// As bound (a configured port 0 shows the port picked).
    pub address: String,
    /// In evaluation order; the default action last.
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleView {
    /// `None` for the listener's default action.
    pub priority: Option<u32>,
    /// One line per condition kind (AND between them, OR within one).
    pub conditions: Vec<String>,
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiscoveryView {
    pub group: String,
    pub last_poll_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
    /// Set while polls fail: the first failure of the outage.
    pub failing_since_ms: Option<u64>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub targets: usize,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The status of a running tether: `routing` in force, its listeners as bound.
pub fn snapshot(
    name: &str,
    routing: &Routing,
    listeners: &[(Protocol, SocketAddr)],
    discovery: &[(String, PollStatus)],
    now: SystemTime,
) -> Status {
    Status {
        load_balancer: name.to_string(),
        now_ms: unix_ms(now),
        listeners: listeners
            .iter()
            .zip(&routing.listeners)
            .map(|((protocol, addr), rules)| ListenerStatus {
                protocol: protocol.as_str().to_string(),
                address: addr.to_string(),
                rules: rules
                    .rules()
                    .iter()
                    .map(rule_view)
                    .chain(std::iter::once(RuleView {
                        priority: None,
                        conditions: Vec::new(),
                        action: describe_action(rules.default_action()),
                    }))
                    .collect(),
            })
            .collect(),
        target_groups: super::describe(routing),
        discovery: discovery
            .iter()
            .map(|(group, s)| DiscoveryView {
                group: group.clone(),
                last_poll_ms: s.last_poll.map(unix_ms),
                last_success_ms: s.last_success.map(unix_ms),
                failing_since_ms: s.failing_since.map(unix_ms),
                last_error: s.last_error.clone(),
                failures: s.failures,
                targets: s.targets,
            })
            .collect(),
        shared_state: routing.shared.as_ref().map(|s| SharedStateView {
            redis: s.spec().redacted(),
            key_prefix: s.spec().key_prefix.clone(),
            up: s.is_up(),
            lookups: s.lookups(),
            published: s.published(),
            write_failures: s.write_failures(),
        }),
    }
}

fn rule_view(rule: &Rule) -> RuleView {
    RuleView {
        priority: Some(rule.priority),
        conditions: rule.conditions.iter().map(describe_condition).collect(),
        action: describe_action(&rule.action),
    }
}

fn values(v: &Values) -> String {
    v.wildcards
        .iter()
        .map(|p| p.to_string())
        .chain(v.regexes.iter().map(|r| format!("regex {r}")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One condition as the config names it: `path_pattern /api/* | regex ^/v[0-9]+$`.
pub fn describe_condition(c: &Condition) -> String {
    match c {
        Condition::PathPattern(v) => format!("path_pattern {}", values(v)),
        Condition::HostHeader(v) => format!("host_header {}", values(v)),
        Condition::HttpHeader { name, values: v } => {
            format!("http_header {}: {}", name.as_str(), values(v))
        }
        Condition::HttpRequestMethod(methods) => {
            format!("http_request_method {}", methods.join(" | "))
        }
        Condition::QueryString(pairs) => format!(
            "query_string {}",
            pairs
                .iter()
                .map(|(k, v)| match k {
                    Some(k) => format!("{k}={v}"),
                    None => format!("={v}"),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Condition::SourceIp(nets) => format!(
            "source_ip {}",
            nets.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }
}

/// An action in a line: `forward blue 100, green 0 (group stickiness 1h)`, after
/// `jwt_validation (issuer …), ` when a token is checked first.
pub fn describe_action(a: &Action) -> String {
    match a {
        Action::Forward(f) if f.jwt_validation.is_some() => {
            let mut plain = f.clone();
            let jwt = plain.jwt_validation.take();
            let issuer = jwt.as_ref().map_or("", |j| j.issuer.as_str());
            format!(
                "jwt_validation (issuer {issuer}), {}",
                describe_action(&Action::Forward(plain))
            )
        }
        Action::Forward(f) if f.groups.len() == 1 => format!("forward {}", f.groups[0].group.name),
        Action::Forward(f) => {
            let groups: Vec<String> = f
                .groups
                .iter()
                .map(|g| format!("{} {}", g.group.name, g.weight))
                .collect();
            let mut out = format!("forward {}", groups.join(", "));
            if let Some(d) = f.stickiness {
                out.push_str(&format!(
                    " (group stickiness {})",
                    humantime::format_duration(d)
                ));
            }
            out
        }
        Action::FixedResponse(r) => format!("fixed_response {} {}", r.status, r.content_type),
        Action::Redirect(r) => format!(
            "redirect {} to {}://{}:{}{}?{}",
            r.status, r.protocol, r.host, r.port, r.path, r.query
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"
[load_balancer]
name = "edge"
[[listener]]
address = "127.0.0.1"
port = 8080
default_action = { forward = { target_groups = [{ name = "blue", weight = 100 }, { name = "green", weight = 0 }], stickiness = { duration = "1h" } } }
  [[listener.rule]]
  priority = 20
  conditions = { path_pattern = { values = ["/api/*"], regex_values = ['^/v[0-9]+$'] }, http_request_method = ["GET", "POST"] }
  action = { fixed_response = { status = 503, body = "later" } }
  [[listener.rule]]
  priority = 5
  conditions = { host_header = ["*.Example.com"], source_ip = ["10.0.0.0/8"] }
  action = { forward = "green" }
[target_group.blue]
targets = ["127.0.0.1:9001", "127.0.0.1:9002"]
[target_group.green]
targets = ["127.0.0.1:9003"]
"#;

    #[test]
    fn it_should_list_rules_in_priority_order_with_the_default_action_last() {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let routing = Routing::build(&config, None, &Default::default());
        let bound = [(Protocol::Http, "127.0.0.1:41000".parse().unwrap())];
        let now = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let s = snapshot("edge", &routing, &bound, &[], now);
        assert_eq!(s.now_ms, 1_700_000_000_123);
        assert_eq!(s.listeners.len(), 1);
        let l = &s.listeners[0];
        assert_eq!(
            (l.protocol.as_str(), l.address.as_str()),
            ("HTTP", "127.0.0.1:41000")
        );
        let priorities: Vec<_> = l.rules.iter().map(|r| r.priority).collect();
        assert_eq!(priorities, [Some(5), Some(20), None]);
        assert_eq!(
            l.rules[0].conditions,
            ["host_header *.example.com", "source_ip 10.0.0.0/8"]
        );
        assert_eq!(l.rules[0].action, "forward green");
        assert_eq!(
            l.rules[1].conditions,
            [
                "path_pattern /api/* | regex ^/v[0-9]+$",
                "http_request_method GET | POST"
            ]
        );
        assert_eq!(l.rules[1].action, "fixed_response 503 text/plain");
        assert_eq!(
            l.rules[2].action,
            "forward blue 100, green 0 (group stickiness 1h)"
        );
        let targets: Vec<(String, usize)> = s
            .target_groups
            .iter()
            .map(|g| (g.name.clone(), g.targets.len()))
            .collect();
        assert_eq!(targets, [("blue".into(), 2), ("green".into(), 1)]);
    }

    #[test]
    fn it_should_show_a_discovery_outage_with_its_start_and_error() {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let routing = Routing::build(&config, None, &Default::default());
        let at = |ms| UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let poll = PollStatus {
            last_poll: Some(at(3000)),
            last_success: Some(at(1000)),
            failing_since: Some(at(2000)),
            last_error: Some("ListTasks: ThrottlingException".into()),
            failures: 2,
            targets: 1,
            ..PollStatus::default()
        };
        let s = snapshot("edge", &routing, &[], &[("blue".into(), poll)], at(3500));
        assert_eq!(
            s.discovery,
            [DiscoveryView {
                group: "blue".into(),
                last_poll_ms: Some(3000),
                last_success_ms: Some(1000),
                failing_since_ms: Some(2000),
                last_error: Some("ListTasks: ThrottlingException".into()),
                failures: 2,
                targets: 1,
            }]
        );
    }
}
