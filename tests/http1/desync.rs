//! 3. Desync mitigation modes (ALB's `http_desync_guardian` classes).

use super::*;

/// What a mode does with a request (the desync mitigation table of AWS's ALB guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Forwarded; the client connection stays usable.
    Pass,
    /// Forwarded, then both the client and the target connection closed.
    PassThenClose,
    /// Forwarded, then the client connection closed (the target's may stay).
    PassThenCloseClient,
    /// 400 from tether, nothing to the target.
    Refuse,
    /// 400 from tether, nothing to the target, the client connection closed.
    RefuseAndClose,
}

use Outcome::*;

struct DesyncCase {
    name: &'static str,
    /// The `http_desync_guardian` class.
    class: &'static str,
    bytes: String,
    /// `X-Target-Saw` of the target's answer.
    saw: &'static str,
    /// monitor, defensive, strictest.
    outcomes: [Outcome; 3],
    /// Bytes that must never reach the target as sent.
    never_forwarded: Option<&'static str>,
}

fn desync_cases() -> Vec<DesyncCase> {
    let case = |name, class, bytes: &str, saw, outcomes| DesyncCase {
        name,
        class,
        bytes: bytes.to_string(),
        saw,
        outcomes,
        never_forwarded: None,
    };
    vec![
        case(
            "plain GET",
            "Compliant",
            "GET /d/get HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /d/get",
            [Pass, Pass, Pass],
        ),
        case(
            "POST with Content-Length",
            "Compliant",
            "POST /d/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/post",
            [Pass, Pass, Pass],
        ),
        case(
            "chunked POST",
            "Compliant",
            "POST /d/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/chunked",
            [Pass, Pass, Pass],
        ),
        case(
            "space-less `Name:value` (OWS is optional)",
            "Compliant",
            "GET /d/no-space HTTP/1.1\r\nHost:t\r\nX-A:b\r\n\r\n",
            "GET /d/no-space",
            [Pass, Pass, Pass],
        ),
        case(
            "bare LF line ends",
            "Acceptable (NonCrLfLineTermination)",
            "GET /d/lf HTTP/1.1\nHost: t\nX-A: b\n\n",
            "GET /d/lf",
            [Pass, Pass, Refuse],
        ),
        case(
            "GET with Content-Length: 0",
            "Acceptable (GetHeadZeroContentLength)",
            "GET /d/get-cl0 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "GET /d/get-cl0",
            [Pass, Pass, Refuse],
        ),
        // RFC 9112 §6.3: a server MUST close after responding to CL+TE, monitor or not.
        case(
            "Content-Length and Transfer-Encoding",
            "Ambiguous (BothTeClPresent)",
            "POST /d/cl-te HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/cl-te",
            [PassThenCloseClient, PassThenClose, Refuse],
        ),
        case(
            "look-alike `Transfer_Encoding: chunked` beside Content-Length",
            "Ambiguous (SuspiciousHeader)",
            "POST /d/look-alike HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/look-alike",
            [Pass, PassThenClose, Refuse],
        ),
        case(
            "the same Content-Length twice",
            "Ambiguous (DuplicateContentLength)",
            "POST /d/same-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/same-cl",
            [Pass, PassThenClose, Refuse],
        ),
        case(
            "GET with a body",
            "Ambiguous (UndefinedContentLengthSemantics)",
            "GET /d/get-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "GET /d/get-body",
            [Pass, PassThenClose, Refuse],
        ),
        // RFC 9110 §5.5 lets a recipient reject NUL/CR or replace them with SP; tether
        // never forwards a head its parser refuses, so these are 400 in every mode.
        DesyncCase {
            never_forwarded: Some("a\0b"),
            ..case(
                "NUL in a header value",
                "Severe (BadHeader)",
                "GET /d/nul HTTP/1.1\r\nHost: t\r\nX-Note: a\0b\r\n\r\n",
                "GET /d/nul",
                [RefuseAndClose, RefuseAndClose, RefuseAndClose],
            )
        },
        DesyncCase {
            never_forwarded: Some("a\rb"),
            ..case(
                "bare CR in a header value",
                "Severe (BadHeader)",
                "GET /d/cr HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n",
                "GET /d/cr",
                [RefuseAndClose, RefuseAndClose, RefuseAndClose],
            )
        },
        // Unframeable: 400 in every mode, monitor included.
        case(
            "conflicting Content-Lengths",
            "Severe (MultipleContentLength)",
            "POST /d/two-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
            "POST /d/two-cl",
            [RefuseAndClose, RefuseAndClose, RefuseAndClose],
        ),
        case(
            "Transfer-Encoding: xchunked",
            "Severe (BadTransferEncoding)",
            "POST /d/xchunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST /d/xchunked",
            [RefuseAndClose, RefuseAndClose, RefuseAndClose],
        ),
    ]
}

fn desync_row(c: &DesyncCase, mode: usize) -> Row {
    let outcome = c.outcomes[mode];
    let name = format!("{} — {} — expected {outcome:?}", c.name, c.class);
    let path = c.saw.split(' ').nth(1).unwrap_or(c.saw).to_string();
    let mut row = match outcome {
        Pass => Row::new(
            name,
            vec![
                send(&c.bytes),
                Step::Expect(ok_from_target(c.saw)),
                send("GET /d/follow-up HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(ok_from_target("GET /d/follow-up")),
            ],
        )
        .target(has(format!("{path} ")))
        .keeps_open(),
        PassThenClose | PassThenCloseClient => {
            let r = Row::new(
                name,
                vec![send(&c.bytes), Step::Expect(ok_from_target(c.saw))],
            )
            .target(has(format!("{path} ")))
            .closes();
            if outcome == PassThenClose {
                r.closes_target()
            } else {
                r
            }
        }
        Refuse => Row::new(name, vec![send(&c.bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing),
        RefuseAndClose => Row::new(name, vec![send(&c.bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes(),
    };
    if let Some(bad) = c.never_forwarded {
        row = row.target(lacks(bad));
    }
    row
}

async fn desync_table(mode: usize, mode_name: &str) {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&desync_config(target.addr, mode_name)).await;
    let rows: Vec<Row> = desync_cases().iter().map(|c| desync_row(c, mode)).collect();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table(
        &format!("desync_mitigation_mode = {mode_name}"),
        rows.len(),
        &fails,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_pass_all_but_unframeable_requests_in_monitor_mode() {
    desync_table(0, "monitor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_after_ambiguous_and_refuse_severe_requests_in_defensive_mode() {
    desync_table(1, "defensive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_all_but_compliant_requests_in_strictest_mode() {
    desync_table(2, "strictest").await;
}
