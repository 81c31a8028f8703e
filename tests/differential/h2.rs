//! HTTP/2 downgrades.

use super::*;

/// `name|method|uri|headers (name: value; ...)|body|check`, sent with hyper's h2
/// client where it lets a client send them. Checks: `crumbs`, the Cookie crumbs
/// reach the target as one line; `userinfo`, no userinfo in its Host; `host`, its
/// Host is the `:authority`.
pub(crate) const H2_CASES: &str = r"
h2/plain|POST|https://a.test/plain||hello|
h2/cookie-crumbs|GET|https://a.test/crumbs|cookie: a=1; cookie: b=2||crumbs
h2/authority-userinfo|GET|https://user:pw@a.test/userinfo|||userinfo
h2/connect|CONNECT|a.test:443|||
h2/content-length-above-data|POST|https://a.test/cl-long|content-length: 10|hello|
h2/content-length-below-data|POST|https://a.test/cl-short|content-length: 2|hello|
h2/content-length-zero-data-is-a-request|POST|https://a.test/cl-zero|content-length: 0|{ADMIN}|
h2/get-with-body|GET|https://a.test/g||{ADMIN}|
h2/host-differs-from-authority|GET|https://a.test/host|host: b.test||host
h2/admin|GET|https://a.test/admin|||
h2/te-trailers|GET|https://a.test/te|te: trailers||
";

/// One request on a fresh h2 connection: its client address and the answer.
pub(crate) async fn h2_send(
    env: &Env,
    t: usize,
    victim: bool,
    req: http::Request<Full<Bytes>>,
) -> (SocketAddr, Result<Reply, String>) {
    let (tcp, client) = connect(env.https[t], t, victim).await;
    let config = Arc::new(env.pki.client_config(&[b"h2"]));
    let name = rustls::pki_types::ServerName::try_from("a.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = tls.await.expect("tls");
    let mut h2 = common::h2_client::<_, Full<Bytes>>(tls).await;
    let got = tokio::time::timeout(WAIT, async {
        let resp = h2.send_request(req).await.map_err(|e| e.to_string())?;
        let (status, named) = (
            resp.status().as_u16(),
            resp.headers().contains_key("x-recorder"),
        );
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            named.then(|| String::from_utf8_lossy(&body).into_owned()),
        ))
    });
    let got = got.await.unwrap_or_else(|_| Err("no answer in 3 s".into()));
    (client, got)
}

pub(crate) async fn run_h2(env: &Env, t: usize, line: &str) -> Option<String> {
    let f: Vec<&str> = line.split('|').collect();
    let body = unescape(&f[4].replace("{ADMIN}", &ADMIN.escape_default().to_string()));
    let mut req = http::Request::builder().method(f[1]).uri(f[2]);
    for h in f[3].split("; ").filter(|h| !h.is_empty()) {
        let (k, v) = h.split_once(": ").expect("name: value");
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(body.clone()))).ok()?;
    let attack = async {
        let (client, got) = h2_send(env, t, false, req).await;
        let sent = format!(
            "{} {} [{}] DATA {} -> {got:?}",
            f[1],
            f[2],
            f[3],
            esc(&body, 80)
        );
        let replies = got.map_or(vec![(0, None)], |r| vec![r]);
        let (bytes, problems, expect) = (Err(body.len() as u64), Problems::new(), f[5].into());
        Attack {
            client,
            sent,
            replies,
            bytes,
            problems,
            expect,
        }
    };
    run(env, t, f[0], attack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn http2_requests_should_reach_http1_targets_as_tether_logged_them() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    let cases: Vec<&str> = H2_CASES.lines().filter(|l| !l.is_empty()).collect();
    for line in &cases {
        let (a, b) = tokio::join!(run_h2(&env, 0, line), run_h2(&env, 1, line));
        failures.extend(a.into_iter().chain(b));
    }
    let (n, runs) = (failures.len(), 2 * cases.len());
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        failures.join("\n")
    );
}
