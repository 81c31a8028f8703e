//! The checks of one token, without a socket: each failure's reason, the cache, and
//! the JWKS rules.

use serde_json::json;

use super::*;

/// The test suite's key kit, shared with the config tests.
#[path = "../../tests/common/jwt_keys.rs"]
pub(crate) mod jwt_keys;
use jwt_keys::{jwks, now, unsigned_token, Signer};

const ISSUER: &str = "https://issuer.test";

/// An action over a key set of `signers`' keys (a file source of its own, so that
/// tests do not share key sets).
fn action(signers: &[&Signer], claims: Vec<AdditionalClaim>) -> JwtValidation {
    static N: AtomicU64 = AtomicU64::new(0);
    let source = JwksSource::File(format!("unit-{}", N.fetch_add(1, Ordering::Relaxed)).into());
    let keys = KeySet::shared(source);
    let parsed = parse_jwks(jwks(signers).to_string().as_bytes()).expect("jwks");
    assert!(keys.offer(parsed));
    JwtValidation::new(ISSUER.to_string(), claims, keys)
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({ "iss": ISSUER, "sub": "svc", "exp": now() + 600, "iat": now() });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn check(a: &JwtValidation, authorization: &[&str]) -> Result<(), Rejection> {
    a.check(
        authorization.iter().map(|s| s.as_bytes()),
        SystemTime::now(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_valid_token_of_each_algorithm_passes() {
    for signer in [Signer::rs256("r"), Signer::es256("e"), Signer::eddsa("d")] {
        let a = action(&[&signer], Vec::new());
        let token = signer.token(&claims(json!({})));
        assert_eq!(check(&a, &[&bearer(&token)]), Ok(()), "{}", signer.alg());
    }
}

#[test]
fn the_scheme_is_case_insensitive_and_other_schemes_carry_no_token() {
    let s = Signer::es256("k");
    let a = action(&[&s], Vec::new());
    let token = s.token(&claims(json!({})));
    assert_eq!(check(&a, &[&format!("bearer   {token}")]), Ok(()));
    assert_eq!(check(&a, &[]), Err(Rejection::Missing));
    assert_eq!(check(&a, &["Basic dXNlcjpwYXNz"]), Err(Rejection::Missing));
    assert_eq!(check(&a, &["Bearer"]), Err(Rejection::Malformed));
    assert_eq!(check(&a, &["Bearer a b"]), Err(Rejection::Malformed));
    assert_eq!(check(&a, &["Bearer not-a-jwt"]), Err(Rejection::Malformed));
    assert_eq!(check(&a, &["Bearer a.b.c.d"]), Err(Rejection::Malformed));
    assert_eq!(
        check(&a, &[&bearer(&token), &bearer(&token)]),
        Err(Rejection::Malformed),
        "two Authorization lines"
    );
}

#[test]
fn each_failure_has_its_reason() {
    let s = Signer::rs256("k1");
    let other = Signer::es256("k2");
    let a = action(&[&s], Vec::new());
    let t = now();
    let cases = [
        (
            "expired",
            s.token(&claims(json!({ "exp": t - 3600 }))),
            Rejection::Expired,
        ),
        (
            "not yet valid",
            s.token(&claims(json!({ "nbf": t + 3600 }))),
            Rejection::NotYetValid,
        ),
        (
            "issued in the future",
            s.token(&claims(json!({ "iat": t + 3600 }))),
            Rejection::NotYetValid,
        ),
        (
            "wrong issuer",
            s.token(&claims(json!({ "iss": "https://evil.test" }))),
            Rejection::BadIssuer,
        ),
        (
            "no exp",
            s.token(&json!({ "iss": ISSUER })),
            Rejection::Malformed,
        ),
        (
            "exp a string",
            s.token(&claims(json!({ "exp": "tomorrow" }))),
            Rejection::Malformed,
        ),
        (
            "unknown kid",
            other.token(&claims(json!({}))),
            Rejection::UnknownKid,
        ),
        (
            "alg none",
            unsigned_token("k1", &claims(json!({}))),
            Rejection::BadAlgorithm,
        ),
        (
            "HS256 with the public key's kid",
            s.token_with_header(&json!({ "alg": "HS256", "kid": "k1" }), &claims(json!({}))),
            Rejection::BadAlgorithm,
        ),
        (
            "ES256 header on the RSA key",
            other.token_with_header(&json!({ "alg": "ES256", "kid": "k1" }), &claims(json!({}))),
            Rejection::BadAlgorithm,
        ),
        (
            "crit header",
            s.token_with_header(
                &json!({ "alg": "RS256", "kid": "k1", "crit": ["exp"] }),
                &claims(json!({})),
            ),
            Rejection::Malformed,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(check(&a, &[&bearer(&token)]), Err(want), "{what}");
    }
    // Another key's signature under this key's kid.
    let forged = {
        let good = s.token(&claims(json!({})));
        let (msg, _) = good.rsplit_once('.').unwrap();
        let sig = other.sign_bytes(msg.as_bytes());
        format!("{msg}.{}", jwt_keys::b64(&sig))
    };
    assert_eq!(check(&a, &[&bearer(&forged)]), Err(Rejection::BadSignature));
    // A changed payload under the original signature.
    let good = s.token(&claims(json!({ "sub": "a" })));
    let mut parts: Vec<&str> = good.split('.').collect();
    let payload = jwt_keys::b64(claims(json!({ "sub": "admin" })).to_string().as_bytes());
    parts[1] = &payload;
    assert_eq!(
        check(&a, &[&bearer(&parts.join("."))]),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn the_leeway_is_sixty_seconds() {
    let s = Signer::es256("k");
    let a = action(&[&s], Vec::new());
    let t = now();
    let ok = |c| check(&a, &[&bearer(&s.token(&claims(c)))]);
    assert_eq!(ok(json!({ "exp": t - 30 })), Ok(()));
    assert_eq!(ok(json!({ "exp": t - 90 })), Err(Rejection::Expired));
    assert_eq!(ok(json!({ "nbf": t + 30, "iat": t + 30 })), Ok(()));
    assert_eq!(ok(json!({ "nbf": t + 90 })), Err(Rejection::NotYetValid));
}

#[test]
fn additional_claims_match_per_format() {
    let s = Signer::eddsa("k");
    let claim = |name: &str, format, values: &[&str]| AdditionalClaim {
        name: name.into(),
        format,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let a = action(
        &[&s],
        vec![
            claim(
                "scope",
                ClaimFormat::SpaceSeparatedValues,
                &["read", "admin"],
            ),
            claim("groups", ClaimFormat::StringArray, &["ops"]),
            claim("client_id", ClaimFormat::SingleString, &["svc-a", "svc-b"]),
        ],
    );
    let all = json!({ "scope": "openid read", "groups": ["dev", "ops"], "client_id": "svc-b" });
    let with = |patch: serde_json::Value| {
        let mut c = all.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        check(&a, &[&bearer(&s.token(&claims(c)))])
    };
    assert_eq!(with(json!({})), Ok(()));
    let refused = [
        json!({ "scope": null }),
        json!({ "scope": "write" }),
        json!({ "scope": "readonly" }),
        json!({ "scope": ["read"] }),
        json!({ "groups": ["dev"] }),
        json!({ "groups": "ops" }),
        json!({ "groups": null }),
        json!({ "client_id": "svc-c" }),
        json!({ "client_id": ["svc-a"] }),
        json!({ "client_id": null }),
    ];
    for patch in refused {
        assert_eq!(
            with(patch.clone()),
            Err(Rejection::ClaimMismatch),
            "{patch}"
        );
    }
}

#[test]
fn a_repeated_token_is_a_cache_hit_and_a_key_change_forgets_it() {
    let s = Signer::es256("k");
    let a = action(&[&s], Vec::new());
    let token = bearer(&s.token(&claims(json!({}))));
    let lookups = || stats().cache_lookups();
    let before = lookups();
    assert_eq!(check(&a, &[&token]), Ok(()));
    assert_eq!(check(&a, &[&token]), Ok(()));
    let after = lookups();
    assert!(after[0] > before[0], "a hit: {before:?} → {after:?}");
    assert_eq!(a.cache.len(), 1);
    // The key is withdrawn: the cached token is not taken any more.
    let rotated = Signer::es256("k2");
    assert!(a
        .keys
        .offer(parse_jwks(jwks(&[&rotated]).to_string().as_bytes()).unwrap()));
    assert_eq!(check(&a, &[&token]), Err(Rejection::UnknownKid));
    // The same keys offered again change nothing.
    assert!(!a
        .keys
        .offer(parse_jwks(jwks(&[&rotated]).to_string().as_bytes()).unwrap()));
}

#[test]
fn an_invalid_token_is_never_cached() {
    let s = Signer::es256("k");
    let a = action(&[&s], Vec::new());
    let token = bearer(&s.token(&claims(json!({ "iss": "x" }))));
    assert_eq!(check(&a, &[&token]), Err(Rejection::BadIssuer));
    assert_eq!(check(&a, &[&token]), Err(Rejection::BadIssuer));
    assert_eq!(a.cache.len(), 0);
}

#[test]
fn a_token_without_kid_takes_the_one_key_of_its_algorithm() {
    let s = Signer::rs256("k");
    let e1 = Signer::es256("e1");
    let e2 = Signer::es256("e2");
    let a = action(&[&s, &e1, &e2], Vec::new());
    let no_kid = |signer: &Signer| {
        signer.token_with_header(&json!({ "alg": signer.alg() }), &claims(json!({})))
    };
    assert_eq!(check(&a, &[&bearer(&no_kid(&s))]), Ok(()));
    assert_eq!(
        check(&a, &[&bearer(&no_kid(&e1))]),
        Err(Rejection::UnknownKid),
        "two ES256 keys: no guess"
    );
}

#[test]
fn an_unknown_kid_asks_for_a_refresh() {
    let s = Signer::es256("k");
    let a = action(&[&s], Vec::new());
    assert!(!a.keys.refresh_wanted());
    let stranger = Signer::es256("new");
    let token = bearer(&stranger.token(&claims(json!({}))));
    assert_eq!(check(&a, &[&token]), Err(Rejection::UnknownKid));
    assert!(a.keys.refresh_wanted());
}

#[test]
fn jwks_limits_and_unusable_keys() {
    let s = Signer::es256("k");
    // Over 10 keys, as ALB refuses.
    let many: Vec<Signer> = (0..11).map(|i| Signer::eddsa(&format!("k{i}"))).collect();
    let refs: Vec<&Signer> = many.iter().collect();
    assert_eq!(
        parse_jwks(jwks(&refs).to_string().as_bytes()).unwrap_err(),
        JwksError::TooManyKeys(11)
    );
    // Over 150 KB.
    let big = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(MAX_JWKS_BYTES)
    );
    assert!(matches!(
        parse_jwks(big.as_bytes()),
        Err(JwksError::TooLarge(_))
    ));
    assert!(matches!(parse_jwks(b"[]"), Err(JwksError::NotJwks(_))));
    // A secret, an encryption key and an unknown kind: nothing to verify with.
    let useless = json!({ "keys": [
        { "kty": "oct", "kid": "h", "k": "c2VjcmV0" },
        { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
        { "kty": "XYZ", "kid": "x" },
    ]});
    assert_eq!(
        parse_jwks(useless.to_string().as_bytes()).unwrap_err(),
        JwksError::NoUsableKey
    );
    // Skipped beside a usable key.
    let mut mixed = jwks(&[&s]);
    mixed["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "kty": "oct", "kid": "h", "k": "c2VjcmV0" }));
    let parsed = parse_jwks(mixed.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.len(), 1);
    // An HMAC token naming the secret's kid is refused for its algorithm.
    assert_eq!(
        parsed.find(Some("h"), Algorithm::ES256).err(),
        Some(keys::Miss::Algorithm)
    );
}

#[test]
fn the_challenge_follows_rfc_6750() {
    assert_eq!(Rejection::Missing.www_authenticate(), "Bearer");
    for r in [
        Rejection::Malformed,
        Rejection::BadAlgorithm,
        Rejection::UnknownKid,
        Rejection::BadSignature,
        Rejection::BadIssuer,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::ClaimMismatch,
    ] {
        assert!(
            r.www_authenticate()
                .starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{r:?}"
        );
        assert_eq!(RESULTS[r.index()], r.reason());
    }
}
