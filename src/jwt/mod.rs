//! JWT validation as ALB's `jwt-validation` rule action: the bearer token of a
//! request is checked before a forward, and a request whose token fails never
//! reaches a target.
//!
//! What AWS's "Verify JWTs" page and API reference say, and tether does:
//! - the token comes from `Authorization: Bearer <token>`, and a valid one is
//!   forwarded to the target as it came (the header is not removed);
//! - the signature is checked with a key of the JWKS (RS256, as ALB; ES256 and EdDSA
//!   beyond it), picked by the token's `kid`;
//! - `iss` (equal to the configured issuer) and `exp` are required; `nbf` and `iat`
//!   are checked when present;
//! - up to 10 additional claims, each `single-string`, `string-array` or
//!   `space-separated-values`, with up to 10 values of up to 256 characters; `exp`,
//!   `iss`, `nbf` and `iat` cannot be among them;
//! - a JWKS is at most 150 KB and 10 keys.
//!
//! Where AWS says nothing, tether's choices (each at its place below):
//! - the answer to a failure is RFC 6750's: 401 with `WWW-Authenticate: Bearer`
//!   when the request has no bearer token, `Bearer error="invalid_token",
//!   error_description="…"` when its token fails ([`Rejection::www_authenticate`]);
//! - the clock leeway for `exp`, `nbf` and `iat` is [`LEEWAY`] (60 s);
//! - an additional claim matches when it holds at least one of the values (OR, as
//!   ALB's condition values);
//! - `alg` must be one of RS256, ES256 and EdDSA and fit the key (`alg: none`, HMAC
//!   and every other algorithm are refused).
//!
//! Keys come from a [`KeySet`], an `ArcSwap` snapshot that a background task
//! ([`fetch`]) fills: the data path never waits on a JWKS. A token that passed is
//! remembered ([`cache`]) until its `exp`, so its signature is checked once.
//!
//! Nothing here knows the proxy engine: a request is the values of its
//! `Authorization` lines and the time.

mod cache;
pub mod fetch;
mod keys;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

pub use keys::{parse_jwks, Jwks, JwksError, JwksSource, KeySet, MAX_JWKS_BYTES, MAX_JWKS_KEYS};

use cache::TokenCache;

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. AWS does not publish
/// ALB's; 60 s is what most JWT libraries (`jsonwebtoken` included) default to, and
/// what identity providers' own validators allow.
pub const LEEWAY: u64 = 60;

/// ALB's limits on the action: additional claims per action, values per claim, and
/// the length of a value and of the issuer.
pub const MAX_ADDITIONAL_CLAIMS: usize = 10;
pub const MAX_CLAIM_VALUES: usize = 10;
pub const MAX_CLAIM_VALUE_LEN: usize = 256;
pub const MAX_ISSUER_LEN: usize = 256;

/// The claims ALB validates itself, which additional claims may not name.
pub const REGISTERED_CLAIMS: [&str; 4] = ["exp", "iss", "nbf", "iat"];

/// Tokens remembered per action (each ≈ 100 bytes).
pub const CACHE_CAPACITY: usize = 10_000;

// === Additional claims ===

/// How an additional claim's value is written in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFormat {
    /// A string: `"sub": "svc-a"`.
    SingleString,
    /// An array of strings: `"groups": ["admin", "ops"]`.
    StringArray,
    /// A string of space-separated values, as OAuth's `scope`: `"scope": "read write"`.
    SpaceSeparatedValues,
}

impl ClaimFormat {
    /// The config's (and ALB's) names, in order.
    pub const NAMES: [&'static str; 3] =
        ["single-string", "string-array", "space-separated-values"];

    /// The format of an ALB name (`"single-string"`), if it is one.
    pub fn from_name(name: &str) -> Option<ClaimFormat> {
        match name {
            "single-string" => Some(ClaimFormat::SingleString),
            "string-array" => Some(ClaimFormat::StringArray),
            "space-separated-values" => Some(ClaimFormat::SpaceSeparatedValues),
            _ => None,
        }
    }
}

/// A claim the token must carry, with the values it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalClaim {
    pub name: String,
    pub format: ClaimFormat,
    pub values: Vec<String>,
}

impl AdditionalClaim {
    /// Whether the token's claim (`None`: absent) is of the format and holds at least
    /// one of the values. AWS does not say whether one value or all are needed;
    /// tether takes one, as ALB's rule conditions do (OR among values). A claim of
    /// another JSON type than the format says fails.
    pub fn matches(&self, claim: Option<&Value>) -> bool {
        let wanted = |v: &str| self.values.iter().any(|w| w == v);
        match (self.format, claim) {
            (ClaimFormat::SingleString, Some(Value::String(s))) => wanted(s),
            (ClaimFormat::StringArray, Some(Value::Array(items))) => items
                .iter()
                .any(|i| matches!(i, Value::String(s) if wanted(s))),
            (ClaimFormat::SpaceSeparatedValues, Some(Value::String(s))) => {
                s.split(' ').filter(|v| !v.is_empty()).any(wanted)
            }
            _ => false,
        }
    }
}

// === Results ===

/// Why a request's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer` line.
    Missing,
    /// Not a JWT (three base64url parts of JSON), two `Authorization` lines, a token
    /// without `exp`, or a claim of the wrong type.
    Malformed,
    /// `alg` is not RS256, ES256 or EdDSA (`none`, HMAC…), or not the algorithm of
    /// the key its `kid` names.
    BadAlgorithm,
    /// No key of the JWKS has the token's `kid`.
    UnknownKid,
    /// The signature does not verify with the key.
    BadSignature,
    /// `iss` missing or not the configured issuer.
    BadIssuer,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// An additional claim is missing or holds none of its values.
    ClaimMismatch,
}

/// The `result` label values of `tether_jwt_validations_total`, in [`JwtStats`] order.
pub const RESULTS: [&str; 10] = [
    "valid",
    "missing",
    "malformed",
    "bad_algorithm",
    "unknown_kid",
    "bad_signature",
    "bad_issuer",
    "expired",
    "not_yet_valid",
    "claim_mismatch",
];

impl Rejection {
    /// Its `result` label in `tether_jwt_validations_total`.
    pub fn reason(self) -> &'static str {
        RESULTS[self.index()]
    }

    fn index(self) -> usize {
        match self {
            Rejection::Missing => 1,
            Rejection::Malformed => 2,
            Rejection::BadAlgorithm => 3,
            Rejection::UnknownKid => 4,
            Rejection::BadSignature => 5,
            Rejection::BadIssuer => 6,
            Rejection::Expired => 7,
            Rejection::NotYetValid => 8,
            Rejection::ClaimMismatch => 9,
        }
    }

    /// The `WWW-Authenticate` value of the 401. AWS documents neither the header nor
    /// its text; this is RFC 6750 §3: a request with no bearer token gets the bare
    /// challenge (no error code, §3.1), a token that fails gets `invalid_token` and a
    /// short description, which names the check but never the token's content.
    pub fn www_authenticate(self) -> &'static str {
        match self {
            Rejection::Missing => "Bearer",
            Rejection::Malformed => {
                "Bearer error=\"invalid_token\", error_description=\"the token is malformed\""
            }
            Rejection::BadAlgorithm => {
                "Bearer error=\"invalid_token\", error_description=\"the signing algorithm is not accepted\""
            }
            Rejection::UnknownKid => {
                "Bearer error=\"invalid_token\", error_description=\"the signing key is unknown\""
            }
            Rejection::BadSignature => {
                "Bearer error=\"invalid_token\", error_description=\"the signature is invalid\""
            }
            Rejection::BadIssuer => {
                "Bearer error=\"invalid_token\", error_description=\"the issuer is not accepted\""
            }
            Rejection::Expired => {
                "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
            }
            Rejection::NotYetValid => {
                "Bearer error=\"invalid_token\", error_description=\"the token is not valid yet\""
            }
            Rejection::ClaimMismatch => {
                "Bearer error=\"invalid_token\", error_description=\"a required claim does not match\""
            }
        }
    }
}

// === Counters ===

/// Validations by result, verified-token cache lookups, and JWKS fetches, for
/// `GET /metrics`. One set per process: key sets are shared by every action that
/// names the same JWKS, and counters outlive reloads.
#[derive(Debug, Default)]
pub struct JwtStats {
    results: [AtomicU64; 10],
    cache: [AtomicU64; 2],
    fetches: [AtomicU64; 2],
}

/// The `result` label values of `tether_jwt_cache_lookups_total`.
pub const CACHE_RESULTS: [&str; 2] = ["hit", "miss"];

/// The `result` label values of `tether_jwks_fetches_total`.
pub const FETCH_RESULTS: [&str; 2] = ["success", "failure"];

impl JwtStats {
    /// Validations per [`RESULTS`] entry.
    pub fn results(&self) -> [u64; 10] {
        std::array::from_fn(|i| self.results[i].load(Ordering::Relaxed))
    }

    /// Cache lookups per [`CACHE_RESULTS`] entry.
    pub fn cache_lookups(&self) -> [u64; 2] {
        std::array::from_fn(|i| self.cache[i].load(Ordering::Relaxed))
    }

    /// JWKS fetches (and file reads) per [`FETCH_RESULTS`] entry.
    pub fn fetches(&self) -> [u64; 2] {
        std::array::from_fn(|i| self.fetches[i].load(Ordering::Relaxed))
    }

    fn count_result(&self, r: Result<(), Rejection>) {
        let i = r.err().map_or(0, Rejection::index);
        self.results[i].fetch_add(1, Ordering::Relaxed);
    }

    fn count_cache(&self, hit: bool) {
        self.cache[usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
    }

    fn count_fetch(&self, ok: bool) {
        self.fetches[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The process's JWT counters.
pub fn stats() -> &'static JwtStats {
    static STATS: std::sync::OnceLock<JwtStats> = std::sync::OnceLock::new();
    STATS.get_or_init(JwtStats::default)
}

// === The action ===

/// A `jwt_validation` action: the issuer, the additional claims, the JWKS's keys,
/// and the tokens that passed.
pub struct JwtValidation {
    pub issuer: String,
    pub claims: Vec<AdditionalClaim>,
    pub keys: Arc<KeySet>,
    cache: TokenCache,
}

impl std::fmt::Debug for JwtValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidation")
            .field("issuer", &self.issuer)
            .field("claims", &self.claims)
            .field("jwks", self.keys.source())
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// The three parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

/// What the JOSE header says.
struct JoseHeader {
    alg: Algorithm,
    kid: Option<String>,
}

impl JwtValidation {
    /// An action checking tokens of `issuer` signed by a key of `keys`, with
    /// `claims`; its verified-token cache holds [`CACHE_CAPACITY`] tokens.
    pub fn new(issuer: String, claims: Vec<AdditionalClaim>, keys: Arc<KeySet>) -> JwtValidation {
        JwtValidation {
            issuer,
            claims,
            keys,
            cache: TokenCache::new(CACHE_CAPACITY),
        }
    }

    /// Checks the request whose `Authorization` lines are `authorization`, at `now`,
    /// and counts the result. A token seen valid before, under the same keys and
    /// before its `exp`, is not checked again.
    pub fn check<'a>(
        &self,
        authorization: impl Iterator<Item = &'a [u8]>,
        now: SystemTime,
    ) -> Result<(), Rejection> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let r = self.check_at(authorization, now);
        stats().count_result(r);
        r
    }

    fn check_at<'a>(
        &self,
        mut authorization: impl Iterator<Item = &'a [u8]>,
        now: u64,
    ) -> Result<(), Rejection> {
        let Some(line) = authorization.next() else {
            return Err(Rejection::Missing);
        };
        // Two lines could be read two ways (which one is the token?).
        if authorization.next().is_some() {
            return Err(Rejection::Malformed);
        }
        let token = bearer_token(line)?;
        let keys = self.keys.snapshot();
        let digest = cache::digest(token);
        let hit = self.cache.get(&digest, now, keys.generation());
        stats().count_cache(hit);
        if hit {
            return Ok(());
        }
        let expires = self.verify(token, &keys, now)?;
        self.cache.insert(digest, expires, keys.generation(), now);
        Ok(())
    }

    /// The whole check of one token against `keys`; returns when its validity ends
    /// (`exp` plus the leeway).
    fn verify(&self, token: &str, jwks: &Jwks, now: u64) -> Result<u64, Rejection> {
        let parts = split(token)?;
        let header = jose_header(parts.header)?;
        let key = match jwks.find(header.kid.as_deref(), header.alg) {
            Ok(key) => key,
            Err(keys::Miss::Algorithm) => return Err(Rejection::BadAlgorithm),
            Err(keys::Miss::Kid) => {
                // The issuer may have rotated its keys: fetch the JWKS again soon.
                self.keys.want_refresh();
                return Err(Rejection::UnknownKid);
            }
        };
        let message = &token[..parts.header.len() + 1 + parts.payload.len()];
        match jsonwebtoken::crypto::verify(parts.signature, message.as_bytes(), key, header.alg) {
            Ok(true) => {}
            Ok(false) => return Err(Rejection::BadSignature),
            Err(e) => {
                return Err(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::Base64(_) => Rejection::Malformed,
                    _ => Rejection::BadSignature,
                })
            }
        }
        let claims = json_object(parts.payload)?;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            _ => return Err(Rejection::BadIssuer),
        }
        // `exp` is required (ALB): a token without one is not an access token ALB takes.
        let exp = numeric_date(claims.get("exp"))?.ok_or(Rejection::Malformed)?;
        let expires = exp.saturating_add(LEEWAY);
        if now >= expires {
            return Err(Rejection::Expired);
        }
        for early in ["nbf", "iat"] {
            if let Some(t) = numeric_date(claims.get(early))? {
                if t > now.saturating_add(LEEWAY) {
                    return Err(Rejection::NotYetValid);
                }
            }
        }
        if !self.claims.iter().all(|c| c.matches(claims.get(&c.name))) {
            return Err(Rejection::ClaimMismatch);
        }
        Ok(expires)
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110 §11.1); the token is RFC 6750's `b64token`. Another
/// scheme (`Basic`) carries no bearer token: [`Rejection::Missing`].
fn bearer_token(line: &[u8]) -> Result<&str, Rejection> {
    let line = line.trim_ascii();
    let Some((scheme, rest)) = line.split_at_checked(6) else {
        return Err(Rejection::Missing);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Rejection::Missing);
    }
    if rest.first() != Some(&b' ') {
        return Err(if rest.is_empty() {
            Rejection::Malformed
        } else {
            // `Bearerx …` is another scheme.
            Rejection::Missing
        });
    }
    let token = rest.trim_ascii_start();
    let b64token = !token.is_empty()
        && token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b));
    if !b64token {
        return Err(Rejection::Malformed);
    }
    std::str::from_utf8(token).map_err(|_| Rejection::Malformed)
}

/// `header.payload.signature`, each part base64url text (the signature may be empty
/// only for `alg: none`, which the header check refuses).
fn split(token: &str) -> Result<Parts<'_>, Rejection> {
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Rejection::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(Rejection::Malformed);
    }
    Ok(Parts {
        header,
        payload,
        signature,
    })
}

/// A base64url part decoded as a JSON object.
fn json_object(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed),
    }
}

/// The JOSE header: its `alg` (one tether takes) and `kid`. A `crit` header names
/// extensions the token needs understood (RFC 7515 §4.1.11): tether understands
/// none, so such a token is refused.
fn jose_header(part: &str) -> Result<JoseHeader, Rejection> {
    let header = json_object(part)?;
    if header.contains_key("crit") {
        return Err(Rejection::Malformed);
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => match alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            // `none`, HMAC (a public key is no secret) and the rest.
            _ => return Err(Rejection::BadAlgorithm),
        },
        _ => return Err(Rejection::Malformed),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Rejection::Malformed),
    };
    Ok(JoseHeader { alg, kid })
}

/// A NumericDate claim (seconds since the epoch, RFC 7519 §2; fractions allowed and
/// cut), or `None` when absent. Anything else is malformed.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, Rejection> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
            // Before the epoch: long past.
            (None, Some(f)) if f < 0.0 => Ok(Some(0)),
            _ => Err(Rejection::Malformed),
        },
        Some(_) => Err(Rejection::Malformed),
    }
}

#[cfg(test)]
pub(crate) mod tests;
