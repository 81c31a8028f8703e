//! The TLS session of an HTTPS client connection as ALB names it in
//! `X-Amzn-Tls-Version` and `X-Amzn-Tls-Cipher-Suite`: OpenSSL's names
//! (`TLSv1.2`, `ECDHE-RSA-AES128-GCM-SHA256`, `TLS_AES_128_GCM_SHA256`), the ones in
//! ALB's security policies and access logs. rustls names them its own way
//! (`TLSv1_2`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`), so they are mapped once per
//! connection, to static strings.

/// A negotiated protocol version and cipher suite, in OpenSSL's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSession {
    pub version: &'static str,
    pub cipher_suite: &'static str,
}

impl TlsSession {
    /// The session from rustls's names of the version and suite (as pingora's
    /// `SslDigest` carries them); `None` for a name without an OpenSSL one.
    pub fn from_rustls(version: &str, cipher_suite: &str) -> Option<TlsSession> {
        Some(TlsSession {
            version: openssl_version(version)?,
            cipher_suite: openssl_cipher(cipher_suite)?,
        })
    }
}

fn openssl_version(rustls: &str) -> Option<&'static str> {
    Some(match rustls {
        "TLSv1_3" | "TLSv1.3" => "TLSv1.3",
        "TLSv1_2" | "TLSv1.2" => "TLSv1.2",
        "TLSv1_1" | "TLSv1.1" => "TLSv1.1",
        "TLSv1_0" | "TLSv1" => "TLSv1",
        _ => return None,
    })
}

/// The suites rustls implements (AEAD only), by their IANA names as rustls spells
/// them, and OpenSSL's names for them.
const CIPHERS: &[(&str, &str)] = &[
    ("TLS13_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("TLS13_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    (
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

fn openssl_cipher(rustls: &str) -> Option<&'static str> {
    CIPHERS
        .iter()
        .find(|(r, _)| *r == rustls)
        .map(|(_, openssl)| *openssl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_name_sessions_as_openssl_does() {
        let s = TlsSession::from_rustls("TLSv1_2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(
            s,
            Some(TlsSession {
                version: "TLSv1.2",
                cipher_suite: "ECDHE-RSA-AES128-GCM-SHA256"
            })
        );
        let s = TlsSession::from_rustls("TLSv1_3", "TLS13_AES_256_GCM_SHA384");
        assert_eq!(s.map(|s| s.cipher_suite), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(s.map(|s| s.version), Some("TLSv1.3"));
        assert_eq!(
            TlsSession::from_rustls("SSLv3", "TLS13_AES_256_GCM_SHA384"),
            None
        );
    }

    #[test]
    fn every_suite_rustls_offers_has_an_openssl_name() {
        let provider = rustls::crypto::ring::default_provider();
        for suite in provider.cipher_suites {
            let name = suite.suite().as_str().unwrap_or("?");
            assert!(openssl_cipher(name).is_some(), "{name}");
        }
    }
}
