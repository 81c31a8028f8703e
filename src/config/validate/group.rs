//! A target group's settings from its config: stickiness, discovery (ECS or a
//! targets file), health checks and lifecycle, Socket.IO pinning.

use super::*;

pub(super) fn build_stickiness(
    ctx: &Ctx<'_>,
    raw: Spanned<RawStickiness>,
) -> Result<Option<Stickiness>, ConfigError> {
    let span = raw.span();
    let st = raw.into_inner();
    if st.enabled == Some(false) {
        return Ok(None);
    }
    let duration = match &st.duration {
        Some(d) => check_duration(ctx, d, "duration", Duration::from_secs(1), MAX_STICKINESS)?,
        None => DEFAULT_STICKINESS,
    };
    let kind = match st.kind.as_ref().map(|k| k.get_ref().as_str()) {
        None | Some("lb_cookie") => {
            if let Some(n) = &st.cookie_name {
                return Err(ctx.err(
                    n.span(),
                    Problem::OnlyWith {
                        field: "cookie_name",
                        with: "type = \"app_cookie\"",
                    },
                ));
            }
            StickinessKind::LbCookie
        }
        Some("app_cookie") => {
            let Some(name) = st.cookie_name else {
                return Err(ctx.err(
                    span,
                    Problem::Missing {
                        what: "type = \"app_cookie\"",
                        needs: "cookie_name",
                    },
                ));
            };
            let n = name.get_ref();
            let valid = !n.is_empty()
                && n.len() <= 128
                && n.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !valid {
                return Err(ctx.err(
                    name.span(),
                    Problem::Malformed {
                        what: "cookie name",
                        value: n.clone(),
                        hint: None,
                    },
                ));
            }
            if let Some(p) = crate::sticky::RESERVED_PREFIXES
                .iter()
                .find(|p| n.starts_with(*p))
            {
                return Err(ctx.err(
                    name.span(),
                    Problem::Rejected {
                        field: "cookie_name",
                        reason: format!("cookie name \"{n}\" is reserved: names starting with {p} belong to the load balancer"),
                    },
                ));
            }
            StickinessKind::AppCookie {
                cookie_name: name.into_inner(),
            }
        }
        Some(other) => {
            let span = st.kind.as_ref().map_or(span, |k| k.span());
            return Err(ctx.err(
                span,
                Problem::UnknownName {
                    what: "stickiness type",
                    value: other.to_string(),
                    hint: "use \"lb_cookie\" or \"app_cookie\"".into(),
                },
            ));
        }
    };
    Ok(Some(Stickiness {
        kind,
        duration,
        secure: st.secure,
        http_only: st.http_only,
    }))
}

/// Where a discovering group's targets come from: ECS or a file, one of them.
pub(super) fn build_discovery(
    ctx: &Ctx<'_>,
    g: &RawTargetGroup,
    config_path: &Path,
) -> Result<Option<crate::discovery::DiscoverySpec>, ConfigError> {
    use crate::discovery::DiscoverySpec;
    let Some(d) = &g.discovery else {
        return Ok(None);
    };
    match (&d.get_ref().ecs, &d.get_ref().file) {
        (Some(ecs), None) => build_ecs(ctx, g, ecs).map(|e| Some(DiscoverySpec::Ecs(e))),
        (None, Some(file)) => {
            build_file(ctx, g, file, config_path).map(|f| Some(DiscoverySpec::File(f)))
        }
        (Some(_), Some(file)) => Err(ctx.err(
            file.span(),
            Problem::Conflict {
                field: "file",
                other: "ecs",
                why: "discovery takes one source: `ecs` or `file`, not both",
            },
        )),
        (None, None) => Err(ctx.err(
            d.span(),
            Problem::Missing {
                what: "discovery",
                needs: "a source: `ecs = { … }` or `file = { path = \"…\" }`",
            },
        )),
    }
}

/// A group's targets from `discovery` refuse `targets` beside it.
pub(super) fn no_static_targets(ctx: &Ctx<'_>, g: &RawTargetGroup) -> Result<(), ConfigError> {
    match g.targets.first() {
        Some(t) => Err(ctx.err(
            t.span(),
            Problem::Conflict {
                field: "targets",
                other: "discovery",
                why: "a group takes targets from either `targets` or `discovery`, not both",
            },
        )),
        None => Ok(()),
    }
}

/// Targets from a file: its path (relative to the config file's directory; it need
/// not exist yet, a tool may write it later) and the poll interval (default 5 s,
/// 100 ms – 1 h).
pub(super) fn build_file(
    ctx: &Ctx<'_>,
    g: &RawTargetGroup,
    file: &Spanned<RawFile>,
    config_path: &Path,
) -> Result<crate::discovery::FileDiscovery, ConfigError> {
    no_static_targets(ctx, g)?;
    let raw = file.get_ref();
    if raw.path.get_ref().trim().is_empty() {
        return Err(ctx.err(
            raw.path.span(),
            Problem::Missing {
                what: "file discovery",
                needs: "a path",
            },
        ));
    }
    let interval = match &raw.interval {
        Some(i) => check_duration(
            ctx,
            i,
            "interval",
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?,
        None => crate::discovery::file::DEFAULT_INTERVAL,
    };
    Ok(crate::discovery::FileDiscovery {
        path: config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(raw.path.get_ref()),
        interval,
    })
}

/// ECS discovery of a group: a service (with its container port), or the services
/// bound to an ALB target group ARN (container and port from that binding).
pub(super) fn build_ecs(
    ctx: &Ctx<'_>,
    g: &RawTargetGroup,
    ecs: &Spanned<RawEcs>,
) -> Result<crate::discovery::EcsDiscovery, ConfigError> {
    let span = ecs.span();
    let ecs = ecs.get_ref();
    if !cfg!(feature = "ecs") {
        return Err(ctx.err(
            span,
            Problem::FeatureOff {
                what: "ecs discovery",
                feature: "ecs",
            },
        ));
    }
    no_static_targets(ctx, g)?;
    match (&ecs.service, &ecs.target_group_arn) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ctx.err(
                span,
                Problem::Missing {
                    what: "ecs discovery",
                    needs: "either service (with container_port) or target_group_arn",
                },
            ))
        }
        (Some(_), None) if ecs.container_port.is_none() => {
            return Err(ctx.err(
                span,
                Problem::Missing {
                    what: "ecs discovery by service",
                    needs: "container_port",
                },
            ))
        }
        _ => {}
    }
    if let Some(p) = ecs.container_port.as_ref().filter(|p| *p.get_ref() == 0) {
        return Err(ctx.err(
            p.span(),
            Problem::OutOfRange {
                field: "container_port",
                allowed: "between 1 and 65535".into(),
            },
        ));
    }
    let interval = match &ecs.interval {
        Some(i) => check_duration(
            ctx,
            i,
            "interval",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?,
        None => Duration::from_secs(10),
    };
    Ok(crate::discovery::EcsDiscovery {
        cluster: ecs.cluster.clone(),
        service: ecs.service.clone(),
        target_group_arn: ecs.target_group_arn.clone(),
        container_name: ecs.container_name.clone(),
        container_port: ecs.container_port.as_ref().map(|p| *p.get_ref()),
        interval,
        region: ecs.region.clone(),
        endpoint_url: ecs.endpoint_url.clone(),
    })
}

/// Health check, draining, slow start and passive settings of a group, in ALB's
/// ranges (or tether's wider ones with `alb_limits = false`).
pub(super) fn build_lifecycle(
    ctx: &Ctx<'_>,
    g: &RawTargetGroup,
    alb_limits: bool,
) -> Result<Lifecycle, ConfigError> {
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    let mut hc = HealthCheck {
        // As on ALB, checks speak the group's protocol unless told otherwise.
        https: g
            .protocol
            .as_ref()
            .is_some_and(|p| *p.get_ref() == Protocol::Https),
        ..HealthCheck::default()
    };
    if let Some(raw) = &g.health_check {
        let span = raw.span();
        let raw = raw.get_ref();
        hc.enabled = raw.enabled.unwrap_or(true);
        if let Some(p) = &raw.protocol {
            hc.https = match p.get_ref().as_str() {
                "HTTP" => false,
                "HTTPS" => true,
                other => {
                    return Err(ctx.err(
                        p.span(),
                        Problem::UnknownName {
                            what: "health check protocol",
                            value: other.to_string(),
                            hint: "use \"HTTP\" or \"HTTPS\"".into(),
                        },
                    ))
                }
            };
        }
        if let Some(p) = &raw.port {
            let v = &p.get_ref().0;
            hc.port = if v == "traffic-port" {
                None
            } else {
                Some(v.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| {
                    ctx.err(
                        p.span(),
                        Problem::NotAllowed {
                            field: "port",
                            rule: "be 1-65535 or \"traffic-port\"".into(),
                        },
                    )
                })?)
            };
        }
        if let Some(p) = &raw.path {
            if !p.get_ref().starts_with('/') || p.get_ref().len() > 1024 {
                return Err(ctx.err(
                    p.span(),
                    Problem::NotAllowed {
                        field: "path",
                        rule: "start with '/' (at most 1024 characters)".into(),
                    },
                ));
            }
            hc.path = p.get_ref().clone();
        }
        let (min_interval, min_timeout) = if alb_limits {
            (secs(5), secs(2))
        } else {
            (ms(100), ms(50))
        };
        if let Some(d) = &raw.interval {
            hc.interval = check_duration(ctx, d, "interval", min_interval, secs(300))?;
        }
        if let Some(d) = &raw.timeout {
            hc.timeout = check_duration(ctx, d, "timeout", min_timeout, secs(120))?;
        }
        if hc.timeout >= hc.interval {
            let at = raw.timeout.as_ref().map_or(span.clone(), |t| t.span());
            return Err(ctx.err(
                at,
                Problem::OutOfRange {
                    field: "timeout",
                    allowed: "shorter than interval".into(),
                },
            ));
        }
        for (value, slot, field) in [
            (
                &raw.healthy_threshold,
                &mut hc.healthy_threshold,
                "healthy_threshold",
            ),
            (
                &raw.unhealthy_threshold,
                &mut hc.unhealthy_threshold,
                "unhealthy_threshold",
            ),
        ] {
            if let Some(v) = value {
                if !(2..=10).contains(v.get_ref()) {
                    return Err(ctx.err(
                        v.span(),
                        Problem::OutOfRange {
                            field,
                            allowed: "between 2 and 10".into(),
                        },
                    ));
                }
                *slot = *v.get_ref();
            }
        }
        if let Some(m) = &raw.matcher {
            hc.matcher = Matcher::parse(m.get_ref()).map_err(|reason| {
                ctx.err(
                    m.span(),
                    Problem::Rejected {
                        field: "matcher",
                        reason,
                    },
                )
            })?;
        }
    }
    let min_healthy = match &g.minimum_healthy_targets {
        None => MinHealthy::default(),
        Some(m) => match (&m.get_ref().count, &m.get_ref().percentage) {
            (Some(c), None) if *c.get_ref() >= 1 => MinHealthy::Count(*c.get_ref()),
            (Some(c), None) => {
                return Err(ctx.err(
                    c.span(),
                    Problem::OutOfRange {
                        field: "count",
                        allowed: "at least 1".into(),
                    },
                ))
            }
            (None, Some(p)) if (1..=100).contains(p.get_ref()) => {
                MinHealthy::Percentage(*p.get_ref())
            }
            (None, Some(p)) => {
                return Err(ctx.err(
                    p.span(),
                    Problem::OutOfRange {
                        field: "percentage",
                        allowed: "between 1 and 100".into(),
                    },
                ))
            }
            _ => {
                return Err(ctx.err(
                    m.span(),
                    Problem::Conflict {
                        field: "count",
                        other: "percentage",
                        why: "give either { count = N } or { percentage = N }",
                    },
                ))
            }
        },
    };
    let deregistration_delay = match &g.deregistration_delay {
        Some(d) => check_duration(ctx, d, "deregistration_delay", Duration::ZERO, secs(3600))?,
        None => DEFAULT_DEREGISTRATION_DELAY,
    };
    let slow_start = match &g.slow_start {
        Some(d) if d.get_ref().0.is_zero() => Duration::ZERO,
        Some(d) => {
            let min = if alb_limits { secs(30) } else { secs(1) };
            let v = check_duration(ctx, d, "slow_start", min, secs(900))?;
            if g.algorithm == Algorithm::LeastOutstandingRequests {
                return Err(ctx.err(
                    d.span(),
                    Problem::Conflict {
                        field: "slow_start",
                        other: "algorithm",
                        why: "slow_start does not go with least_outstanding_requests (as on ALB)",
                    },
                ));
            }
            v
        }
        None => Duration::ZERO,
    };
    let mut passive = PassiveHealth::default();
    if let Some(p) = &g.passive_health {
        passive.enabled = p.enabled.unwrap_or(true);
        if let Some(d) = &p.backoff {
            passive.backoff = check_duration(ctx, d, "backoff", ms(10), secs(3600))?;
        }
        if let Some(d) = &p.max_backoff {
            passive.max_backoff =
                check_duration(ctx, d, "max_backoff", passive.backoff, secs(3600))?;
        }
    }
    Ok(Lifecycle {
        health_check: hc,
        min_healthy,
        deregistration_delay,
        slow_start,
        passive,
    })
}

pub(super) fn build_socketio(ctx: &Ctx<'_>, raw: RawSocketIo) -> Result<SocketIo, ConfigError> {
    let path = match raw.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            return Err(ctx.err(
                p.span(),
                Problem::NotAllowed {
                    field: "path",
                    rule: "start with '/', like \"/socket.io/\"".into(),
                },
            ))
        }
        Some(p) => p.into_inner(),
        None => "/socket.io/".to_string(),
    };
    let max_sessions = match raw.max_sessions {
        Some(m) if *m.get_ref() == 0 => {
            return Err(ctx.err(
                m.span(),
                Problem::OutOfRange {
                    field: "max_sessions",
                    allowed: "at least 1".into(),
                },
            ))
        }
        Some(m) => *m.get_ref(),
        None => crate::socketio::DEFAULT_CAPACITY,
    };
    Ok(SocketIo { path, max_sessions })
}
