//! 4. Limits: request line and header sizes, the header timeout.

use super::*;

fn limit_rows() -> Vec<Row> {
    let long_target = format!("/long-{}", "a".repeat(17 * 1024));
    let ok_target = format!("/ok-{}", "a".repeat(12 * 1024));
    let big_header = format!("X-Big: {}\r\n", "b".repeat(17 * 1024));
    let ok_header = format!("X-Big: {}\r\n", "b".repeat(12 * 1024));
    let headers = |n: usize| -> String {
        (0..n)
            .map(|i| format!("X-Part-{i}: {}\r\n", "c".repeat(13 * 1024)))
            .collect()
    };
    vec![
        Row::new(
            "request line over 16 KiB is 400 and closed",
            vec![
                send(format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n")),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "request line of 12 KiB is served",
            vec![
                send(format!("GET {ok_target} HTTP/1.1\r\nHost: t\r\n\r\n")),
                Step::Expect(ok_from_target(&format!("GET {ok_target}"))),
            ],
        )
        .target(has(format!("GET {ok_target} HTTP/1.1\r\n"))),
        Row::new(
            "one header over 16 KiB is 400",
            vec![
                send(format!(
                    "GET /big-header HTTP/1.1\r\nHost: t\r\n{big_header}\r\n"
                )),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "one header of 12 KiB is served",
            vec![
                send(format!(
                    "GET /ok-header HTTP/1.1\r\nHost: t\r\n{ok_header}\r\n"
                )),
                Step::Expect(ok_from_target("GET /ok-header")),
            ],
        )
        .target(has(ok_header.clone())),
        Row::new(
            "headers over 64 KiB in all are 400",
            vec![
                send(format!(
                    "GET /many-headers HTTP/1.1\r\nHost: t\r\n{}\r\n",
                    headers(5)
                )),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "headers of 52 KiB in all are served",
            vec![
                send(format!(
                    "GET /ok-headers HTTP/1.1\r\nHost: t\r\n{}\r\n",
                    headers(4)
                )),
                Step::Expect(ok_from_target("GET /ok-headers")),
            ],
        )
        .target(has("GET /ok-headers ")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_request_lines_and_headers_over_alb_limits() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let rows = limit_rows();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("limits", rows.len(), &fails);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_a_client_that_trickles_its_header_past_client_header_timeout() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "client_header_timeout = \"2s\"")).await;
    let start = Instant::now();
    let mut slow = RawClient::connect(lb.addr()).await;
    assert!(
        slow.send(b"GET /trickle HTTP/1.1\r\nHost: t\r\n").await,
        "tether refused the first bytes"
    );
    let mut closed_at = None;
    let mut served_meanwhile = None;
    for i in 0..8 {
        if slow.closed_within(Duration::from_secs(1)).await {
            closed_at = Some(start.elapsed());
            break;
        }
        if i == 0 {
            // A normal request on another connection is served while one trickles.
            let mut normal = RawClient::connect(lb.addr()).await;
            let sent = normal
                .send(b"GET /normal HTTP/1.1\r\nHost: t\r\n\r\n")
                .await;
            served_meanwhile = Some(match (sent, normal.response(false, RESPONSE_WAIT).await) {
                (true, Ok(r)) => check_response(&r, &ok_from_target("GET /normal")),
                (_, Err(e)) => vec![e],
                (false, _) => vec!["tether refused the normal request".to_string()],
            });
        }
        if !slow.send(format!("X-Trickle-{i}: v\r\n").as_bytes()).await {
            closed_at = Some(start.elapsed());
            break;
        }
    }
    let served =
        served_meanwhile.unwrap_or_else(|| vec!["the normal request was never sent".into()]);
    assert!(
        served.is_empty(),
        "normal request beside the trickler: {served:?}"
    );
    let Some(closed_at) = closed_at else {
        panic!("a header trickled for 8 s was never cut off (client_header_timeout = 2s)");
    };
    assert!(
        closed_at >= Duration::from_millis(1500) && closed_at <= Duration::from_millis(4500),
        "the trickler was closed after {closed_at:?}, expected about 2 s"
    );
    assert!(
        slow.buf.is_empty() || slow.buf.starts_with(b"HTTP/1.1 408"),
        "a client cut off mid-header gets nothing or a 408, got {}",
        show(&slow.buf)
    );
    assert!(
        !contains(&target.all_bytes(), b"/trickle"),
        "the unfinished request reached the target"
    );
}
