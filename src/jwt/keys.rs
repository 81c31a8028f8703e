//! JWKS: parsed with `jsonwebtoken`'s `jwk` types under ALB's limits, and published
//! as [`KeySet`] snapshots that the data path reads without a lock.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// ALB's largest JWKS response.
pub const MAX_JWKS_BYTES: usize = 150 * 1024;

/// ALB's most keys in a JWKS.
pub const MAX_JWKS_KEYS: usize = 10;

/// Where an action's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksSource {
    /// `jwks_endpoint`: fetched over HTTPS (HTTP on loopback).
    Endpoint(String),
    /// `jwks_file` (beyond ALB): read, and read again when it changes.
    File(PathBuf),
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::Endpoint(url) => f.write_str(url),
            JwksSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a JWKS was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is {0} bytes: ALB takes at most 150 KB")]
    TooLarge(usize),
    #[error("not a JWKS (a JSON object with a \"keys\" array): {0}")]
    NotJwks(String),
    #[error("the JWKS has {0} keys: ALB takes at most 10")]
    TooManyKeys(usize),
    #[error("the JWKS has no signature key tether verifies with (RSA for RS256, EC P-256 for ES256, OKP Ed25519 for EdDSA)")]
    NoUsableKey,
}

/// One key of a JWKS.
struct Key {
    kid: Option<String>,
    /// The one algorithm it verifies, or `None` for a key tether does not verify with
    /// (kept so that a token naming it is refused for its algorithm, not its `kid`).
    alg: Option<Algorithm>,
    key: Option<DecodingKey>,
}

/// A JWKS as tether uses it: each key with the algorithm it verifies.
pub struct Jwks {
    /// Unique per JWKS taken: a verified token is remembered with it, so a change of
    /// keys forgets every token verified before.
    generation: u64,
    keys: Vec<Key>,
    /// The keys as published, to tell a JWKS fetched again from a new one.
    published: Vec<Jwk>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("generation", &self.generation)
            .field(
                "kids",
                &self
                    .keys
                    .iter()
                    .map(|k| k.kid.as_deref())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why no key fits a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Miss {
    /// No key has the token's `kid` (or, without one, no single key fits).
    Kid,
    /// The `kid`'s key is for another algorithm than the token's `alg`.
    Algorithm,
}

fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Jwks {
    /// No keys (a JWKS endpoint not fetched yet): every token is refused.
    pub fn empty() -> Jwks {
        Jwks {
            generation: 0,
            keys: Vec::new(),
            published: Vec::new(),
        }
    }

    /// This JWKS's generation: a new one for every JWKS taken.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of keys tether verifies with.
    pub fn len(&self) -> usize {
        self.keys.iter().filter(|k| k.alg.is_some()).count()
    }

    /// Whether it has no key tether verifies with.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for a token's `kid` and `alg`. A token without `kid` takes the one key
    /// of its algorithm when there is exactly one (AWS does not say; an identity
    /// provider with one key may leave `kid` out), never a guess among several.
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&DecodingKey, Miss> {
        let fits = |k: &&Key| k.alg == Some(alg);
        let found = match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(Miss::Kid);
                }
                named.find(fits).ok_or(Miss::Algorithm)?
            }
            None => {
                let mut fit = self.keys.iter().filter(fits);
                match (fit.next(), fit.next()) {
                    (Some(k), None) => k,
                    _ => return Err(Miss::Kid),
                }
            }
        };
        found.key.as_ref().ok_or(Miss::Algorithm)
    }
}

/// The algorithm a JWK verifies, and its key: RSA for RS256, EC P-256 for ES256,
/// OKP Ed25519 for EdDSA. A key whose `alg` names another algorithm (PS256, RS512),
/// an encryption key (`use: enc`), a secret (`oct`: a published secret is no
/// secret) or another curve gets `None`.
fn usable(jwk: &Jwk) -> Option<(Algorithm, DecodingKey)> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let (alg, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|key| (alg, key))
}

/// Parses a JWKS under ALB's limits (150 KB, 10 keys). Keys of kinds tether does
/// not know are skipped; a JWKS with no key tether verifies with is refused.
pub fn parse_jwks(bytes: &[u8]) -> Result<Jwks, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge(bytes.len()));
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| JwksError::NotJwks(e.to_string()))?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys(set.keys.len()));
    }
    let mut keys = Vec::new();
    let mut published = Vec::new();
    for value in set.keys {
        // A key of a kind `jsonwebtoken` does not model is not one tether verifies with.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let (alg, key) = usable(&jwk).unzip();
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
        published.push(jwk);
    }
    if keys.iter().all(|k| k.alg.is_none()) {
        return Err(JwksError::NoUsableKey);
    }
    Ok(Jwks {
        generation: next_generation(),
        keys,
        published,
    })
}

// === Key sets ===

/// What the refresher knows of a key set (only it touches this).
#[derive(Debug, Default)]
pub(super) struct RefreshState {
    /// The last fetch or read, whatever came of it.
    pub(super) last_attempt: Option<Instant>,
    /// Fetches failed in a row.
    pub(super) failures: u32,
    /// A file's modification time and length when last read.
    pub(super) file_stamp: Option<(SystemTime, u64)>,
}

/// The keys of one JWKS source, shared by every action that names it and read by
/// the data path as a snapshot ([`KeySet::snapshot`]). The refresher
/// ([`super::fetch`]) replaces the snapshot; a failed fetch leaves it as it is.
pub struct KeySet {
    source: JwksSource,
    jwks: ArcSwap<Jwks>,
    /// A token named a `kid` no key has: the refresher fetches again soon.
    refresh_wanted: AtomicBool,
    pub(super) refresh: parking_lot::Mutex<RefreshState>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
            .field("jwks", &**self.jwks.load())
            .finish()
    }
}

/// Every key set alive, and the refresher's wake-up.
struct Registry {
    sets: parking_lot::Mutex<Vec<Weak<KeySet>>>,
    wake: tokio::sync::Notify,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        sets: parking_lot::Mutex::new(Vec::new()),
        wake: tokio::sync::Notify::new(),
    })
}

/// The key sets some action still uses.
pub(super) fn live() -> Vec<Arc<KeySet>> {
    let mut sets = registry().sets.lock();
    sets.retain(|w| w.strong_count() > 0);
    sets.iter().filter_map(Weak::upgrade).collect()
}

/// Woken when a key set is made or wants a refresh.
pub(super) fn wake() -> &'static tokio::sync::Notify {
    &registry().wake
}

impl KeySet {
    /// The key set of `source`: the one in use if an action already names it (a
    /// reload keeps the keys it fetched), else a new, empty one that the refresher
    /// fills.
    pub fn shared(source: JwksSource) -> Arc<KeySet> {
        let mut sets = registry().sets.lock();
        sets.retain(|w| w.strong_count() > 0);
        if let Some(set) = sets
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.source == source)
        {
            return set;
        }
        let set = Arc::new(KeySet {
            source,
            jwks: ArcSwap::from_pointee(Jwks::empty()),
            refresh_wanted: AtomicBool::new(false),
            refresh: parking_lot::Mutex::new(RefreshState::default()),
        });
        sets.push(Arc::downgrade(&set));
        drop(sets);
        registry().wake.notify_one();
        set
    }

    /// Where its keys come from.
    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The keys in force now: a lock-free read, never waiting on a fetch.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Jwks>> {
        self.jwks.load()
    }

    /// Puts `jwks` in force unless it has the same keys as the JWKS in force (a
    /// periodic fetch that finds nothing new keeps the verified tokens); returns
    /// whether the keys changed.
    pub fn offer(&self, jwks: Jwks) -> bool {
        let current = self.jwks.load();
        if current.generation != 0 && current.published == jwks.published {
            return false;
        }
        self.jwks.store(Arc::new(jwks));
        true
    }

    /// Asks the refresher for a fetch soon (a token named an unknown `kid`: the
    /// issuer may have rotated its keys). Cheap, and rate-limited by the refresher.
    pub fn want_refresh(&self) {
        if !self.refresh_wanted.swap(true, Ordering::Relaxed) {
            registry().wake.notify_one();
        }
    }

    /// Takes the refresh wish (the refresher is fetching).
    pub(super) fn take_refresh_wanted(&self) -> bool {
        self.refresh_wanted.swap(false, Ordering::Relaxed)
    }

    /// Whether a refresh was asked for.
    pub(super) fn refresh_wanted(&self) -> bool {
        self.refresh_wanted.load(Ordering::Relaxed)
    }
}
