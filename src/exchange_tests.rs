//! The exchange core's decisions, without sockets.

use super::*;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::headers::Header;
use crate::settings::Protocol;

// === Fixtures ===

/// The sealing key (hex of 32 bytes of 0x02), then a key that only opens (0x01).
const SEALING_KEY: [u8; 32] = [2; 32];
const OPENING_KEY: [u8; 32] = [1; 32];

/// One HTTP listener on 8080, a rule per behaviour, every group without health checks
/// (targets routable at once) and round robin (picks are predictable).
const CONFIG: &str = r##"
[load_balancer]
sticky_keys = [
  "0202020202020202020202020202020202020202020202020202020202020202",
  "0101010101010101010101010101010101010101010101010101010101010101",
]

[[listener]]
port = 8080
default_action = { forward = "web" }

  [[listener.rule]]
  priority = 1
  conditions = { path_pattern = ["/fixed"] }
  action = { fixed_response = { status = 404, content_type = "application/json", body = "{\"error\":\"nope\"}" } }

  [[listener.rule]]
  priority = 2
  conditions = { host_header = ["old.example.com"] }
  action = { redirect = { protocol = "HTTPS", port = "443", host = "#{host}", path = "/v2/#{path}", query = "#{query}&from=old", status = 302 } }

  [[listener.rule]]
  priority = 3
  conditions = { path_pattern = ["/empty/*"] }
  action = { forward = "empty" }

  [[listener.rule]]
  priority = 4
  conditions = { path_pattern = ["/sticky/*"] }
  action = { forward = "sticky" }

  [[listener.rule]]
  priority = 5
  conditions = { path_pattern = ["/app/*"] }
  action = { forward = "app" }

  [[listener.rule]]
  priority = 6
  conditions = { path_pattern = ["/bg/*"] }
  action = { forward = { target_groups = [{ name = "blue", weight = 999 }, { name = "green", weight = 1 }], stickiness = { duration = "1h" } } }

  [[listener.rule]]
  priority = 7
  conditions = { path_pattern = ["/socket.io/*"] }
  action = { forward = "sio" }

  [[listener.rule]]
  priority = 8
  conditions = { path_pattern = ["/one/*"] }
  action = { forward = "one" }

  [[listener.rule]]
  priority = 9
  conditions = { path_pattern = ["/nopassive/*"] }
  action = { forward = "nopassive" }

  [[listener.rule]]
  priority = 10
  conditions = { path_pattern = { regex_values = ['^/rw/'] } }
  action = { forward = "web" }
  transforms = [{ url_rewrite = { regex = '^/rw/(.*)$', replace = '/new/$1' } }, { host_header_rewrite = { regex = '^(.*)$', replace = 'internal.$1' } }]

  [[listener.rule]]
  priority = 11
  conditions = { path_pattern = ["/rwbad/*"] }
  action = { forward = "web" }
  transforms = [{ url_rewrite = { regex = '^/rwbad/', replace = 'no-slash/' } }]

  [[listener.rule]]
  priority = 12
  conditions = { path_pattern = ["/cutover/*"] }
  action = { forward = { target_groups = [{ name = "blue", weight = 0 }, { name = "green", weight = 100 }], stickiness = { duration = "1h" } } }

[target_group.web]
targets = ["127.0.0.1:7000", "127.0.0.1:7001"]
health_check = { enabled = false }

[target_group.empty]
targets = []
health_check = { enabled = false }

[target_group.sticky]
targets = ["127.0.0.1:7200", "127.0.0.1:7201", "127.0.0.1:7202"]
stickiness = { type = "lb_cookie", duration = "1d" }
health_check = { enabled = false }

[target_group.app]
targets = ["127.0.0.1:7300", "127.0.0.1:7301"]
stickiness = { type = "app_cookie", cookie_name = "JSESSIONID", duration = "1d" }
health_check = { enabled = false }

[target_group.blue]
targets = ["127.0.0.1:7400"]
health_check = { enabled = false }

[target_group.green]
targets = ["127.0.0.1:7401"]
health_check = { enabled = false }

[target_group.sio]
targets = ["127.0.0.1:7500", "127.0.0.1:7501", "127.0.0.1:7502"]
socketio = { path = "/socket.io/" }
health_check = { enabled = false }

[target_group.one]
targets = ["127.0.0.1:7600"]
health_check = { enabled = false }

[target_group.nopassive]
targets = ["127.0.0.1:7700", "127.0.0.1:7701"]
health_check = { enabled = false }
passive_health = { enabled = false }
"##;

/// A fresh routing snapshot (fresh counters, round robin from the first target).
fn routing() -> Arc<Routing> {
    let config = crate::config::Config::parse(CONFIG, Path::new("t.toml")).expect("config");
    Arc::new(Routing::build(&config, None, &Default::default()))
}

fn listener() -> ListenerInfo {
    ListenerInfo::new(0, 8080, Protocol::Http)
}

/// A plain `GET` from 127.0.0.1 to `example.com`.
fn get<'a>(path: &'a str, query: Option<&'a str>, headers: &'a [Header<'a>]) -> RequestHead<'a> {
    RequestHead {
        method: "GET",
        path,
        query,
        host: Some("example.com"),
        headers: Headers(headers),
        upgrade: false,
        client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

fn cookie_header(value: &str) -> [Header<'_>; 1] {
    [Header {
        name: "Cookie",
        value: value.as_bytes(),
    }]
}

fn decide_get(
    routing: &Arc<Routing>,
    path: &str,
    query: Option<&str>,
    headers: &[Header<'_>],
) -> Decision {
    decide(routing, &listener(), &get(path, query, headers))
}

#[track_caller]
fn forwarded(d: Decision) -> Box<Exchange> {
    match d {
        Decision::Forward(ex) => ex,
        Decision::Respond(r) => panic!("expected a forward, got a {} response", r.status),
    }
}

#[track_caller]
fn responded(d: Decision) -> LbResponse {
    match d {
        Decision::Respond(r) => r,
        Decision::Forward(ex) => panic!("expected a response, got a forward to {}", ex.addr()),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn group(routing: &Routing, name: &str) -> Arc<TargetGroup> {
    routing
        .groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .expect("group")
}

fn now_secs() -> u64 {
    sticky::unix_now(SystemTime::now())
}

fn lb_pin(group: &str, port: u16, issued: u64) -> Pin {
    Pin {
        group: group.into(),
        target: Some(addr(port)),
        issued,
    }
}

fn no_set_cookies<'a>() -> std::iter::Empty<&'a [u8]> {
    std::iter::empty()
}

/// The value of a `Set-Cookie` line called `name`, if the line sets it.
fn set_cookie_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, rest) = line.split_once('=')?;
    (n == name).then(|| rest.split(';').next().unwrap_or(""))
}

/// The `Set-Cookie` line of `name` among `cookies`.
#[track_caller]
fn find<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| set_cookie_value(c, name).is_some())
        .unwrap_or_else(|| panic!("no {name} in {cookies:?}"))
}

/// Flips one base64url character in the middle of a sealed value.
fn tamper(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

// === decide: answers of tether's own ===

#[test]
fn it_should_answer_trace_with_405_and_close() {
    let r = routing();
    let req = RequestHead {
        method: "TRACE",
        ..get("/", None, &[])
    };
    let resp = responded(decide(&r, &listener(), &req));
    assert_eq!(resp.status, 405);
    assert!(resp.close);
    assert_eq!(resp.location, None);
    assert!(std::str::from_utf8(&resp.body)
        .unwrap()
        .contains("405 Method Not Allowed"));
}

fn xff_list(n: usize) -> String {
    (0..n)
        .map(|i| format!("10.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn it_should_answer_463_to_31_forwarded_addresses() {
    let r = routing();
    let list = xff_list(31);
    let headers = [Header {
        name: "X-Forwarded-For",
        value: list.as_bytes(),
    }];
    let resp = responded(decide_get(&r, "/", None, &headers));
    assert_eq!(resp.status, 463);
    assert!(resp.close);
    assert!(std::str::from_utf8(&resp.body)
        .unwrap()
        .contains("Too Many Forwarded Addresses"));
}

#[test]
fn it_should_count_forwarded_addresses_across_header_lines() {
    let r = routing();
    let (a, b) = (xff_list(15), xff_list(16));
    let headers = [
        Header {
            name: "X-Forwarded-For",
            value: a.as_bytes(),
        },
        Header {
            name: "x-forwarded-for",
            value: b.as_bytes(),
        },
    ];
    assert_eq!(responded(decide_get(&r, "/", None, &headers)).status, 463);
}

#[test]
fn it_should_forward_a_request_with_30_forwarded_addresses() {
    let r = routing();
    let list = xff_list(30);
    let headers = [Header {
        name: "X-Forwarded-For",
        value: list.as_bytes(),
    }];
    let ex = forwarded(decide_get(&r, "/", None, &headers));
    assert_eq!(ex.group.name, "web");
}

#[test]
fn it_should_answer_a_fixed_response_rule_and_keep_the_connection() {
    let r = routing();
    let resp = responded(decide_get(&r, "/fixed", None, &[]));
    assert_eq!(
        resp,
        LbResponse {
            status: 404,
            content_type: "application/json".into(),
            body: Bytes::from_static(br#"{"error":"nope"}"#),
            location: None,
            close: false,
            action: Some(crate::access_log::ActionKind::FixedResponse),
            rule_priority: Some(1),
            www_authenticate: None,
        }
    );
}

#[test]
fn it_should_redirect_with_a_location_from_host_path_and_query_and_keep_the_status() {
    let r = routing();
    let req = RequestHead {
        host: Some("old.example.com:8080"),
        ..get("/a/b", Some("q=1"), &[])
    };
    let resp = responded(decide(&r, &listener(), &req));
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.location.as_deref(),
        Some("https://old.example.com/v2/a/b?q=1&from=old")
    );
    assert!(!resp.close);
    assert!(std::str::from_utf8(&resp.body)
        .unwrap()
        .contains("302 Found"));
}

#[test]
fn it_should_answer_503_to_a_forward_to_an_empty_group() {
    let r = routing();
    let resp = responded(decide_get(&r, "/empty/x", None, &[]));
    assert_eq!(resp.status, 503);
    assert!(resp.close);
}

#[test]
fn it_should_answer_500_for_a_listener_without_rules() {
    let r = routing();
    let resp = responded(decide(
        &r,
        &ListenerInfo::new(7, 9999, Protocol::Http),
        &get("/", None, &[]),
    ));
    assert_eq!(resp.status, 500);
}

// === decide: target picks ===

#[test]
fn it_should_round_robin_over_two_targets() {
    let r = routing();
    let picks: Vec<u16> = (0..4)
        .map(|_| forwarded(decide_get(&r, "/", None, &[])).addr().port())
        .collect();
    assert_eq!(picks, [7000, 7001, 7000, 7001]);
}

#[test]
fn it_should_count_the_exchange_as_outstanding_while_it_lives() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/", None, &[]));
    let target = ex.target().clone();
    assert_eq!(target.outstanding(), 1);
    drop(ex);
    assert_eq!(target.outstanding(), 0);
}

// === lb_cookie stickiness (AWSALB) ===

#[test]
fn it_should_pin_a_valid_awsalb_cookie_to_its_target() {
    let r = routing();
    // Sealed a while ago: valid, but not the "sealed this second" case.
    let value = r
        .keys
        .seal(Purpose::LbCookie, &lb_pin("sticky", 7201, now_secs() - 60));
    let header = format!("other=1; AWSALB={value}");
    let headers = cookie_header(&header);
    for _ in 0..6 {
        let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
        assert_eq!(ex.addr(), addr(7201));
    }
}

#[test]
fn it_should_pin_by_the_awsalbcors_twin_when_the_browser_sent_only_that() {
    let r = routing();
    let value = r
        .keys
        .seal(Purpose::LbCookie, &lb_pin("sticky", 7202, now_secs() - 60));
    let header = format!("AWSALBCORS={value}");
    let headers = cookie_header(&header);
    for _ in 0..6 {
        assert_eq!(
            forwarded(decide_get(&r, "/sticky/x", None, &headers)).addr(),
            addr(7202)
        );
    }
}

#[test]
fn it_should_set_awsalb_and_its_cors_twin_with_the_same_value() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/sticky/x", None, &[]));
    let cookies = ex.cookies(no_set_cookies());
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let (plain, cors) = (find(&cookies, "AWSALB"), find(&cookies, "AWSALBCORS"));
    let value = set_cookie_value(plain, "AWSALB").unwrap();
    assert_eq!(set_cookie_value(cors, "AWSALBCORS"), Some(value));
    assert!(plain.contains("; Path=/"), "{plain}");
    assert!(plain.contains("; Expires="), "{plain}");
    assert!(!plain.contains("SameSite"), "{plain}");
    assert!(!plain.contains("Secure"), "{plain}");
    assert!(cors.contains("; SameSite=None; Secure"), "{cors}");
    let pin = r.keys.open(Purpose::LbCookie, value).expect("opens");
    assert_eq!(pin.group, "sticky");
    assert_eq!(pin.target, Some(ex.addr()));
    assert!(now_secs().abs_diff(pin.issued) <= 1);
}

#[test]
fn it_should_send_back_a_cookie_sealed_this_second_byte_identical() {
    let r = routing();
    // A second may tick between sealing and answering: then try again.
    for _ in 0..5 {
        let second = now_secs();
        let value = r
            .keys
            .seal(Purpose::LbCookie, &lb_pin("sticky", 7201, second));
        let header = format!("AWSALB={value}");
        let headers = cookie_header(&header);
        let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
        let cookies = ex.cookies(no_set_cookies());
        if now_secs() != second {
            continue;
        }
        assert_eq!(ex.addr(), addr(7201));
        assert_eq!(
            set_cookie_value(find(&cookies, "AWSALB"), "AWSALB"),
            Some(&*value)
        );
        assert_eq!(
            set_cookie_value(find(&cookies, "AWSALBCORS"), "AWSALBCORS"),
            Some(&*value)
        );
        return;
    }
    panic!("the clock never held still for one second");
}

#[test]
fn it_should_reseal_an_older_cookie_for_the_same_target() {
    let r = routing();
    let issued = now_secs() - 5;
    let value = r
        .keys
        .seal(Purpose::LbCookie, &lb_pin("sticky", 7201, issued));
    let header = format!("AWSALB={value}");
    let headers = cookie_header(&header);
    let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
    assert_eq!(ex.addr(), addr(7201));
    let cookies = ex.cookies(no_set_cookies());
    let fresh = set_cookie_value(find(&cookies, "AWSALB"), "AWSALB").unwrap();
    assert_ne!(fresh, value);
    let pin = r.keys.open(Purpose::LbCookie, fresh).expect("opens");
    assert_eq!(pin.target, Some(addr(7201)));
    assert!(pin.issued > issued, "re-issued now: {pin:?}");
}

#[test]
fn it_should_reseal_a_cookie_sealed_this_second_by_a_key_that_only_opens() {
    let r = routing();
    let old = KeyRing::new(&[OPENING_KEY.to_vec()]).unwrap();
    let value = old.seal(Purpose::LbCookie, &lb_pin("sticky", 7201, now_secs()));
    let header = format!("AWSALB={value}");
    let headers = cookie_header(&header);
    let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
    assert_eq!(ex.addr(), addr(7201), "a rotated-out key still opens");
    let cookies = ex.cookies(no_set_cookies());
    let fresh = set_cookie_value(find(&cookies, "AWSALB"), "AWSALB").unwrap();
    assert_ne!(fresh, value);
    let sealing = KeyRing::new(&[SEALING_KEY.to_vec()]).unwrap();
    assert!(
        sealing.open(Purpose::LbCookie, fresh).is_some(),
        "sealed by the new key"
    );
}

#[test]
fn it_should_ignore_a_tampered_cookie_and_still_pick_a_target() {
    let r = routing();
    let value = tamper(
        &r.keys
            .seal(Purpose::LbCookie, &lb_pin("sticky", 7201, now_secs())),
    );
    let header = format!("AWSALB={value}");
    let headers = cookie_header(&header);
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
        seen.insert(ex.addr().port());
        let cookies = ex.cookies(no_set_cookies());
        let fresh = set_cookie_value(find(&cookies, "AWSALB"), "AWSALB").unwrap();
        assert_ne!(fresh, value);
        let pin = r
            .keys
            .open(Purpose::LbCookie, fresh)
            .expect("a valid new pin");
        assert_eq!(pin.target, Some(ex.addr()));
    }
    assert_eq!(
        seen,
        HashSet::from([7200, 7201, 7202]),
        "round robin, not pinned"
    );
}

#[test]
fn it_should_reseal_a_cookie_of_another_group_for_this_one() {
    let r = routing();
    // Same target address, sealed this second, but for another group.
    let value = r
        .keys
        .seal(Purpose::LbCookie, &lb_pin("web", 7201, now_secs()));
    let header = format!("AWSALB={value}");
    let headers = cookie_header(&header);
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
        seen.insert(ex.addr().port());
        let cookies = ex.cookies(no_set_cookies());
        let fresh = set_cookie_value(find(&cookies, "AWSALB"), "AWSALB").unwrap();
        assert_ne!(fresh, value);
        let pin = r.keys.open(Purpose::LbCookie, fresh).expect("opens");
        assert_eq!(pin.group, "sticky");
        assert_eq!(pin.target, Some(ex.addr()));
    }
    assert_eq!(
        seen.len(),
        3,
        "not pinned by a foreign group's cookie: {seen:?}"
    );
}

#[test]
fn it_should_ignore_an_expired_cookie() {
    let r = routing();
    let value = r.keys.seal(
        Purpose::LbCookie,
        &lb_pin("sticky", 7201, now_secs() - 86400 - 10),
    );
    let header = format!("AWSALB={value}");
    let headers = cookie_header(&header);
    let seen: HashSet<u16> = (0..3)
        .map(|_| {
            forwarded(decide_get(&r, "/sticky/x", None, &headers))
                .addr()
                .port()
        })
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn it_should_not_set_target_cookies_for_a_group_without_stickiness() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/", None, &[]));
    assert!(ex.cookies(no_set_cookies()).is_empty());
}

// === app_cookie stickiness (AWSALBAPP-0) ===

#[test]
fn it_should_not_set_awsalbapp_without_an_app_session() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/app/x", None, &[]));
    let other: &[u8] = b"JSESSIONIDX=1; Path=/";
    assert!(ex.cookies(no_set_cookies()).is_empty());
    assert!(ex.cookies([other].into_iter()).is_empty());
}

#[test]
fn it_should_set_awsalbapp_when_the_response_sets_the_app_cookie() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/app/x", None, &[]));
    let sets: [&[u8]; 2] = [b"theme=dark", b"JSESSIONID=s1; Path=/; HttpOnly"];
    let cookies = ex.cookies(sets.into_iter());
    assert_eq!(cookies.len(), 1, "no CORS twin: {cookies:?}");
    let value = set_cookie_value(&cookies[0], sticky::AWSALBAPP).expect("AWSALBAPP-0");
    let pin = r.keys.open(Purpose::AppCookie, value).expect("opens");
    assert_eq!((pin.group.as_str(), pin.target), ("app", Some(ex.addr())));
}

#[test]
fn it_should_set_awsalbapp_when_the_request_carried_the_app_cookie() {
    let r = routing();
    let headers = cookie_header("JSESSIONID=s1");
    let ex = forwarded(decide_get(&r, "/app/x", None, &headers));
    let cookies = ex.cookies(no_set_cookies());
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(set_cookie_value(&cookies[0], sticky::AWSALBAPP).is_some());
}

#[test]
fn it_should_pin_by_awsalbapp_only_next_to_the_app_cookie() {
    let r = routing();
    let value = r
        .keys
        .seal(Purpose::AppCookie, &lb_pin("app", 7301, now_secs() - 60));
    let both = format!("JSESSIONID=s1; AWSALBAPP-0={value}");
    let headers = cookie_header(&both);
    for _ in 0..4 {
        assert_eq!(
            forwarded(decide_get(&r, "/app/x", None, &headers)).addr(),
            addr(7301)
        );
    }
    let alone = format!("AWSALBAPP-0={value}");
    let headers = cookie_header(&alone);
    let seen: HashSet<u16> = (0..2)
        .map(|_| {
            forwarded(decide_get(&r, "/app/x", None, &headers))
                .addr()
                .port()
        })
        .collect();
    assert_eq!(seen.len(), 2, "not pinned without JSESSIONID: {seen:?}");
}

// === group stickiness (AWSALBTG) ===

#[test]
fn it_should_set_awsalbtg_for_a_sticky_weighted_forward() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/bg/x", None, &[]));
    let cookies = ex.cookies(no_set_cookies());
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let (plain, cors) = (find(&cookies, "AWSALBTG"), find(&cookies, "AWSALBTGCORS"));
    let value = set_cookie_value(plain, "AWSALBTG").unwrap();
    assert_eq!(set_cookie_value(cors, "AWSALBTGCORS"), Some(value));
    assert!(cors.contains("; SameSite=None; Secure"), "{cors}");
    assert!(!plain.contains("SameSite"), "{plain}");
    let pin = r.keys.open(Purpose::TargetGroup, value).expect("opens");
    assert_eq!(pin.group, ex.group.name);
    assert_eq!(pin.target, None);
}

#[test]
fn it_should_forward_to_the_group_a_valid_awsalbtg_names() {
    let r = routing();
    let pin = Pin {
        group: "green".into(), // weight 1 of 1000
        target: None,
        issued: now_secs() - 60,
    };
    let value = r.keys.seal(Purpose::TargetGroup, &pin);
    let header = format!("AWSALBTG={value}");
    let headers = cookie_header(&header);
    for _ in 0..20 {
        let ex = forwarded(decide_get(&r, "/bg/x", None, &headers));
        assert_eq!(ex.group.name, "green");
        assert_eq!(ex.addr(), addr(7401));
    }
}

#[test]
fn it_should_keep_a_pinned_client_on_a_group_whose_weight_went_to_zero() {
    // Blue/green: after the shift to 0/100, clients pinned to blue finish their
    // sessions there for the stickiness duration; new clients all go green.
    let r = routing();
    let pin = Pin {
        group: "blue".into(),
        target: None,
        issued: now_secs() - 60,
    };
    let header = format!("AWSALBTG={}", r.keys.seal(Purpose::TargetGroup, &pin));
    let headers = cookie_header(&header);
    for _ in 0..20 {
        let ex = forwarded(decide_get(&r, "/cutover/x", None, &headers));
        assert_eq!(ex.group.name, "blue");
        let new_client = forwarded(decide_get(&r, "/cutover/x", None, &[]));
        assert_eq!(new_client.group.name, "green");
    }
    // Once the pin is older than the duration, the weights decide.
    let expired = Pin {
        issued: now_secs() - 3601,
        ..pin
    };
    let header = format!("AWSALBTG={}", r.keys.seal(Purpose::TargetGroup, &expired));
    let headers = cookie_header(&header);
    let ex = forwarded(decide_get(&r, "/cutover/x", None, &headers));
    assert_eq!(ex.group.name, "green");
}

#[test]
fn it_should_ignore_an_awsalbtg_sealed_for_another_purpose() {
    let r = routing();
    let pin = Pin {
        group: "green".into(),
        target: None,
        issued: now_secs(),
    };
    let value = r.keys.seal(Purpose::LbCookie, &pin);
    let header = format!("AWSALBTG={value}");
    let headers = cookie_header(&header);
    let greens = (0..20)
        .filter(|_| {
            forwarded(decide_get(&r, "/bg/x", None, &headers))
                .group
                .name
                == "green"
        })
        .count();
    assert!(greens < 5, "{greens} of 20 to the weight-1 group");
}

#[test]
fn it_should_not_set_awsalbtg_for_a_single_group_forward() {
    let r = routing();
    let ex = forwarded(decide_get(&r, "/", None, &[]));
    assert!(ex
        .cookies(no_set_cookies())
        .iter()
        .all(|c| !c.starts_with("AWSALBTG")));
}

#[path = "exchange_tests_sessions.rs"]
mod sessions;
