//! Tokens that passed, so that a token's signature is checked once: keyed by the
//! token's SHA-256, bounded, each entry good until the token's `exp` (plus the
//! leeway) and only under the JWKS it was verified with.
//!
//! A hit skips the signature and the claims: both are the same for the same token
//! under the same action and keys, and a token that was valid stays valid until its
//! `exp` (`nbf` and `iat` only move from the future into the past). Only tokens that
//! passed are kept, so a flood of bad tokens cannot push the good ones out.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A token's cache key.
pub(super) type TokenDigest = [u8; 32];

/// The SHA-256 of `token`: a collision (a forged token taken for a verified one) is
/// out of reach, where a 64-bit hash would not be.
pub(super) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Unix seconds at which the token stops being valid.
    expires: u64,
    /// The JWKS generation it was verified under.
    generation: u64,
}

/// The verified tokens of one action.
pub(super) struct TokenCache {
    entries: parking_lot::Mutex<HashMap<TokenDigest, Entry>>,
    capacity: usize,
}

impl TokenCache {
    pub(super) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: parking_lot::Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether the token was verified under JWKS `generation` and is still valid at
    /// `now`. An entry from other keys or past its time is dropped.
    pub(super) fn get(&self, token: &TokenDigest, now: u64, generation: u64) -> bool {
        let mut entries = self.entries.lock();
        match entries.get(token) {
            Some(e) if e.generation == generation && now < e.expires => true,
            Some(_) => {
                entries.remove(token);
                false
            }
            None => false,
        }
    }

    /// Remembers a token verified under JWKS `generation`, valid until `expires`. A
    /// full cache first drops what is stale; if still full, an eighth of it (the
    /// entries the map happens to list first: no order to keep up on every hit).
    pub(super) fn insert(&self, token: TokenDigest, expires: u64, generation: u64, now: u64) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&token) {
            entries.retain(|_, e| e.generation == generation && now < e.expires);
            if entries.len() >= self.capacity {
                let drop: Vec<TokenDigest> = entries
                    .keys()
                    .take((self.capacity / 8).max(1))
                    .copied()
                    .collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            token,
            Entry {
                expires,
                generation,
            },
        );
    }

    /// How many tokens it holds.
    pub(super) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_hit_until_it_expires_and_only_under_its_keys() {
        let c = TokenCache::new(10);
        let t = digest("a.b.c");
        assert!(!c.get(&t, 100, 1));
        c.insert(t, 200, 1, 100);
        assert!(c.get(&t, 199, 1));
        assert!(!c.get(&t, 150, 2), "other keys: verified again");
        assert!(!c.get(&t, 150, 1), "the stale entry was dropped");
        c.insert(t, 200, 1, 100);
        assert!(!c.get(&t, 200, 1), "expired");
    }

    #[test]
    fn a_full_cache_stays_within_its_bound() {
        let c = TokenCache::new(16);
        for i in 0..1000 {
            c.insert(digest(&format!("t{i}")), 1_000, 1, 0);
            assert!(c.len() <= 16);
        }
        // The newest is always kept.
        assert!(c.get(&digest("t999"), 0, 1));
        // Stale entries go first.
        let c = TokenCache::new(4);
        for i in 0..4 {
            c.insert(digest(&format!("old{i}")), 10, 1, 0);
        }
        c.insert(digest("fresh"), 1_000, 1, 50);
        assert_eq!(c.len(), 1);
    }
}
