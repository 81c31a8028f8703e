//! ALB's header attributes through the real binary (AWS's ALB guide: HTTP headers, load balancer and listener attributes): what
//! a target sees of `X-Forwarded-For` in each mode, invalid header names, the Host,
//! the TLS headers; the client keep-alive closing busy connections gracefully;
//! HTTP/2 turned off; and the listener's response headers on target responses and
//! on tether's own, in both engines.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP listener forwarding to `target`; `lb` lines go into `[load_balancer]`,
/// `listener` lines into the listener.
fn config(target: SocketAddr, lb: &str, listener: &str) -> String {
    format!(
        r#"
[load_balancer]
threads = 2
{lb}

[[listener]]
address = "127.0.0.1"
port = {{port}}
{listener}
default_action = {{ forward = "web" }}

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
"#
    )
}

/// Sends one request head (with `Connection: close`) on a new connection; returns
/// the whole answer and the client's source port.
async fn exchange(addr: SocketAddr, head: &str) -> (String, u16) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let port = s.local_addr().expect("local addr").port();
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), port)
}

/// The headers the backend's `/headers` saw (one `name: value` per line), for a GET
/// with `extra` header lines.
async fn seen_by_target(addr: SocketAddr, host: &str, extra: &str) -> (Vec<String>, u16) {
    let (answer, port) = exchange(
        addr,
        &format!("GET /headers HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (body.lines().map(str::to_string).collect(), port)
}

fn values<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        .collect()
}

// === X-Forwarded-For ===

#[tokio::test]
async fn it_should_append_preserve_or_remove_x_forwarded_for() {
    let backend = Backend::start("a").await;
    let incoming = "X-Forwarded-For: 203.0.113.9\r\n";
    // (lb lines, want without an incoming header, want with one); `{port}` is the
    // client's source port.
    let cases: [(&str, Option<&str>, Option<&str>); 4] = [
        ("", Some("127.0.0.1"), Some("203.0.113.9, 127.0.0.1")),
        (
            "xff_client_port = true",
            Some("127.0.0.1:{port}"),
            Some("203.0.113.9, 127.0.0.1:{port}"),
        ),
        (
            "xff_header_processing = \"preserve\"",
            None,
            Some("203.0.113.9"),
        ),
        ("xff_header_processing = \"remove\"", None, None),
    ];
    let mut fails = Vec::new();
    for (lb_lines, without, with) in cases {
        let lb = TetherProc::start(&config(backend.addr, lb_lines, "")).await;
        for (extra, want) in [("", without), (incoming, with)] {
            let (lines, port) = seen_by_target(lb.addr(), "t", extra).await;
            let got = values(&lines, "x-forwarded-for");
            let want: Vec<String> = want
                .map(|w| w.replace("{port}", &port.to_string()))
                .into_iter()
                .collect();
            if got != want {
                fails.push(format!(
                    "[{lb_lines}] incoming {extra:?}: got {got:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

// === Invalid header fields ===

#[tokio::test]
async fn it_should_drop_invalid_header_fields_only_when_asked() {
    let backend = Backend::start("a").await;
    let extra = "X_Underscore: 1\r\nX.Dot: 2\r\nX-Valid-9: 3\r\n";
    for (lb_lines, kept) in [("", true), ("drop_invalid_header_fields = true", false)] {
        let lb = TetherProc::start(&config(backend.addr, lb_lines, "")).await;
        let (lines, _) = seen_by_target(lb.addr(), "t", extra).await;
        assert_eq!(values(&lines, "x-valid-9"), ["3"], "[{lb_lines}] {lines:?}");
        for name in ["x_underscore", "x.dot"] {
            assert_eq!(
                !values(&lines, name).is_empty(),
                kept,
                "[{lb_lines}] {name}: {lines:?}"
            );
        }
    }
}

// === Host ===

#[tokio::test]
async fn it_should_send_the_host_as_alb_does_unless_preserved() {
    let backend = Backend::start("a").await;
    let lb = TetherProc::start(&config(backend.addr, "", "")).await;
    // A listener not on 80 or 443: its port is added to a Host without one.
    let (lines, _) = seen_by_target(lb.addr(), "example.com", "").await;
    assert_eq!(values(&lines, "host"), [format!("example.com:{}", lb.port)]);
    let (lines, _) = seen_by_target(lb.addr(), "example.com:9000", "").await;
    assert_eq!(values(&lines, "host"), ["example.com:9000"]);

    let lb = TetherProc::start(&config(backend.addr, "preserve_host_header = true", "")).await;
    for host in ["example.com", "example.com:9000"] {
        let (lines, _) = seen_by_target(lb.addr(), host, "").await;
        assert_eq!(values(&lines, "host"), [host]);
    }
}

// === TLS headers ===

struct Https {
    pki: Pki,
    cert: (std::path::PathBuf, std::path::PathBuf),
}

fn https() -> Https {
    let pki = Pki::new();
    let cert = pki.leaf("site", &["site.test"], KeyKind::Ecdsa, false);
    Https { pki, cert }
}

fn https_config(h: &Https, target: SocketAddr, lb: &str, listener: &str) -> String {
    let (cert, key) = &h.cert;
    let listener = format!(
        "protocol = \"HTTPS\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{listener}",
        cert.display(),
        key.display()
    );
    config(target, lb, &listener)
}

/// A client config for one TLS version, offering `alpn`.
fn client_config(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .expect("versions")
    .with_root_certificates(pki.roots())
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// OpenSSL's names, as ALB writes them, of the suites a test client may settle on.
fn openssl_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        other => panic!("unexpected suite {other:?}"),
    }
}

/// The headers `/headers` saw over HTTPS (HTTP/1.1 or HTTP/2), and the OpenSSL
/// name of the suite the connection settled on.
async fn seen_over_tls(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    extra: &[(&str, &str)],
) -> (Vec<String>, &'static str) {
    let h2 = config.alpn_protocols.first().map(Vec::as_slice) == Some(b"h2");
    let (tls, _) = tls_connect(addr, "site.test", config)
        .await
        .expect("handshake");
    let suite = openssl_name(
        tls.get_ref()
            .1
            .negotiated_cipher_suite()
            .expect("suite")
            .suite(),
    );
    let body = if h2 {
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut sender = common::h2_client(tls).await;
        let mut req = http::Request::get("https://site.test/headers");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
            .await
            .expect("h2 request");
        resp.into_body().collect().await.expect("body").to_bytes()
    } else {
        let mut client = Client::over_io(tls, "site.test").await;
        client.send(request("GET", "/headers", extra)).await.body
    };
    let lines = String::from_utf8_lossy(&body)
        .lines()
        .map(str::to_string)
        .collect();
    (lines, suite)
}

#[tokio::test]
async fn it_should_add_the_tls_version_and_cipher_suite_over_https_when_asked() {
    let h = https();
    let backend = Backend::start("a").await;
    let spoof = [("X-Amzn-Tls-Version", "SSLv2")];
    let on = "tls_version_and_cipher_headers = true";
    let lb = TetherProc::start(&https_config(&h, backend.addr, on, "")).await;
    let cases: [(&'static rustls::SupportedProtocolVersion, &[u8], &str); 3] = [
        (&rustls::version::TLS12, b"http/1.1", "TLSv1.2"),
        (&rustls::version::TLS13, b"http/1.1", "TLSv1.3"),
        (&rustls::version::TLS12, b"h2", "TLSv1.2"),
    ];
    for (version, alpn, want_version) in cases {
        let tls = client_config(&h.pki, version, &[alpn]);
        let (lines, suite) = seen_over_tls(lb.addr(), tls, &spoof).await;
        assert_eq!(
            values(&lines, "x-amzn-tls-version"),
            [want_version],
            "{lines:?}"
        );
        assert_eq!(values(&lines, "x-amzn-tls-cipher-suite"), [suite]);
    }

    // Renamed (a listener attribute): the headers under their new names only.
    let names = "request_header_names = { x_amzn_tls_version = \"X-Tls-Version\", x_amzn_tls_cipher_suite = \"X-Tls-Cipher\" }";
    let lb = TetherProc::start(&https_config(&h, backend.addr, on, names)).await;
    let tls = client_config(&h.pki, &rustls::version::TLS13, &[b"http/1.1"]);
    let (lines, suite) = seen_over_tls(lb.addr(), tls, &[("X-Tls-Version", "x")]).await;
    assert_eq!(values(&lines, "x-tls-version"), ["TLSv1.3"], "{lines:?}");
    assert_eq!(values(&lines, "x-tls-cipher"), [suite]);
    assert!(values(&lines, "x-amzn-tls-version").is_empty());

    // Off (ALB's default): nothing added, the client's own line passes.
    let lb = TetherProc::start(&https_config(&h, backend.addr, "", "")).await;
    let tls = client_config(&h.pki, &rustls::version::TLS13, &[b"http/1.1"]);
    let (lines, _) = seen_over_tls(lb.addr(), tls, &spoof).await;
    assert_eq!(values(&lines, "x-amzn-tls-version"), ["SSLv2"]);
    assert!(values(&lines, "x-amzn-tls-cipher-suite").is_empty());

    // On, over plain HTTP: no TLS headers.
    let lb = TetherProc::start(&config(backend.addr, on, "")).await;
    let (lines, _) = seen_by_target(lb.addr(), "t", "").await;
    assert!(values(&lines, "x-amzn-tls-version").is_empty(), "{lines:?}");
}

// === HTTP/2 switch ===

#[tokio::test]
async fn it_should_offer_only_http_1_1_when_http2_is_disabled() {
    let h = https();
    let backend = Backend::start("a").await;
    for (lb_lines, want) in [
        ("", &b"h2"[..]),
        ("http2_enabled = false", &b"http/1.1"[..]),
    ] {
        let lb = TetherProc::start(&https_config(&h, backend.addr, lb_lines, "")).await;
        let offer = h.pki.client_config(&[b"h2", b"http/1.1"]);
        let (tls, _) = tls_connect(lb.addr(), "site.test", offer)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want), "[{lb_lines}]");
        // And it serves HTTP/1.1 on it.
        if want == b"http/1.1" {
            let mut client = Client::over_io(tls, "site.test").await;
            assert_eq!(client.get("/").await.text(), "a");
        }
    }
}

// === Client keep-alive ===

/// Reads one response (head and Content-Length body) from `s`; `None` at EOF.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(head);
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Sends a request every 100 ms on one keep-alive connection for up to `for_`;
/// returns how many were answered, when a response said `Connection: close` (since
/// the connection began), and whether the connection then ended.
async fn busy_connection(addr: SocketAddr, for_: Duration) -> (usize, Option<Duration>, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut answered = 0;
    while start.elapsed() < for_ {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("the connection failed before tether closed it");
        let head = read_response(&mut s, &mut buf)
            .await
            .expect("a request was not answered");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        answered += 1;
        if head.contains("\r\nconnection: close") {
            let at = start.elapsed();
            let mut rest = [0u8; 16];
            let end = tokio::time::timeout(Duration::from_secs(2), s.read(&mut rest)).await;
            return (answered, Some(at), matches!(end, Ok(Ok(0)) | Ok(Err(_))));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (answered, None, false)
}

#[tokio::test]
async fn it_should_close_a_busy_connection_gracefully_after_the_client_keep_alive() {
    let backend = Backend::start("a").await;
    let lb_lines = "alb_limits = false\nclient_keep_alive = \"1s\"";
    let lb = TetherProc::start(&config(backend.addr, lb_lines, "")).await;
    let (answered, closed_at, ended) = busy_connection(lb.addr(), Duration::from_secs(4)).await;
    let at = closed_at.expect("no response closed the connection");
    assert!(
        at >= Duration::from_secs(1) && at < Duration::from_millis(2500),
        "closed at {at:?}"
    );
    assert!(ended, "the connection stayed open after Connection: close");
    assert!(answered >= 5, "only {answered} requests answered");

    // ALB's default (an hour): the same connection is kept.
    let lb = TetherProc::start(&config(backend.addr, "", "")).await;
    let (_, closed_at, _) = busy_connection(lb.addr(), Duration::from_millis(1500)).await;
    assert_eq!(closed_at, None);
}

#[tokio::test]
async fn it_should_send_goaway_after_the_client_keep_alive_and_finish_streams_in_flight() {
    let h = https();
    let backend = Backend::start("a").await;
    let lb_lines = "alb_limits = false\nclient_keep_alive = \"1s\"";
    let lb = TetherProc::start(&https_config(&h, backend.addr, lb_lines, "")).await;
    let (tls, _) = tls_connect(lb.addr(), "site.test", h.pki.client_config(&[b"h2"]))
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    // A slow stream in flight across the deadline.
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Not before the keep-alive (1 s): the connection is still up.
    assert!(
        !conn.is_finished(),
        "the connection ended before its keep-alive"
    );
    let req = http::Request::get("https://site.test/slow?ms=800")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("in-flight stream");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"a");
    // GOAWAY, then the connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(
        ended.is_ok(),
        "the HTTP/2 connection outlived its keep-alive"
    );
}

// === Listener response headers ===

const ALL_RESPONSE_HEADERS: &str = "response_headers = { strict_transport_security = \"max-age=31536000; includeSubDomains\", access_control_allow_origin = \"https://app.example.com\", access_control_allow_methods = \"GET, POST\", access_control_allow_headers = \"X-Token\", access_control_allow_credentials = \"true\", access_control_expose_headers = \"X-Request-Id\", access_control_max_age = \"600\", content_security_policy = \"default-src 'self'\", x_content_type_options = \"nosniff\", x_frame_options = \"DENY\", server = false }";

/// Each header ALB's listener attributes set, with the value above.
const WANT: [(&str, &str); 10] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("access-control-allow-origin", "https://app.example.com"),
    ("access-control-allow-methods", "GET, POST"),
    ("access-control-allow-headers", "X-Token"),
    ("access-control-allow-credentials", "true"),
    ("access-control-expose-headers", "X-Request-Id"),
    ("access-control-max-age", "600"),
    ("content-security-policy", "default-src 'self'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// A listener with the response headers, and rules for tether's own answers:
/// `/fixed` (fixed response), `/old` (redirect), `/empty` (503: no targets),
/// `/down` (502: the target refuses connections).
fn response_config(target: SocketAddr, closed: SocketAddr, listener: &str) -> String {
    format!(
        r#"
[load_balancer]
threads = 2

[[listener]]
address = "127.0.0.1"
port = {{port}}
{listener}
default_action = {{ forward = "web" }}

  [[listener.rule]]
  priority = 1
  conditions = {{ path_pattern = ["/fixed"] }}
  action = {{ fixed_response = {{ status = 404, body = "none" }} }}

  [[listener.rule]]
  priority = 2
  conditions = {{ path_pattern = ["/old"] }}
  action = {{ redirect = {{ path = "/new", status = 301 }} }}

  [[listener.rule]]
  priority = 3
  conditions = {{ path_pattern = ["/empty"] }}
  action = {{ forward = "empty" }}

  [[listener.rule]]
  priority = 4
  conditions = {{ path_pattern = ["/down"] }}
  action = {{ forward = "down" }}

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}

[target_group.empty]
targets = []

[target_group.down]
targets = ["{closed}"]
health_check = {{ enabled = false }}
"#
    )
}

/// An address nothing listens on: a socket bound to a free port but never
/// listening refuses connections and keeps the port from anyone else while the
/// test holds it (no race with other tests, unlike a port bound and released).
fn closed_port() -> (socket2::Socket, SocketAddr) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address");
    (socket, addr)
}

/// Checks a reply's headers: each configured one exactly once, no `Server`.
fn check_headers(what: &str, headers: &http::HeaderMap, fails: &mut Vec<String>) {
    for (name, value) in WANT {
        let got: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if got != [value] {
            fails.push(format!("{what}: {name} is {got:?}, want [{value:?}]"));
        }
    }
    if let Some(server) = headers.get("server") {
        fails.push(format!("{what}: a Server header: {server:?}"));
    }
}

/// The target's own `Server` and `X-Frame-Options`: the listener's value replaces
/// the latter, as ALB does.
const TARGET_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nServer: app/1.0\r\nX-Frame-Options: SAMEORIGIN\r\nX-App: yes\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

#[tokio::test]
async fn it_should_set_the_listener_response_headers_on_every_response_over_http1() {
    let (target, _t) = raw_backend(TARGET_REPLY).await;
    let (_closed, closed) = closed_port();
    let lb = TetherProc::start(&response_config(target, closed, ALL_RESPONSE_HEADERS)).await;
    let mut fails = Vec::new();
    for (path, status) in [
        ("/", 200),
        ("/fixed", 404),
        ("/old", 301),
        ("/empty", 503),
        ("/down", 502),
    ] {
        let mut client = Client::connect(lb.addr()).await;
        let reply = client.get(path).await;
        if reply.status != status {
            fails.push(format!("{path}: status {}, want {status}", reply.status));
        }
        check_headers(path, &reply.headers, &mut fails);
        if path == "/" && reply.header("x-app") != Some("yes") {
            fails.push("/: the target's own X-App is missing".into());
        }
    }
    // A 400 for a head tether cannot parse, too.
    let (answer, _) = exchange(
        lb.addr(),
        "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    )
    .await;
    let lower = answer.to_ascii_lowercase();
    if !lower.starts_with("http/1.1 400") || !lower.contains("\r\nx-frame-options: deny\r\n") {
        fails.push(format!("400: {answer}"));
    }
    if lower.contains("\r\nserver:") {
        fails.push(format!("400 with a Server header: {answer}"));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));

    // Without the attributes: the target's headers as they are, `Server: tether` on
    // tether's own answers.
    let lb = TetherProc::start(&response_config(target, closed, "")).await;
    let mut client = Client::connect(lb.addr()).await;
    let reply = client.get("/").await;
    assert_eq!(reply.header("server"), Some("app/1.0"));
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(reply.header("strict-transport-security"), None);
    let reply = Client::connect(lb.addr()).await.get("/fixed").await;
    assert_eq!(reply.header("server"), Some("tether"));
    assert_eq!(reply.header("x-frame-options"), None);
}

#[tokio::test]
async fn it_should_set_the_listener_response_headers_on_every_response_over_http2() {
    let h = https();
    let (target, _t) = raw_backend(TARGET_REPLY).await;
    let (cert, key) = &h.cert;
    let listener = format!(
        "protocol = \"HTTPS\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{ALL_RESPONSE_HEADERS}",
        cert.display(),
        key.display()
    );
    let (_closed, closed) = closed_port();
    let lb = TetherProc::start(&response_config(target, closed, &listener)).await;
    let (tls, _) = tls_connect(lb.addr(), "site.test", h.pki.client_config(&[b"h2"]))
        .await
        .expect("handshake");
    let mut sender = common::h2_client(tls).await;
    let mut fails = Vec::new();
    for (path, status) in [
        ("/", 200),
        ("/fixed", 404),
        ("/old", 301),
        ("/empty", 503),
        ("/down", 502),
    ] {
        let req = http::Request::get(format!("https://site.test{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("stream");
        if resp.status() != status {
            fails.push(format!("{path}: status {}, want {status}", resp.status()));
        }
        check_headers(path, resp.headers(), &mut fails);
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}
