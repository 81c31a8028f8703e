//! HTTPS listeners through the real binary: SNI certificate choice, ECDSA over RSA,
//! TLS policies, HTTP/2 to clients, the HTTP→HTTPS redirect, certificate reload, and
//! bad certificate input. Every certificate is made by the test (rcgen).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;

struct Site {
    pki: Pki,
    default: (std::path::PathBuf, std::path::PathBuf),
    a: (std::path::PathBuf, std::path::PathBuf),
    wild: (std::path::PathBuf, std::path::PathBuf),
    both_rsa: (std::path::PathBuf, std::path::PathBuf),
    both_ecdsa: (std::path::PathBuf, std::path::PathBuf),
}

fn site() -> Site {
    let pki = Pki::new();
    let default = pki.leaf("default", &["default.test"], KeyKind::Ecdsa, false);
    let a = pki.leaf("a", &["a.test"], KeyKind::Ecdsa, false);
    let wild = pki.leaf("wild", &["*.wild.test"], KeyKind::Ecdsa, false);
    // Listed RSA first, so that picking ECDSA is a choice, not the order.
    let both_rsa = pki.leaf("both-rsa", &["both.test"], KeyKind::Rsa, false);
    let both_ecdsa = pki.leaf("both-ecdsa", &["both.test"], KeyKind::Ecdsa, false);
    Site {
        pki,
        default,
        a,
        wild,
        both_rsa,
        both_ecdsa,
    }
}

fn cert_entry((cert, key): &(std::path::PathBuf, std::path::PathBuf)) -> String {
    format!(
        "{{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    )
}

fn https_config(site: &Site, backend: &Backend, policy: Option<&str>) -> String {
    let certs = [
        &site.default,
        &site.a,
        &site.wild,
        &site.both_rsa,
        &site.both_ecdsa,
    ]
    .iter()
    .map(|c| cert_entry(c))
    .collect::<Vec<_>>()
    .join(", ");
    let policy = policy
        .map(|p| format!("ssl_policy = \"{p}\""))
        .unwrap_or_default();
    format!(
        r#"
[load_balancer]
threads = 2
[[listener]]
address = "127.0.0.1"
port = {{port}}
protocol = "HTTPS"
certificates = [{certs}]
{policy}
default_action = {{ forward = "web" }}
[target_group.web]
targets = ["{}"]
"#,
        backend.addr
    )
}

#[tokio::test]
async fn it_should_choose_certificates_by_sni_exact_wildcard_then_default() {
    let s = site();
    let backend = Backend::start("a").await;
    let lb = TetherProc::start(&https_config(&s, &backend, None)).await;
    let cases = [
        ("a.test", "a.test"),
        ("x.wild.test", "*.wild.test"),
        ("wild.test", "default.test"), // a wildcard needs a label
        ("other.test", "default.test"),
        ("both.test", "both.test"),
    ];
    for (sni, want) in cases {
        // Served certificates are compared by name; the default one does not carry
        // the requested name, so this client does not check names.
        let (tls, names) = tls_connect(lb.addr(), sni, any_cert_client())
            .await
            .expect("handshake");
        assert_eq!(names, [want], "SNI {sni}");
        // And the request goes through, with X-Forwarded-Proto: https.
        let mut client = Client::over_io(tls, sni).await;
        let seen = client.get("/headers").await.text();
        assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    }
}

/// A verifier that says the client can check only RSA signatures.
#[derive(Debug)]
struct RsaOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for RsaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![
            rustls::SignatureScheme::RSA_PSS_SHA256,
            rustls::SignatureScheme::RSA_PKCS1_SHA256,
        ]
    }
}

#[tokio::test]
async fn it_should_prefer_ecdsa_and_serve_rsa_to_clients_without_it() {
    let s = site();
    let backend = Backend::start("a").await;
    let lb = TetherProc::start(&https_config(&s, &backend, None)).await;
    let (tls, _) = tls_connect(lb.addr(), "both.test", s.pki.client_config(&[]))
        .await
        .expect("handshake");
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let ecdsa = std::fs::read_to_string(&s.both_ecdsa.0).unwrap();
    let ecdsa_der = rustls_pemfile::certs(&mut ecdsa.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(served, ecdsa_der.to_vec(), "ECDSA preferred");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(s.pki.roots()),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RsaOnly(webpki)))
        .with_no_client_auth();
    let (tls, _) = tls_connect(lb.addr(), "both.test", config)
        .await
        .expect("rsa handshake");
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let rsa = std::fs::read_to_string(&s.both_rsa.0).unwrap();
    let rsa_der = rustls_pemfile::certs(&mut rsa.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        served,
        rsa_der.to_vec(),
        "RSA for a client that cannot verify ECDSA"
    );
}

/// A client limited to `versions`; with `only_version_suites`, its hello lists only
/// the cipher suites of those versions, as a real TLS 1.2-only client does (rustls's
/// own client lists every suite it knows).
fn client_with_versions(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    only_version_suites: bool,
) -> rustls::ClientConfig {
    let mut provider = rustls::crypto::ring::default_provider();
    if only_version_suites {
        provider
            .cipher_suites
            .retain(|s| versions.iter().any(|v| v.version == s.version().version));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth()
}

#[tokio::test]
async fn it_should_enforce_the_ssl_policy() {
    let s = site();
    let backend = Backend::start("a").await;
    let default = TetherProc::start(&https_config(&s, &backend, None)).await;
    let only13 = TetherProc::start(&https_config(
        &s,
        &backend,
        Some("ELBSecurityPolicy-TLS13-1-3-2021-06"),
    ))
    .await;
    let v12 = || client_with_versions(&s.pki, &[&rustls::version::TLS12], true);
    let v13 = || client_with_versions(&s.pki, &[&rustls::version::TLS13], false);
    let (tls, _) = tls_connect(default.addr(), "a.test", v12())
        .await
        .expect("1.2 on the default policy");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (tls, _) = tls_connect(default.addr(), "a.test", v13())
        .await
        .expect("1.3 on the default policy");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(
        tls_connect(only13.addr(), "a.test", v12()).await.is_err(),
        "TLS 1.3-only refuses a TLS 1.2 client"
    );
    let (tls, _) = tls_connect(only13.addr(), "a.test", v13())
        .await
        .expect("1.3 on the 1.3 policy");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut client = Client::over_io(tls, "a.test").await;
    assert_eq!(client.get("/").await.status, 200);

    // A client that lists TLS 1.3 suites but settles on TLS 1.2 gets through the
    // handshake and is closed unserved.
    let odd = client_with_versions(&s.pki, &[&rustls::version::TLS12], false);
    let (tls, _) = tls_connect(only13.addr(), "a.test", odd)
        .await
        .expect("handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut client = Client::over_io(tls, "a.test").await;
    assert!(
        client.try_send(request("GET", "/", &[])).await.is_err(),
        "served over TLS 1.2"
    );
}

#[tokio::test]
async fn it_should_serve_one_hundred_concurrent_http2_streams_from_http1_targets() {
    let s = site();
    let backend = Backend::start("a").await;
    let lb = TetherProc::start(&https_config(&s, &backend, None)).await;
    let (tls, _) = tls_connect(lb.addr(), "a.test", s.pki.client_config(&[b"h2"]))
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let sender = common::h2_client(tls).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("https://a.test/headers?n={i}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.expect("stream");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        // The target saw HTTP/1.1 with the forwarded headers.
        assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
        // ALB adds the listener's port (not 443) to a Host without one.
        let host = format!("host: a.test:{}\n", lb.port);
        assert!(body.contains(&host), "{body}");
    }
}

/// A raw HTTP/1.1 target answering by path, each connection numbered:
/// `/switch` a 101 (then silence), `/bodiless` a 204 with a response after it,
/// `/te` a chunked `hello` that also says `Content-Length: 3`, `/gzip` a
/// `gzip, chunked` one, anything else `200` with body `conn N`.
async fn scripted_target() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut n = 0;
        let mut set = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let conn = n;
            set.spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let line = String::from_utf8_lossy(&head).into_owned();
                        let path = line.split(' ').nth(1).unwrap_or("").to_string();
                        let reply = match path.as_str() {
                            "/switch" => "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_string(),
                            "/bodiless" => "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!".to_string(),
                            "/te" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
                            "/gzip" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
                            _ => {
                                let body = format!("conn {conn}");
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                            }
                        };
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        if path == "/switch" {
                            // Switched: whatever comes now is not HTTP to us.
                            let _ = s.read_to_end(&mut Vec::new()).await;
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
            while set.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

/// Item 5 of issue 20: HTTP/2 to HTTP/1.1 as RFC 9113 §8 says. Fails before it: the
/// cookie crumbs reached the target as separate lines, userinfo went on as the Host,
/// a target's 101 reached the client and its connection went back to the pool, and
/// a chunked response kept its Content-Length.
#[tokio::test]
async fn it_should_translate_http2_to_http1_as_rfc_9113_says() {
    let s = site();
    let backend = Backend::start("a").await;
    let lb = TetherProc::start(&https_config(&s, &backend, None)).await;
    let (tls, _) = tls_connect(lb.addr(), "a.test", s.pki.client_config(&[b"h2"]))
        .await
        .expect("handshake");
    let mut h2: Sender = common::h2_client(tls).await;
    let get = |uri: &str| {
        http::Request::get(uri)
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request")
    };
    type Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>;
    async fn send(
        h2: &mut Sender,
        req: http::Request<http_body_util::Empty<Bytes>>,
    ) -> (u16, Option<http::HeaderValue>, String) {
        match h2.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let length = resp.headers().get("content-length").cloned();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                let body = body.map_or_else(
                    |e| format!("body error: {e}"),
                    |b| String::from_utf8_lossy(&b).into_owned(),
                );
                (status, length, body)
            }
            Err(e) => (0, None, format!("stream error: {e}")),
        }
    }

    let mut req = get("https://a.test/headers");
    req.headers_mut()
        .append("cookie", "a=1".parse().expect("value"));
    req.headers_mut()
        .append("cookie", "b=2".parse().expect("value"));
    let (status, _, body) = send(&mut h2, req).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("cookie: a=1; b=2\n"),
        "crumbs not joined: {body}"
    );
    assert_eq!(body.matches("cookie:").count(), 1, "{body}");

    let (status, _, body) = send(&mut h2, get("https://user@a.test/headers")).await;
    assert_eq!(status, 400, "userinfo in :authority: {body}");
    let connect = http::Request::connect("a.test:443")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let (status, _, body) = send(&mut h2, connect).await;
    assert_eq!(status, 405, "CONNECT: {body}");

    // A target's own 101, bytes after a bodiless response, a chunked response that
    // also says Content-Length.
    let (target, _t) = scripted_target().await;
    let config = https_config(&s, &backend, None).replace(
        &format!("targets = [\"{}\"]", backend.addr),
        &format!("targets = [\"{target}\"]\nhealth_check = {{ enabled = false }}"),
    );
    let lb = TetherProc::start(&config).await;
    let (tls, _) = tls_connect(lb.addr(), "a.test", s.pki.client_config(&[b"h2"]))
        .await
        .expect("handshake");
    let mut h2: Sender = common::h2_client(tls).await;
    let (status, _, body) = send(&mut h2, get("https://a.test/switch")).await;
    assert_eq!(status, 502, "a 101 over HTTP/2: {body}");
    let after = tokio::time::timeout(
        Duration::from_secs(3),
        send(&mut h2, get("https://a.test/after-switch")),
    )
    .await;
    assert!(
        matches!(&after, Ok((200, _, b)) if b.starts_with("conn ")),
        "the switched connection went back to the pool: {after:?}"
    );
    let (status, _, _) = send(&mut h2, get("https://a.test/bodiless")).await;
    assert_eq!(status, 204);
    let (status, _, body) = send(&mut h2, get("https://a.test/after-bodiless")).await;
    assert!(
        status == 200 && body.starts_with("conn "),
        "after a bodiless response: {status} {body}"
    );
    let (status, length, body) = send(&mut h2, get("https://a.test/te")).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(length, None, "a chunked response kept its Content-Length");
    // A transfer coding HTTP/2 cannot carry: the coded bytes are no content.
    let (status, _, body) = send(&mut h2, get("https://a.test/gzip")).await;
    assert_eq!(status, 502, "a gzip transfer coding over HTTP/2: {body}");
}

#[tokio::test]
async fn it_should_redirect_http_to_https_keeping_host_path_and_query() {
    let config = r#"
[[listener]]
address = "127.0.0.1"
port = {port}
default_action = { redirect = { protocol = "HTTPS", port = "443", status = 301 } }
"#;
    let lb = TetherProc::start(config).await;
    let r = Client::connect(lb.addr())
        .await
        .send(request(
            "GET",
            "/a/b?x=1&y=2",
            &[("host", "www.example.com")],
        ))
        .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://www.example.com/a/b?x=1&y=2")
    );
}

#[tokio::test]
async fn it_should_reload_certificates_without_dropping_connections() {
    let pki = Pki::new();
    let backend = Backend::start("a").await;
    let (cert, key) = pki.leaf("site", &["site.test"], KeyKind::Ecdsa, false);
    let config = format!(
        r#"
[load_balancer]
admin = "127.0.0.1:{{admin}}"
[[listener]]
address = "127.0.0.1"
port = {{port}}
protocol = "HTTPS"
certificates = [{{ cert = "{}", key = "{}" }}]
default_action = {{ forward = "web" }}
[target_group.web]
targets = ["{}"]
"#,
        cert.display(),
        key.display(),
        backend.addr
    );
    let lb = TetherProc::start(&config).await;
    let (tls, names) = tls_connect(lb.addr(), "site.test", pki.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(names, ["site.test"]);
    let mut open = Client::over_io(tls, "site.test").await;
    assert_eq!(open.get("/").await.text(), "a");

    // A bad new file keeps the old certificate: the reload says why it refused.
    std::fs::write(&cert, "not a certificate").unwrap();
    let _ = target_states(&lb).await; // the admin API is up
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let r = Client::connect(admin)
        .await
        .send(request("POST", "/reload", &[]))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no certificate found"), "{}", r.text());
    let (_, names) = tls_connect(lb.addr(), "site.test", pki.client_config(&[]))
        .await
        .expect("old cert still served");
    assert_eq!(names, ["site.test"]);

    // A new certificate (another name, same paths): new handshakes get it.
    let (new_cert, new_key) = pki.leaf(
        "renewed",
        &["site.test", "renewed.test"],
        KeyKind::Ecdsa,
        false,
    );
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    lb.reload(&config);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, names) = tls_connect(lb.addr(), "site.test", pki.client_config(&[]))
            .await
            .unwrap();
        if names.contains(&"renewed.test".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the reload still works.
    assert_eq!(open.get("/").await.text(), "a");
}

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn listener_with(certs: &str) -> String {
    format!(
        "[[listener]]\nport = 8443\nprotocol = \"HTTPS\"\n{certs}\ndefault_action = {{ fixed_response = {{ status = 200 }} }}\n"
    )
}

#[test]
fn it_should_name_the_file_and_the_problem_for_bad_certificates() {
    let pki = Pki::new();
    let (good_cert, good_key) = pki.leaf("good", &["good.test"], KeyKind::Ecdsa, false);
    let (_, other_key) = pki.leaf("other", &["other.test"], KeyKind::Ecdsa, false);
    let (old_cert, old_key) = pki.leaf("old", &["old.test"], KeyKind::Ecdsa, true);
    let entry = |c: &Path, k: &Path| {
        format!(
            "certificates = [{{ cert = \"{}\", key = \"{}\" }}]",
            c.display(),
            k.display()
        )
    };

    let (code, err) = check(&listener_with(&entry(
        Path::new("/nonexistent/site.pem"),
        &good_key,
    )));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/site.pem: cannot read"), "{err}");

    let (code, err) = check(&listener_with(&entry(&good_cert, &other_key)));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: this key does not match the certificate",
            other_key.display()
        )),
        "{err}"
    );

    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let (code, err) = check(&listener_with(&entry(&garbage, &good_key)));
    assert_eq!(code, 2);
    assert!(err.contains("garbage.pem: no certificate found"), "{err}");

    let (code, err) = check(&listener_with(""));
    assert_eq!(code, 2);
    assert!(
        err.contains("3:12: an HTTPS listener needs certificates"),
        "{err}"
    );

    let (code, err) = check(&listener_with(&format!(
        "{}\nssl_policy = \"ELBSecurityPolicy-2016-08\"",
        entry(&good_cert, &good_key)
    )));
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown ssl_policy \"ELBSecurityPolicy-2016-08\""),
        "{err}"
    );

    // Expired: a warning, not an error.
    let (code, err) = check(&listener_with(&entry(&old_cert, &old_key)));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning:") && err.contains("old.pem: the certificate has expired"),
        "{err}"
    );

    // `tether run` refuses a bad certificate with the same message.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, listener_with(&entry(&good_cert, &other_key))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this key does not match the certificate")
    );
}

/// Item 8 of issue 20. Fails before it: the target pool was keyed by address alone,
/// so a connection made with one group's server name (or CA) served the next request
/// of another group at the same address.
#[tokio::test]
async fn it_should_pool_target_connections_by_their_tls_identity() {
    let pki = Pki::new();
    let (backend, _task) = tls_backend(&pki, "tls-target").await;
    let ca = pki.ca_path();
    let listener = listener("a", &[(1, "/b/*", r#"{ forward = "b" }"#)]);
    let config = format!(
        r#"
[load_balancer]
threads = 1
{listener}[target_group.a]
protocol = "HTTPS"
ca_file = "{ca}"
server_name = "a.internal"
targets = ["{backend}"]
health_check = {{ enabled = false }}
[target_group.b]
protocol = "HTTPS"
ca_file = "{ca}"
server_name = "b.internal"
targets = ["{backend}"]
health_check = {{ enabled = false }}
"#,
        ca = ca.display()
    );
    let lb = TetherProc::start(&config).await;
    let mut client = Client::connect(lb.addr()).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        for (path, want) in [("/a/sni", "a.internal"), ("/b/sni", "b.internal")] {
            let r = client.get(path).await;
            seen.push((path, want, r.status, r.text()));
        }
    }
    for (path, want, status, text) in &seen {
        assert!(
            *status == 200 && text == want,
            "{path} reached the target with SNI {text:?} ({status}), not {want:?}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn it_should_speak_https_to_targets_verified_by_the_configured_ca() {
    let pki = Pki::new();
    let (backend, _task) = tls_backend(&pki, "tls-target").await;
    let other_ca = Pki::new();
    let listener = listener("secure", &[]);
    let config = |ca: &Path| {
        format!(
            r#"
[load_balancer]
alb_limits = false
admin = "127.0.0.1:{{admin}}"
{listener}[target_group.secure]
protocol = "HTTPS"
ca_file = "{}"
targets = ["{backend}"]
health_check = {{ path = "/", interval = "200ms", timeout = "100ms", healthy_threshold = 2 }}
"#,
            ca.display()
        )
    };
    let lb = TetherProc::start(&config(&pki.ca_path())).await;
    // The health check speaks HTTPS too (the group's protocol).
    wait_state(&lb, backend, "healthy").await;
    let r = Client::connect(lb.addr()).await.get("/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "tls-target");

    // A target whose certificate the configured CA did not sign: 502, never served.
    let wrong = TetherProc::start(&config(&other_ca.ca_path())).await;
    let r = Client::connect(wrong.addr()).await.get("/").await;
    assert_eq!(r.status, 502);
}
