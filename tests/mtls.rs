//! Mutual TLS on an HTTPS listener (`mutual_authentication`), with CAs,
//! intermediates, client certificates and CRLs made by rcgen in the test, real
//! rustls clients, and the kit's recording target to see what targets receive.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::raw_http::{parse_head, RecordingTarget};
use common::{Client, Pki, TetherProc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

/// A certificate authority made in the test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    fn root(name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("root");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn intermediate(&self, name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate `cn` with `serial`; `expired` puts its validity in 2000.
    fn client(&self, cn: &str, serial: u8, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tether, test");
        params.serial_number = Some(SerialNumber::from(vec![0x7e, serial]));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            der: cert.der().clone(),
            pem: cert.pem(),
            key: key.serialize_der(),
        }
    }

    /// A CRL revoking `serials`.
    fn crl(&self, serials: &[u8]) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(vec![0x7e, *s]),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("crl")
            .pem()
            .expect("crl pem")
    }

    fn der(&self) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut self.pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("der")
    }
}

struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key: Vec<u8>,
}

/// A client trusting `server` (tether's certificate), sending `chain` if any.
fn client_config(
    server: &Pki,
    chain: Option<(Vec<CertificateDer<'static>>, &Leaf)>,
) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(server.roots());
    match chain {
        Some((chain, leaf)) => builder
            .with_client_auth_cert(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    }
}

/// One GET over a new TLS connection; `None` when the handshake or the request
/// fails (TLS 1.3 reports a refused client certificate on the first read).
async fn get(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    headers: &[(&str, &str)],
) -> Option<u16> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    let mut client = Client::over_io(tls, "localhost").await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.try_send(common::request("GET", "/", headers)),
    )
    .await
    .ok()?
    .ok()?;
    Some(reply.status.as_u16())
}

/// tether with one HTTPS listener whose `mutual_authentication` is `mtls`, in front
/// of `target`.
async fn tether(server: &Pki, target: SocketAddr, mtls: &str) -> TetherProc {
    let (cert, key) = server.leaf("server", &["localhost"], common::KeyKind::Ecdsa, false);
    TetherProc::start(&format!(
        r#"
[load_balancer]
admin = "127.0.0.1:{{admin}}"

[[listener]]
port = {{port}}
protocol = "HTTPS"
certificates = [{{ cert = "{}", key = "{}" }}]
mutual_authentication = {mtls}
default_action = {{ forward = "web" }}

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
"#,
        cert.display(),
        key.display()
    ))
    .await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// The headers the target received with its one request.
fn target_headers(target: &RecordingTarget) -> Vec<(String, String)> {
    let requests = target.take_requests();
    assert_eq!(
        requests.len(),
        1,
        "the target should see exactly one request"
    );
    let head = parse_head(&requests[0]).expect("whole").expect("head");
    head.headers
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

async fn refused(admin: SocketAddr, reason: &str) -> f64 {
    let r = Client::connect(admin).await.get("/metrics").await;
    let text = r.text();
    text.lines()
        .find(|l| {
            l.starts_with("tether_mtls_refused_handshakes_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refusals for {reason} in:\n{text}"))
}

// === tests ===

#[tokio::test]
async fn verify_accepts_a_valid_chain_and_gives_targets_alb_s_headers() {
    let server = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Ca::root("tether test root");
    let inter = root.intermediate("tether test issuing CA");
    let bundle = write(dir.path(), "ca.pem", &root.pem);
    let target = RecordingTarget::start().await;
    let lb = tether(
        &server,
        target.addr,
        &format!("{{ mode = \"verify\", trust_store = {{ ca_bundle = \"{bundle}\" }} }}"),
    )
    .await;

    let leaf = inter.client("client-1", 1, false);
    let chain = vec![leaf.der.clone(), inter.der()];
    // A client's own copy of a header tether writes never reaches the target.
    let spoofed = [("X-Amzn-Mtls-Clientcert-Subject", "CN=admin")];
    let status = get(
        lb.addr(),
        client_config(&server, Some((chain, &leaf))),
        &spoofed,
    )
    .await;
    assert_eq!(status, Some(200));
    let headers = target_headers(&target);
    assert_eq!(
        header(&headers, "X-Amzn-Mtls-Clientcert-Serial-Number"),
        ["7e01"]
    );
    assert_eq!(
        header(&headers, "X-Amzn-Mtls-Clientcert-Subject"),
        ["O=tether\\, test,CN=client-1"]
    );
    assert_eq!(
        header(&headers, "X-Amzn-Mtls-Clientcert-Issuer"),
        ["CN=tether test issuing CA"]
    );
    let validity = header(&headers, "X-Amzn-Mtls-Clientcert-Validity");
    assert_eq!(validity.len(), 1);
    assert!(
        validity[0].starts_with("NotBefore=")
            && validity[0].contains("Z;NotAfter=")
            && validity[0].ends_with('Z'),
        "{validity:?}"
    );
    let leaf_header = header(&headers, "X-Amzn-Mtls-Clientcert-Leaf");
    assert_eq!(leaf_header, [url_encoded(&leaf.pem).as_str()]);
    assert!(
        header(&headers, "X-Amzn-Mtls-Clientcert").is_empty(),
        "verify sends no chain"
    );
}

/// The URL-encoding ALB applies to PEM, written out here independently of tether's.
fn url_encoded(pem: &str) -> String {
    pem.replace("\r\n", "\n")
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'+'
            | b'='
            | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn verify_refuses_an_unknown_ca_an_expired_or_revoked_certificate_and_none() {
    let server = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Ca::root("tether test root");
    let other = Ca::root("somebody else");
    let bundle = write(dir.path(), "ca.pem", &root.pem);
    let crl = write(dir.path(), "crl.pem", &root.crl(&[3]));
    let target = RecordingTarget::start().await;
    let mtls = |ignore_expiry: bool| {
        format!(
            "{{ mode = \"verify\", trust_store = {{ ca_bundle = \"{bundle}\", revocation = [\"{crl}\"] }}, ignore_client_certificate_expiry = {ignore_expiry} }}"
        )
    };
    let lb = tether(&server, target.addr, &mtls(false)).await;
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let with = |leaf: &Leaf| client_config(&server, Some((vec![leaf.der.clone()], leaf)));

    let good = root.client("good", 1, false);
    assert_eq!(
        get(lb.addr(), with(&good), &[]).await,
        Some(200),
        "the control"
    );
    assert_eq!(target.take_requests().len(), 1);

    let stranger = other.client("stranger", 2, false);
    let expired = root.client("expired", 4, true);
    let revoked = root.client("revoked", 3, false);
    for (what, config) in [
        ("an unknown CA", with(&stranger)),
        ("an expired certificate", with(&expired)),
        ("a revoked certificate", with(&revoked)),
        ("no certificate", client_config(&server, None)),
    ] {
        assert_eq!(
            get(lb.addr(), config, &[]).await,
            None,
            "{what} should be refused"
        );
    }
    assert!(
        target.take_requests().is_empty(),
        "nothing refused reaches the target"
    );
    assert_eq!(refused(admin, "ClientCertUntrusted").await, 1.0);
    assert_eq!(refused(admin, "ClientCertExpired").await, 1.0);
    assert_eq!(refused(admin, "ClientCertCrlHit").await, 1.0);

    // ignore_client_certificate_expiry takes the expired one (and still not the rest).
    let lenient = tether(&server, target.addr, &mtls(true)).await;
    assert_eq!(get(lenient.addr(), with(&expired), &[]).await, Some(200));
    assert_eq!(get(lenient.addr(), with(&revoked), &[]).await, None);
    assert_eq!(get(lenient.addr(), with(&stranger), &[]).await, None);
}

#[tokio::test]
async fn passthrough_forwards_an_unverifiable_chain_byte_exact() {
    let server = Pki::new();
    let target = RecordingTarget::start().await;
    let lb = tether(&server, target.addr, "{ mode = \"passthrough\" }").await;
    let nobody = Ca::root("nobody's CA");
    let inter = nobody.intermediate("nobody's issuing CA");
    let leaf = inter.client("anyone", 9, true);
    let chain = vec![leaf.der.clone(), inter.der()];
    let spoofed = [("X-Amzn-Mtls-Clientcert", "forged")];
    let status = get(
        lb.addr(),
        client_config(&server, Some((chain, &leaf))),
        &spoofed,
    )
    .await;
    assert_eq!(status, Some(200), "passthrough verifies nothing");
    let headers = target_headers(&target);
    let want = url_encoded(&(leaf.pem.clone() + &inter.pem));
    assert_eq!(header(&headers, "X-Amzn-Mtls-Clientcert"), [want.as_str()]);
    assert!(header(&headers, "X-Amzn-Mtls-Clientcert-Subject").is_empty());

    // Without a certificate: served, with no header.
    assert_eq!(
        get(lb.addr(), client_config(&server, None), &spoofed).await,
        Some(200)
    );
    let headers = target_headers(&target);
    assert!(
        header(&headers, "X-Amzn-Mtls-Clientcert").is_empty(),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_trust_store_reload_takes_effect_for_new_handshakes_and_keeps_open_connections() {
    let server = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Ca::root("first CA");
    let second = Ca::root("second CA");
    let bundle = write(dir.path(), "ca.pem", &first.pem);
    let target = RecordingTarget::start().await;
    let config = format!("{{ mode = \"verify\", trust_store = {{ ca_bundle = \"{bundle}\" }} }}");
    let lb = tether(&server, target.addr, &config).await;
    let with = |leaf: &Leaf| client_config(&server, Some((vec![leaf.der.clone()], leaf)));
    let old_client = first.client("old", 1, false);
    let new_client = second.client("new", 2, false);

    // A connection made under the first CA, kept open across the reload.
    let tcp = TcpStream::connect(lb.addr()).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(with(&old_client)));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let mut open = Client::over_io(tls, "localhost").await;
    assert_eq!(open.get("/").await.status, 200);
    assert_eq!(get(lb.addr(), with(&new_client), &[]).await, None);

    // A bad file keeps the running store.
    write(dir.path(), "ca.pem", "not a certificate");
    lb.reload(&std::fs::read_to_string(&lb.config_path).expect("config"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(lb.addr(), with(&old_client), &[]).await, Some(200));

    write(dir.path(), "ca.pem", &second.pem);
    lb.reload(&std::fs::read_to_string(&lb.config_path).expect("config"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(lb.addr(), with(&new_client), &[]).await != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new CA never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(lb.addr(), with(&old_client), &[]).await,
        None,
        "the old CA is gone"
    );
    assert_eq!(open.get("/").await.status, 200, "the open connection stays");
}
