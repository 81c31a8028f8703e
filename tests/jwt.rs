//! ALB's `jwt-validation` action through the real binary: an HTTPS listener whose
//! rules validate bearer tokens against a JWKS served on loopback by the test (which
//! can change its keys and go down), in front of a recording target that shows what
//! got through. Keys are made by the test (ECDSA P-256, Ed25519) or the checked-in
//! RSA test key; tokens are signed by hand (tests/common/jwt_keys.rs).

mod common;
#[path = "common/jwt_keys.rs"]
mod jwt_keys;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::raw_http::RecordingTarget;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jwt_keys::{jwks, now, unsigned_token, Signer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ISSUER: &str = "https://issuer.test";

// === A JWKS endpoint on loopback ===

/// Serves one JWKS (any path) until stopped; the JWKS can be changed.
struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: &Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let body = Arc::new(Mutex::new(jwks.to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (task_body, task_fetches) = (body.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            // Connections live in the set: stopping the server ends them too.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (body, fetches) = (task_body.clone(), task_fetches.clone());
                conns.spawn(async move {
                    let service = service_fn(move |_req: http::Request<Incoming>| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let jwks = body.lock().expect("jwks").clone();
                        async move {
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(full(jwks))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        JwksServer {
            addr,
            body,
            fetches,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn set(&self, jwks: &Value) {
        *self.body.lock().expect("jwks") = jwks.to_string();
    }

    /// Goes down: connections to it are refused from now on.
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === tether in front of a recording target ===

struct Setup {
    lb: TetherProc,
    pki: Pki,
    target: RecordingTarget,
    jwks: JwksServer,
}

/// `/api/*` validates tokens of [`ISSUER`] against `jwks`, `/scoped/*` also wants
/// `scope` (space-separated) with `read`, `groups` (array) with `ops` and
/// `client_id` (string) `svc-a`; both forward to the recording target. Anything
/// else gets a fixed 200.
async fn setup(keys: &[&Signer]) -> Setup {
    setup_with(keys, "").await
}

/// [`setup`] with `load_balancer` lines added to `[load_balancer]`.
async fn setup_with(keys: &[&Signer], load_balancer: &str) -> Setup {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("site", &["a.test"], KeyKind::Ecdsa, false);
    let target = RecordingTarget::start().await;
    let jwks = JwksServer::start(&jwks(keys)).await;
    let url = jwks.url();
    let config = format!(
        r#"
[load_balancer]
threads = 2
admin = "127.0.0.1:{{admin}}"
{load_balancer}
[[listener]]
address = "127.0.0.1"
port = {{port}}
protocol = "HTTPS"
certificates = [{{ cert = "{cert}", key = "{key}" }}]
default_action = {{ fixed_response = {{ status = 200, body = "open" }} }}
  [[listener.rule]]
  priority = 10
  conditions = {{ path_pattern = ["/api/*"] }}
  action = {{ jwt_validation = {{ issuer = "{ISSUER}", jwks_endpoint = "{url}" }}, forward = "api" }}
  [[listener.rule]]
  priority = 20
  conditions = {{ path_pattern = ["/scoped/*"] }}
  action = {{ forward = "api", jwt_validation = {{ issuer = "{ISSUER}", jwks_endpoint = "{url}", additional_claims = [{{ name = "scope", format = "space-separated-values", values = ["read"] }}, {{ name = "groups", format = "string-array", values = ["ops"] }}, {{ name = "client_id", format = "single-string", values = ["svc-a"] }}] }} }}
[target_group.api]
targets = ["{target}"]
health_check = {{ enabled = false }}
"#,
        cert = cert.display(),
        key = key.display(),
        target = target.addr,
    );
    let lb = TetherProc::start(&config).await;
    Setup {
        lb,
        pki,
        target,
        jwks,
    }
}

/// Claims that pass `/api/*` (and `/scoped/*`), with `extra` set over them (a
/// `null` removes a claim).
fn claims(extra: Value) -> Value {
    let t = now();
    let mut c = json!({
        "iss": ISSUER, "sub": "svc-a", "exp": t + 600, "iat": t, "nbf": t,
        "scope": "openid read", "groups": ["dev", "ops"], "client_id": "svc-a",
    });
    for (k, v) in extra.as_object().expect("an object") {
        match v {
            Value::Null => {
                c.as_object_mut().expect("object").remove(k);
            }
            v => c[k] = v.clone(),
        }
    }
    c
}

impl Setup {
    /// An HTTP/1.1 client over TLS.
    async fn h1(&self) -> Client {
        let (tls, _) = tls_connect(
            self.lb.addr(),
            "a.test",
            self.pki.client_config(&[b"http/1.1"]),
        )
        .await
        .expect("handshake");
        Client::over_io(tls, "a.test").await
    }

    /// An HTTP/2 client over TLS.
    async fn h2(&self) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
        let (tls, _) = tls_connect(self.lb.addr(), "a.test", self.pki.client_config(&[b"h2"]))
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        common::h2_client(tls).await
    }

    /// GET `path` with `authorization` (none if `None`) on a new HTTP/1.1 connection.
    async fn get(&self, path: &str, authorization: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.h1().await.send(request("GET", path, &headers)).await
    }

    /// Waits until tether has fetched the JWKS: `token` passes.
    async fn wait_keys(&self, token: &str) {
        let bearer = format!("Bearer {token}");
        poll(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async {
                let r = self.get("/api/ready", Some(&bearer)).await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("a valid token still gets {}", r.status))
                }
            },
        )
        .await;
        self.target.take_requests();
    }

    async fn metrics(&self) -> String {
        let admin = SocketAddr::from(([127, 0, 0, 1], self.lb.admin_port));
        let reply = Client::connect(admin).await.get("/metrics").await;
        assert_eq!(reply.status, 200);
        reply.text()
    }
}

/// The value of the sample `name{…result="result"…}`.
fn sample(text: &str, name: &str, result: &str) -> u64 {
    let label = format!("result=\"{result}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} with {label} in:\n{text}"))
}

const INVALID: &str = "Bearer error=\"invalid_token\", error_description=";

// === Tests ===

#[tokio::test]
async fn it_should_forward_valid_tokens_of_each_algorithm_with_the_token_as_it_came() {
    let (rs, es, ed) = (
        Signer::rs256("rsa-1"),
        Signer::es256("ec-1"),
        Signer::eddsa("ed-1"),
    );
    let s = setup(&[&rs, &es, &ed]).await;
    s.wait_keys(&rs.token(&claims(json!({})))).await;
    let mut client = s.h1().await;
    for signer in [&rs, &es, &ed] {
        let token = signer.token(&claims(json!({ "sub": signer.alg() })));
        let bearer = format!("Bearer {token}");
        let path = format!("/api/{}", signer.alg());
        let r = client
            .send(request("GET", &path, &[("authorization", &bearer)]))
            .await;
        assert_eq!(r.status, 200, "{}: {}", signer.alg(), r.text());
        // ALB forwards the request with the token as is.
        let seen = s.target.take_requests();
        assert_eq!(seen.len(), 1, "{}", signer.alg());
        let head = String::from_utf8_lossy(&seen[0]).to_ascii_lowercase();
        assert!(
            head.contains(&format!("authorization: {}", bearer.to_ascii_lowercase())),
            "{head}"
        );
    }
    // Over HTTP/2 too.
    let mut h2 = s.h2().await;
    let token = es.token(&claims(json!({ "sub": "h2" })));
    let req = http::Request::get("https://a.test/api/h2")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = h2.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    assert!(s.target.got("/api/h2"));
    // The claims a /scoped/* rule wants pass it.
    let token = ed.token(&claims(json!({})));
    let r = s.get("/scoped/ok", Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn it_should_answer_each_bad_token_with_a_401_challenge_and_never_reach_the_target() {
    let (rs, es) = (Signer::rs256("rsa-1"), Signer::es256("ec-1"));
    let s = setup(&[&rs, &es]).await;
    s.wait_keys(&es.token(&claims(json!({})))).await;
    let t = now();
    let stranger = Signer::es256("ec-unknown");
    let forged = {
        // The RSA key's kid and header, another key's signature.
        let good = rs.token(&claims(json!({})));
        let (message, _) = good.rsplit_once('.').expect("three parts");
        format!(
            "{message}.{}",
            jwt_keys::b64(&es.sign_bytes(message.as_bytes()))
        )
    };
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let cases: Vec<(&str, &str, Option<String>, String)> = vec![
        ("no Authorization", "/api/a", None, "Bearer".into()),
        (
            "another scheme",
            "/api/a",
            Some("Basic dXNlcjpwYXNz".into()),
            "Bearer".into(),
        ),
        (
            "a malformed token",
            "/api/a",
            Some("Bearer not.a-jwt".into()),
            format!("{INVALID}\"the token is malformed\""),
        ),
        (
            "a wrong signature",
            "/api/a",
            bearer(forged),
            format!("{INVALID}\"the signature is invalid\""),
        ),
        (
            "an unknown kid",
            "/api/a",
            bearer(stranger.token(&claims(json!({})))),
            format!("{INVALID}\"the signing key is unknown\""),
        ),
        (
            "a wrong issuer",
            "/api/a",
            bearer(es.token(&claims(json!({ "iss": "https://evil.test" })))),
            format!("{INVALID}\"the issuer is not accepted\""),
        ),
        (
            "an expired token",
            "/api/a",
            bearer(es.token(&claims(json!({ "exp": t - 3600 })))),
            format!("{INVALID}\"the token has expired\""),
        ),
        (
            "a token not yet valid",
            "/api/a",
            bearer(rs.token(&claims(json!({ "nbf": t + 3600 })))),
            format!("{INVALID}\"the token is not valid yet\""),
        ),
        (
            "alg: none",
            "/api/a",
            bearer(unsigned_token("ec-1", &claims(json!({})))),
            format!("{INVALID}\"the signing algorithm is not accepted\""),
        ),
        (
            "a missing claim",
            "/scoped/a",
            bearer(es.token(&claims(json!({ "scope": null })))),
            format!("{INVALID}\"a required claim does not match\""),
        ),
        (
            "a space-separated claim without the value",
            "/scoped/a",
            bearer(es.token(&claims(json!({ "scope": "openid write" })))),
            format!("{INVALID}\"a required claim does not match\""),
        ),
        (
            "a string-array claim without the value",
            "/scoped/a",
            bearer(es.token(&claims(json!({ "groups": ["dev"] })))),
            format!("{INVALID}\"a required claim does not match\""),
        ),
        (
            "a single-string claim of another value",
            "/scoped/a",
            bearer(rs.token(&claims(json!({ "client_id": "svc-b" })))),
            format!("{INVALID}\"a required claim does not match\""),
        ),
    ];
    // One keep-alive connection for all of them: a 401 does not close it.
    let mut client = s.h1().await;
    for (what, path, authorization, challenge) in &cases {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let r = client.send(request("GET", path, &headers)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(challenge.as_str()),
            "{what}"
        );
        assert!(
            r.text().contains("401 Unauthorized"),
            "{what}: {}",
            r.text()
        );
    }
    // The same answers over HTTP/2.
    let mut h2 = s.h2().await;
    for (what, path, authorization, challenge) in &cases {
        let mut req = http::Request::get(format!("https://a.test{path}"));
        if let Some(a) = authorization {
            req = req.header("authorization", a.as_str());
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        let resp = h2.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), 401, "h2 {what}");
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(challenge.as_str()),
            "h2 {what}"
        );
        let _ = resp.into_body().collect().await;
    }
    assert!(
        s.target.targets().is_empty(),
        "the target saw {:?}",
        s.target.targets()
    );
    // The negative control: a good token on the same connection goes through.
    let token = es.token(&claims(json!({})));
    let r = client
        .send(request(
            "GET",
            "/scoped/a",
            &[("authorization", &format!("Bearer {token}"))],
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.target.targets(), ["/scoped/a"]);
}

#[tokio::test]
async fn it_should_pick_up_a_rotated_jwks_after_an_unknown_kid() {
    let old = Signer::es256("2025");
    let s = setup(&[&old]).await;
    s.wait_keys(&old.token(&claims(json!({})))).await;
    let new = Signer::eddsa("2026");
    let token = format!("Bearer {}", new.token(&claims(json!({}))));
    let r = s.get("/api/new", Some(&token)).await;
    assert_eq!(r.status, 401, "not published yet");
    // The issuer publishes the new key; the unknown kid asked for a fetch, which
    // comes within the rate limit (5 s after the last).
    s.jwks.set(&jwks(&[&old, &new]));
    poll(
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async {
            let r = s.get("/api/new", Some(&token)).await;
            if r.status == 200 {
                Ok(())
            } else {
                Err(format!("the new key's token still gets {}", r.status))
            }
        },
    )
    .await;
    assert!(s.target.got("/api/new"));
    assert!(s.jwks.fetches.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn it_should_keep_the_last_keys_when_the_jwks_endpoint_is_down() {
    let key = Signer::rs256("rsa-1");
    let mut s = setup(&[&key]).await;
    s.wait_keys(&key.token(&claims(json!({})))).await;
    s.jwks.stop().await;
    // An unknown kid makes tether fetch again; the fetch fails.
    let stranger = Signer::es256("nobody");
    let r = s
        .get(
            "/api/x",
            Some(&format!("Bearer {}", stranger.token(&claims(json!({}))))),
        )
        .await;
    assert_eq!(r.status, 401);
    poll(
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async {
            let m = s.metrics().await;
            match sample(&m, "tether_jwks_fetches_total", "failure") {
                0 => Err("no failed fetch yet".to_string()),
                _ => Ok(()),
            }
        },
    )
    .await;
    // A token never seen before (no cache) still verifies with the kept key.
    let fresh = key.token(&claims(json!({ "sub": "after-the-outage" })));
    let before = sample(&s.metrics().await, "tether_jwt_cache_lookups_total", "miss");
    let r = s.get("/api/after", Some(&format!("Bearer {fresh}"))).await;
    assert_eq!(r.status, 200);
    assert!(s.target.got("/api/after"));
    let after = sample(&s.metrics().await, "tether_jwt_cache_lookups_total", "miss");
    assert_eq!(after, before + 1, "verified, not taken from the cache");
}

#[tokio::test]
async fn it_should_count_results_and_cache_hits() {
    let key = Signer::es256("ec-1");
    let s = setup(&[&key]).await;
    s.wait_keys(&key.token(&claims(json!({})))).await;
    let before = s.metrics().await;
    let token = format!("Bearer {}", key.token(&claims(json!({ "sub": "twice" }))));
    let mut client = s.h1().await;
    for _ in 0..3 {
        let r = client
            .send(request("GET", "/api/x", &[("authorization", &token)]))
            .await;
        assert_eq!(r.status, 200);
    }
    let expired = format!(
        "Bearer {}",
        key.token(&claims(json!({ "exp": now() - 3600 })))
    );
    for (auth, status) in [(Some(expired.as_str()), 401), (None, 401)] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        assert_eq!(
            client.send(request("GET", "/api/y", &headers)).await.status,
            status
        );
    }
    let after = s.metrics().await;
    let delta =
        |name: &str, result: &str| sample(&after, name, result) - sample(&before, name, result);
    assert_eq!(delta("tether_jwt_validations_total", "valid"), 3);
    assert_eq!(delta("tether_jwt_validations_total", "expired"), 1);
    assert_eq!(delta("tether_jwt_validations_total", "missing"), 1);
    assert_eq!(delta("tether_jwt_validations_total", "bad_signature"), 0);
    // The token's signature was checked once: two of its three lookups hit.
    assert_eq!(delta("tether_jwt_cache_lookups_total", "hit"), 2);
    assert_eq!(
        delta("tether_jwt_cache_lookups_total", "miss"),
        2,
        "the first and the expired one"
    );
    assert!(sample(&after, "tether_jwks_fetches_total", "success") >= 1);
    assert!(
        after.contains("tether_jwt_validations_total{load_balancer=\"tether\",result=\"valid\"}"),
        "{after}"
    );
}

#[tokio::test]
async fn it_should_log_the_jwt_action_in_actions_executed() {
    let key = Signer::es256("ec-1");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let s = setup_with(
        &[&key],
        &format!("access_log = {{ path = \"{}\" }}", log.display()),
    )
    .await;
    s.wait_keys(&key.token(&claims(json!({})))).await;
    let token = format!("Bearer {}", key.token(&claims(json!({ "sub": "logged" }))));
    assert_eq!(s.get("/api/logged-ok", Some(&token)).await.status, 200);
    assert_eq!(s.get("/api/logged-no", None).await.status, 401);
    let line_of =
        |text: &str, path: &str| text.lines().find(|l| l.contains(path)).map(str::to_string);
    let (ok, refused) = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match (
                line_of(&text, "/api/logged-ok"),
                line_of(&text, "/api/logged-no"),
            ) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(format!("the two lines are not in the log yet:\n{text}")),
            }
        }
    })
    .await;
    assert!(
        ok.contains(" 200 200 ") && ok.contains("\"jwt-validation,forward\""),
        "{ok}"
    );
    // The 401 is the load balancer's own: no target, no target status.
    assert!(
        refused.contains(" 401 - ") && refused.contains("\"jwt-validation\""),
        "{refused}"
    );
}

#[tokio::test]
async fn it_should_read_a_jwks_file_again_when_it_changes() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("site", &["a.test"], KeyKind::Ecdsa, false);
    let target = RecordingTarget::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks_path = dir.path().join("jwks.json");
    let first = Signer::es256("first");
    std::fs::write(&jwks_path, jwks(&[&first]).to_string()).expect("write jwks");
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1"
port = {{port}}
protocol = "HTTPS"
certificates = [{{ cert = "{cert}", key = "{key}" }}]
default_action = {{ jwt_validation = {{ issuer = "{ISSUER}", jwks_file = "{jwks}" }}, forward = "api" }}
[target_group.api]
targets = ["{target}"]
health_check = {{ enabled = false }}
"#,
        cert = cert.display(),
        key = key.display(),
        jwks = jwks_path.display(),
        target = target.addr,
    );
    let lb = TetherProc::start(&config).await;
    let get = |token: String| {
        let pki = &pki;
        let lb = &lb;
        async move {
            let (tls, _) = tls_connect(lb.addr(), "a.test", pki.client_config(&[b"http/1.1"]))
                .await
                .expect("handshake");
            let mut c = Client::over_io(tls, "a.test").await;
            c.send(request(
                "GET",
                "/",
                &[("authorization", &format!("Bearer {token}"))],
            ))
            .await
            .status
            .as_u16()
        }
    };
    // Read at start: no wait for a fetch.
    assert_eq!(get(first.token(&claims(json!({})))).await, 200);
    let second = Signer::eddsa("second");
    std::fs::write(&jwks_path, jwks(&[&second]).to_string()).expect("rewrite jwks");
    poll(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            match get(second.token(&claims(json!({})))).await {
                200 => Ok(()),
                s => Err(format!("the new file's key still gets {s}")),
            }
        },
    )
    .await;
    // The old key left with the old file.
    assert_eq!(get(first.token(&claims(json!({ "sub": "x" })))).await, 401);
}
