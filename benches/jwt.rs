//! A `jwt_validation` action's check of one request's bearer token, RS256 and ES256:
//! uncached (a token not seen before: header, key lookup, signature, claims) and
//! cached (the same token again: its SHA-256 and one map lookup).

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use tether::jwt::{parse_jwks, AdditionalClaim, ClaimFormat, JwksSource, JwtValidation, KeySet};

#[path = "../tests/common/jwt_keys.rs"]
mod jwt_keys;
use jwt_keys::{jwks, now, Signer};

// The allocator the tether binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://issuer.example.com";

/// An action with one additional claim (`scope` holding `read`), as the README's
/// example, over a key set holding `signer`'s key.
fn action(keys: &std::sync::Arc<KeySet>) -> JwtValidation {
    JwtValidation::new(
        ISSUER.to_string(),
        vec![AdditionalClaim {
            name: "scope".into(),
            format: ClaimFormat::SpaceSeparatedValues,
            values: vec!["read".into()],
        }],
        keys.clone(),
    )
}

fn bench(c: &mut Criterion) {
    for signer in [Signer::rs256("rsa-1"), Signer::es256("ec-1")] {
        let keys = KeySet::shared(JwksSource::File(format!("bench-{}", signer.alg()).into()));
        let parsed = parse_jwks(jwks(&[&signer]).to_string().as_bytes()).expect("jwks");
        keys.offer(parsed);
        // A typical access token: ~10 claims.
        let token = signer.token(&json!({
            "iss": ISSUER, "sub": "svc-orders", "aud": "api", "client_id": "svc-orders",
            "scope": "openid read write", "exp": now() + 3600, "iat": now(), "nbf": now(),
            "jti": "5f1c0e9a-8d44-4f39-9b7b-2f0c8c1e6a11", "token_use": "access",
        }));
        let line = format!("Bearer {token}");
        let header = [line.as_bytes()];
        let cached = action(&keys);
        assert!(cached
            .check(header.iter().copied(), SystemTime::now())
            .is_ok());
        c.bench_function(&format!("jwt_{}_cached", signer.alg()), |b| {
            b.iter(|| black_box(cached.check(black_box(header.iter().copied()), SystemTime::now())))
        });
        c.bench_function(&format!("jwt_{}_uncached", signer.alg()), |b| {
            b.iter_batched(
                // A fresh action: an empty cache, so the signature is checked.
                || action(&keys),
                |fresh| {
                    let r = fresh.check(black_box(header.iter().copied()), SystemTime::now());
                    // Returned, so that dropping the action is not timed.
                    (fresh, black_box(r))
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
