//! Signing keys made at test time (ECDSA P-256, Ed25519) or read from the checked-in
//! RSA test key (ring cannot generate RSA keys), their JWKs, and JWTs signed with
//! them, written by hand so that tests can also make what no library would sign
//! (`alg: none`, a forged signature, a header without `kid`).
//!
//! Included by path (`#[path = …] mod jwt_keys;`) by the JWT tests, the library's
//! unit tests and the bench; it needs only ring, base64 and serde_json.
#![allow(dead_code)]

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{json, Value};

/// base64url without padding, as JOSE writes it.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key that signs JWTs, with its `kid`.
pub enum Signer {
    Rs256(signature::RsaKeyPair, String),
    Es256(signature::EcdsaKeyPair, String),
    EdDsa(signature::Ed25519KeyPair, String),
}

/// The checked-in 2048-bit RSA key (tests/data/rsa2048.pkcs8.key), as PKCS#8 DER.
fn rsa_pkcs8() -> Vec<u8> {
    let pem = include_str!("../data/rsa2048.pkcs8.key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("test key base64")
}

impl Signer {
    /// The RSA test key, for RS256.
    pub fn rs256(kid: &str) -> Signer {
        let key = signature::RsaKeyPair::from_pkcs8(&rsa_pkcs8()).expect("rsa key");
        Signer::Rs256(key, kid.to_string())
    }

    /// A new P-256 key, for ES256.
    pub fn es256(kid: &str) -> Signer {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec key");
        let key = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec key");
        Signer::Es256(key, kid.to_string())
    }

    /// A new Ed25519 key, for EdDSA.
    pub fn eddsa(kid: &str) -> Signer {
        let pkcs8 =
            signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed key");
        let key = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed key");
        Signer::EdDsa(key, kid.to_string())
    }

    pub fn kid(&self) -> &str {
        match self {
            Signer::Rs256(_, k) | Signer::Es256(_, k) | Signer::EdDsa(_, k) => k,
        }
    }

    /// The JOSE `alg` it signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Rs256(..) => "RS256",
            Signer::Es256(..) => "ES256",
            Signer::EdDsa(..) => "EdDSA",
        }
    }

    /// Its public key as a JWK (with `kid`, `use: sig` and `alg`).
    pub fn jwk(&self) -> Value {
        match self {
            Signer::Rs256(key, kid) => {
                let c: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
                json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&c.n), "e": b64(&c.e) })
            }
            Signer::Es256(key, kid) => {
                // Uncompressed point: 0x04 || x || y.
                let p = key.public_key().as_ref();
                json!({ "kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65]) })
            }
            Signer::EdDsa(key, kid) => {
                json!({ "kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64(key.public_key().as_ref()) })
            }
        }
    }

    /// The raw signature of `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rs256(key, _) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("rsa sign");
                sig
            }
            Signer::Es256(key, _) => key.sign(&rng, message).expect("ec sign").as_ref().to_vec(),
            Signer::EdDsa(key, _) => key.sign(message).as_ref().to_vec(),
        }
    }

    /// A JWT of `claims` with the usual header (`alg`, `kid`, `typ`).
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg(), "kid": self.kid(), "typ": "JWT" });
        self.token_with_header(&header, claims)
    }

    /// A JWT of `claims` under `header` as given, signed with this key.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign_bytes(message.as_bytes());
        format!("{message}.{}", b64(&sig))
    }
}

/// A JWKS of these keys' JWKs.
pub fn jwks(signers: &[&Signer]) -> Value {
    json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() })
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An `alg: none` token (no signature) of `claims`.
pub fn unsigned_token(kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "none", "kid": kid, "typ": "JWT" });
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}
