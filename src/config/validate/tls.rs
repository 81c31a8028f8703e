//! A listener's TLS from its config (certificates, policy, mutual TLS with its trust
//! store) and a target group's TLS to its targets.

use super::*;

/// Certificates and policy of a listener, each certificate loaded to check it.
pub(super) fn build_listener_tls(
    ctx: &Ctx<'_>,
    l: &RawListener,
    protocol: Protocol,
    config_path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<ListenerTls>, ConfigError> {
    use crate::listener::tls::{CertSpec, SslPolicy};
    if protocol == Protocol::Http {
        if let Some(c) = &l.certificates {
            return Err(ctx.err(
                c.span(),
                Problem::OnlyWith {
                    field: "certificates",
                    with: "protocol = \"HTTPS\"",
                },
            ));
        }
        if let Some(p) = &l.ssl_policy {
            return Err(ctx.err(
                p.span(),
                Problem::OnlyWith {
                    field: "ssl_policy",
                    with: "protocol = \"HTTPS\"",
                },
            ));
        }
        if let Some(m) = &l.mutual_authentication {
            return Err(ctx.err(
                m.span(),
                Problem::OnlyWith {
                    field: "mutual_authentication",
                    with: "protocol = \"HTTPS\"",
                },
            ));
        }
        return Ok(None);
    }
    let at = l.protocol.as_ref().map_or(l.port.span(), |p| p.span());
    let Some(certs) = l.certificates.as_ref().filter(|c| !c.get_ref().is_empty()) else {
        return Err(ctx.err(
            at,
            Problem::Missing {
                what: "an HTTPS listener",
                needs: "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]",
            },
        ));
    };
    let policy = match &l.ssl_policy {
        Some(p) => SslPolicy::from_name(p.get_ref()).ok_or_else(|| {
            ctx.err(
                p.span(),
                Problem::UnknownName {
                    what: "ssl_policy",
                    value: p.get_ref().clone(),
                    hint: format!("use one of {}", SslPolicy::NAMES.join(", ")),
                },
            )
        })?,
        None => SslPolicy::default(),
    };
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut specs = Vec::new();
    for c in certs.get_ref() {
        let spec = CertSpec {
            cert: base.join(&c.get_ref().cert),
            key: base.join(&c.get_ref().key),
        };
        let loaded = crate::listener::tls::load(&spec).map_err(|e| {
            ctx.err(
                c.span(),
                Problem::Rejected {
                    field: "certificates",
                    reason: e.to_string(),
                },
            )
        })?;
        if loaded.expired(std::time::SystemTime::now()) {
            warnings.push(format!(
                "{}: the certificate has expired: clients will refuse it",
                spec.cert.display()
            ));
        }
        specs.push(spec);
    }
    let mutual_auth = match &l.mutual_authentication {
        Some(m) => build_mutual_auth(ctx, m.get_ref(), m.span(), base)?,
        None => Default::default(),
    };
    Ok(Some(ListenerTls {
        certificates: specs,
        policy,
        mutual_auth,
    }))
}

/// `mutual_authentication`: verify needs a trust store, whose files are loaded here so
/// that `tether check` finds a bad one; passthrough and off take none.
pub(super) fn build_mutual_auth(
    ctx: &Ctx<'_>,
    raw: &RawMutualAuth,
    span: Range<usize>,
    base: &Path,
) -> Result<crate::listener::mtls::MutualAuth, ConfigError> {
    use crate::listener::mtls::{MtlsMode, MutualAuth};
    let mode = match raw.mode.get_ref().as_str() {
        "off" => MtlsMode::Off,
        "passthrough" => MtlsMode::Passthrough,
        "verify" => MtlsMode::Verify,
        other => {
            return Err(ctx.err(
                raw.mode.span(),
                Problem::UnknownName {
                    what: "mutual_authentication mode",
                    value: other.to_string(),
                    hint: "use \"off\", \"passthrough\" or \"verify\"".to_string(),
                },
            ))
        }
    };
    let (ca_bundle, revocation) = match (&raw.trust_store, mode) {
        (Some(t), MtlsMode::Verify) => {
            let t = t.get_ref();
            (
                Some(base.join(t.ca_bundle.get_ref())),
                t.revocation
                    .iter()
                    .map(|r| base.join(r.get_ref()))
                    .collect(),
            )
        }
        (Some(t), _) => {
            return Err(ctx.err(
                t.span(),
                Problem::OnlyWith {
                    field: "trust_store",
                    with: "mode = \"verify\"",
                },
            ))
        }
        (None, MtlsMode::Verify) => {
            return Err(ctx.err(
                span,
                Problem::Missing {
                    what: "mode = \"verify\"",
                    needs: "trust_store = { ca_bundle = \"ca.pem\" }",
                },
            ))
        }
        (None, _) => (None, Vec::new()),
    };
    let spec = MutualAuth {
        mode,
        ca_bundle,
        revocation,
        ignore_client_certificate_expiry: raw.ignore_client_certificate_expiry,
        advertise_trust_store_ca_names: raw.advertise_trust_store_ca_names,
    };
    if mode == MtlsMode::Verify {
        crate::listener::tls::install_provider();
        if let Err(e) = crate::listener::mtls::MtlsVerifier::new(&spec, None) {
            let at = raw.trust_store.as_ref().map_or(span, |t| t.span());
            return Err(ctx.err(
                at,
                Problem::Rejected {
                    field: "trust_store",
                    reason: e.to_string(),
                },
            ));
        }
    }
    Ok(spec)
}

/// HTTPS to a group's targets: verified against `ca_file` (or the system roots), for
/// `server_name` (or the target's IP).
pub(super) fn build_upstream_tls(
    ctx: &Ctx<'_>,
    g: &RawTargetGroup,
    config_path: &Path,
) -> Result<Option<UpstreamTls>, ConfigError> {
    let https = g
        .protocol
        .as_ref()
        .is_some_and(|p| *p.get_ref() == Protocol::Https);
    if !https {
        for (value, field) in [(&g.ca_file, "ca_file"), (&g.server_name, "server_name")] {
            if let Some(f) = value {
                return Err(ctx.err(
                    f.span(),
                    Problem::OnlyWith {
                        field,
                        with: "protocol = \"HTTPS\"",
                    },
                ));
            }
        }
        return Ok(None);
    }
    let ca = match &g.ca_file {
        Some(f) => {
            let path = config_path
                .parent()
                .unwrap_or(Path::new("."))
                .join(f.get_ref());
            let certs = crate::listener::tls::load_ca(&path).map_err(|e| {
                ctx.err(
                    f.span(),
                    Problem::Rejected {
                        field: "ca_file",
                        reason: e.to_string(),
                    },
                )
            })?;
            Some(std::sync::Arc::new(certs))
        }
        None => None,
    };
    Ok(Some(UpstreamTls::new(
        g.server_name.as_ref().map(|s| s.get_ref().clone()),
        ca,
    )))
}
