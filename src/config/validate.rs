//! Validation: the raw file model to the validated [`Config`], with ALB's limits and
//! defaults; every error points at the offending value.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::rules::{
    Action, Condition, FixedResponse, Forward, Pattern, Redirect, RegexValue, Rule, RuleSet,
    Values, WeightedGroup, MAX_CONDITION_REGEX,
};
use crate::settings::{
    Algorithm, DesyncMode, HealthCheck, Lifecycle, Matcher, MinHealthy, PassiveHealth, Protocol,
    SocketIo, Stickiness, StickinessKind, UpstreamTls, DEFAULT_CLIENT_HEADER_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEREGISTRATION_DELAY, DEFAULT_LOOKUP_TIMEOUT,
    DEFAULT_STICKINESS, MAX_STICKINESS,
};
use crate::transform::{Rewrite, RewriteError, Transforms};

use super::raw::*;
use super::*;

mod group;
mod jwt_validation;
mod rules;
mod tls;
use group::{build_discovery, build_lifecycle, build_socketio, build_stickiness};
use rules::{build_action, build_conditions, build_transforms};
use tls::{build_listener_tls, build_upstream_tls};

pub(super) fn build(ctx: &Ctx<'_>, raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let lb = &raw.load_balancer;
    let idle_timeout = match &lb.idle_timeout {
        Some(t) => {
            let d = t.get_ref().0;
            if d < Duration::from_secs(1) || d > Duration::from_secs(4000) {
                return Err(ctx.err(
                    t.span(),
                    Problem::OutOfRange {
                        field: "idle_timeout",
                        allowed: "between 1s and 4000s".into(),
                    },
                ));
            }
            d
        }
        None => DEFAULT_IDLE_TIMEOUT,
    };
    let threads = match &lb.threads {
        Some(t) if *t.get_ref() == 0 => {
            return Err(ctx.err(
                t.span(),
                Problem::OutOfRange {
                    field: "threads",
                    allowed: "at least 1".into(),
                },
            ))
        }
        Some(t) => *t.get_ref(),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut sticky_keys = Vec::new();
    for k in &lb.sticky_keys {
        let material = read_key_source(path, k.get_ref(), "sticky key").map_err(|reason| {
            ctx.err(
                k.span(),
                Problem::Rejected {
                    field: "sticky_keys",
                    reason,
                },
            )
        })?;
        let key = crate::sticky::decode_key_material(&material).map_err(|e| {
            ctx.err(
                k.span(),
                Problem::Rejected {
                    field: "sticky_keys",
                    reason: format!("sticky key {}: {e}", describe_key_source(k.get_ref())),
                },
            )
        })?;
        sticky_keys.push(key);
    }
    let admin = match &lb.admin {
        Some(a) => Some(a.get_ref().parse::<SocketAddr>().map_err(|_| {
            ctx.err(
                a.span(),
                Problem::Malformed {
                    what: "admin address",
                    value: a.get_ref().clone(),
                    hint: Some("expected IP:port, like \"127.0.0.1:9900\""),
                },
            )
        })?),
        None => None,
    };
    let admin_token = build_admin_token(ctx, lb, admin, path)?;
    let client_header_timeout = match &lb.client_header_timeout {
        Some(t) => {
            let d = t.get_ref().0;
            if d < Duration::from_secs(1) || d > Duration::from_secs(4000) {
                return Err(ctx.err(
                    t.span(),
                    Problem::OutOfRange {
                        field: "client_header_timeout",
                        allowed: "between 1s and 4000s".into(),
                    },
                ));
            }
            d
        }
        None => DEFAULT_CLIENT_HEADER_TIMEOUT,
    };
    let desync_mitigation_mode = match &lb.desync_mitigation_mode {
        Some(m) => DesyncMode::from_name(m.get_ref()).ok_or_else(|| {
            ctx.err(
                m.span(),
                Problem::UnknownName {
                    what: "desync_mitigation_mode",
                    value: m.get_ref().clone(),
                    hint: "expected \"monitor\", \"defensive\" or \"strictest\"".into(),
                },
            )
        })?,
        None => DesyncMode::default(),
    };
    let alb_limits = lb.alb_limits.unwrap_or(true);
    let attributes = super::attributes::build_lb_attributes(ctx, lb, alb_limits)?;
    let upgrade_grace = match &lb.upgrade_grace {
        Some(d) => Some(check_duration(
            ctx,
            d,
            "upgrade_grace",
            Duration::ZERO,
            Duration::from_secs(3600),
        )?),
        None => None,
    };
    let access_log = match &lb.access_log {
        Some(a) => Some(build_access_log(ctx, a.get_ref(), path)?),
        None => None,
    };
    let shared_state = match &lb.shared_state {
        Some(s) => Some(build_shared_state(ctx, s.get_ref(), path)?),
        None => None,
    };
    let mut load_balancer = LoadBalancer {
        name: lb.name.clone().unwrap_or_else(|| "tether".to_string()),
        idle_timeout,
        threads,
        sticky_keys,
        admin,
        admin_token,
        client_header_timeout,
        desync_mitigation_mode,
        shaping: attributes.shaping,
        client_keep_alive: attributes.client_keep_alive,
        http2_enabled: attributes.http2_enabled,
        upgrade_grace: upgrade_grace.unwrap_or(DEFAULT_DEREGISTRATION_DELAY),
        access_log,
        shared_state,
    };

    let mut target_groups = Vec::new();
    let mut group_names = HashMap::new();
    for (name, g) in raw.target_group {
        if name.get_ref().is_empty()
            || !name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ctx.err(
                name.span(),
                Problem::Malformed {
                    what: "target group name",
                    value: name.get_ref().clone(),
                    hint: Some("use letters, digits, '-' and '_'"),
                },
            ));
        }
        let connect_timeout = match &g.connect_timeout {
            Some(t) if t.get_ref().0.is_zero() => {
                return Err(ctx.err(
                    t.span(),
                    Problem::OutOfRange {
                        field: "connect_timeout",
                        allowed: "above 0s".into(),
                    },
                ))
            }
            Some(t) => t.get_ref().0,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let lifecycle = build_lifecycle(ctx, &g, alb_limits)?;
        let upstream_tls = build_upstream_tls(ctx, &g, path)?;
        let discovery = build_discovery(ctx, &g, path)?;
        let stickiness = match g.stickiness {
            Some(st) => build_stickiness(ctx, st)?,
            None => None,
        };
        let socketio = match g.socketio {
            Some(sio) => Some(build_socketio(ctx, sio)?),
            None => None,
        };
        group_names.insert(name.get_ref().clone(), target_groups.len());
        target_groups.push(TargetGroupConfig {
            lifecycle,
            upstream_tls,
            discovery,
            stickiness,
            socketio,
            name: name.into_inner(),
            algorithm: g.algorithm,
            targets: g
                .targets
                .iter()
                .map(|t| {
                    parse_target(t.get_ref()).map_err(|reason| {
                        ctx.err(
                            t.span(),
                            Problem::Rejected {
                                field: "targets",
                                reason,
                            },
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            connect_timeout,
        });
    }

    if raw.listener.is_empty() {
        return Err(ctx.err(0..0, Problem::NoListener));
    }
    let mut listeners = Vec::new();
    let mut warnings = Vec::new();
    let mut bound = HashSet::new();
    for l in raw.listener {
        let ip = match &l.address {
            Some(a) => a.get_ref().parse::<IpAddr>().map_err(|_| {
                ctx.err(
                    a.span(),
                    Problem::Malformed {
                        what: "address",
                        value: a.get_ref().clone(),
                        hint: Some("expected an IP address"),
                    },
                )
            })?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        // Port 0 (beyond ALB): a free port picked at start, reported by
        // `tether run --addresses-file`; such listeners never collide.
        let addr = SocketAddr::new(ip, *l.port.get_ref());
        if addr.port() != 0 && !bound.insert(addr) {
            return Err(ctx.err(l.port.span(), Problem::Duplicate(Duplicate::Listener(addr))));
        }
        let protocol = l.protocol.as_ref().map_or(Protocol::Http, |p| *p.get_ref());
        let tls = build_listener_tls(ctx, &l, protocol, path, &mut warnings)?;
        let headers = super::attributes::build_listener_headers(ctx, &l, protocol)?;

        let mut priorities = HashSet::new();
        let mut rules = Vec::new();
        for r in l.rule {
            let p = *r.priority.get_ref();
            if !(1..=50000).contains(&p) {
                return Err(ctx.err(
                    r.priority.span(),
                    Problem::OutOfRange {
                        field: "priority",
                        allowed: "between 1 and 50000".into(),
                    },
                ));
            }
            if !priorities.insert(p) {
                return Err(ctx.err(
                    r.priority.span(),
                    Problem::Duplicate(Duplicate::Priority(p)),
                ));
            }
            let conditions = build_conditions(ctx, r.conditions)?;
            let action = build_action(ctx, r.action, &group_names, protocol, path)?;
            let transforms = match r.transforms {
                Some(t) => build_transforms(ctx, t)?,
                None => Transforms::default(),
            };
            rules.push(Rule {
                priority: p,
                conditions,
                action,
                transforms,
            });
        }
        if let Some(t) = &l.transforms {
            return Err(ctx.err(
                t.span(),
                Problem::Conflict {
                    field: "transforms",
                    other: "default_action",
                    why: "transforms go on a [[listener.rule]]: ALB allows none on the default action",
                },
            ));
        }
        let default_action = build_action(ctx, l.default_action, &group_names, protocol, path)?;
        listeners.push(ListenerConfig {
            addr,
            protocol,
            tls,
            headers,
            rules: RuleSet::new(rules, default_action),
        });
    }

    if upgrade_grace.is_none() {
        // A websocket gets as long from an upgrade as from its target's deregistration.
        if let Some(longest) = target_groups
            .iter()
            .map(|g| g.lifecycle.deregistration_delay)
            .max()
        {
            load_balancer.upgrade_grace = longest;
        }
    }
    Ok(Config {
        warnings,
        path: path.to_path_buf(),
        load_balancer,
        listeners,
        target_groups,
    })
}

fn check_duration(
    ctx: &Ctx<'_>,
    d: &Spanned<HumanDuration>,
    field: &'static str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let v = d.get_ref().0;
    if v < min || v > max {
        return Err(ctx.err(
            d.span(),
            Problem::OutOfRange {
                field,
                allowed: format!(
                    "between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            },
        ));
    }
    Ok(v)
}

fn describe_key_source(source: &str) -> String {
    if source.starts_with("env:") || source.starts_with("file:") {
        format!("\"{source}\"")
    } else {
        "(literal)".to_string()
    }
}

/// Reads a secret's source (`what` names it in errors: "sticky key"): `env:NAME`,
/// `file:PATH` (relative to the config file) or the literal material.
fn read_key_source(config_path: &Path, source: &str, what: &str) -> Result<String, String> {
    if let Some(name) = source.strip_prefix("env:") {
        return std::env::var(name)
            .map_err(|_| format!("{what} \"{source}\": environment variable {name} is not set"));
    }
    if let Some(file) = source.strip_prefix("file:") {
        let p = Path::new(file);
        let p = if p.is_relative() {
            config_path.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p.to_path_buf()
        };
        return std::fs::read_to_string(&p)
            .map_err(|e| format!("{what} \"{source}\": cannot read {}: {e}", p.display()));
    }
    Ok(source.to_string())
}

/// `access_log`'s target: `"-"` is stdout; a relative path is relative to the config
/// file, as `file:` keys are. The file is opened when tether starts, not here, so
/// that `tether check` on another machine does not make it.
fn build_access_log(
    ctx: &Ctx<'_>,
    raw: &RawAccessLog,
    config_path: &Path,
) -> Result<crate::access_log::LogTarget, ConfigError> {
    use crate::access_log::LogTarget;
    let p = raw.path.get_ref();
    if p.trim().is_empty() {
        return Err(ctx.err(
            raw.path.span(),
            Problem::Rejected {
                field: "access_log",
                reason: "access_log path is empty: give a file, or \"-\" for stdout".into(),
            },
        ));
    }
    if p == "-" {
        return Ok(LogTarget::Stdout);
    }
    let p = Path::new(p);
    Ok(LogTarget::File(if p.is_relative() {
        config_path.parent().unwrap_or(Path::new(".")).join(p)
    } else {
        p.to_path_buf()
    }))
}

/// The longest `lookup_timeout`: a miss waits this long at worst, so it stays a
/// small part of a request's time.
const MAX_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// `shared_state`: the Redis URL is checked here (scheme, host, port), so that a typo
/// is a config error, not a replica that silently shares nothing. A relative
/// `ca_bundle` is relative to the config file.
fn build_shared_state(
    ctx: &Ctx<'_>,
    raw: &RawSharedState,
    config_path: &Path,
) -> Result<SharedStateSpec, ConfigError> {
    let lookup_timeout = match &raw.lookup_timeout {
        Some(t) => check_duration(
            ctx,
            t,
            "lookup_timeout",
            Duration::from_millis(1),
            MAX_LOOKUP_TIMEOUT,
        )?,
        None => DEFAULT_LOOKUP_TIMEOUT,
    };
    let key_prefix = match &raw.key_prefix {
        Some(p)
            if p.get_ref()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err(ctx.err(
                p.span(),
                Problem::NotAllowed {
                    field: "key_prefix",
                    rule: "have no spaces or control characters".to_string(),
                },
            ))
        }
        Some(p) => p.get_ref().clone(),
        None => "tether:".to_string(),
    };
    let ca_bundle = raw.ca_bundle.as_ref().map(|c| {
        let p = Path::new(c.get_ref());
        if p.is_relative() {
            config_path.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p.to_path_buf()
        }
    });
    let url = raw.redis.get_ref();
    if let (Some(c), false) = (&raw.ca_bundle, url.starts_with("rediss://")) {
        return Err(ctx.err(
            c.span(),
            Problem::OnlyWith {
                field: "ca_bundle",
                with: "a rediss:// address",
            },
        ));
    }
    let spec = SharedStateSpec {
        redis: url.clone(),
        key_prefix,
        lookup_timeout,
        ca_bundle,
    };
    if let Err(e) = crate::shared_state::client(&spec) {
        return Err(ctx.err(
            raw.redis.span(),
            Problem::Rejected {
                field: "redis",
                reason: format!(
                    "invalid redis address \"{}\" ({e}): write redis://host:port, rediss://host:port or unix:/path",
                    spec.redacted()
                ),
            },
        ));
    }
    Ok(spec)
}

/// The shortest admin token taken: a guessable token on an exposed admin port would
/// be worse than none, since it looks safe.
const MIN_ADMIN_TOKEN: usize = 16;

/// `admin_token` (read as sticky keys are), and the rule that makes the admin API
/// safe to expose: an admin address that is not loopback needs a token.
fn build_admin_token(
    ctx: &Ctx<'_>,
    lb: &RawLoadBalancer,
    admin: Option<SocketAddr>,
    path: &Path,
) -> Result<Option<AdminToken>, ConfigError> {
    let Some(raw) = &lb.admin_token else {
        if let (Some(addr), Some(a)) = (admin, &lb.admin) {
            if !addr.ip().to_canonical().is_loopback() {
                return Err(ctx.err(a.span(), Problem::AdminUnprotected(addr)));
            }
        }
        return Ok(None);
    };
    if admin.is_none() {
        return Err(ctx.err(
            raw.span(),
            Problem::Conflict {
                field: "admin_token",
                other: "admin",
                why: "admin_token without admin: there is no admin API to protect",
            },
        ));
    }
    let token = read_key_source(path, raw.get_ref(), "admin_token").map_err(|reason| {
        ctx.err(
            raw.span(),
            Problem::Rejected {
                field: "admin_token",
                reason,
            },
        )
    })?;
    // A file's trailing newline is not part of the token.
    let token = token.trim();
    if token.len() < MIN_ADMIN_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ctx.err(
            raw.span(),
            Problem::Rejected {
                field: "admin_token",
                reason: format!(
                    "admin_token {}: expected at least {MIN_ADMIN_TOKEN} visible ASCII characters (openssl rand -hex 32)",
                    describe_key_source(raw.get_ref())
                ),
            },
        ));
    }
    Ok(Some(AdminToken::new(token)))
}

fn non_empty<T>(ctx: &Ctx<'_>, v: &Spanned<Vec<T>>, what: &'static str) -> Result<(), ConfigError> {
    if v.get_ref().is_empty() {
        Err(ctx.err(
            v.span(),
            Problem::Missing {
                what,
                needs: "at least one value",
            },
        ))
    } else {
        Ok(())
    }
}

/// ALB's match evaluations per condition ("Condition types for listener rules").
const MAX_EVALUATIONS_PER_CONDITION: usize = 3;
/// ALB's match evaluations per rule.
const MAX_EVALUATIONS_PER_RULE: usize = 5;
