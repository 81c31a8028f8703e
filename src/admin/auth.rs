//! Who may write through the admin API. Reads (the status page, `/targets`,
//! `/healthz`) are open; writes (`POST /reload`, and any later one) need
//! `Authorization: Bearer <admin_token>` whenever a token is set. Config validation
//! makes a token mandatory on an admin address that is not loopback; when one is
//! set it is required on loopback too, so that setting it always means something.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminToken;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer` header, or one with another token (401).
    #[error("this admin API needs Authorization: Bearer <admin_token> for writes")]
    Unauthorized,
    /// An admin API reachable from elsewhere with no token: config validation
    /// refuses it, so this only guards against a bypassed check (403).
    #[error("the admin address is not loopback and no admin_token is set: writes are off")]
    NoTokenOffLoopback,
}

/// May a write with `authorization` (the header's value, if any) go ahead on the
/// admin API bound at `admin`, with `token` in force?
pub fn authorize_write(
    admin: SocketAddr,
    token: Option<&AdminToken>,
    authorization: Option<&[u8]>,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        if admin.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        return Err(Refusal::NoTokenOffLoopback);
    };
    let presented = authorization
        .and_then(bearer)
        .ok_or(Refusal::Unauthorized)?;
    if same_secret(presented, token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// The credentials of `Bearer <token>` (the scheme is case-insensitive, RFC 9110).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Compares two secrets in constant time. Both are hashed first, so that the time
/// does not depend on where they differ nor on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn loopback() -> SocketAddr {
        "127.0.0.1:9900".parse().unwrap()
    }

    fn exposed() -> SocketAddr {
        "0.0.0.0:9900".parse().unwrap()
    }

    #[test]
    fn it_should_let_writes_through_on_loopback_without_a_token() {
        assert_eq!(authorize_write(loopback(), None, None), Ok(()));
    }

    #[test]
    fn it_should_refuse_writes_off_loopback_without_a_token_whatever_is_sent() {
        for auth in [None, Some(b"Bearer anything".as_slice())] {
            assert_eq!(
                authorize_write(exposed(), None, auth),
                Err(Refusal::NoTokenOffLoopback)
            );
        }
    }

    #[test]
    fn it_should_require_the_token_once_set_on_loopback_too() {
        let token = AdminToken::new(TOKEN);
        for addr in [loopback(), exposed()] {
            assert_eq!(
                authorize_write(addr, Some(&token), None),
                Err(Refusal::Unauthorized)
            );
            let right = format!("Bearer {TOKEN}");
            assert_eq!(
                authorize_write(addr, Some(&token), Some(right.as_bytes())),
                Ok(())
            );
        }
    }

    #[test]
    fn it_should_refuse_a_wrong_token_a_prefix_of_it_or_another_scheme() {
        let token = AdminToken::new(TOKEN);
        let wrong = [
            "Bearer 0123456789abcdef-tokeN".to_string(),
            "Bearer 0123456789abcdef-toke".to_string(),
            format!("Bearer {TOKEN}x"),
            "Bearer ".to_string(),
            format!("Basic {TOKEN}"),
            TOKEN.to_string(),
            format!("Bearer{TOKEN}"),
        ];
        for w in wrong {
            assert_eq!(
                authorize_write(loopback(), Some(&token), Some(w.as_bytes())),
                Err(Refusal::Unauthorized),
                "{w}"
            );
        }
    }

    #[test]
    fn it_should_take_the_scheme_in_any_case() {
        let token = AdminToken::new(TOKEN);
        let auth = format!("bearer   {TOKEN} ");
        assert_eq!(
            authorize_write(loopback(), Some(&token), Some(auth.as_bytes())),
            Ok(())
        );
    }
}
