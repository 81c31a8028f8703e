//! The config file as serde reads it: one struct per TOML table, `deny_unknown_fields`
//! everywhere, values kept with their spans so validation can point at them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::settings::{Algorithm, Protocol};

// === Value types with their own parsing ===

/// A human duration: "500ms", "30s", "5m", "1h", "1d".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid duration \"{s}\": write a number and a unit, like \"500ms\", \"30s\", \"5m\", \"1h\" or \"1d\""
                ))
            })
    }
}

/// A network in CIDR notation; a bare address means that one address.
pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "invalid CIDR \"{s}\": expected an address and prefix length, like \"10.0.0.0/8\" or \"::1/128\""
    ))
}

/// A target address `IP:port`.
pub(super) fn parse_target(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        Ok(_) => Err(format!("invalid target \"{s}\": port must be 1-65535")),
        Err(_) => Err(format!(
            "invalid target \"{s}\": expected IP:port, like \"10.0.1.12:3000\" or \"[::1]:3000\""
        )),
    }
}

// === Raw file model ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) load_balancer: RawLoadBalancer,
    #[serde(default)]
    pub(super) listener: Vec<RawListener>,
    #[serde(default)]
    pub(super) target_group: BTreeMap<Spanned<String>, RawTargetGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoadBalancer {
    pub(super) name: Option<String>,
    pub(super) idle_timeout: Option<Spanned<HumanDuration>>,
    pub(super) threads: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) sticky_keys: Vec<Spanned<String>>,
    pub(super) alb_limits: Option<bool>,
    pub(super) admin: Option<Spanned<String>>,
    pub(super) admin_token: Option<Spanned<String>>,
    pub(super) client_header_timeout: Option<Spanned<HumanDuration>>,
    pub(super) desync_mitigation_mode: Option<Spanned<String>>,
    pub(super) xff_header_processing: Option<Spanned<String>>,
    pub(super) xff_client_port: Option<bool>,
    pub(super) preserve_host_header: Option<bool>,
    pub(super) drop_invalid_header_fields: Option<bool>,
    pub(super) tls_version_and_cipher_headers: Option<bool>,
    pub(super) client_keep_alive: Option<Spanned<HumanDuration>>,
    pub(super) http2_enabled: Option<bool>,
    pub(super) upgrade_grace: Option<Spanned<HumanDuration>>,
    pub(super) access_log: Option<Spanned<RawAccessLog>>,
    pub(super) shared_state: Option<Spanned<RawSharedState>>,
}

/// `shared_state = { redis = "redis://10.0.0.5:6379", key_prefix = "tether:",
/// lookup_timeout = "5ms", ca_bundle = "redis-ca.pem" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharedState {
    pub(super) redis: Spanned<String>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) lookup_timeout: Option<Spanned<HumanDuration>>,
    pub(super) ca_bundle: Option<Spanned<String>>,
}

/// `access_log = { path = "/var/log/tether/access.log" }` (`"-"`: stdout).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub(super) path: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) address: Option<Spanned<String>>,
    pub(super) port: Spanned<u16>,
    pub(super) protocol: Option<Spanned<Protocol>>,
    pub(super) default_action: Spanned<RawRuleAction>,
    #[serde(default)]
    pub(super) rule: Vec<RawRule>,
    pub(super) certificates: Option<Spanned<Vec<Spanned<RawCertificate>>>>,
    pub(super) ssl_policy: Option<Spanned<String>>,
    pub(super) mutual_authentication: Option<Spanned<RawMutualAuth>>,
    pub(super) response_headers: Option<Spanned<RawResponseHeaders>>,
    pub(super) request_header_names: Option<Spanned<RawRequestHeaderNames>>,
    /// Only read to refuse it: ALB allows no transforms on the default action.
    pub(super) transforms: Option<Spanned<toml::Value>>,
}

/// `mutual_authentication = { mode = "verify", trust_store = { ca_bundle = "ca.pem",
/// revocation = ["crl.pem"] }, ignore_client_certificate_expiry = false,
/// advertise_trust_store_ca_names = false }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMutualAuth {
    pub(super) mode: Spanned<String>,
    pub(super) trust_store: Option<Spanned<RawTrustStore>>,
    #[serde(default)]
    pub(super) ignore_client_certificate_expiry: bool,
    #[serde(default)]
    pub(super) advertise_trust_store_ca_names: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrustStore {
    pub(super) ca_bundle: Spanned<String>,
    #[serde(default)]
    pub(super) revocation: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub(super) cert: String,
    pub(super) key: String,
}

/// A listener's `routing.http.response.*` attributes, by their ALB names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponseHeaders {
    pub(super) strict_transport_security: Option<Spanned<String>>,
    pub(super) access_control_allow_origin: Option<Spanned<String>>,
    pub(super) access_control_allow_methods: Option<Spanned<String>>,
    pub(super) access_control_allow_headers: Option<Spanned<String>>,
    pub(super) access_control_allow_credentials: Option<Spanned<String>>,
    pub(super) access_control_expose_headers: Option<Spanned<String>>,
    pub(super) access_control_max_age: Option<Spanned<String>>,
    pub(super) content_security_policy: Option<Spanned<String>>,
    pub(super) x_content_type_options: Option<Spanned<String>>,
    pub(super) x_frame_options: Option<Spanned<String>>,
    pub(super) server: Option<bool>,
}

/// A listener's `routing.http.request.*.header_name` attributes (the TLS ones).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequestHeaderNames {
    pub(super) x_amzn_tls_version: Option<Spanned<String>>,
    pub(super) x_amzn_tls_cipher_suite: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) priority: Spanned<u32>,
    pub(super) conditions: Spanned<RawConditions>,
    pub(super) action: Spanned<RawRuleAction>,
    pub(super) transforms: Option<Vec<Spanned<RawTransform>>>,
}

/// `{ url_rewrite = { regex, replace } }` or `{ host_header_rewrite = { … } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawTransform {
    UrlRewrite(RawRewrite),
    HostHeaderRewrite(RawRewrite),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRewrite {
    pub(super) regex: Spanned<String>,
    pub(super) replace: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditions {
    pub(super) path_pattern: Option<Spanned<RawValuesOrList>>,
    pub(super) host_header: Option<Spanned<RawValuesOrList>>,
    pub(super) http_request_method: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) source_ip: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) http_header: Option<Vec<Spanned<RawHeaderCondition>>>,
    pub(super) query_string: Option<Spanned<Vec<RawQueryCondition>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderCondition {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) values: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) regex_values: Vec<Spanned<String>>,
}

/// Wildcard and regex values of a path or host condition: `["/a/*"]` (wildcards
/// only) or `{ values = [...], regex_values = [...] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValues {
    #[serde(default)]
    pub(super) values: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) regex_values: Vec<Spanned<String>>,
}

/// The two spellings of [`RawValues`].
#[derive(Debug)]
pub(super) struct RawValuesOrList(pub(super) RawValues);

impl<'de> Deserialize<'de> for RawValuesOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValuesOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of patterns or { values = [...], regex_values = [...] }")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawValuesOrList, A::Error> {
                let values = Vec::<Spanned<String>>::deserialize(
                    de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(RawValuesOrList(RawValues {
                    values,
                    regex_values: Vec::new(),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValuesOrList, A::Error> {
                RawValues::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawValuesOrList)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueryCondition {
    pub(super) key: Option<String>,
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawAction {
    Forward(RawForward),
    FixedResponse(RawFixedResponse),
    Redirect(RawRedirect),
}

/// An `action` or `default_action` table: one routing action ([`RawAction`]: one of
/// `forward`, `fixed_response`, `redirect`) and, beside a forward, a
/// `jwt_validation` that runs first (ALB's actions before a forward). Any other key
/// is an unknown field. Which combinations go together is checked in validation, so
/// that an error points at the key at fault.
#[derive(Debug)]
pub(super) struct RawRuleAction {
    /// `None` only for a table with `jwt_validation` alone (validation refuses it).
    pub(super) action: Option<RawAction>,
    pub(super) jwt_validation: Option<Spanned<RawJwtValidation>>,
}

impl<'de> Deserialize<'de> for RawRuleAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const KEYS: &[&str] = &["forward", "fixed_response", "redirect", "jwt_validation"];
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRuleAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action: { forward = … }, { fixed_response = { … } } or { redirect = { … } }, a forward optionally with jwt_validation = { … }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRuleAction, A::Error> {
                let mut action = None;
                let mut jwt_validation = None;
                while let Some(key) = map.next_key::<String>()? {
                    let routing = match key.as_str() {
                        "forward" => RawAction::Forward(map.next_value()?),
                        "fixed_response" => RawAction::FixedResponse(map.next_value()?),
                        "redirect" => RawAction::Redirect(map.next_value()?),
                        "jwt_validation" => {
                            jwt_validation = Some(map.next_value()?);
                            continue;
                        }
                        other => return Err(de::Error::unknown_field(other, KEYS)),
                    };
                    if action.is_some() {
                        return Err(de::Error::custom(
                            "an action takes one of forward, fixed_response and redirect",
                        ));
                    }
                    action = Some(routing);
                }
                if action.is_none() && jwt_validation.is_none() {
                    return Err(de::Error::custom(
                        "an action needs forward, fixed_response or redirect",
                    ));
                }
                Ok(RawRuleAction {
                    action,
                    jwt_validation,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// `jwt_validation = { issuer = "…", jwks_endpoint = "https://…" | jwks_file = "…",
/// additional_claims = [{ name, format, values }] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwtValidation {
    pub(super) issuer: Spanned<String>,
    pub(super) jwks_endpoint: Option<Spanned<String>>,
    pub(super) jwks_file: Option<Spanned<String>>,
    pub(super) additional_claims: Option<Spanned<Vec<Spanned<RawAdditionalClaim>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdditionalClaim {
    pub(super) name: Spanned<String>,
    pub(super) format: Spanned<String>,
    pub(super) values: Spanned<Vec<Spanned<String>>>,
}

/// `forward = "name"` or `forward = { target_groups = [...] }`.
#[derive(Debug)]
pub(super) enum RawForward {
    Single(String),
    Weighted(RawWeightedForward),
}

impl<'de> Deserialize<'de> for RawForward {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawForward;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a target group name or { target_groups = [...] }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawForward, E> {
                Ok(RawForward::Single(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawForward, A::Error> {
                RawWeightedForward::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawForward::Weighted)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedForward {
    pub(super) target_groups: Spanned<Vec<RawWeightedGroup>>,
    pub(super) stickiness: Option<RawGroupStickiness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroupStickiness {
    pub(super) enabled: Option<bool>,
    pub(super) duration: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedGroup {
    pub(super) name: Spanned<String>,
    #[serde(default = "default_weight")]
    pub(super) weight: Spanned<u32>,
}

pub(super) fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFixedResponse {
    pub(super) status: Spanned<u16>,
    pub(super) content_type: Option<Spanned<String>>,
    pub(super) body: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedirect {
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) host: Option<String>,
    pub(super) port: Option<Spanned<PortString>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) query: Option<String>,
    pub(super) status: Option<Spanned<u16>>,
}

/// A redirect port may be written as a number or a string ("443", "#{port}").
#[derive(Debug)]
pub(super) struct PortString(pub(super) String);

impl<'de> Deserialize<'de> for PortString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or \"#{port}\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortString, E> {
                Ok(PortString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortString, E> {
                Ok(PortString(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortString, E> {
                Ok(PortString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargetGroup {
    pub(super) protocol: Option<Spanned<Protocol>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) algorithm: Algorithm,
    #[serde(default)]
    pub(super) targets: Vec<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<HumanDuration>>,
    pub(super) stickiness: Option<Spanned<RawStickiness>>,
    pub(super) socketio: Option<RawSocketIo>,
    pub(super) discovery: Option<Spanned<RawDiscovery>>,
    pub(super) health_check: Option<Spanned<RawHealthCheck>>,
    pub(super) minimum_healthy_targets: Option<Spanned<RawMinHealthy>>,
    pub(super) deregistration_delay: Option<Spanned<HumanDuration>>,
    pub(super) slow_start: Option<Spanned<HumanDuration>>,
    pub(super) passive_health: Option<RawPassiveHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) ecs: Option<Spanned<RawEcs>>,
    pub(super) file: Option<Spanned<RawFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEcs {
    pub(super) cluster: String,
    pub(super) service: Option<String>,
    pub(super) target_group_arn: Option<String>,
    pub(super) container_name: Option<String>,
    pub(super) container_port: Option<Spanned<u16>>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub(super) enabled: Option<bool>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<PortString>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) timeout: Option<Spanned<HumanDuration>>,
    pub(super) healthy_threshold: Option<Spanned<u32>>,
    pub(super) unhealthy_threshold: Option<Spanned<u32>>,
    pub(super) matcher: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMinHealthy {
    pub(super) count: Option<Spanned<u32>>,
    pub(super) percentage: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassiveHealth {
    pub(super) enabled: Option<bool>,
    pub(super) backoff: Option<Spanned<HumanDuration>>,
    pub(super) max_backoff: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStickiness {
    pub(super) enabled: Option<bool>,
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    pub(super) duration: Option<Spanned<HumanDuration>>,
    pub(super) cookie_name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) secure: bool,
    #[serde(default)]
    pub(super) http_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocketIo {
    pub(super) path: Option<Spanned<String>>,
    pub(super) max_sessions: Option<Spanned<usize>>,
}
