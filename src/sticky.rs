//! Sticky sessions: sealed pins (`AWSALB`, `AWSALBTG`, `AWSALBAPP-0`), the key ring
//! that seals and opens them, and the cookie names and attributes ALB uses.
//!
//! A pin names a target group, optionally a target, and the time it was issued. It is
//! sealed with AES-256-GCM (the AEAD the `cookie` crate's private jar uses) under a key
//! derived with HKDF-SHA256 from the configured key material, with the cookie's
//! purpose as associated data, so a value cannot be read, forged, or moved from one
//! cookie to another. The first key seals; every key opens (rotation).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;

/// Cookie names ALB uses.
pub const AWSALB: &str = "AWSALB";
pub const AWSALBCORS: &str = "AWSALBCORS";
pub const AWSALBTG: &str = "AWSALBTG";
pub const AWSALBTGCORS: &str = "AWSALBTGCORS";
pub const AWSALBAPP: &str = "AWSALBAPP-0";

/// Prefixes an application cookie may not use.
pub const RESERVED_PREFIXES: [&str; 3] = ["AWSALB", "AWSALBAPP", "AWSALBTG"];

/// The client-side expiry ALB always sets, whatever the stickiness duration.
pub const CLIENT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Smallest key material accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Pins issued this far in the future are refused (clock skew between replicas).
const MAX_SKEW_SECS: u64 = 300;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// What a sealed value is for; bound to the value as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `AWSALB` / `AWSALBCORS`: a target of a group.
    LbCookie,
    /// `AWSALBAPP-0`: a target of a group, next to the application's own cookie.
    AppCookie,
    /// `AWSALBTG` / `AWSALBTGCORS`: a target group of a weighted forward.
    TargetGroup,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::LbCookie => b"tether AWSALB",
            Purpose::AppCookie => b"tether AWSALBAPP",
            Purpose::TargetGroup => b"tether AWSALBTG",
        }
    }
}

/// The content of a sealed cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub group: String,
    pub target: Option<SocketAddr>,
    /// Seconds since the Unix epoch.
    pub issued: u64,
}

impl Pin {
    /// Whether the pin is still within `duration` of its issue time at `now`.
    pub fn is_fresh(&self, now: u64, duration: Duration) -> bool {
        self.issued <= now + MAX_SKEW_SECS && now.saturating_sub(self.issued) <= duration.as_secs()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.issued.to_be_bytes());
        match self.target {
            None => out.push(0),
            Some(SocketAddr::V4(a)) => {
                out.push(4);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
            Some(SocketAddr::V6(a)) => {
                out.push(6);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        out.extend_from_slice(self.group.as_bytes());
    }

    fn decode(b: &[u8]) -> Option<Pin> {
        let (&version, b) = b.split_first()?;
        if version != VERSION {
            return None;
        }
        let issued = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let (&kind, b) = b.get(8..)?.split_first()?;
        let (target, rest) = match kind {
            0 => (None, b),
            4 => {
                let ip: [u8; 4] = b.get(..4)?.try_into().ok()?;
                let port = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
                (Some(SocketAddr::new(IpAddr::from(ip), port)), b.get(6..)?)
            }
            6 => {
                let ip: [u8; 16] = b.get(..16)?.try_into().ok()?;
                let port = u16::from_be_bytes(b.get(16..18)?.try_into().ok()?);
                (Some(SocketAddr::new(IpAddr::from(ip), port)), b.get(18..)?)
            }
            _ => return None,
        };
        let group = std::str::from_utf8(rest).ok()?.to_string();
        Some(Pin {
            group,
            target,
            issued,
        })
    }
}

// === Key material ===

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key material is neither hex nor base64")]
    NotHexOrBase64,
    #[error("key material is {0} bytes; at least {MIN_KEY_BYTES} random bytes are needed")]
    TooShort(usize),
}

/// Decodes key material written as hex or base64 (standard or URL-safe, padded or
/// not) and checks its length.
pub fn decode_key_material(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let bytes = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| KeyError::NotHexOrBase64)?
    } else {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or(KeyError::NotHexOrBase64)?
    };
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort(bytes.len()));
    }
    Ok(bytes)
}

/// Derives the AEAD key from key material.
fn derive_key(material: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"tether sticky cookie v1"), material);
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
    let _ = hk.expand(b"aes-256-gcm", &mut key);
    key
}

// === impl KeyRing ===

/// Keys that seal (the first) and open (all) sticky values.
#[derive(Clone)]
pub struct KeyRing {
    ciphers: Vec<Aes256Gcm>,
    /// Whether the key was made at start (replicas will not share sessions).
    pub ephemeral: bool,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.ciphers.len())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl KeyRing {
    /// From decoded key materials, newest first. `None` when the list is empty.
    pub fn new(materials: &[Vec<u8>]) -> Option<KeyRing> {
        if materials.is_empty() {
            return None;
        }
        let ciphers = materials
            .iter()
            .map(|m| Aes256Gcm::new(&derive_key(m).into()))
            .collect();
        Some(KeyRing {
            ciphers,
            ephemeral: false,
        })
    }

    /// A fresh random key, for when none is configured.
    pub fn random() -> KeyRing {
        let mut material = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut material);
        KeyRing {
            ciphers: vec![Aes256Gcm::new(&derive_key(&material).into())],
            ephemeral: true,
        }
    }

    /// Seals a pin into a cookie-safe string (base64url, no padding).
    pub fn seal(&self, purpose: Purpose, pin: &Pin) -> String {
        let mut plain = Vec::with_capacity(32 + pin.group.len());
        pin.encode(&mut plain);
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: purpose.aad(),
                },
            )
            // AES-GCM encryption fails only for messages of gigabytes.
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Opens a sealed value. Anything tampered, truncated, sealed by an unknown key or
    /// for another purpose opens to `None`; it never panics.
    pub fn open(&self, purpose: Purpose, value: &str) -> Option<Pin> {
        self.open_keyed(purpose, value).map(|(pin, _)| pin)
    }

    /// As [`KeyRing::open`], and whether the first key (the one that seals) opened it.
    pub fn open_keyed(&self, purpose: Purpose, value: &str) -> Option<(Pin, bool)> {
        if value.len() > 512 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.ciphers.iter().enumerate().find_map(|(i, c)| {
            let plain = c
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: purpose.aad(),
                    },
                )
                .ok()?;
            Pin::decode(&plain).map(|pin| (pin, i == 0))
        })
    }
}

// === Cookies ===

/// The value of the first cookie called `name` in the request's `Cookie` headers.
pub fn request_cookie<'a>(headers: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    request_cookie_or(headers, name, name)
}

/// The value of cookie `name` in the request's `Cookie` headers, else that of
/// `fallback` (`AWSALB`, else `AWSALBCORS`): one pass over the bytes, validating only
/// the value returned (per-request code: the whole header's `to_str`, twice, cost more
/// than opening the cookie).
pub fn request_cookie_or<'a>(
    headers: impl Iterator<Item = &'a [u8]>,
    name: &str,
    fallback: &str,
) -> Option<&'a str> {
    let mut second = None;
    for h in headers {
        for pair in h.split(|b| *b == b';') {
            let pair = pair.trim_ascii_start();
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (key, value) = (&pair[..eq], pair[eq + 1..].trim_ascii_end());
            let is_name = key == name.as_bytes();
            if is_name || (second.is_none() && key == fallback.as_bytes()) {
                let mut v = value;
                while let [b'"', rest @ ..] = v {
                    v = rest;
                }
                while let [rest @ .., b'"'] = v {
                    v = rest;
                }
                let v = std::str::from_utf8(v).ok();
                if is_name {
                    return v;
                }
                second = v;
            }
        }
    }
    second
}

/// Whether a `Set-Cookie` header value sets the cookie `name`.
pub fn sets_cookie(set_cookie: &[u8], name: &str) -> bool {
    set_cookie
        .split(|b| *b == b'=')
        .next()
        .is_some_and(|k| k.trim_ascii() == name.as_bytes())
}

/// Attributes added to a sticky cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookieFlags {
    pub secure: bool,
    pub http_only: bool,
    /// `SameSite=None; Secure`, for the CORS twin.
    pub cross_site: bool,
}

/// The `Expires` date ALB sets (a week from `now`), formatted once per second per
/// thread: formatting an HTTP date costs more than sealing the cookie.
pub fn expires(now: SystemTime) -> std::rc::Rc<str> {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, std::rc::Rc<str>)> =
            std::cell::RefCell::new((u64::MAX, std::rc::Rc::from("")));
    }
    let secs = unix_now(now);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, httpdate::fmt_http_date(now + CLIENT_EXPIRY).into());
        }
        c.1.clone()
    })
}

/// A `Set-Cookie` value as ALB writes it: `Expires` (from [`expires`]), `Path=/`.
pub fn set_cookie(name: &str, value: &str, expires: &str, flags: CookieFlags) -> String {
    let mut out = Vec::with_capacity(name.len() + value.len() + 80);
    write_set_cookie(&mut out, name, value, expires, flags);
    // Written from `&str`s and ASCII: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a `Set-Cookie` value (as [`set_cookie`]) to `out`, with no formatting
/// machinery: it is written on every sticky response.
pub fn write_set_cookie(
    out: &mut Vec<u8>,
    name: &str,
    value: &str,
    expires: &str,
    flags: CookieFlags,
) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"; Expires=");
    out.extend_from_slice(expires.as_bytes());
    out.extend_from_slice(b"; Path=/");
    if flags.cross_site {
        out.extend_from_slice(b"; SameSite=None; Secure");
    } else if flags.secure {
        out.extend_from_slice(b"; Secure");
    }
    if flags.http_only {
        out.extend_from_slice(b"; HttpOnly");
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(&[vec![seed; 32]]).unwrap()
    }

    fn pin() -> Pin {
        Pin {
            group: "socket".into(),
            target: Some("10.0.1.12:3000".parse().unwrap()),
            issued: 1_700_000_000,
        }
    }

    #[test]
    fn a_sealed_pin_opens_to_itself() {
        let k = ring(1);
        let v = k.seal(Purpose::LbCookie, &pin());
        assert_eq!(k.open(Purpose::LbCookie, &v), Some(pin()));
        let v6 = Pin {
            target: Some("[2001:db8::1]:443".parse().unwrap()),
            ..pin()
        };
        assert_eq!(
            k.open(Purpose::LbCookie, &k.seal(Purpose::LbCookie, &v6)),
            Some(v6)
        );
        let tg = Pin {
            target: None,
            ..pin()
        };
        assert_eq!(
            k.open(Purpose::TargetGroup, &k.seal(Purpose::TargetGroup, &tg)),
            Some(tg)
        );
    }

    #[test]
    fn the_value_is_opaque_and_never_repeats() {
        let k = ring(1);
        let a = k.seal(Purpose::LbCookie, &pin());
        let b = k.seal(Purpose::LbCookie, &pin());
        assert_ne!(a, b);
        assert!(!a.contains("socket"));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn a_value_sealed_for_one_purpose_does_not_open_for_another() {
        let k = ring(1);
        let v = k.seal(Purpose::LbCookie, &pin());
        assert_eq!(k.open(Purpose::AppCookie, &v), None);
        assert_eq!(k.open(Purpose::TargetGroup, &v), None);
    }

    #[test]
    fn another_key_does_not_open_but_a_rotated_ring_does() {
        let old = ring(1);
        let v = old.seal(Purpose::LbCookie, &pin());
        assert_eq!(ring(2).open(Purpose::LbCookie, &v), None);
        let rotated = KeyRing::new(&[vec![2; 32], vec![1; 32]]).unwrap();
        assert_eq!(rotated.open(Purpose::LbCookie, &v), Some(pin()));
        // New values are sealed with the newest key only.
        let fresh = rotated.seal(Purpose::LbCookie, &pin());
        assert_eq!(old.open(Purpose::LbCookie, &fresh), None);
        assert_eq!(ring(2).open(Purpose::LbCookie, &fresh), Some(pin()));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_opens_to_none() {
        let k = ring(1);
        let v = k.seal(Purpose::LbCookie, &pin());
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&v)
            .unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let tv = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&t);
                assert_eq!(k.open(Purpose::LbCookie, &tv), None, "byte {i} bit {bit}");
            }
        }
        for n in 0..v.len() {
            assert_eq!(k.open(Purpose::LbCookie, &v[..n]), None, "truncated to {n}");
        }
    }

    #[test]
    fn freshness_follows_the_duration() {
        let p = pin();
        let day = Duration::from_secs(86400);
        assert!(p.is_fresh(p.issued, day));
        assert!(p.is_fresh(p.issued + 86400, day));
        assert!(!p.is_fresh(p.issued + 86401, day));
        assert!(
            !p.is_fresh(p.issued - MAX_SKEW_SECS - 1, day),
            "issued in the future"
        );
    }

    #[test]
    fn key_material_must_be_long_hex_or_base64() {
        assert_eq!(decode_key_material(&"ab".repeat(32)).unwrap().len(), 32);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 48]);
        assert_eq!(decode_key_material(&b64).unwrap().len(), 48);
        assert_eq!(
            decode_key_material(&"ab".repeat(16)),
            Err(KeyError::TooShort(16))
        );
        assert_eq!(
            decode_key_material("not a key!"),
            Err(KeyError::NotHexOrBase64)
        );
    }

    #[test]
    fn request_cookies_are_found_among_others() {
        let h: &[u8] = b"a=1; AWSALB=xyz; AWSALBCORS=xyz";
        let h2: &[u8] = b"JSESSIONID=\"q\"";
        assert_eq!(request_cookie([h].into_iter(), "AWSALB"), Some("xyz"));
        let both: &[u8] = b"AWSALBCORS=cors; x=1; AWSALB=main";
        let cors_only: &[u8] = b"a=\"q\"; AWSALBCORS=\"cors\" ";
        assert_eq!(
            request_cookie_or([both].into_iter(), AWSALB, AWSALBCORS),
            Some("main")
        );
        assert_eq!(
            request_cookie_or([cors_only].into_iter(), AWSALB, AWSALBCORS),
            Some("cors")
        );
        assert_eq!(request_cookie([cors_only].into_iter(), "a"), Some("q"));
        assert_eq!(request_cookie([cors_only].into_iter(), "AWSALB"), None);
        assert_eq!(request_cookie([h, h2].into_iter(), "JSESSIONID"), Some("q"));
        assert_eq!(request_cookie([h].into_iter(), "AWSAL"), None);
        assert!(sets_cookie(b"JSESSIONID=1; Path=/", "JSESSIONID"));
        assert!(!sets_cookie(b"JSESSIONIDX=1", "JSESSIONID"));
    }

    #[test]
    fn set_cookie_has_alb_attributes() {
        let now = expires(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let now = &*now;
        let c = set_cookie("AWSALB", "v", now, CookieFlags::default());
        assert_eq!(c, "AWSALB=v; Expires=Tue, 21 Nov 2023 22:13:20 GMT; Path=/");
        assert_eq!(
            &*expires(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "Tue, 21 Nov 2023 22:13:20 GMT"
        );
        let cors = set_cookie(
            "AWSALBCORS",
            "v",
            now,
            CookieFlags {
                cross_site: true,
                ..Default::default()
            },
        );
        assert!(cors.ends_with("; Path=/; SameSite=None; Secure"));
        let opt = set_cookie(
            "AWSALB",
            "v",
            now,
            CookieFlags {
                secure: true,
                http_only: true,
                cross_site: false,
            },
        );
        assert!(opt.ends_with("; Path=/; Secure; HttpOnly"));
        assert!(!c.contains("Max-Age"));
    }

    proptest! {
        #[test]
        fn random_values_never_panic_and_never_open(s in ".{0,600}") {
            prop_assert_eq!(ring(3).open(Purpose::LbCookie, &s), None);
        }

        #[test]
        fn random_base64_never_opens(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let v = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            prop_assert_eq!(ring(3).open(Purpose::LbCookie, &v), None);
        }

        #[test]
        fn any_pin_round_trips(group in "[a-z0-9_-]{1,32}", ip in any::<[u8; 4]>(), port in 1u16.., issued in any::<u64>()) {
            let k = ring(4);
            let p = Pin { group, target: Some(SocketAddr::from((ip, port))), issued };
            prop_assert_eq!(k.open(Purpose::LbCookie, &k.seal(Purpose::LbCookie, &p)), Some(p));
        }
    }
}
