//! The admin API as an operator exposes it: reads open, writes (`POST /reload`)
//! only with `Authorization: Bearer <admin_token>`. Tests bind loopback only: the
//! rule that a non-loopback admin address needs a token is `tether check`'s
//! (tests/check.rs, src/config/tests.rs); here a token is set on a loopback admin
//! address, where, once set, it is required too.

mod common;

use std::net::SocketAddr;

use common::{one_group_config, request, Backend, Client, Reply, TetherProc};

const TOKEN: &str = "tether-test-admin-token-0123456789";
const TOKEN_ENV: &str = "TETHER_TEST_ADMIN_TOKEN";

/// One listener forwarding everything to `backend`, with a token-protected admin API.
fn config(backend: &Backend) -> String {
    one_group_config(
        backend.addr,
        &format!("admin = \"127.0.0.1:{{admin}}\"\nadmin_token = \"env:{TOKEN_ENV}\""),
    )
}

async fn admin(lb: &TetherProc, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let mut client = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    client.send(request(method, path, &headers)).await
}

/// Which backend the data path reaches now (asked a few times, all must agree).
async fn serving(lb: &TetherProc) -> String {
    let mut client = Client::connect(lb.addr()).await;
    let first = client.get("/").await.text();
    for _ in 0..4 {
        assert_eq!(client.get("/").await.text(), first);
    }
    first
}

#[tokio::test]
async fn it_should_refuse_a_reload_without_the_token_or_with_a_wrong_one_and_keep_the_config() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = TetherProc::start_with_env(&config(&a), &[(TOKEN_ENV, TOKEN)]).await;
    assert_eq!(serving(&lb).await, "a");
    // The file now says "forward to b"; no refused write may put it in force.
    lb.write_config(&config(&b));
    let wrong = [
        None,
        Some("Bearer wrong-token-0123456789abcdef".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
    ];
    for auth in &wrong {
        let r = admin(&lb, "POST", "/reload", auth.as_deref()).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{auth:?}: {:?}",
            r.headers
        );
        assert_eq!(serving(&lb).await, "a", "{auth:?} changed the config");
    }
    // Reads stay open.
    for path in ["/", "/status", "/targets", "/healthz"] {
        let r = admin(&lb, "GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}");
    }
    // The right token reloads.
    let bearer = format!("Bearer {TOKEN}");
    let r = admin(&lb, "POST", "/reload", Some(&bearer)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(serving(&lb).await, "b");
}

#[tokio::test]
async fn it_should_refuse_a_reload_that_moves_the_admin_api() {
    let a = Backend::start("a").await;
    let lb = TetherProc::start_with_env(&config(&a), &[(TOKEN_ENV, TOKEN)]).await;
    let moved = config(&a).replace("127.0.0.1:{admin}", "127.0.0.1:1");
    lb.write_config(&moved);
    let bearer = format!("Bearer {TOKEN}");
    let r = admin(&lb, "POST", "/reload", Some(&bearer)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("admin address changed"), "{}", r.text());
}
