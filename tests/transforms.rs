//! Regex conditions and rule transforms through the real binary, on both engines
//! (HTTP/1.1 and HTTP/2 over one HTTPS listener), against a raw target that records
//! the request line and Host it receives: AWS's examples from "Transforms for
//! listener rules", the query string, a rewrite that does not match, redirects and
//! fixed responses left alone, and ALB's 500 for a rewrite that fails.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::raw_http::{RecordingTarget, TargetReply};
use common::*;
use http_body_util::BodyExt;

// === Config ===

/// One HTTPS listener (HTTP/1.1 and h2 by ALPN) whose rules each show one thing.
fn config(pki: &Pki, target: SocketAddr) -> String {
    let (cert, key) = pki.leaf("site", &["a.test"], KeyKind::Ecdsa, false);
    format!(
        r#"
[load_balancer]
threads = 2
# The Host as the client (or a rewrite) wrote it: ALB's default appends the
# listener port, which tests/shaping.rs covers.
preserve_host_header = true

[[listener]]
address = "127.0.0.1"
port = {{port}}
protocol = "HTTPS"
certificates = [{{ cert = "{cert}", key = "{key}" }}]
default_action = {{ forward = "web" }}

  # AWS's URL rewrite example: a directory structure to a query string.
  [[listener.rule]]
  priority = 1
  conditions = {{ path_pattern = {{ regex_values = ['^/dp/([A-Za-z0-9]+)/?$'] }} }}
  action = {{ forward = "web" }}
  transforms = [{{ url_rewrite = {{ regex = '^/dp/([A-Za-z0-9]+)/?$', replace = '/product.php?id=$1' }} }}]

  # AWS's host header rewrite example: to an internal endpoint.
  [[listener.rule]]
  priority = 2
  conditions = {{ host_header = {{ regex_values = ['^mywebsite-[a-z]+\.com$'] }} }}
  action = {{ forward = "web" }}
  transforms = [{{ host_header_rewrite = {{ regex = '^mywebsite-(.+).com$', replace = 'internal.dev.$1.myweb.com' }} }}]

  # A version prefix dropped; the query string goes along.
  [[listener.rule]]
  priority = 3
  conditions = {{ path_pattern = {{ values = ["/legacy/*"], regex_values = ['^/api/v[0-9]+/'] }} }}
  action = {{ forward = "web" }}
  transforms = [{{ url_rewrite = {{ regex = '^/(api/v[0-9]+|legacy)/(.*)$', replace = '/$2' }} }}]

  # The query string rewritten.
  [[listener.rule]]
  priority = 4
  conditions = {{ path_pattern = ["/search"] }}
  action = {{ forward = "web" }}
  transforms = [{{ url_rewrite = {{ regex = '^/search\?q=(.*)$', replace = '/find?query=$1&src=lb' }} }}]

  # A transform regex that does not match: the request goes as it came.
  [[listener.rule]]
  priority = 5
  conditions = {{ path_pattern = ["/keep/*"] }}
  action = {{ forward = "web" }}
  transforms = [{{ url_rewrite = {{ regex = '^/never$', replace = '/changed' }} }}, {{ host_header_rewrite = {{ regex = '^never$', replace = 'changed' }} }}]

  # Redirects and fixed responses are not forwarded: transforms leave them alone.
  [[listener.rule]]
  priority = 6
  conditions = {{ path_pattern = ["/old/*"] }}
  action = {{ redirect = {{ path = "/new/#{{path}}", status = 302 }} }}
  transforms = [{{ url_rewrite = {{ regex = '^/old/(.*)$', replace = '/rewritten/$1' }} }}, {{ host_header_rewrite = {{ regex = '.*', replace = 'rewritten.test' }} }}]

  [[listener.rule]]
  priority = 7
  conditions = {{ path_pattern = ["/fixed"] }}
  action = {{ fixed_response = {{ status = 200, body = "fixed by tether" }} }}
  transforms = [{{ url_rewrite = {{ regex = '^/fixed$', replace = '/rewritten' }} }}]

  # Rewrites whose result cannot be sent: ALB answers 500.
  [[listener.rule]]
  priority = 8
  conditions = {{ path_pattern = ["/bad/*"] }}
  action = {{ forward = "web" }}
  transforms = [{{ url_rewrite = {{ regex = '^/bad/(.*)$', replace = '$1' }} }}]

  [[listener.rule]]
  priority = 9
  conditions = {{ host_header = {{ regex_values = ['^badhost\.'] }} }}
  action = {{ forward = "web" }}
  transforms = [{{ host_header_rewrite = {{ regex = '^(.*)$', replace = 'bad host/$1' }} }}]

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
passive_health = {{ enabled = false }}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

// === Clients ===

#[derive(Debug, Clone, Copy)]
enum Engine {
    Http1,
    Http2,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

/// One request on a new TLS connection, with this Host (`:authority` on h2).
async fn fetch(pki: &Pki, lb: SocketAddr, engine: Engine, host: &str, path: &str) -> Answer {
    let alpn: &[&[u8]] = match engine {
        Engine::Http1 => &[b"http/1.1"],
        Engine::Http2 => &[b"h2"],
    };
    let (tls, _) = tls_connect(lb, "a.test", pki.client_config(alpn))
        .await
        .expect("TLS handshake");
    let (parts, body) = match engine {
        Engine::Http1 => {
            let mut client = Client::over_io(tls, host).await;
            let reply = client.send(request("GET", path, &[("host", host)])).await;
            let location = reply.header("location").map(str::to_string);
            return Answer {
                status: reply.status.as_u16(),
                location,
                body: reply.text(),
            };
        }
        Engine::Http2 => {
            let mut sender = common::h2_client(tls).await;
            let req = http::Request::get(format!("https://{host}{path}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("request");
            sender
                .send_request(req)
                .await
                .expect("h2 stream")
                .into_parts()
        }
    };
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        location: parts
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// What the target must see for one request: its request target and Host.
fn saw(target: &str, host: &str) -> String {
    format!("target={target}\nhost={host}\n")
}

// === Tests ===

#[tokio::test]
async fn it_should_send_the_target_the_rewritten_url_and_host_on_both_engines() {
    let pki = Pki::new();
    let target = RecordingTarget::start_with(TargetReply::EchoTargetAndHost).await;
    let lb = TetherProc::start(&config(&pki, target.addr)).await;
    // (host, path, what the target sees)
    let cases: &[(&str, &str, String)] = &[
        (
            "www.example.com",
            "/dp/B09G3HRMW",
            saw("/product.php?id=B09G3HRMW", "www.example.com"),
        ),
        (
            "www.example.com",
            "/dp/B09G3HRMW/",
            saw("/product.php?id=B09G3HRMW", "www.example.com"),
        ),
        (
            "mywebsite-example.com",
            "/project-a",
            saw("/project-a", "internal.dev.example.myweb.com"),
        ),
        (
            "www.example.com",
            "/api/v2/users?id=3",
            saw("/users?id=3", "www.example.com"),
        ),
        (
            "www.example.com",
            "/legacy/users",
            saw("/users", "www.example.com"),
        ),
        (
            "www.example.com",
            "/search?q=cats",
            saw("/find?query=cats&src=lb", "www.example.com"),
        ),
        (
            "www.example.com",
            "/keep/x?y=1",
            saw("/keep/x?y=1", "www.example.com"),
        ),
        // No rule matches (a regex condition that misses): the default forward,
        // unchanged.
        (
            "www.example.com",
            "/dp/B09-G3",
            saw("/dp/B09-G3", "www.example.com"),
        ),
    ];
    let mut fails = Vec::new();
    for engine in [Engine::Http1, Engine::Http2] {
        for (host, path, want) in cases {
            let a = fetch(&pki, lb.addr(), engine, host, path).await;
            if a.status != 200 || &a.body != want {
                fails.push(format!(
                    "{engine:?} {host}{path}: got {} {:?}, want 200 {want:?}",
                    a.status, a.body
                ));
            }
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[tokio::test]
async fn it_should_leave_redirects_and_fixed_responses_untouched() {
    let pki = Pki::new();
    let target = RecordingTarget::start_with(TargetReply::EchoTargetAndHost).await;
    let lb = TetherProc::start(&config(&pki, target.addr)).await;
    for engine in [Engine::Http1, Engine::Http2] {
        let a = fetch(&pki, lb.addr(), engine, "a.example.com", "/old/page?x=1").await;
        assert_eq!(a.status, 302, "{engine:?}");
        assert_eq!(
            a.location.as_deref(),
            Some(
                format!(
                    "https://a.example.com:{}/new/old/page?x=1",
                    lb.addr().port()
                )
                .as_str()
            ),
            "{engine:?}: the redirect uses the request as it came"
        );
        let a = fetch(&pki, lb.addr(), engine, "a.example.com", "/fixed").await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "fixed by tether"),
            "{engine:?}"
        );
    }
    assert_eq!(
        target.start_lines(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn it_should_answer_500_when_a_rewrite_fails_and_not_forward() {
    let pki = Pki::new();
    let target = RecordingTarget::start_with(TargetReply::EchoTargetAndHost).await;
    let lb = TetherProc::start(&config(&pki, target.addr)).await;
    for engine in [Engine::Http1, Engine::Http2] {
        // A URL without its leading '/'.
        let a = fetch(&pki, lb.addr(), engine, "a.example.com", "/bad/x").await;
        assert_eq!(a.status, 500, "{engine:?} url: {}", a.body);
        // A Host with a space and a '/'.
        let a = fetch(&pki, lb.addr(), engine, "badhost.example.com", "/x").await;
        assert_eq!(a.status, 500, "{engine:?} host: {}", a.body);
    }
    assert_eq!(
        target.start_lines(),
        Vec::<String>::new(),
        "nothing was forwarded"
    );
    // The same listener still forwards.
    let a = fetch(&pki, lb.addr(), Engine::Http1, "a.example.com", "/ok").await;
    assert_eq!(a.body, saw("/ok", "a.example.com"));
}
