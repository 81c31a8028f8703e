//! The exchange core's Socket.IO sid pinning, retry policy, failure mapping and
//! transforms (the rest of its tests are in exchange_tests.rs, with the fixtures).

use super::*;

// === Socket.IO sid pinning ===

const OPEN_PACKET_1: &[u8] = br#"0{"sid":"abc","upgrades":["websocket"],"ping"#;
const OPEN_PACKET_2: &[u8] = br#"Interval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

/// A polling handshake answered with an open packet for sid `abc`, in two pieces;
/// returns the target that opened the session.
fn handshake(r: &Arc<Routing>) -> SocketAddr {
    let mut ex = forwarded(decide_get(
        r,
        "/socket.io/",
        Some("EIO=4&transport=polling&t=N8hyd6w"),
        &[],
    ));
    assert!(ex.wants_response_body());
    ex.response_started(200);
    ex.response_body(OPEN_PACKET_1, false);
    assert!(ex.wants_response_body(), "half a packet is not enough");
    ex.response_body(OPEN_PACKET_2, true);
    assert!(!ex.wants_response_body());
    ex.addr()
}

fn sessions(r: &Routing) -> Arc<crate::socketio::SidTable> {
    group(r, "sio").socketio.as_ref().unwrap().sessions.clone()
}

#[test]
fn it_should_pin_a_socketio_sid_learned_from_the_open_packet() {
    let r = routing();
    let opened = handshake(&r);
    for _ in 0..6 {
        let ex = forwarded(decide_get(
            &r,
            "/socket.io/",
            Some("EIO=4&transport=polling&sid=abc"),
            &[],
        ));
        assert!(!ex.wants_response_body(), "not a handshake");
        assert_eq!(ex.addr(), opened);
    }
}

#[test]
fn it_should_not_pin_an_unknown_sid() {
    let r = routing();
    handshake(&r);
    let seen: HashSet<SocketAddr> = (0..3)
        .map(|_| {
            forwarded(decide_get(
                &r,
                "/socket.io/",
                Some("EIO=4&transport=polling&sid=zzz"),
                &[],
            ))
            .addr()
        })
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn it_should_learn_no_sid_from_a_body_that_is_not_an_open_packet() {
    let r = routing();
    let mut ex = forwarded(decide_get(
        &r,
        "/socket.io/",
        Some("EIO=4&transport=polling"),
        &[],
    ));
    ex.response_body(b"4hello", true);
    assert!(!ex.wants_response_body());
    drop(ex);
    assert!(sessions(&r).is_empty());
}

fn upgrade_request<'a>() -> RequestHead<'a> {
    RequestHead {
        upgrade: true,
        ..get(
            "/socket.io/",
            Some("EIO=4&transport=websocket&sid=abc"),
            &[],
        )
    }
}

#[test]
fn it_should_forget_the_sid_when_its_upgraded_websocket_ends() {
    let r = routing();
    let opened = handshake(&r);
    let mut ws = forwarded(decide(&r, &listener(), &upgrade_request()));
    assert_eq!(ws.addr(), opened, "the upgrade follows the sid");
    ws.response_started(101);
    assert!(ws.is_upgraded());
    assert_eq!(
        sessions(&r).len(),
        1,
        "still known while the websocket is open"
    );
    drop(ws);
    assert!(sessions(&r).touch("abc", Instant::now()).is_none());
    assert!(sessions(&r).is_empty());
}

#[test]
fn it_should_keep_the_sid_when_the_upgrade_is_refused() {
    let r = routing();
    let opened = handshake(&r);
    let mut ws = forwarded(decide(&r, &listener(), &upgrade_request()));
    ws.response_started(400);
    assert!(!ws.is_upgraded());
    drop(ws);
    assert_eq!(sessions(&r).touch("abc", Instant::now()), Some(opened));
}

#[test]
fn it_should_count_an_upgraded_exchange_as_a_tunnel_not_a_request() {
    let r = routing();
    handshake(&r);
    let mut ws = forwarded(decide(&r, &listener(), &upgrade_request()));
    let target = ws.target().clone();
    assert_eq!((target.outstanding(), target.connections()), (1, 1));
    ws.response_started(101);
    assert_eq!((target.outstanding(), target.connections()), (0, 1));
    drop(ws);
    assert_eq!(target.connections(), 0);
}

// === Retry policy ===

#[test]
fn it_should_move_a_failed_connect_to_another_target_once() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    let first = ex.target().clone();
    assert_eq!(ex.connect_failed(), Retry::Elsewhere);
    assert_ne!(ex.addr(), first.addr);
    assert_eq!(
        first.outstanding(),
        0,
        "the failed target is no longer counted"
    );
    assert!(
        first.is_suspect(crate::target_group::now_ms()),
        "passive mark"
    );
    let second = ex.addr();
    assert_eq!(ex.connect_failed(), Retry::No);
    assert_eq!(ex.addr(), second);
}

#[test]
fn it_should_not_retry_a_failed_connect_with_one_target() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/one/x", None, &[]));
    assert_eq!(ex.connect_failed(), Retry::No);
    assert_eq!(ex.addr(), addr(7600));
}

#[test]
fn it_should_not_retry_a_failed_connect_without_passive_health() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/nopassive/x", None, &[]));
    let first = ex.addr();
    assert_eq!(ex.connect_failed(), Retry::No);
    assert_eq!(ex.addr(), first);
    assert!(!ex.target().is_suspect(crate::target_group::now_ms()));
}

#[test]
fn it_should_pin_the_cookie_to_the_target_a_retry_moved_to() {
    // Sealed this second for 7201: sent back as is, it would pin the failed target.
    for _ in 0..5 {
        let r = routing();
        let second = now_secs();
        let value = r
            .keys
            .seal(Purpose::LbCookie, &lb_pin("sticky", 7201, second));
        let header = format!("AWSALB={value}");
        let headers = cookie_header(&header);
        let mut ex = forwarded(decide_get(&r, "/sticky/x", None, &headers));
        assert_eq!(ex.addr(), addr(7201));
        assert_eq!(ex.connect_failed(), Retry::Elsewhere);
        let cookies = ex.cookies(no_set_cookies());
        if now_secs() != second {
            continue;
        }
        assert_ne!(ex.addr(), addr(7201));
        let fresh = set_cookie_value(find(&cookies, "AWSALB"), "AWSALB").unwrap();
        assert_ne!(fresh, value);
        let pin = r.keys.open(Purpose::LbCookie, fresh).unwrap();
        assert_eq!(pin.target, Some(ex.addr()));
        return;
    }
    panic!("the clock never held still for one second");
}

#[test]
fn it_should_replay_an_idempotent_request_on_a_closed_pooled_connection_once() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    let first = ex.target().clone();
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: true,
            replayable: true,
            safe: true
        }),
        Retry::SameTarget
    );
    assert_eq!(ex.addr(), first.addr);
    assert!(
        !first.is_suspect(crate::target_group::now_ms()),
        "a pooled close says nothing of health"
    );
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: true,
            replayable: true,
            safe: true
        }),
        Retry::No
    );
}

#[test]
fn it_should_never_replay_a_written_request_that_is_not_idempotent() {
    // A reset is no proof that the target never read the request: a POST it may
    // have acted on goes once, pooled connection or not.
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: true,
            replayable: true,
            safe: false
        }),
        Retry::No
    );
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    let first = ex.addr();
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: false,
            replayable: true,
            safe: false
        }),
        Retry::No
    );
    assert_eq!(ex.addr(), first);
    assert!(!Exchange::may_reuse(false) && Exchange::may_reuse(true));
}

#[test]
fn it_should_not_retry_a_request_that_cannot_be_replayed() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: true,
            replayable: false,
            safe: true
        }),
        Retry::No
    );
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: false,
            replayable: false,
            safe: true
        }),
        Retry::No
    );
}

#[test]
fn it_should_move_a_safe_request_elsewhere_when_a_fresh_connection_closes() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/", None, &[]));
    let first = ex.target().clone();
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: false,
            replayable: true,
            safe: true
        }),
        Retry::Elsewhere
    );
    assert_ne!(ex.addr(), first.addr);
    assert!(first.is_suspect(crate::target_group::now_ms()));
    assert_eq!(
        ex.failed_before_response(Attempt {
            reused: false,
            replayable: true,
            safe: true
        }),
        Retry::No
    );
}

#[test]
fn it_should_clear_the_passive_mark_when_a_response_comes() {
    let r = routing();
    let mut ex = forwarded(decide_get(&r, "/one/x", None, &[]));
    assert_eq!(ex.connect_failed(), Retry::No);
    assert!(ex.target().is_suspect(crate::target_group::now_ms()));
    ex.response_started(200);
    assert!(!ex.target().is_suspect(crate::target_group::now_ms()));
}

// === Failure mapping ===

#[test]
fn it_should_map_failures_to_alb_statuses() {
    let table = [
        (Failure::ConnectTimeout, Some(504)),
        (Failure::TargetTimeout, Some(504)),
        (Failure::ConnectError, Some(502)),
        (Failure::TargetClosed, Some(502)),
        (Failure::BadResponse, Some(502)),
        (Failure::BadRequest, Some(400)),
        (Failure::ClientTimeout, Some(408)),
        (Failure::ClientClosed, None),
    ];
    for (failure, status) in table {
        assert_eq!(failure.status(), status, "{failure:?}");
    }
}

#[test]
fn it_should_count_only_target_failures_against_passive_health() {
    for f in [
        Failure::ConnectTimeout,
        Failure::ConnectError,
        Failure::TargetClosed,
    ] {
        assert!(f.is_target(), "{f:?}");
    }
    for f in [
        Failure::TargetTimeout,
        Failure::BadResponse,
        Failure::BadRequest,
        Failure::ClientTimeout,
        Failure::ClientClosed,
    ] {
        assert!(!f.is_target(), "{f:?}");
    }
}

#[test]
fn it_should_know_which_methods_are_idempotent() {
    for m in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
        assert!(is_idempotent(m), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT", "get"] {
        assert!(!is_idempotent(m), "{m}");
    }
}

// === Transforms ===

#[test]
fn it_should_hand_the_engines_the_rewritten_url_and_host_of_a_forward() {
    let routing = routing();
    let ex = forwarded(decide_get(&routing, "/rw/a/b", Some("x=1"), &[]));
    assert_eq!(ex.rewritten_url(), Some("/new/a/b?x=1"));
    assert_eq!(ex.rewritten_host(), Some("internal.example.com"));
    // A forward by a rule without transforms changes nothing.
    let ex = forwarded(decide_get(&routing, "/one/x", None, &[]));
    assert_eq!((ex.rewritten_url(), ex.rewritten_host()), (None, None));
}

#[test]
fn it_should_answer_500_when_a_rewrite_cannot_be_sent() {
    let routing = routing();
    let r = responded(decide_get(&routing, "/rwbad/x", None, &[]));
    assert_eq!(r.status, 500);
    assert!(r.close);
}
