//! HTTPS listeners: ALB security policies, certificates chosen by SNI, and reloading
//! them without a restart.
//!
//! pingora's rustls listener takes one `ResolvesServerCert`; tether's resolver holds
//! a listener's certificates in an `ArcSwap`, picks one per handshake (exact name,
//! then wildcard, then the default — the first configured — preferring ECDSA over
//! RSA when the client supports both, as ALB does), and enforces a TLS 1.3-only
//! policy by refusing hellos that offer no TLS 1.3 cipher suite.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SignatureAlgorithm};

// === Policies ===

/// ALB security policies tether implements (rustls's AEAD suites of each policy;
/// rustls has no CBC suites).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslPolicy {
    /// `ELBSecurityPolicy-TLS13-1-2-2021-06`: TLS 1.2 and 1.3 (ALB's default).
    #[default]
    Tls13And12,
    /// `ELBSecurityPolicy-TLS13-1-3-2021-06`: TLS 1.3 only.
    Tls13Only,
}

impl SslPolicy {
    pub const NAMES: [&'static str; 2] = [
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
    ];

    /// The policy ALB calls `name` (`ELBSecurityPolicy-TLS13-1-2-2021-06`, …), if tether has it.
    pub fn from_name(name: &str) -> Option<SslPolicy> {
        match name {
            "ELBSecurityPolicy-TLS13-1-2-2021-06" => Some(SslPolicy::Tls13And12),
            "ELBSecurityPolicy-TLS13-1-3-2021-06" => Some(SslPolicy::Tls13Only),
            _ => None,
        }
    }

    /// The policy's ALB name.
    pub fn name(self) -> &'static str {
        match self {
            SslPolicy::Tls13And12 => Self::NAMES[0],
            SslPolicy::Tls13Only => Self::NAMES[1],
        }
    }
}

const TLS13_SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

const TLS12_SUITES: [CipherSuite; 4] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// Installs the process-wide rustls provider with the suites of ALB's TLS13-1-2
/// policy. pingora builds its listeners with the process default (installing ring's
/// full set only when none is installed), so this must run before any listener is
/// built.
pub fn install_provider() {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| {
        let suite = s.suite();
        TLS13_SUITES.contains(&suite) || TLS12_SUITES.contains(&suite)
    });
    let _ = CryptoProvider::install_default(provider);
}

// === Certificates ===

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

fn tls_err(path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Where a certificate and its key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate ready to serve.
pub struct LoadedCert {
    /// DNS names (lower case) from the subject alternative names, or the CN.
    pub names: Vec<String>,
    pub ecdsa: bool,
    pub not_after: Option<SystemTime>,
    pub key: Arc<CertifiedKey>,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .field("ecdsa", &self.ecdsa)
            .finish()
    }
}

impl LoadedCert {
    /// Whether the certificate's validity has ended by `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.not_after.is_some_and(|t| t < now)
    }
}

/// Reads a PEM chain (leaf first) and its key (PKCS#8, PKCS#1 RSA or SEC1 EC), and
/// checks that they belong together.
pub fn load(spec: &CertSpec) -> Result<LoadedCert, TlsError> {
    let cert_pem =
        std::fs::read(&spec.cert).map_err(|e| tls_err(&spec.cert, format!("cannot read: {e}")))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&spec.cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(tls_err(
            &spec.cert,
            "no certificate found (expected PEM \"BEGIN CERTIFICATE\")",
        ));
    }
    let key_pem =
        std::fs::read(&spec.key).map_err(|e| tls_err(&spec.key, format!("cannot read: {e}")))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(&spec.key, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| {
            tls_err(
                &spec.key,
                "no private key found (expected PEM PKCS#8, RSA or EC key)",
            )
        })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| tls_err(&spec.key, format!("unsupported private key: {e}")))?;
    let ecdsa = signing.algorithm() == SignatureAlgorithm::ECDSA;
    let (names, not_after) = describe(&chain[0]).map_err(|m| tls_err(&spec.cert, m))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        tls_err(
            &spec.key,
            format!(
                "this key does not match the certificate {}",
                spec.cert.display()
            ),
        )
    })?;
    Ok(LoadedCert {
        names,
        ecdsa,
        not_after,
        key: Arc::new(certified),
    })
}

/// DNS names and expiry of a leaf certificate.
fn describe(der: &[u8]) -> Result<(Vec<String>, Option<SystemTime>), String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    let secs = cert.validity().not_after.timestamp();
    let not_after = u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
    Ok((names, not_after))
}

/// A listener's certificates; the first is the default.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: Vec<LoadedCert>,
}

/// How well a certificate's names fit the requested server name.
fn fit(names: &[String], sni: &str) -> u8 {
    if names.iter().any(|n| n == sni) {
        return 2;
    }
    let wildcard = names.iter().any(|n| {
        n.strip_prefix("*.").is_some_and(|suffix| {
            sni.split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
        })
    });
    u8::from(wildcard)
}

impl CertStore {
    /// Loads every certificate and key of `specs`; the first that fails is the error.
    pub fn load(specs: &[CertSpec]) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            certs: specs.iter().map(load).collect::<Result<_, _>>()?,
        })
    }

    /// The certificates, in the config's order.
    pub fn certs(&self) -> &[LoadedCert] {
        &self.certs
    }

    /// The certificate for `sni`: exact name, then wildcard, then the default; among
    /// equal fits ECDSA when the client can verify it, else RSA.
    pub fn choose(&self, sni: Option<&str>, client_ecdsa: bool) -> Option<&LoadedCert> {
        let sni = sni.map(str::to_ascii_lowercase);
        let best = sni.as_deref().and_then(|sni| {
            let top = self.certs.iter().map(|c| fit(&c.names, sni)).max()?;
            (top > 0).then(|| {
                let fitting = self.certs.iter().filter(|c| fit(&c.names, sni) == top);
                let mut preferred = fitting.clone().filter(|c| c.ecdsa == client_ecdsa);
                preferred.next().or_else(|| fitting.clone().next())
            })?
        });
        best.or_else(|| self.certs.first())
    }
}

// === impl CertResolver ===

/// The certificate resolver of one HTTPS listener.
#[derive(Debug)]
pub struct CertResolver {
    store: ArcSwap<CertStore>,
    policy: SslPolicy,
    specs: ArcSwap<Vec<CertSpec>>,
    /// Where hellos refused (no certificate, or no suite the policy allows) are
    /// counted (ALB's `ClientTLSNegotiationErrorCount`).
    refusals: Option<Arc<crate::stats::ListenerStats>>,
}

impl CertResolver {
    /// A resolver choosing among `store`'s certificates by SNI, under `policy`.
    pub fn new(store: CertStore, specs: Vec<CertSpec>, policy: SslPolicy) -> Self {
        CertResolver {
            store: ArcSwap::from_pointee(store),
            policy,
            specs: ArcSwap::from_pointee(specs),
            refusals: None,
        }
    }

    /// Counts refused hellos in `stats`.
    pub fn counting_refusals(mut self, stats: Option<Arc<crate::stats::ListenerStats>>) -> Self {
        self.refusals = stats;
        self
    }

    fn refuse(&self) -> Option<Arc<CertifiedKey>> {
        if let Some(stats) = &self.refusals {
            crate::stats::ListenerStats::add(&stats.tls_negotiation_errors, 1);
        }
        None
    }

    /// The certificate files it was made from (what a reload reads again).
    pub fn specs(&self) -> Arc<Vec<CertSpec>> {
        self.specs.load_full()
    }

    /// Loads `specs` and swaps them in for new handshakes. On error the running
    /// certificates stay.
    pub fn reload(&self, specs: &[CertSpec]) -> Result<(), TlsError> {
        let store = CertStore::load(specs)?;
        self.store.store(Arc::new(store));
        self.specs.store(Arc::new(specs.to_vec()));
        Ok(())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.policy == SslPolicy::Tls13Only
            && !hello
                .cipher_suites()
                .iter()
                .any(|s| TLS13_SUITES.contains(s))
        {
            return self.refuse();
        }
        let client_ecdsa = hello.signature_schemes().iter().any(|s| {
            matches!(
                s,
                rustls::SignatureScheme::ECDSA_NISTP256_SHA256
                    | rustls::SignatureScheme::ECDSA_NISTP384_SHA384
                    | rustls::SignatureScheme::ECDSA_NISTP521_SHA512
            )
        });
        let store = self.store.load();
        match store.choose(hello.server_name(), client_ecdsa) {
            Some(c) => Some(c.key.clone()),
            None => self.refuse(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_exactly_then_by_one_wildcard_label() {
        let names = vec!["*.example.com".to_string(), "example.org".to_string()];
        assert_eq!(fit(&names, "example.org"), 2);
        assert_eq!(fit(&names, "api.example.com"), 1);
        assert_eq!(fit(&names, "example.com"), 0);
        assert_eq!(fit(&names, "a.b.example.com"), 0);
        assert_eq!(fit(&names, ".example.com"), 0);
    }

    #[test]
    fn policies_have_alb_names() {
        for name in SslPolicy::NAMES {
            assert_eq!(SslPolicy::from_name(name).map(SslPolicy::name), Some(name));
        }
        assert_eq!(SslPolicy::from_name("ELBSecurityPolicy-2016-08"), None);
    }
}

// === Client side: connections to targets ===

/// Accepts any server certificate. Used where ALB does not verify either: health
/// checks over HTTPS (a target's certificate may be self-signed or name a host the
/// check does not use).
#[derive(Debug)]
pub struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that accepts any server certificate (see [`NoVerify`]), with the
/// process's rustls provider.
pub fn no_verify_client() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth(),
    )
}

/// Reads the certificates of a PEM CA bundle (DER each).
pub fn load_ca(path: &Path) -> Result<Vec<Vec<u8>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| tls_err(path, format!("cannot read: {e}")))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(path, format!("not a PEM CA bundle: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(
            path,
            "no certificate found (expected PEM \"BEGIN CERTIFICATE\")",
        ));
    }
    Ok(certs)
}
