//! Test certificates made at test time, TLS clients, and a TLS backend.

use super::*;

// === Test certificates ===

/// A throwaway CA and leaf certificates written to a temp dir, made at test time.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// Which key a leaf certificate gets.
pub enum KeyKind {
    Ecdsa,
    /// The checked-in RSA test key (tests/data): ring cannot generate RSA keys.
    Rsa,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tether test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA cert");
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        std::fs::write(&p, &self.ca_pem).expect("write CA");
        p
    }

    /// Writes `stem.pem` and `stem.key` for `names`; returns their paths.
    pub fn leaf(
        &self,
        stem: &str,
        names: &[&str],
        kind: KeyKind,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let key = match kind {
            KeyKind::Ecdsa => rcgen::KeyPair::generate().expect("key"),
            KeyKind::Rsa => {
                let pem = std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/data/rsa2048.pkcs8.key"
                ))
                .expect("rsa key");
                rcgen::KeyPair::from_pem(&pem).expect("rsa key pair")
            }
        };
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, stem);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = self.dir.path().join(format!("{stem}.pem"));
        let key_path = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A root store holding this CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(c.expect("ca der")).expect("add root");
        }
        roots
    }

    /// A rustls client config trusting this CA (TLS 1.2 and 1.3).
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let roots = self.roots();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// A client config that accepts any server certificate: for tests that check which
/// certificate was served (by its names) rather than whether a client would trust it.
pub fn any_cert_client() -> rustls::ClientConfig {
    (*tether::tls::no_verify_client()).clone()
}

/// A TLS connection to tether with `sni`; returns the stream and the DNS names of
/// the certificate tether served.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<String>)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tls = connector.connect(name, tcp).await?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let names = cert_names(&der);
    Ok((tls, names))
}

/// DNS names of a DER certificate.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    names
}

// === TLS backend ===

/// A hyper backend behind TLS (a certificate of `pki` for 127.0.0.1, `a.internal`
/// and `b.internal`), answering every request with its id, and a path ending in
/// `/sni` with the server name the TLS client sent (`-` for none).
pub async fn tls_backend(pki: &Pki, id: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let (cert, key) = pki.leaf(
        &format!("backend-{id}"),
        &["127.0.0.1", "a.internal", "b.internal"],
        KeyKind::Ecdsa,
        false,
    );
    let certs = rustls_pemfile::certs(&mut std::fs::read(cert).expect("cert").as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut std::fs::read(key).expect("key").as_slice())
        .expect("key")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = if req.uri().path().ends_with("/sni") {
                        sni.clone()
                    } else {
                        id.to_string()
                    };
                    async move { Ok::<_, Infallible>(Response::new(full(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}
