//! Cookie stickiness through the real binary: AWSALB/AWSALBCORS on every response
//! (the websocket 101 too), re-pinning, key rotation across replicas, app cookies,
//! and target group stickiness.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

const KEY_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn sticky_config(keys: &[&str], backends: &[&Backend], stickiness: &str) -> String {
    let targets: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        r#"
[load_balancer]
threads = 2
sticky_keys = [{keys}]
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "web" }}
[target_group.web]
targets = [{targets}]
stickiness = {stickiness}
"#,
        keys = keys.join(", "),
        targets = targets.join(", ")
    )
}

const LB: &str = r#"{ type = "lb_cookie", duration = "1d" }"#;

async fn three() -> (Backend, Backend, Backend) {
    (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    )
}

async fn get_with_cookie(lb: &TetherProc, path: &str, cookie: Option<&str>) -> Reply {
    let mut client = Client::connect(lb.addr()).await;
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    client.send(request("GET", path, &headers)).await
}

#[tokio::test]
async fn it_should_set_both_alb_cookies_with_alb_attributes_on_every_response() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    let r = get_with_cookie(&lb, "/", None).await;
    let alb = r.set_cookie("AWSALB").expect("AWSALB");
    let cors = r.set_cookie("AWSALBCORS").expect("AWSALBCORS");
    let value = |c: &str| {
        c.split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    };
    assert_eq!(value(&alb), value(&cors), "same value in both");
    assert!(
        alb.contains("; Expires=") && alb.contains("; Path=/"),
        "{alb}"
    );
    assert!(
        !alb.contains("Max-Age") && !alb.contains("Secure") && !alb.contains("HttpOnly"),
        "{alb}"
    );
    assert!(cors.ends_with("; SameSite=None; Secure"), "{cors}");
    // Expires is a week ahead.
    let expires = alb
        .split("Expires=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let when = httpdate::parse_http_date(expires).expect("http date");
    let ahead = when.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(7 * 86400 - 120) && ahead <= Duration::from_secs(7 * 86400)
    );

    // The same client keeps its target and gets the cookie again on every response.
    let pair = r.cookie_pair("AWSALB").unwrap();
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let r = get_with_cookie(&lb, "/", Some(&pair)).await;
        assert!(r.set_cookie("AWSALB").is_some());
        seen.insert(r.text());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen.into_iter().next().unwrap(), r.text());
}

#[tokio::test]
async fn it_should_send_a_cookie_of_this_second_back_as_is_and_reseal_an_older_one() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    // Within the second it was sealed, the same pin seals to the same cookie but for
    // the nonce: tether sends the client's value back instead of sealing again. A
    // second boundary may fall between the two requests: a few tries find one without.
    let mut same = false;
    let mut pair = String::new();
    let mut backend = String::new();
    for _ in 0..5 {
        let first = get_with_cookie(&lb, "/", None).await;
        pair = first.cookie_pair("AWSALB").unwrap();
        backend = first.text();
        let again = get_with_cookie(&lb, "/", Some(&pair)).await;
        assert_eq!(again.text(), backend);
        if again.cookie_pair("AWSALB").as_deref() == Some(pair.as_str()) {
            assert_eq!(
                again
                    .cookie_pair("AWSALBCORS")
                    .map(|p| p.replacen("AWSALBCORS", "AWSALB", 1)),
                Some(pair.clone())
            );
            same = true;
            break;
        }
    }
    assert!(same, "a cookie of this second was never sent back as is");
    // A second later the pin is sealed again (a new issue time, a new value), and the
    // client stays on its target.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = get_with_cookie(&lb, "/", Some(&pair)).await;
    assert_eq!(later.text(), backend);
    let resealed = later.cookie_pair("AWSALB").unwrap();
    assert_ne!(resealed, pair);
}

#[tokio::test]
async fn it_should_set_the_cookie_on_the_websocket_101_too() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    let url = format!("ws://{}/ws", lb.addr());
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.expect("ws");
    assert_eq!(resp.status(), 101);
    let cookies: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("AWSALB=")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("AWSALBCORS=")),
        "{cookies:?}"
    );
    ws.close(None).await.ok();
}

#[tokio::test]
async fn it_should_repin_on_a_tampered_expired_or_foreign_cookie_without_an_error() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    let first = get_with_cookie(&lb, "/", None).await;
    let pair = first.cookie_pair("AWSALB").unwrap();
    let mut tampered = pair.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        "AWSALB=",
        "AWSALB=garbage!!",
        "AWSALB=QUJD",
    ] {
        let r = get_with_cookie(&lb, "/", Some(bad)).await;
        assert_eq!(r.status, 200, "{bad}");
        let fresh = r.cookie_pair("AWSALB").expect("a new cookie");
        assert_ne!(fresh, bad);
        // The new pin is a real one: it keeps the client on the target that answered.
        for _ in 0..5 {
            assert_eq!(
                get_with_cookie(&lb, "/", Some(&fresh)).await.text(),
                r.text(),
                "re-pinned after {bad}"
            );
        }
    }
    // A cookie sealed by another load balancer's key is foreign: ignored, re-pinned.
    let other = TetherProc::start(&sticky_config(&[KEY_B], &[&a, &b, &c], LB)).await;
    let foreign = get_with_cookie(&other, "/", None)
        .await
        .cookie_pair("AWSALB")
        .unwrap();
    let spread: HashSet<String> = {
        let mut s = HashSet::new();
        for _ in 0..6 {
            s.insert(get_with_cookie(&lb, "/", Some(&foreign)).await.text());
        }
        s
    };
    assert!(
        spread.len() > 1,
        "a foreign cookie must not pin: {spread:?}"
    );
}

#[tokio::test]
async fn it_should_expire_pins_after_the_duration() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(
        &[KEY_A],
        &[&a, &b, &c],
        r#"{ type = "lb_cookie", duration = "1s" }"#,
    ))
    .await;
    let pair = get_with_cookie(&lb, "/", None)
        .await
        .cookie_pair("AWSALB")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(get_with_cookie(&lb, "/", Some(&pair)).await.text());
    }
    assert!(seen.len() > 1, "an expired pin no longer pins: {seen:?}");
}

#[tokio::test]
async fn it_should_repin_a_client_whose_target_left_the_config() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    // Find a client pinned to "b".
    let mut pair = None;
    for _ in 0..6 {
        let r = get_with_cookie(&lb, "/", None).await;
        if r.text() == "b" {
            pair = r.cookie_pair("AWSALB");
            break;
        }
    }
    let pair = pair.expect("some client lands on b");
    assert_eq!(get_with_cookie(&lb, "/", Some(&pair)).await.text(), "b");

    lb.reload(&sticky_config(&[KEY_A], &[&a, &c], LB));
    let mut moved = None;
    for _ in 0..50 {
        let r = get_with_cookie(&lb, "/", Some(&pair)).await;
        assert_eq!(r.status, 200);
        if r.text() != "b" {
            moved = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = moved.expect("the reload took effect");
    let new_pair = moved.cookie_pair("AWSALB").expect("a new cookie");
    assert_ne!(new_pair, pair);
    // And the new pin holds.
    for _ in 0..5 {
        assert_eq!(
            get_with_cookie(&lb, "/", Some(&new_pair)).await.text(),
            moved.text()
        );
    }
}

#[tokio::test]
async fn it_should_route_a_cookie_from_one_replica_through_another_with_the_same_keys() {
    let (a, b, c) = three().await;
    let one = TetherProc::start(&sticky_config(&[KEY_A], &[&a, &b, &c], LB)).await;
    // The second replica has rotated: a new key first, the old one still opens.
    let two = TetherProc::start(&sticky_config(&[KEY_B, KEY_A], &[&a, &b, &c], LB)).await;
    for _ in 0..6 {
        let r = get_with_cookie(&one, "/", None).await;
        let pair = r.cookie_pair("AWSALB").unwrap();
        for _ in 0..3 {
            assert_eq!(
                get_with_cookie(&two, "/", Some(&pair)).await.text(),
                r.text()
            );
        }
    }
}

#[tokio::test]
async fn it_should_pin_app_cookie_sessions_with_awsalbapp() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(
        &[KEY_A],
        &[&a, &b, &c],
        r#"{ type = "app_cookie", cookie_name = "JSESSIONID", duration = "1h" }"#,
    ))
    .await;
    // No application session yet: no AWSALBAPP, no AWSALB.
    let r = get_with_cookie(&lb, "/", None).await;
    assert!(
        r.set_cookie("AWSALBAPP-0").is_none() && r.set_cookie("AWSALB").is_none(),
        "{:?}",
        r.set_cookies()
    );
    // The application starts a session: tether adds AWSALBAPP-0.
    let login = get_with_cookie(&lb, "/login", None).await;
    let app = login.cookie_pair("JSESSIONID").unwrap();
    let pin = login.cookie_pair("AWSALBAPP-0").expect("AWSALBAPP-0");
    let both = format!("{app}; {pin}");
    for _ in 0..6 {
        assert_eq!(
            get_with_cookie(&lb, "/", Some(&both)).await.text(),
            login.text()
        );
    }
    // Without the application cookie the pin means nothing.
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(get_with_cookie(&lb, "/", Some(&pin)).await.text());
    }
    assert!(seen.len() > 1, "{seen:?}");
}

#[tokio::test]
async fn it_should_keep_a_client_on_one_target_group_with_group_stickiness() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = format!(
        r#"
[load_balancer]
sticky_keys = ["{KEY_A}"]
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = {{ target_groups = [{{ name = "blue", weight = 50 }}, {{ name = "green", weight = 50 }}], stickiness = {{ duration = "1h" }} }} }}
[target_group.blue]
targets = ["{}"]
[target_group.green]
targets = ["{}"]
"#,
        blue.addr, green.addr
    );
    let lb = TetherProc::start(&config).await;
    // 64 new clients on a 50/50 split: each colour gets 32 ± 16 (four standard
    // deviations: a chance failure about once in 15,000 runs), and each client stays.
    let mut blues = 0;
    for _ in 0..64 {
        let first = get_with_cookie(&lb, "/", None).await;
        assert!(first
            .set_cookie("AWSALBTGCORS")
            .unwrap()
            .ends_with("SameSite=None; Secure"));
        let pair = first.cookie_pair("AWSALBTG").expect("AWSALBTG");
        if first.text() == "blue" {
            blues += 1;
        }
        for _ in 0..3 {
            assert_eq!(
                get_with_cookie(&lb, "/", Some(&pair)).await.text(),
                first.text()
            );
        }
    }
    assert!(
        (16..=48).contains(&blues),
        "new clients split {blues} blue / {} green",
        64 - blues
    );
}

#[tokio::test]
async fn it_should_add_the_opt_in_secure_and_http_only_flags_to_awsalb_only() {
    let (a, b, c) = three().await;
    let lb = TetherProc::start(&sticky_config(
        &[KEY_A],
        &[&a, &b, &c],
        r#"{ type = "lb_cookie", secure = true, http_only = true }"#,
    ))
    .await;
    let r = get_with_cookie(&lb, "/", None).await;
    let alb = r.set_cookie("AWSALB").expect("AWSALB");
    assert!(alb.ends_with("; Path=/; Secure; HttpOnly"), "{alb}");
    let cors = r.set_cookie("AWSALBCORS").expect("AWSALBCORS");
    assert!(cors.contains("; SameSite=None; Secure"), "{cors}");
}
