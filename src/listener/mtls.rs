//! Mutual TLS on an HTTPS listener, as ALB's `mutual_authentication` does it:
//!
//! - **verify**: rustls verifies the client's chain against the trust store (a CA
//!   bundle and its CRLs, `WebPkiClientVerifier`) during the handshake; a client
//!   without a valid certificate does not get a connection. Targets receive
//!   `X-Amzn-Mtls-Clientcert-Serial-Number`, `-Issuer`, `-Subject`, `-Validity` and
//!   `-Leaf`.
//! - **passthrough**: any certificate the client sends is taken unverified (its
//!   signature over the handshake still is: the client holds the key), and the whole
//!   chain goes to targets in `X-Amzn-Mtls-Clientcert`. A client without one is
//!   served without the header.
//!
//! The verifier is built once per listener and reloaded in place ([`MtlsVerifier::reload`]):
//! a new trust store takes effect for new handshakes; open connections stay. A trust
//! store that does not load keeps the running one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// `mutual_authentication.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    #[default]
    Off,
    Passthrough,
    Verify,
}

impl MtlsMode {
    /// ALB's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Off => "off",
            MtlsMode::Passthrough => "passthrough",
            MtlsMode::Verify => "verify",
        }
    }
}

/// A listener's `mutual_authentication`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MutualAuth {
    pub mode: MtlsMode,
    /// The CA bundle (PEM) a verified chain must end in.
    pub ca_bundle: Option<PathBuf>,
    /// CRLs (PEM or DER) of the trust store's CAs.
    pub revocation: Vec<PathBuf>,
    /// Take an expired (or not yet valid) client certificate that is otherwise valid.
    pub ignore_client_certificate_expiry: bool,
    /// Name the trust store's CAs in the CertificateRequest (ALB's default: no).
    pub advertise_trust_store_ca_names: bool,
}

/// Why a trust store does not load.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TrustStoreError {
    pub path: String,
    pub message: String,
}

fn store_err(path: &Path, message: impl fmt::Display) -> TrustStoreError {
    TrustStoreError {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Client certificate refusals by reason, in [`REFUSAL_REASONS`] order.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 7]);

/// Why a verify-mode handshake was refused, in the names of ALB's connection log
/// (`tls_verify_status = Failed:<reason>`).
pub const REFUSAL_REASONS: [&str; 7] = [
    "ClientCertUntrusted",
    "ClientCertExpired",
    "ClientCertNotYetValid",
    "ClientCertCrlHit",
    "ClientCertTypeUnsupported",
    "ClientCertInvalid",
    "UnmappedConnectionError",
];

impl Refusals {
    /// Counts so far, in [`REFUSAL_REASONS`] order.
    pub fn counts(&self) -> [u64; 7] {
        self.0.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    fn count(&self, e: &rustls::Error) -> &'static str {
        use rustls::CertificateError as C;
        let i = match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => 0,
                C::Expired | C::ExpiredContext { .. } => 1,
                C::NotValidYet | C::NotValidYetContext { .. } => 2,
                C::Revoked => 3,
                C::UnsupportedSignatureAlgorithmContext { .. }
                | C::InvalidPurpose
                | C::InvalidPurposeContext { .. } => 4,
                _ => 5,
            },
            _ => 6,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
        REFUSAL_REASONS[i]
    }
}

/// The trust store as rustls uses it: a verifier, and the CA names it may advertise.
struct Loaded {
    inner: Arc<dyn ClientCertVerifier>,
    hints: &'static [DistinguishedName],
}

/// A trust store loaded and not yet in force.
pub struct PreparedTrustStore(Loaded, MutualAuth);

/// A listener's client certificate verifier, swapped in place on reload.
pub struct MtlsVerifier {
    spec: ArcSwap<MutualAuth>,
    current: ArcSwap<Loaded>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    refusals: Arc<Refusals>,
    /// The listener's counters: a refusal is one of its TLS negotiation errors.
    stats: Option<Arc<crate::stats::ListenerStats>>,
}

impl fmt::Debug for MtlsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsVerifier")
            .field("spec", &self.spec.load())
            .finish()
    }
}

/// The CA certificates of a PEM bundle.
fn read_cas(path: &Path) -> Result<rustls::RootCertStore, TrustStoreError> {
    let pem = std::fs::read(path).map_err(|e| store_err(path, e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| store_err(path, format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| store_err(path, format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(store_err(path, "no certificate in the CA bundle"));
    }
    Ok(roots)
}

/// A CRL file, PEM (`-----BEGIN X509 CRL-----`) or DER.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustStoreError> {
    let bytes = std::fs::read(path).map_err(|e| store_err(path, e))?;
    if bytes.starts_with(b"-----") {
        let crls: Result<Vec<_>, _> = rustls_pemfile::crls(&mut bytes.as_slice()).collect();
        let crls = crls.map_err(|e| store_err(path, format!("not a PEM CRL: {e}")))?;
        if crls.is_empty() {
            return Err(store_err(path, "no CRL in the file"));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

fn load(
    spec: &MutualAuth,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Loaded, TrustStoreError> {
    let Some(bundle) = spec.ca_bundle.as_deref() else {
        // Passthrough: no trust store; signatures are still checked with the provider.
        return Ok(Loaded {
            inner: Arc::new(AcceptAny(provider.clone())),
            hints: &[],
        });
    };
    let roots = read_cas(bundle)?;
    let mut crls = Vec::new();
    for path in &spec.revocation {
        crls.extend(read_crls(path)?);
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        // A CA without a CRL in the store: its certificates are taken (ALB's CRLs
        // are optional per CA).
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| store_err(bundle, e))?;
    let hints: &'static [DistinguishedName] = if spec.advertise_trust_store_ca_names {
        // rustls asks for the names by reference for the verifier's lifetime: they
        // live as long as the process (a few hundred bytes per reload that changes
        // them; reloads are rare).
        Box::leak(inner.root_hint_subjects().to_vec().into_boxed_slice())
    } else {
        &[]
    };
    Ok(Loaded { inner, hints })
}

impl MtlsVerifier {
    /// The verifier of `spec` (mode passthrough or verify), its trust store loaded;
    /// refusals count in `stats` (ALB's `ClientTLSNegotiationErrorCount`) when given.
    pub fn new(
        spec: &MutualAuth,
        stats: Option<Arc<crate::stats::ListenerStats>>,
    ) -> Result<Arc<MtlsVerifier>, TrustStoreError> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let loaded = load(spec, &provider)?;
        Ok(Arc::new(MtlsVerifier {
            spec: ArcSwap::from_pointee(spec.clone()),
            current: ArcSwap::from_pointee(loaded),
            provider,
            refusals: Arc::default(),
            stats,
        }))
    }

    /// Loads `spec`'s trust store for new handshakes; on error the running one stays.
    /// The mode itself is fixed at start (a reload that changes it is refused).
    pub fn reload(&self, spec: &MutualAuth) -> Result<(), TrustStoreError> {
        let prepared = self.prepare(spec)?;
        self.install(prepared);
        Ok(())
    }

    /// Loads `spec`'s trust store without putting it in force (a reload checks every
    /// file before it changes anything).
    pub fn prepare(&self, spec: &MutualAuth) -> Result<PreparedTrustStore, TrustStoreError> {
        Ok(PreparedTrustStore(
            load(spec, &self.provider)?,
            spec.clone(),
        ))
    }

    /// Puts a prepared trust store in force for new handshakes.
    pub fn install(&self, prepared: PreparedTrustStore) {
        self.current.store(Arc::new(prepared.0));
        self.spec.store(Arc::new(prepared.1));
    }

    /// The trust store's files and their modification times (for the file watch).
    pub fn files(&self) -> Vec<PathBuf> {
        let spec = self.spec.load();
        spec.ca_bundle
            .iter()
            .chain(spec.revocation.iter())
            .cloned()
            .collect()
    }

    /// The settings in force.
    pub fn spec(&self) -> Arc<MutualAuth> {
        self.spec.load_full()
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }
}

impl ClientCertVerifier for MtlsVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.spec.load().mode == MtlsMode::Verify
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.current.load().hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let spec = self.spec.load();
        let now = if spec.ignore_client_certificate_expiry {
            within_validity(end_entity, now)
        } else {
            now
        };
        let result = self
            .current
            .load()
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &result {
            let reason = self.refusals.count(e);
            if let Some(stats) = &self.stats {
                crate::stats::ListenerStats::add(&stats.tls_negotiation_errors, 1);
            }
            tracing::debug!("client certificate refused: {reason}: {e}");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AcceptAny(self.provider.clone()).verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AcceptAny(self.provider.clone()).verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        AcceptAny(self.provider.clone()).supported_verify_schemes()
    }
}

/// Passthrough's verifier: any chain, unverified.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for AcceptAny {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `now`, moved inside the leaf certificate's validity when outside it
/// (`ignore_client_certificate_expiry`): the rest of the chain is checked as usual.
fn within_validity(leaf: &CertificateDer<'_>, now: UnixTime) -> UnixTime {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return now;
    };
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let clamped = secs.clamp(not_before, not_after.max(not_before));
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(clamped).unwrap_or(0),
    ))
}

// === What targets see ===

/// The client certificate of a connection, rendered once per connection as the
/// headers ALB sends targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// `(name, value)` pairs, in ALB's order.
    pub headers: Vec<(&'static str, String)>,
    /// For the connection log: serial, subject, issuer and validity of the leaf.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub validity: String,
}

/// `X-Amzn-Mtls-Clientcert-*`: the prefix of every mTLS header (a client's own copy
/// never reaches a target).
pub const HEADER_PREFIX: &str = "X-Amzn-Mtls-Clientcert";

impl ClientCert {
    /// The headers for a verified `chain` (leaf first) in `mode`; `None` without a
    /// certificate, or for a leaf that does not parse.
    pub fn of(mode: MtlsMode, chain: &[CertificateDer<'_>]) -> Option<ClientCert> {
        let leaf = chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let serial = hex::encode(cert.raw_serial());
        let subject = rfc2253(cert.subject());
        let issuer = rfc2253(cert.issuer());
        let validity = format!(
            "NotBefore={};NotAfter={}",
            iso8601(cert.validity().not_before),
            iso8601(cert.validity().not_after)
        );
        let headers = match mode {
            MtlsMode::Off => return None,
            MtlsMode::Passthrough => {
                let pem: String = chain.iter().map(|c| pem(c.as_ref())).collect();
                vec![(HEADER_PREFIX, url_encode(&pem))]
            }
            MtlsMode::Verify => vec![
                ("X-Amzn-Mtls-Clientcert-Serial-Number", serial.clone()),
                ("X-Amzn-Mtls-Clientcert-Issuer", issuer.clone()),
                ("X-Amzn-Mtls-Clientcert-Subject", subject.clone()),
                ("X-Amzn-Mtls-Clientcert-Validity", validity.clone()),
                (
                    "X-Amzn-Mtls-Clientcert-Leaf",
                    url_encode(&pem(leaf.as_ref())),
                ),
            ],
        };
        Some(ClientCert {
            headers,
            serial,
            subject,
            issuer,
            validity,
        })
    }
}

/// A distinguished name as RFC 2253 writes it: most specific first, `,` between.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    // x509-parser writes RFC 4514 order (as in the certificate); RFC 2253 reverses it.
    let mut parts: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(
                        atv.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map(str::to_string)
                    .unwrap_or_else(|_| atv.attr_type().to_id_string());
                    let value = atv
                        .as_str()
                        .map(escape_dn_value)
                        .unwrap_or_else(|_| format!("#{}", hex::encode(atv.attr_value().data)));
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    parts.reverse();
    parts.join(",")
}

/// RFC 2253 §2.4's escapes; control characters (and anything outside printable
/// ASCII) as `\XX` per byte, so that a header value never carries a CR or LF.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
        if !(' '..='~').contains(&c) {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn iso8601(t: x509_parser::time::ASN1Time) -> String {
    let odt = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        odt.year(),
        u8::from(odt.month()),
        odt.day(),
        odt.hour(),
        odt.minute(),
        odt.second()
    )
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// URL-encoding with `+`, `=` and `/` left as they are, as ALB encodes PEM.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'=' | b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_url_encoded_with_plus_equals_and_slash_kept() {
        assert_eq!(
            url_encode("-----BEGIN CERTIFICATE-----\nMIIB+a/b=\n"),
            "-----BEGIN%20CERTIFICATE-----%0AMIIB+a/b=%0A"
        );
    }

    #[test]
    fn dn_values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape_dn_value("a,b"), "a\\,b");
        assert_eq!(escape_dn_value(" x "), "\\ x\\ ");
        assert_eq!(escape_dn_value("#1"), "\\#1");
        assert_eq!(escape_dn_value("plain"), "plain");
        assert_eq!(escape_dn_value("a\r\nb"), "a\\0D\\0Ab");
        assert_eq!(escape_dn_value("é"), "\\C3\\A9");
    }
}
