//! A `jwt_validation` action from its config, with ALB's limits: the issuer (1 –
//! 256 characters), one JWKS source (`jwks_endpoint`, HTTPS as ALB requires, or
//! beyond ALB plain HTTP to a loopback address and `jwks_file`), and up to 10
//! additional claims of up to 10 values of up to 256 characters, none of `exp`,
//! `iss`, `nbf` and `iat`.

use std::sync::Arc;

use crate::jwt::{
    parse_jwks, AdditionalClaim, ClaimFormat, JwksSource, JwtValidation, KeySet,
    MAX_ADDITIONAL_CLAIMS, MAX_CLAIM_VALUES, MAX_CLAIM_VALUE_LEN, MAX_ISSUER_LEN,
    REGISTERED_CLAIMS,
};

use super::*;

/// ALB's longest JWKS endpoint URL.
const MAX_ENDPOINT_LEN: usize = 256;

/// The action, with the key set of its JWKS: the one in use when another action (or
/// the config before a reload) names the same source, so that keys fetched stay. A
/// `jwks_file` is read here, so that a file that is missing or not a JWKS is an
/// error at its line, and so that a reload reads it again.
pub(super) fn build_jwt_validation(
    ctx: &Ctx<'_>,
    raw: Spanned<RawJwtValidation>,
    config_path: &Path,
) -> Result<Arc<JwtValidation>, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let issuer = raw.issuer.get_ref();
    if issuer.is_empty() || issuer.chars().count() > MAX_ISSUER_LEN {
        return Err(ctx.err(
            raw.issuer.span(),
            Problem::OutOfRange {
                field: "issuer",
                allowed: format!("1 to {MAX_ISSUER_LEN} characters"),
            },
        ));
    }
    let (source, initial) = match (&raw.jwks_endpoint, &raw.jwks_file) {
        (Some(_), Some(file)) => {
            return Err(ctx.err(
                file.span(),
                Problem::Conflict {
                    field: "jwks_file",
                    other: "jwks_endpoint",
                    why: "jwt_validation takes jwks_endpoint or jwks_file, not both",
                },
            ))
        }
        (None, None) => {
            return Err(ctx.err(
                span,
                Problem::Missing {
                    what: "jwt_validation",
                    needs: "jwks_endpoint = \"https://…\" or jwks_file = \"jwks.json\"",
                },
            ))
        }
        (Some(endpoint), None) => (
            JwksSource::Endpoint(check_endpoint(ctx, endpoint)?.to_string()),
            None,
        ),
        (None, Some(file)) => {
            let p = Path::new(file.get_ref());
            let p = if p.is_relative() {
                config_path.parent().unwrap_or(Path::new(".")).join(p)
            } else {
                p.to_path_buf()
            };
            let jwks = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|bytes| parse_jwks(&bytes).map_err(|e| e.to_string()))
                .map_err(|reason| {
                    ctx.err(
                        file.span(),
                        Problem::Rejected {
                            field: "jwks_file",
                            reason: format!("jwks_file {}: {reason}", p.display()),
                        },
                    )
                })?;
            (JwksSource::File(p), Some(jwks))
        }
    };
    let claims = match raw.additional_claims {
        Some(list) => build_claims(ctx, list)?,
        None => Vec::new(),
    };
    let keys = KeySet::shared(source);
    if let Some(jwks) = initial {
        keys.offer(jwks);
    }
    Ok(Arc::new(JwtValidation::new(issuer.clone(), claims, keys)))
}

/// `jwks_endpoint`: a full `https://` URL, as ALB requires, of at most 256
/// characters; `http://` only to a loopback address (tests, a local identity
/// provider), since keys fetched in clear could be anyone's.
fn check_endpoint<'a>(ctx: &Ctx<'_>, raw: &'a Spanned<String>) -> Result<&'a str, ConfigError> {
    let url = raw.get_ref().as_str();
    let refuse = |rule: &str| {
        ctx.err(
            raw.span(),
            Problem::NotAllowed {
                field: "jwks_endpoint",
                rule: rule.to_string(),
            },
        )
    };
    if url.chars().count() > MAX_ENDPOINT_LEN {
        return Err(refuse("be at most 256 characters"));
    }
    let uri: http::Uri = url.parse().map_err(|_| {
        refuse("be a full URL, like \"https://idp.example.com/.well-known/jwks.json\"")
    })?;
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err(refuse(
            "be a full URL, like \"https://idp.example.com/.well-known/jwks.json\"",
        ));
    }
    match uri.scheme_str() {
        Some("https") => Ok(url),
        Some("http") if is_loopback(host) => Ok(url),
        _ => Err(refuse(
            "be an https:// URL (http:// only to a loopback address such as 127.0.0.1)",
        )),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// `additional_claims`: at most 10, each named once and not one ALB validates
/// itself, with a known format and 1 – 10 values of 1 – 256 characters (without
/// spaces for `space-separated-values`).
fn build_claims(
    ctx: &Ctx<'_>,
    list: Spanned<Vec<Spanned<RawAdditionalClaim>>>,
) -> Result<Vec<AdditionalClaim>, ConfigError> {
    if list.get_ref().len() > MAX_ADDITIONAL_CLAIMS {
        return Err(ctx.err(
            list.span(),
            Problem::Limit {
                what: "jwt_validation",
                limit: format!("at most {MAX_ADDITIONAL_CLAIMS} additional_claims"),
            },
        ));
    }
    let mut claims: Vec<AdditionalClaim> = Vec::new();
    for c in list.into_inner() {
        let c = c.into_inner();
        let name = c.name.get_ref();
        if name.is_empty() {
            return Err(ctx.err(
                c.name.span(),
                Problem::NotAllowed {
                    field: "name",
                    rule: "not be empty".into(),
                },
            ));
        }
        if REGISTERED_CLAIMS.contains(&name.as_str()) {
            return Err(ctx.err(
                c.name.span(),
                Problem::NotAllowed {
                    field: "name",
                    rule: "not be exp, iss, nbf or iat: ALB validates those itself".into(),
                },
            ));
        }
        if claims.iter().any(|k| k.name == *name) {
            return Err(ctx.err(
                c.name.span(),
                Problem::Rejected {
                    field: "name",
                    reason: format!("claim \"{name}\" is listed twice"),
                },
            ));
        }
        let format = ClaimFormat::from_name(c.format.get_ref()).ok_or_else(|| {
            ctx.err(
                c.format.span(),
                Problem::UnknownName {
                    what: "format",
                    value: c.format.get_ref().clone(),
                    hint: format!("use \"{}\"", ClaimFormat::NAMES.join("\", \"")),
                },
            )
        })?;
        let values = c.values.get_ref();
        if values.is_empty() || values.len() > MAX_CLAIM_VALUES {
            return Err(ctx.err(
                c.values.span(),
                Problem::Limit {
                    what: "an additional claim",
                    limit: format!("1 to {MAX_CLAIM_VALUES} values"),
                },
            ));
        }
        for v in values {
            let len = v.get_ref().chars().count();
            if len == 0 || len > MAX_CLAIM_VALUE_LEN {
                return Err(ctx.err(
                    v.span(),
                    Problem::OutOfRange {
                        field: "values",
                        allowed: format!("1 to {MAX_CLAIM_VALUE_LEN} characters each"),
                    },
                ));
            }
            if format == ClaimFormat::SpaceSeparatedValues && v.get_ref().contains(' ') {
                return Err(ctx.err(
                    v.span(),
                    Problem::NotAllowed {
                        field: "values",
                        rule: "have no spaces with format = \"space-separated-values\"".into(),
                    },
                ));
            }
        }
        claims.push(AdditionalClaim {
            name: name.clone(),
            format,
            values: values.iter().map(|v| v.get_ref().clone()).collect(),
        });
    }
    Ok(claims)
}
