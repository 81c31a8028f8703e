//! ALB's header attributes: the load balancer's (`X-Forwarded-For` processing, Host
//! preservation, invalid header fields, TLS headers, client keep-alive, HTTP/2) and
//! each listener's (response headers, the `Server` header, the TLS headers' names),
//! checked as AWS documents them ("Load balancer attributes", "Listener attributes",
//! "HTTP header modification").

use std::time::Duration;

use toml::Spanned;

use crate::settings::{
    ListenerHeaders, Protocol, RequestShaping, XffMode, DEFAULT_CLIENT_KEEP_ALIVE,
    MAX_CLIENT_KEEP_ALIVE, MIN_CLIENT_KEEP_ALIVE,
};

use super::raw::*;
use super::*;

/// Longest response header value or header name taken (AWS's pages give none:
/// tether's choice, well inside ALB's 16 KB header line).
const MAX_VALUE: usize = 1024;
const MAX_NAME: usize = 64;

/// The load balancer's header attributes.
pub(super) struct LbAttributes {
    pub(super) shaping: RequestShaping,
    pub(super) client_keep_alive: Duration,
    pub(super) http2_enabled: bool,
}

pub(super) fn build_lb_attributes(
    ctx: &Ctx<'_>,
    lb: &RawLoadBalancer,
    alb_limits: bool,
) -> Result<LbAttributes, ConfigError> {
    let xff_mode = match &lb.xff_header_processing {
        Some(m) => XffMode::from_name(m.get_ref()).ok_or_else(|| {
            ctx.err(
                m.span(),
                Problem::UnknownName {
                    what: "xff_header_processing",
                    value: m.get_ref().clone(),
                    hint: "expected \"append\", \"preserve\" or \"remove\"".into(),
                },
            )
        })?,
        None => XffMode::default(),
    };
    let client_keep_alive = match &lb.client_keep_alive {
        Some(d) => {
            // Below ALB's minute only for tests and fast local setups.
            let min = if alb_limits {
                MIN_CLIENT_KEEP_ALIVE
            } else {
                Duration::from_secs(1)
            };
            let v = d.get_ref().0;
            if v < min || v > MAX_CLIENT_KEEP_ALIVE {
                return Err(ctx.err(
                    d.span(),
                    Problem::OutOfRange {
                        field: "client_keep_alive",
                        allowed: format!(
                            "between {} and {}",
                            humantime::format_duration(min),
                            humantime::format_duration(MAX_CLIENT_KEEP_ALIVE)
                        ),
                    },
                ));
            }
            v
        }
        None => DEFAULT_CLIENT_KEEP_ALIVE,
    };
    Ok(LbAttributes {
        shaping: RequestShaping {
            xff_mode,
            xff_client_port: lb.xff_client_port.unwrap_or(false),
            preserve_host_header: lb.preserve_host_header.unwrap_or(false),
            drop_invalid_header_fields: lb.drop_invalid_header_fields.unwrap_or(false),
            tls_version_and_cipher_headers: lb.tls_version_and_cipher_headers.unwrap_or(false),
        },
        client_keep_alive,
        http2_enabled: lb.http2_enabled.unwrap_or(true),
    })
}

/// A listener's response headers and TLS header names.
pub(super) fn build_listener_headers(
    ctx: &Ctx<'_>,
    l: &RawListener,
    protocol: Protocol,
) -> Result<ListenerHeaders, ConfigError> {
    let mut headers = ListenerHeaders::default();
    if let Some(r) = &l.response_headers {
        let r = r.get_ref();
        let mut set = Vec::new();
        let fields: [(&Option<Spanned<String>>, &'static str, Check); 10] = [
            (
                &r.strict_transport_security,
                "strict-transport-security",
                Check::Hsts,
            ),
            (
                &r.access_control_allow_origin,
                "access-control-allow-origin",
                Check::Origin,
            ),
            (
                &r.access_control_allow_methods,
                "access-control-allow-methods",
                Check::Tokens,
            ),
            (
                &r.access_control_allow_headers,
                "access-control-allow-headers",
                Check::Tokens,
            ),
            (
                &r.access_control_allow_credentials,
                "access-control-allow-credentials",
                Check::OneOf(&["true"]),
            ),
            (
                &r.access_control_expose_headers,
                "access-control-expose-headers",
                Check::Tokens,
            ),
            (
                &r.access_control_max_age,
                "access-control-max-age",
                Check::Seconds,
            ),
            (
                &r.content_security_policy,
                "content-security-policy",
                Check::Text,
            ),
            (
                &r.x_content_type_options,
                "x-content-type-options",
                Check::OneOf(&["nosniff"]),
            ),
            (&r.x_frame_options, "x-frame-options", Check::FrameOptions),
        ];
        for (value, name, check) in fields {
            let Some(value) = value else { continue };
            check.run(name, value.get_ref()).map_err(|reason| {
                ctx.err(
                    value.span(),
                    Problem::Rejected {
                        field: name,
                        reason,
                    },
                )
            })?;
            set.push((name, Box::from(value.get_ref().as_str())));
        }
        headers.response = set.into_boxed_slice();
        headers.server = r.server.unwrap_or(true);
    }
    if let Some(n) = &l.request_header_names {
        if protocol == Protocol::Http {
            return Err(ctx.err(
                n.span(),
                Problem::OnlyWith {
                    field: "request_header_names",
                    with: "protocol = \"HTTPS\" (they name the TLS headers)",
                },
            ));
        }
        let n = n.get_ref();
        for (value, slot) in [
            (&n.x_amzn_tls_version, &mut headers.tls_version_name),
            (
                &n.x_amzn_tls_cipher_suite,
                &mut headers.tls_cipher_suite_name,
            ),
        ] {
            let Some(value) = value else { continue };
            check_request_header_name(value.get_ref()).map_err(|reason| {
                ctx.err(
                    value.span(),
                    Problem::Rejected {
                        field: "request_header_names",
                        reason,
                    },
                )
            })?;
            *slot = Box::from(value.get_ref().as_str());
        }
        if headers
            .tls_version_name
            .eq_ignore_ascii_case(&headers.tls_cipher_suite_name)
        {
            let at = n
                .x_amzn_tls_cipher_suite
                .as_ref()
                .or(n.x_amzn_tls_version.as_ref())
                .map_or(0..0, |v| v.span());
            return Err(ctx.err(
                at,
                Problem::Conflict {
                    field: "x_amzn_tls_cipher_suite",
                    other: "x_amzn_tls_version",
                    why: "the two TLS headers need different names",
                },
            ));
        }
    }
    Ok(headers)
}

/// A name for a header tether adds to requests: valid by ALB's rule, and not one
/// tether or HTTP framing already gives a meaning.
fn check_request_header_name(name: &str) -> Result<(), String> {
    if !crate::forwarded::is_valid_name(name) || name.len() > MAX_NAME {
        return Err(format!(
            "invalid header name \"{name}\": use 1-{MAX_NAME} letters, digits and '-'"
        ));
    }
    let reserved = crate::forwarded::is_rewritten(name)
        || crate::headers::is_hop_by_hop(name)
        || ["host", "content-length", "transfer-encoding", "cookie"]
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r));
    if reserved {
        return Err(format!(
            "header name \"{name}\" is taken: tether or HTTP already give it a meaning"
        ));
    }
    Ok(())
}

/// What a response header value must look like.
#[derive(Clone, Copy)]
enum Check {
    /// Any visible text.
    Text,
    /// `Strict-Transport-Security`: a `max-age=<seconds>` directive.
    Hsts,
    /// `*`, `null` or an origin (`https://example.com`).
    Origin,
    /// `*` or a comma-separated list of tokens (methods, header names).
    Tokens,
    /// A whole number of seconds.
    Seconds,
    /// One of these words (any case).
    OneOf(&'static [&'static str]),
    /// `DENY`, `SAMEORIGIN` or `ALLOW-FROM <origin>`.
    FrameOptions,
}

impl Check {
    fn run(self, name: &str, v: &str) -> Result<(), String> {
        if v.is_empty() || v.len() > MAX_VALUE {
            return Err(format!(
                "{name} must have 1-{MAX_VALUE} characters (leave the key out to add no header)"
            ));
        }
        if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(format!(
                "{name} must be visible ASCII text (no control characters or line breaks)"
            ));
        }
        let is_token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let ok = match self {
            Check::Text => true,
            Check::Hsts => v.split(';').any(|d| {
                let d = d.trim();
                d.len() > 8
                    && d[..8].eq_ignore_ascii_case("max-age=")
                    && d[8..].bytes().all(|b| b.is_ascii_digit())
            }),
            Check::Origin => {
                v == "*"
                    || v == "null"
                    || ((v.starts_with("https://") || v.starts_with("http://")) && !v.contains(' '))
            }
            Check::Tokens => v == "*" || v.split(',').all(|t| is_token(t.trim())),
            Check::Seconds => v.bytes().all(|b| b.is_ascii_digit()) && v.len() <= 10,
            Check::OneOf(words) => words.iter().any(|w| v.eq_ignore_ascii_case(w)),
            Check::FrameOptions => {
                v.eq_ignore_ascii_case("DENY")
                    || v.eq_ignore_ascii_case("SAMEORIGIN")
                    || (v.len() > 11
                        && v[..11].eq_ignore_ascii_case("ALLOW-FROM ")
                        && !v[11..].trim().is_empty())
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Check::Text => format!("invalid {name} \"{v}\""),
            Check::Hsts => format!(
                "invalid {name} \"{v}\": it needs max-age=<seconds>, like \"max-age=31536000; includeSubDomains\""
            ),
            Check::Origin => format!(
                "invalid {name} \"{v}\": expected \"*\", \"null\" or an origin like \"https://example.com\""
            ),
            Check::Tokens => format!(
                "invalid {name} \"{v}\": expected \"*\" or a comma-separated list, like \"GET, POST\""
            ),
            Check::Seconds => {
                format!("invalid {name} \"{v}\": expected a number of seconds, like \"86400\"")
            }
            Check::OneOf(words) => format!(
                "invalid {name} \"{v}\": the only value is \"{}\"",
                words.join("\", \"")
            ),
            Check::FrameOptions => format!(
                "invalid {name} \"{v}\": expected \"DENY\", \"SAMEORIGIN\" or \"ALLOW-FROM <origin>\""
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_header_name_is_valid_and_not_taken() {
        assert!(check_request_header_name("X-Tls-Version").is_ok());
        assert!(check_request_header_name("X_Tls").is_err());
        assert!(check_request_header_name("").is_err());
        assert!(check_request_header_name(&"x".repeat(MAX_NAME + 1)).is_err());
        for taken in ["X-Forwarded-For", "host", "Connection", "Content-Length"] {
            let e = check_request_header_name(taken).unwrap_err();
            assert!(e.contains("is taken"), "{taken}: {e}");
        }
    }
}
