//! Listener rules from their config: conditions (wildcard and regex values),
//! actions (forward, redirect, fixed response, and a `jwt_validation` before a
//! forward) and transforms, checked as ALB checks them.

use super::*;

/// The wildcard and regex values of a path, host or header condition. A condition
/// with regex values takes at most 3 values in all, as on ALB; wildcard-only
/// conditions keep tether's earlier (unlimited) count.
pub(super) fn build_values(
    ctx: &Ctx<'_>,
    what: &'static str,
    raw: &RawValues,
    span: Range<usize>,
    case_insensitive: bool,
) -> Result<Values, ConfigError> {
    if raw.values.is_empty() && raw.regex_values.is_empty() {
        return Err(ctx.err(
            span,
            Problem::Missing {
                what,
                needs: "at least one value",
            },
        ));
    }
    if !raw.regex_values.is_empty() {
        let extra = raw
            .values
            .iter()
            .chain(&raw.regex_values)
            .nth(MAX_EVALUATIONS_PER_CONDITION);
        if let Some(extra) = extra {
            return Err(ctx.err(
                extra.span(),
                Problem::Limit {
                    what,
                    limit: format!("at most {MAX_EVALUATIONS_PER_CONDITION} values and regex_values together (ALB's match evaluations per condition)"),
                },
            ));
        }
    }
    let pattern = if case_insensitive {
        Pattern::case_insensitive
    } else {
        Pattern::case_sensitive
    };
    let mut values = Values {
        wildcards: raw.values.iter().map(|p| pattern(p.get_ref())).collect(),
        regexes: Vec::new(),
    };
    for r in &raw.regex_values {
        if r.get_ref().chars().count() > MAX_CONDITION_REGEX {
            return Err(ctx.err(
                r.span(),
                Problem::Rejected {
                    field: "regex_values",
                    reason: format!("regex value is longer than {MAX_CONDITION_REGEX} characters"),
                },
            ));
        }
        let regex = RegexValue::new(r.get_ref(), case_insensitive).map_err(|reason| {
            ctx.err(
                r.span(),
                Problem::Rejected {
                    field: "regex_values",
                    reason,
                },
            )
        })?;
        values.regexes.push(regex);
    }
    Ok(values)
}

/// A rule's transforms: at most one of each kind.
pub(super) fn build_transforms(
    ctx: &Ctx<'_>,
    raw: Vec<Spanned<RawTransform>>,
) -> Result<Transforms, ConfigError> {
    let mut out = Transforms::default();
    for t in raw {
        let span = t.span();
        let (slot, rw, what, case_insensitive) = match t.into_inner() {
            RawTransform::UrlRewrite(rw) => (&mut out.url, rw, "url_rewrite", false),
            RawTransform::HostHeaderRewrite(rw) => (&mut out.host, rw, "host_header_rewrite", true),
        };
        if slot.is_some() {
            return Err(ctx.err(
                span,
                Problem::Limit {
                    what: "a rule",
                    limit: format!("at most one {what}"),
                },
            ));
        }
        let rewrite = Rewrite::new(rw.regex.get_ref(), rw.replace.get_ref(), case_insensitive)
            .map_err(|e| match e {
                RewriteError::Regex(reason) => ctx.err(
                    rw.regex.span(),
                    Problem::Rejected {
                        field: "regex",
                        reason,
                    },
                ),
                RewriteError::Replace(reason) => ctx.err(
                    rw.replace.span(),
                    Problem::Rejected {
                        field: "replace",
                        reason,
                    },
                ),
            })?;
        *slot = Some(rewrite);
    }
    Ok(out)
}

pub(super) fn build_conditions(
    ctx: &Ctx<'_>,
    raw: Spanned<RawConditions>,
) -> Result<Vec<Condition>, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let mut out = Vec::new();
    // ALB's match evaluations per rule, counted over regex values.
    let mut regexes = Vec::new();
    if let Some(v) = raw.path_pattern {
        let span = v.span();
        let values = build_values(ctx, "path_pattern", &v.get_ref().0, span, false)?;
        regexes.extend(v.get_ref().0.regex_values.iter().map(|r| r.span()));
        out.push(Condition::PathPattern(values));
    }
    if let Some(v) = raw.host_header {
        let span = v.span();
        let values = build_values(ctx, "host_header", &v.get_ref().0, span, true)?;
        regexes.extend(v.get_ref().0.regex_values.iter().map(|r| r.span()));
        out.push(Condition::HostHeader(values));
    }
    if let Some(v) = raw.http_request_method {
        non_empty(ctx, &v, "http_request_method")?;
        let mut methods = Vec::new();
        for m in v.into_inner() {
            let ok = !m.get_ref().is_empty()
                && m.get_ref().len() <= 40
                && m.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            if !ok {
                return Err(ctx.err(
                    m.span(),
                    Problem::Malformed {
                        what: "method",
                        value: m.get_ref().clone(),
                        hint: Some(
                            "methods are matched exactly, write them in capitals (A-Z, '-', '_')",
                        ),
                    },
                ));
            }
            methods.push(m.into_inner());
        }
        out.push(Condition::HttpRequestMethod(methods));
    }
    if let Some(v) = raw.source_ip {
        non_empty(ctx, &v, "source_ip")?;
        let nets = v
            .get_ref()
            .iter()
            .map(|c| {
                parse_cidr(c.get_ref()).map_err(|reason| {
                    ctx.err(
                        c.span(),
                        Problem::Rejected {
                            field: "source_ip",
                            reason,
                        },
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        out.push(Condition::SourceIp(nets));
    }
    for h in raw.http_header.unwrap_or_default() {
        let span = h.span();
        let h = h.into_inner();
        let name = http::HeaderName::from_bytes(h.name.get_ref().as_bytes()).map_err(|_| {
            ctx.err(
                h.name.span(),
                Problem::Malformed {
                    what: "header name",
                    value: h.name.get_ref().clone(),
                    hint: None,
                },
            )
        })?;
        let raw_values = RawValues {
            values: h.values,
            regex_values: h.regex_values,
        };
        let values = build_values(ctx, "http_header", &raw_values, span, true)?;
        regexes.extend(raw_values.regex_values.iter().map(|r| r.span()));
        out.push(Condition::HttpHeader { name, values });
    }
    if let Some(extra) = regexes.get(MAX_EVALUATIONS_PER_RULE) {
        return Err(ctx.err(
            extra.clone(),
            Problem::Limit {
                what: "a rule",
                limit: format!("at most {MAX_EVALUATIONS_PER_RULE} regex values in all (ALB's match evaluations per rule)"),
            },
        ));
    }
    if let Some(v) = raw.query_string {
        non_empty(ctx, &v, "query_string")?;
        out.push(Condition::QueryString(
            v.get_ref()
                .iter()
                .map(|q| {
                    (
                        q.key.as_deref().map(Pattern::case_insensitive),
                        Pattern::case_insensitive(&q.value),
                    )
                })
                .collect(),
        ));
    }
    if out.is_empty() {
        return Err(ctx.err(
            span,
            Problem::Missing {
                what: "a rule",
                needs: "at least one condition",
            },
        ));
    }
    Ok(out)
}

const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// A rule's (or the default) action: its routing action, and the `jwt_validation`
/// that runs before a forward. As on ALB, a `jwt_validation` goes only before a
/// forward (weighted or not) and only on HTTPS listeners.
pub(super) fn build_action(
    ctx: &Ctx<'_>,
    raw: Spanned<RawRuleAction>,
    groups: &HashMap<String, usize>,
    protocol: Protocol,
    config_path: &Path,
) -> Result<Action<usize>, ConfigError> {
    let span = raw.span();
    let RawRuleAction {
        action,
        jwt_validation,
    } = raw.into_inner();
    let jwt = match jwt_validation {
        None => None,
        Some(jwt) => {
            let at = jwt.span();
            match &action {
                Some(RawAction::Forward(_)) => {}
                Some(_) => {
                    return Err(ctx.err(
                        at,
                        Problem::OnlyWith {
                            field: "jwt_validation",
                            with: "forward: ALB runs it before a forward, not before a fixed_response or redirect",
                        },
                    ))
                }
                None => {
                    return Err(ctx.err(
                        at,
                        Problem::Missing {
                            what: "jwt_validation",
                            needs: "a forward in the same action (forward = \"group\"): it runs before the forward",
                        },
                    ))
                }
            }
            if protocol != Protocol::Https {
                return Err(ctx.err(
                    at,
                    Problem::OnlyWith {
                        field: "jwt_validation",
                        with: "protocol = \"HTTPS\": ALB validates bearer tokens on HTTPS listeners only",
                    },
                ));
            }
            Some(super::jwt_validation::build_jwt_validation(
                ctx,
                jwt,
                config_path,
            )?)
        }
    };
    let Some(action) = action else {
        // The raw model has no table with neither (serde refuses it); say so anyway.
        return Err(ctx.err(
            span,
            Problem::Missing {
                what: "an action",
                needs: "forward, fixed_response or redirect",
            },
        ));
    };
    Ok(match build_routing_action(ctx, span, action, groups)? {
        Action::Forward(f) => Action::Forward(f.with_jwt_validation(jwt)),
        other => other,
    })
}

/// A forward, fixed response or redirect.
fn build_routing_action(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    raw: RawAction,
    groups: &HashMap<String, usize>,
) -> Result<Action<usize>, ConfigError> {
    let group = |name: &Spanned<String>| {
        groups.get(name.get_ref()).copied().ok_or_else(|| {
            ctx.err(
                name.span(),
                Problem::UnknownTargetGroup(name.get_ref().clone()),
            )
        })
    };
    match raw {
        RawAction::Forward(RawForward::Single(name)) => {
            // The value's own span is lost inside the enum; point at the action.
            let name = Spanned::new(span, name);
            Ok(Action::Forward(Forward::single(group(&name)?)))
        }
        RawAction::Forward(RawForward::Weighted(w)) => {
            let list = &w.target_groups;
            if list.get_ref().is_empty() || list.get_ref().len() > 5 {
                return Err(ctx.err(
                    list.span(),
                    Problem::Limit {
                        what: "a weighted forward",
                        limit: "1 to 5 target groups".into(),
                    },
                ));
            }
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for g in list.get_ref() {
                let index = group(&g.name)?;
                if !seen.insert(index) {
                    return Err(ctx.err(
                        g.name.span(),
                        Problem::Duplicate(Duplicate::TargetGroup(g.name.get_ref().clone())),
                    ));
                }
                if *g.weight.get_ref() > 999 {
                    return Err(ctx.err(
                        g.weight.span(),
                        Problem::OutOfRange {
                            field: "weight",
                            allowed: "between 0 and 999".into(),
                        },
                    ));
                }
                out.push(WeightedGroup {
                    group: index,
                    weight: *g.weight.get_ref(),
                });
            }
            if out.iter().all(|g| g.weight == 0) {
                return Err(ctx.err(
                    list.span(),
                    Problem::Missing {
                        what: "at least one target group",
                        needs: "a weight above 0",
                    },
                ));
            }
            let stickiness = match w.stickiness {
                Some(st) if st.enabled != Some(false) => Some(match st.duration {
                    Some(d) => {
                        check_duration(ctx, &d, "duration", Duration::from_secs(1), MAX_STICKINESS)?
                    }
                    None => DEFAULT_STICKINESS,
                }),
                _ => None,
            };
            Ok(Action::Forward(
                Forward::weighted(out).with_stickiness(stickiness),
            ))
        }
        RawAction::FixedResponse(f) => {
            let status = *f.status.get_ref();
            if !matches!(status / 100, 2 | 4 | 5) {
                return Err(ctx.err(
                    f.status.span(),
                    Problem::NotAllowed {
                        field: "status",
                        rule: "be 2XX, 4XX or 5XX".into(),
                    },
                ));
            }
            let content_type = match f.content_type {
                Some(ct) if !CONTENT_TYPES.contains(&ct.get_ref().as_str()) => {
                    return Err(ctx.err(
                        ct.span(),
                        Problem::NotAllowed {
                            field: "content_type",
                            rule: format!("be one of {}", CONTENT_TYPES.join(", ")),
                        },
                    ))
                }
                Some(ct) => ct.into_inner(),
                None => "text/plain".to_string(),
            };
            let body = match f.body {
                Some(b) if b.get_ref().len() > 1024 => {
                    return Err(ctx.err(
                        b.span(),
                        Problem::OutOfRange {
                            field: "body",
                            allowed: "at most 1024 bytes".into(),
                        },
                    ))
                }
                Some(b) => b.into_inner(),
                None => String::new(),
            };
            Ok(Action::FixedResponse(FixedResponse {
                status,
                content_type,
                body,
            }))
        }
        RawAction::Redirect(r) => build_redirect(ctx, span, r).map(Action::Redirect),
    }
}

pub(super) fn build_redirect(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    r: RawRedirect,
) -> Result<Redirect, ConfigError> {
    let protocol = match r.protocol {
        Some(p) => {
            let v = p.get_ref().as_str();
            if !matches!(v, "HTTP" | "HTTPS" | "#{protocol}") {
                return Err(ctx.err(
                    p.span(),
                    Problem::NotAllowed {
                        field: "protocol",
                        rule: "be \"HTTP\", \"HTTPS\" or \"#{protocol}\"".into(),
                    },
                ));
            }
            p.into_inner()
        }
        None => "#{protocol}".to_string(),
    };
    let port = match r.port {
        Some(p) => {
            let v = &p.get_ref().0;
            let ok = v == "#{port}" || v.parse::<u16>().is_ok_and(|n| n != 0);
            if !ok {
                return Err(ctx.err(
                    p.span(),
                    Problem::NotAllowed {
                        field: "port",
                        rule: "be 1-65535 or \"#{port}\"".into(),
                    },
                ));
            }
            p.into_inner().0
        }
        None => "#{port}".to_string(),
    };
    let path = match r.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            return Err(ctx.err(
                p.span(),
                Problem::NotAllowed {
                    field: "path",
                    rule: "start with '/', like \"/#{path}\"".into(),
                },
            ))
        }
        Some(p) => p.into_inner(),
        None => "/#{path}".to_string(),
    };
    let status = match r.status {
        Some(s) if !matches!(*s.get_ref(), 301 | 302) => {
            return Err(ctx.err(
                s.span(),
                Problem::NotAllowed {
                    field: "status",
                    rule: "be 301 or 302".into(),
                },
            ))
        }
        Some(s) => *s.get_ref(),
        None => 301,
    };
    let redirect = Redirect {
        protocol,
        host: r.host.unwrap_or_else(|| "#{host}".to_string()),
        port,
        path,
        query: r.query.unwrap_or_else(|| "#{query}".to_string()),
        status,
    };
    let unchanged = redirect.protocol == "#{protocol}"
        && redirect.host == "#{host}"
        && redirect.port == "#{port}"
        && redirect.path == "/#{path}"
        && redirect.query == "#{query}";
    if unchanged {
        return Err(ctx.err(
            span,
            // Every part is the request's own: the redirect points back at it.
            Problem::Conflict {
                field: "redirect",
                other: "request",
                why: "a redirect must change something (protocol, host, port, path or query), or it would loop",
            },
        ));
    }
    Ok(redirect)
}
