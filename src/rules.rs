//! Listener rules with ALB semantics: conditions, priority order and the action chosen
//! for a request.
//!
//! Conditions are AND across kinds and OR among the values of one kind. Matching is on
//! plain values ([`RequestInfo`]); nothing here knows the proxy engine.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rand::Rng;

use crate::alb_regex::{check_alb_regex, describe_regex_error};
use crate::headers::strip_port;
use crate::jwt::JwtValidation;
use crate::target_group::TargetGroup;
use crate::transform::Transforms;

/// What the rules look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The Host header (or `:authority`), port included if the client sent one.
    pub host: Option<&'a str>,
    pub headers: crate::headers::Headers<'a>,
    /// The socket peer (never X-Forwarded-For), as ALB's `source-ip` condition.
    pub source_ip: Option<IpAddr>,
}

// === impl Pattern ===

/// An ALB wildcard pattern: `*` matches any run of characters (also none), `?`
/// exactly one. Compiled once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<[u8]>,
    kind: PatternKind,
    case_insensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternKind {
    Exact,
    /// `prefix*` with no other wildcard: the commonest path pattern.
    Prefix,
    Glob,
}

impl Pattern {
    /// A wildcard pattern (`*`, `?`) matched as written (paths).
    pub fn case_sensitive(text: &str) -> Self {
        Self::new(text, false)
    }

    /// A wildcard pattern (`*`, `?`) matched in any ASCII case (hosts, header values).
    pub fn case_insensitive(text: &str) -> Self {
        Self::new(text, true)
    }

    fn new(text: &str, case_insensitive: bool) -> Self {
        let bytes: Vec<u8> = if case_insensitive {
            text.bytes().map(|b| b.to_ascii_lowercase()).collect()
        } else {
            text.bytes().collect()
        };
        let wildcards = bytes.iter().filter(|b| **b == b'*' || **b == b'?').count();
        let kind = match (wildcards, bytes.last()) {
            (0, _) => PatternKind::Exact,
            (1, Some(b'*')) => PatternKind::Prefix,
            _ => PatternKind::Glob,
        };
        let text = match kind {
            PatternKind::Prefix => bytes[..bytes.len() - 1].into(),
            _ => bytes.into(),
        };
        Pattern {
            text,
            kind,
            case_insensitive,
        }
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &[u8]) -> bool {
        let eq = |p: u8, v: u8| {
            if self.case_insensitive {
                p == v.to_ascii_lowercase()
            } else {
                p == v
            }
        };
        match self.kind {
            PatternKind::Exact => {
                value.len() == self.text.len()
                    && self.text.iter().zip(value).all(|(p, v)| eq(*p, *v))
            }
            PatternKind::Prefix => {
                value.len() >= self.text.len()
                    && self.text.iter().zip(value).all(|(p, v)| eq(*p, *v))
            }
            PatternKind::Glob => glob(&self.text, value, eq),
        }
    }
}

/// The pattern as written (lowercased when case-insensitive), for the status page.
impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.text))?;
        if self.kind == PatternKind::Prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// Iterative wildcard match with single-star backtracking: linear in practice, never
/// exponential.
fn glob(pattern: &[u8], value: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len()
            && (pattern[p] == b'?' || (pattern[p] != b'*' && eq(pattern[p], value[v])))
        {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

// === impl RegexValue ===

/// The longest regex value of a condition, in characters (ALB's `RegexValues`).
pub const MAX_CONDITION_REGEX: usize = 128;

/// Compiled-size cap of one regex: a short pattern with nested counted repetitions
/// could otherwise take megabytes per rule.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// An ALB regex value of a condition. It matches when it finds a match anywhere in
/// the value: write `^…$` to match the whole value (AWS's examples anchor theirs).
/// Compiled once at config load.
#[derive(Debug, Clone)]
pub struct RegexValue(regex::bytes::Regex);

impl RegexValue {
    /// Compiles `pattern` in ALB's dialect (see [`check_alb_regex`]).
    pub fn new(pattern: &str, case_insensitive: bool) -> Result<Self, String> {
        check_alb_regex(pattern)?;
        regex::bytes::RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(RegexValue)
            .map_err(|e| describe_regex_error(pattern, &e))
    }

    /// Whether the regex matches somewhere in `value` (ALB's regex values are unanchored).
    pub fn matches(&self, value: &[u8]) -> bool {
        self.0.is_match(value)
    }
}

impl std::fmt::Display for RegexValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The values of a path, host or header condition: wildcard values and regex values,
/// OR among all of them.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub wildcards: Vec<Pattern>,
    pub regexes: Vec<RegexValue>,
}

impl From<Vec<Pattern>> for Values {
    fn from(wildcards: Vec<Pattern>) -> Self {
        Values {
            wildcards,
            regexes: Vec::new(),
        }
    }
}

impl Values {
    /// Wildcards look at `wildcard_input`, regexes at `regex_input` (a host's
    /// wildcards ignore its port, its regexes see it).
    fn matches(&self, wildcard_input: &[u8], regex_input: &[u8]) -> bool {
        self.wildcards.iter().any(|p| p.matches(wildcard_input))
            || self.regexes.iter().any(|r| r.matches(regex_input))
    }

    /// Match evaluations, as ALB counts them (one per value).
    pub fn len(&self) -> usize {
        self.wildcards.len() + self.regexes.len()
    }

    /// Whether there are no values at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl Condition ===

/// One condition kind with its values (OR among them).
#[derive(Debug, Clone)]
pub enum Condition {
    /// On the path only: wildcards case-sensitive, regexes case-sensitive unless
    /// they say `(?i)`.
    PathPattern(Values),
    /// Case-insensitive. Wildcards match the host without its port; regexes match
    /// the whole Host value, port included (as ALB's `RegexValues`).
    HostHeader(Values),
    /// Header name (case-insensitive) and value patterns (case-insensitive), any
    /// line of the header.
    HttpHeader {
        name: http::HeaderName,
        values: Values,
    },
    /// Exact, case-sensitive method names.
    HttpRequestMethod(Vec<String>),
    /// Query parameters: each pair matches when a parameter matches both patterns
    /// (a missing key pattern matches any key).
    QueryString(Vec<(Option<Pattern>, Pattern)>),
    /// The socket peer is inside one of the networks.
    SourceIp(Vec<IpNet>),
}

impl Condition {
    /// Whether the request meets this condition (OR over its values).
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Condition::PathPattern(values) => {
                let path = req.path.as_bytes();
                values.matches(path, path)
            }
            Condition::HostHeader(values) => match req.host {
                Some(host) => values.matches(strip_port(host).as_bytes(), host.as_bytes()),
                None => false,
            },
            Condition::HttpHeader { name, values } => req
                .headers
                .get_all(name.as_str())
                .any(|v| values.matches(v, v)),
            Condition::HttpRequestMethod(methods) => methods.iter().any(|m| m == req.method),
            Condition::QueryString(pairs) => {
                let Some(query) = req.query else {
                    return false;
                };
                query.split('&').any(|param| {
                    let (key, value) = param.split_once('=').unwrap_or((param, ""));
                    pairs.iter().any(|(kp, vp)| {
                        kp.as_ref().is_none_or(|kp| kp.matches(key.as_bytes()))
                            && vp.matches(value.as_bytes())
                    })
                })
            }
            Condition::SourceIp(nets) => match req.source_ip {
                Some(ip) => {
                    let ip = canonical_ip(ip);
                    nets.iter().any(|n| n.contains(&ip))
                }
                None => false,
            },
        }
    }
}

/// An IPv4 peer seen on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

// === impl Rule ===

#[derive(Debug, Clone)]
pub struct Rule<G = Arc<TargetGroup>> {
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub action: Action<G>,
    /// Rewrites of a forwarded request's URL and Host (none by default).
    pub transforms: Transforms,
}

impl<G> Rule<G> {
    /// Whether the request meets every condition of the rule (AND across kinds).
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.conditions.iter().all(|c| c.matches(req))
    }
}

/// A listener's rules, sorted by priority, and its default action.
#[derive(Debug, Clone)]
pub struct RuleSet<G = Arc<TargetGroup>> {
    rules: Vec<Rule<G>>,
    default_action: Action<G>,
}

impl<G> RuleSet<G> {
    /// A listener's rules, sorted by priority, and the action when none matches.
    pub fn new(mut rules: Vec<Rule<G>>, default_action: Action<G>) -> Self {
        rules.sort_by_key(|r| r.priority);
        RuleSet {
            rules,
            default_action,
        }
    }

    /// The action of the first matching rule (lowest priority number), else the
    /// default action; with the matched rule (`None` for the default).
    pub fn evaluate(&self, req: &RequestInfo<'_>) -> (&Action<G>, Option<&Rule<G>>) {
        for rule in &self.rules {
            if rule.matches(req) {
                return (&rule.action, Some(rule));
            }
        }
        (&self.default_action, None)
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[Rule<G>] {
        &self.rules
    }

    /// The listener's default action.
    pub fn default_action(&self) -> &Action<G> {
        &self.default_action
    }

    /// Every group any action of this listener forwards to.
    pub fn groups(&self) -> impl Iterator<Item = &G> {
        self.rules
            .iter()
            .map(|r| &r.action)
            .chain(std::iter::once(&self.default_action))
            .flat_map(|a| match a {
                Action::Forward(f) => f.groups.iter().map(|g| &g.group).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
    }

    /// Whether any forward of this listener pins clients to a target group.
    pub fn uses_group_stickiness(&self) -> bool {
        self.rules
            .iter()
            .map(|r| &r.action)
            .chain(std::iter::once(&self.default_action))
            .any(|a| matches!(a, Action::Forward(f) if f.stickiness.is_some()))
    }

    /// The same rules with each group handle replaced (config names → live groups).
    pub fn map_groups<H>(&self, f: &impl Fn(&G) -> H) -> RuleSet<H> {
        RuleSet {
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    priority: r.priority,
                    conditions: r.conditions.clone(),
                    action: r.action.map_groups(f),
                    transforms: r.transforms.clone(),
                })
                .collect(),
            default_action: self.default_action.map_groups(f),
        }
    }
}

// === impl Action ===

#[derive(Debug, Clone)]
pub enum Action<G = Arc<TargetGroup>> {
    Forward(Forward<G>),
    FixedResponse(FixedResponse),
    Redirect(Redirect),
}

impl<G> Action<G> {
    /// The same action with each target group `G` replaced by `f(G)` (config names to built groups).
    pub fn map_groups<H>(&self, f: &impl Fn(&G) -> H) -> Action<H> {
        match self {
            Action::Forward(fw) => Action::Forward(
                Forward::weighted(
                    fw.groups
                        .iter()
                        .map(|g| WeightedGroup {
                            group: f(&g.group),
                            weight: g.weight,
                        })
                        .collect(),
                )
                .with_stickiness(fw.stickiness)
                .with_jwt_validation(fw.jwt_validation.clone()),
            ),
            Action::FixedResponse(r) => Action::FixedResponse(r.clone()),
            Action::Redirect(r) => Action::Redirect(r.clone()),
        }
    }
}

/// Forward to one target group, or to several by weight.
#[derive(Debug, Clone)]
pub struct Forward<G = Arc<TargetGroup>> {
    pub groups: Vec<WeightedGroup<G>>,
    /// Target group stickiness (`AWSALBTG`): how long a client stays on one group.
    pub stickiness: Option<Duration>,
    /// ALB's `jwt-validation` action, run before the forward: a request whose bearer
    /// token fails gets 401 and goes nowhere (none by default).
    pub jwt_validation: Option<Arc<JwtValidation>>,
    total_weight: u32,
}

#[derive(Debug, Clone)]
pub struct WeightedGroup<G = Arc<TargetGroup>> {
    pub group: G,
    pub weight: u32,
}

impl<G> Forward<G> {
    /// A forward to one group.
    pub fn single(group: G) -> Self {
        Self::weighted(vec![WeightedGroup { group, weight: 1 }])
    }

    /// At least one group must have a weight above zero (config validation ensures it).
    pub fn weighted(groups: Vec<WeightedGroup<G>>) -> Self {
        let total_weight = groups.iter().map(|g| g.weight).sum();
        Forward {
            groups,
            stickiness: None,
            jwt_validation: None,
            total_weight,
        }
    }

    /// The same forward with target-group stickiness (`AWSALBTG`) for `duration`, or none.
    pub fn with_stickiness(mut self, duration: Option<Duration>) -> Self {
        self.stickiness = duration;
        self
    }

    /// The same forward behind a `jwt_validation` action, or none.
    pub fn with_jwt_validation(mut self, jwt: Option<Arc<JwtValidation>>) -> Self {
        self.jwt_validation = jwt;
        self
    }

    /// Weighted random choice of a group, as ALB does per request.
    pub fn pick(&self) -> &G {
        if self.groups.len() == 1 || self.total_weight == 0 {
            return &self.groups[0].group;
        }
        let mut n = rand::thread_rng().gen_range(0..self.total_weight);
        for g in &self.groups {
            if n < g.weight {
                return &g.group;
            }
            n -= g.weight;
        }
        &self.groups[self.groups.len() - 1].group
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// An ALB redirect: each component may use `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub protocol: String,
    pub host: String,
    pub port: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// The request values a redirect may reuse.
pub struct RedirectInput<'a> {
    /// `HTTP` or `HTTPS`.
    pub protocol: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub query: &'a str,
}

impl Redirect {
    /// The `Location` URL for this request.
    pub fn location(&self, input: &RedirectInput<'_>) -> String {
        let port = input.port.to_string();
        let subst = |template: &str| -> String {
            template
                .replace("#{protocol}", input.protocol)
                .replace("#{host}", strip_port(input.host))
                .replace("#{port}", &port)
                .replace(
                    "#{path}",
                    input.path.strip_prefix('/').unwrap_or(input.path),
                )
                .replace("#{query}", input.query)
        };
        let protocol = subst(&self.protocol).to_ascii_lowercase();
        let host = subst(&self.host);
        let port = subst(&self.port);
        let mut path = subst(&self.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let query = subst(&self.query);
        let default_port = matches!(
            (protocol.as_str(), port.as_str()),
            ("http", "80") | ("https", "443")
        );
        let mut url = format!("{protocol}://{host}");
        if !default_port && !port.is_empty() {
            url.push(':');
            url.push_str(&port);
        }
        url.push_str(&path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a [crate::headers::Header<'a>]) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            path: "/",
            query: None,
            host: None,
            headers: crate::headers::Headers(headers),
            source_ip: None,
        }
    }

    #[test]
    fn wildcards_follow_alb() {
        let cases: &[(&str, &str, bool)] = &[
            ("/api/*", "/api/users", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api", false),
            ("/api/*", "/API/users", false),
            ("*.jpg", "/img/a.jpg", true),
            ("/a?c", "/abc", true),
            ("/a?c", "/ac", false),
            ("/a*b*c", "/axxbyyc", true),
            ("/a*b*c", "/axxbyy", false),
            ("*", "", true),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                Pattern::case_sensitive(pattern).matches(value.as_bytes()),
                *want,
                "{pattern} ~ {value}"
            );
        }
    }

    #[test]
    fn host_patterns_are_case_insensitive_and_portless() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let cond = Condition::HostHeader(vec![Pattern::case_insensitive("*.example.com")].into());
        for (host, want) in [
            ("api.example.com", true),
            ("API.Example.COM:8080", true),
            ("example.com", false),
            ("api.example.org", false),
        ] {
            let r = RequestInfo {
                host: Some(host),
                ..req(&h)
            };
            assert_eq!(cond.matches(&r), want, "{host}");
        }
    }

    fn regexes(patterns: &[&str], case_insensitive: bool) -> Values {
        Values {
            wildcards: Vec::new(),
            regexes: patterns
                .iter()
                .map(|p| RegexValue::new(p, case_insensitive).unwrap())
                .collect(),
        }
    }

    #[test]
    fn path_regexes_match_anywhere_in_the_path_and_are_case_sensitive() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let cases: &[(&str, &str, bool)] = &[
            // Not anchored: a match anywhere in the path is enough...
            ("/v[0-9]+/", "/x/api/v2/users", true),
            ("users", "/api/users/7", true),
            // ...and `^`/`$` anchor it, as AWS's examples write.
            ("^/api/v[0-9]+/", "/api/v2/users", true),
            ("^/api/v[0-9]+/", "/x/api/v2/", false),
            (r"^/img/.*\.png$", "/img/a.png", true),
            (r"^/img/.*\.png$", "/img/a.png.bak", false),
            (r"^/dp/([A-Za-z0-9]+)/?$", "/dp/B09G3HRMW", true),
            (r"^/dp/([A-Za-z0-9]+)/?$", "/dp/B09-3HRMW", false),
            // Case-sensitive as path wildcards, unless the regex says otherwise.
            ("^/api/", "/API/x", false),
            ("(?i)^/api/", "/API/x", true),
            // The path only, never the query string.
            ("x=1", "/a", false),
        ];
        for (pattern, path, want) in cases {
            let cond = Condition::PathPattern(regexes(&[pattern], false));
            let r = RequestInfo {
                path,
                query: Some("x=1"),
                ..req(&h)
            };
            assert_eq!(cond.matches(&r), *want, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn host_regexes_are_case_insensitive_and_see_the_port() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let cases: &[(&str, &str, bool)] = &[
            (r"^api\.example\.com$", "API.Example.COM", true),
            (r"^(a|b)\.example\.com$", "b.example.com", true),
            (r"^(a|b)\.example\.com$", "c.example.com", false),
            ("example", "www.example.org", true),
            // The whole Host value: a port is part of it (ALB: use regex values to
            // match a non-standard port).
            (r"^api\.example\.com$", "api.example.com:8443", false),
            (r"^api\.example\.com:8443$", "api.example.com:8443", true),
            (r":8443$", "api.example.com:443", false),
        ];
        for (pattern, host, want) in cases {
            let cond = Condition::HostHeader(regexes(&[pattern], true));
            let r = RequestInfo {
                host: Some(host),
                ..req(&h)
            };
            assert_eq!(cond.matches(&r), *want, "{pattern} ~ {host}");
        }
        let cond = Condition::HostHeader(regexes(&["."], true));
        assert!(!cond.matches(&req(&h)), "no Host, no match");
    }

    #[test]
    fn header_regexes_are_case_insensitive_on_any_line_of_the_header() {
        use crate::headers::Header;
        let cond = |p: &str| Condition::HttpHeader {
            name: http::HeaderName::from_static("x-env"),
            values: regexes(&[p], true),
        };
        let cases: &[(&str, &[&str], bool)] = &[
            ("^blue-[0-9]+$", &["Blue-12"], true),
            ("^blue-[0-9]+$", &["blue-x"], false),
            ("^blue-[0-9]+$", &["green", "blue-1"], true),
            ("blue", &["dark-blue-ish"], true),
            ("^blue$", &["dark-blue"], false),
            ("^blue$", &[], false),
        ];
        for (pattern, values, want) in cases {
            let lines: Vec<Header<'_>> = values
                .iter()
                .map(|v| Header {
                    name: "X-Env",
                    value: v.as_bytes(),
                })
                .collect();
            assert_eq!(
                cond(pattern).matches(&req(&lines)),
                *want,
                "{pattern} ~ {values:?}"
            );
        }
    }

    #[test]
    fn wildcard_and_regex_values_of_one_condition_are_ored() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let values = Values {
            wildcards: vec![Pattern::case_sensitive("/static/*")],
            regexes: vec![RegexValue::new("^/img/[0-9]+$", false).unwrap()],
        };
        let cond = Condition::PathPattern(values);
        for (path, want) in [
            ("/static/app.js", true),
            ("/img/42", true),
            ("/img/x", false),
            ("/other", false),
        ] {
            let r = RequestInfo { path, ..req(&h) };
            assert_eq!(cond.matches(&r), want, "{path}");
        }
    }

    #[test]
    fn regex_conditions_and_other_kinds_are_anded() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let rule = Rule {
            priority: 1,
            conditions: vec![
                Condition::PathPattern(regexes(&["^/api/v[12]/"], false)),
                Condition::HostHeader(vec![Pattern::case_insensitive("*.example.com")].into()),
                Condition::HttpRequestMethod(vec!["GET".into()]),
            ],
            action: Action::Forward(Forward::single(0usize)),
            transforms: Transforms::default(),
        };
        for (method, path, host, want) in [
            ("GET", "/api/v1/x", "a.example.com", true),
            ("GET", "/api/v3/x", "a.example.com", false),
            ("GET", "/api/v1/x", "a.example.org", false),
            ("POST", "/api/v1/x", "a.example.com", false),
        ] {
            let r = RequestInfo {
                method,
                path,
                host: Some(host),
                ..req(&h)
            };
            assert_eq!(rule.matches(&r), want, "{method} {host}{path}");
        }
    }

    #[test]
    fn regexes_beyond_albs_dialect_are_refused() {
        let refused = |p: &str| match RegexValue::new(p, false) {
            Ok(_) => panic!("{p} accepted"),
            Err(e) => e,
        };
        assert!(
            refused("^/a(?=b)").contains("look-around"),
            "{}",
            refused("^/a(?=b)")
        );
        assert!(refused("^/a(?<!b)").contains("look-around"));
        assert!(
            refused(r"^/(a)\1").contains("backreferences"),
            "{}",
            refused(r"^/(a)\1")
        );
        assert!(refused(r"^/\p{L}+").contains("Unicode classes"));
        assert!(refused(r"^/\PL").contains("Unicode classes"));
        assert!(refused("^/(?>a)").starts_with("invalid regex \"^/(?>a)\": "));
        assert!(refused("^/a++").contains("possessive"));
        assert!(refused("^/a*+").contains("possessive"));
        assert!(refused("^/a{2}+").contains("possessive"));
        assert!(
            RegexValue::new("^/[*+]+$", false).is_ok(),
            "a class is not a quantifier"
        );
        assert!(refused("^/(a").starts_with("invalid regex"));
        // An escaped backslash before `p` is a backslash and a `p`.
        assert!(RegexValue::new(r"^/a\\p$", false).is_ok());
        assert!(refused("^/a{1000}{1000}").contains("too large"));
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let h: [crate::headers::Header<'_>; 0] = [];
        let cond = Condition::SourceIp(vec!["127.0.0.0/8".parse().unwrap()]);
        let r = RequestInfo {
            source_ip: Some("::ffff:127.0.0.5".parse().unwrap()),
            ..req(&h)
        };
        assert!(cond.matches(&r));
    }

    #[test]
    fn redirect_keeps_unreplaced_components() {
        let r = Redirect {
            protocol: "HTTPS".into(),
            host: "#{host}".into(),
            port: "443".into(),
            path: "/#{path}".into(),
            query: "#{query}".into(),
            status: 301,
        };
        let input = RedirectInput {
            protocol: "HTTP",
            host: "example.com:80",
            port: 80,
            path: "/a/b",
            query: "x=1",
        };
        assert_eq!(r.location(&input), "https://example.com/a/b?x=1");
        let r = Redirect {
            port: "8443".into(),
            query: "".into(),
            ..r
        };
        assert_eq!(r.location(&input), "https://example.com:8443/a/b");
    }
}
