//! 2. Smuggling corpus: no smuggled request ever reaches the target.

use super::*;

struct Smuggle {
    name: &'static str,
    steps: Vec<Step>,
    /// The first response is the target's answer to this; the second is tether's 403
    /// for the smuggled request, which tether parsed and routed itself.
    then_403: Option<&'static str>,
    /// Under the RFC reading the smuggled bytes are body data (TE.CL): they may reach
    /// the target inside a body, never as a request in any reading.
    in_body_ok: bool,
}

fn smuggle(name: &'static str, bytes: String) -> Smuggle {
    Smuggle {
        name,
        steps: vec![Step::Send(bytes.into_bytes())],
        then_403: None,
        in_body_ok: false,
    }
}

/// CL.TE: Content-Length covers `0`-chunk and the smuggled request; the TE header
/// (as `te_lines`) would end the body before it.
fn clte(path: &str, te_lines: &str) -> String {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{te_lines}\r\n{body}",
        body.len()
    )
}

/// TE.CL: the smuggled request is chunk data; Content-Length covers the size line only.
fn tecl(path: &str, te_lines: &str) -> String {
    let first = chunk(SMUGGLED);
    let size_line_len = first.find("\r\n").map(|i| i + 2).unwrap_or(0);
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {size_line_len}\r\n{te_lines}\r\n{first}0\r\n\r\n"
    )
}

fn upgrade_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn smuggling_corpus() -> Vec<Smuggle> {
    vec![
        smuggle("CL.TE", clte("/clte", "Transfer-Encoding: chunked\r\n")),
        Smuggle {
            in_body_ok: true,
            ..smuggle("TE.CL", tecl("/tecl", "Transfer-Encoding: chunked\r\n"))
        },
        smuggle(
            "duplicate Content-Length, short first",
            format!(
                "POST /dup-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "duplicate Content-Length, short last",
            format!(
                "POST /dup-cl2 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nContent-Length: 0\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding : chunked` (space before colon)",
            clte("/te-space", "Transfer-Encoding : chunked\r\n"),
        ),
        smuggle(
            "TE.CL with `Transfer-Encoding : chunked` (space before colon)",
            tecl("/te-space2", "Transfer-Encoding : chunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: xchunked`",
            clte("/xchunked", "Transfer-Encoding: xchunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding:\\tchunked`",
            clte("/te-tab", "Transfer-Encoding:\tchunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-encoding: chunked` twice",
            clte(
                "/te-twice",
                "Transfer-Encoding: chunked\r\nTransfer-encoding: chunked\r\n",
            ),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: chunked` and an obs-fold line",
            clte("/te-fold", "Transfer-Encoding: chunked\r\n obs-fold\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding:` folded onto ` chunked`",
            clte("/te-fold2", "Transfer-Encoding:\r\n chunked\r\n"),
        ),
        smuggle(
            "CL.TE with `Transfer-Encoding: chunked, identity`",
            clte("/te-identity", "Transfer-Encoding: chunked, identity\r\n"),
        ),
        Smuggle {
            then_403: Some("GET /ws"),
            ..smuggle(
                "pipelined behind an Upgrade the target refuses with 200",
                format!("{}{SMUGGLED}", upgrade_head("/ws")),
            )
        },
        Smuggle {
            name: "sent after an Upgrade request, before the (refused) 101 (RUSTSEC-2026-0033)",
            steps: vec![
                Step::Send(upgrade_head("/ws-slow").into_bytes()),
                Step::Pause(Duration::from_millis(150)),
                Step::Send(SMUGGLED.as_bytes().to_vec()),
            ],
            then_403: Some("GET /ws-slow"),
            in_body_ok: false,
        },
        smuggle(
            "CL.0 through `Connection: Content-Length`",
            format!(
                "POST /cl0 HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        smuggle(
            "TE.0 through `Connection: Transfer-Encoding`",
            format!(
                "POST /te0 HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk(SMUGGLED)
            ),
        ),
        Smuggle {
            then_403: Some("POST /no-length"),
            ..smuggle(
                "after a POST with neither CL nor TE (no body: a new request)",
                format!("POST /no-length HTTP/1.1\r\nHost: t\r\n\r\n{SMUGGLED}"),
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_never_let_a_smuggled_request_reach_the_target() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let corpus = smuggling_corpus();
    let mut fails = Vec::new();
    for case in &corpus {
        let mut row_fails = Vec::new();
        let snap = target.snapshot();
        let mut client = RawClient::connect(lb.addr()).await;
        for step in &case.steps {
            match step {
                Step::Send(b) => {
                    let _ = client.send(b).await;
                }
                Step::Pause(d) => tokio::time::sleep(*d).await,
                _ => {}
            }
        }
        let responses = client
            .responses_until_quiet(Duration::from_millis(1500), Duration::from_secs(6))
            .await;
        for r in &responses {
            if r.saw().is_some_and(|s| s.contains("/forbidden")) {
                row_fails.push(format!(
                    "the client got the target's answer to the smuggled request: {}",
                    r.describe()
                ));
            }
        }
        if let Some(first) = case.then_403 {
            let statuses: Vec<String> = responses.iter().map(Resp::describe).collect();
            let ok = responses.len() == 2
                && responses[0].status == 200
                && responses[0].saw() == Some(first)
                && responses[1].status == 403
                && responses[1].saw().is_none()
                && responses[1].body == FORBIDDEN_BODY.as_bytes();
            if !ok {
                row_fails.push(format!(
                    "expected the target's 200 to {first:?} then tether's 403, got {statuses:?}"
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let new = target.since(&snap);
        for (idx, bytes) in &new {
            if !case.in_body_ok && contains(bytes, b"/forbidden") {
                row_fails.push(format!(
                    "target connection #{idx} got the bytes /forbidden: {}",
                    show(bytes)
                ));
            }
            let whole = target.conn(*idx).bytes;
            for view in [View::Rfc, View::TeFirstLenient, View::ClFirst, View::ClLast] {
                if let Some(line) = request_lines(&whole, view)
                    .into_iter()
                    .find(|l| l.contains("/forbidden"))
                {
                    row_fails.push(format!(
                        "target connection #{idx} holds the request {line:?} when read {view:?}: {}",
                        show(&whole)
                    ));
                }
            }
        }
        fails.extend(
            row_fails
                .into_iter()
                .map(|f| format!("[{}] {f}", case.name)),
        );
    }
    // The corpus ran: each row reached tether, and the ones with a request in front
    // of the smuggled one reached the target.
    let all = target.all_bytes();
    assert!(
        contains(&all, b"GET /ws ") && contains(&all, b"POST /no-length "),
        "the target never saw the requests in front of the smuggled ones: {}",
        show(&all)
    );
    assert_table("smuggling corpus", corpus.len(), &fails);
}

// === The checks themselves ===

#[test]
fn it_should_find_smuggled_requests_in_the_readings_that_see_them() {
    let forbidden = |bytes: &str, view| {
        request_lines(bytes.as_bytes(), view)
            .iter()
            .any(|l| l.contains("/forbidden"))
    };
    // Forwarded verbatim, CL.TE smuggles to a TE reader, TE.CL to a CL reader.
    let cl_te = clte("/x", "Transfer-Encoding: chunked\r\n");
    assert!(
        forbidden(&cl_te, View::Rfc),
        "CL.TE unseen by the RFC reading"
    );
    assert!(
        !forbidden(&cl_te, View::ClFirst),
        "CL.TE seen by a CL reader"
    );
    let te_cl = tecl("/x", "Transfer-Encoding: chunked\r\n");
    assert!(
        !forbidden(&te_cl, View::Rfc),
        "TE.CL seen by the RFC reading"
    );
    assert!(
        forbidden(&te_cl, View::ClFirst),
        "TE.CL unseen by a CL reader"
    );
    let spaced = clte("/x", "Transfer-Encoding : chunked\r\n");
    assert!(!forbidden(&spaced, View::Rfc) && forbidden(&spaced, View::TeFirstLenient));
    let dup = format!(
        "POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert!(forbidden(&dup, View::ClFirst) && !forbidden(&dup, View::ClLast));
    assert!(matches!(
        parse_chunked(b"ffffffffffffffffff\r\nabc"),
        Some(Err(()))
    ));
    assert_eq!(
        strip_added(b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: t\r\nx-amzn-trace-id: Root=1\r\n\r\n"),
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()
    );
}
