//! 5. Safe at the edge (issue 20): one named regression per rule.

use super::*;

/// A raw target that answers every request with `reply`, as is, and keeps the
/// connection open (for responses the recording target does not make).
async fn canned_target(reply: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    serve_raw(move |mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(Ok(h)) = parse_head(&buf) {
                buf.drain(..h.len);
                if s.write_all(reply).await.is_err() {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}

/// Item 1. Fails on the engine before issue 20: `Connection: Content-Length` had the
/// Content-Length line removed while the body still went, so the target read the body
/// as a request no rule saw (CL.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_a_connection_header_that_names_a_framing_header() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let cl0 = format!(
        "POST /x HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let te0 = format!(
        "POST /x HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, Transfer-Encoding\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk(SMUGGLED)
    );
    let host0 = "GET /x HTTP/1.1\r\nHost: t\r\nConnection: Host\r\n\r\n";
    let many: String = (0..17).map(|i| format!("x-{i}, ")).collect();
    let too_many = format!("GET /many HTTP/1.1\r\nHost: t\r\nConnection: {many}\r\n\r\n");
    // 7,000 tokens fit ALB's 16 KiB line.
    let same = format!(
        "GET /same HTTP/1.1\r\nHost: t\r\nConnection: {}x\r\nX: 1\r\n\r\n",
        "x,".repeat(7_000)
    );
    let mut rows: Vec<Row> = [
        ("CL.0: Connection names Content-Length", cl0.as_str()),
        ("TE.0: Connection names Transfer-Encoding", te0.as_str()),
        ("Connection names Host", host0),
        ("17 Connection options", too_many.as_str()),
    ]
    .into_iter()
    .map(|(name, bytes)| {
        Row::new(name, vec![send(bytes), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes()
    })
    .collect();
    rows.push(
        Row::new(
            "7,000 copies of one Connection option are one option",
            vec![send(same), Step::Expect(ok_from_target("GET /same"))],
        )
        .target(lacks("X: 1"))
        .keeps_open(),
    );
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("Connection naming framing headers", rows.len(), &fails);
}

/// Item 2. Fails before issue 20: `Upgrade: h2c` was forwarded, and a target's 101
/// to it became a raw tunnel past every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_tunnel_websocket_upgrades_only() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let h2c = "GET /ws-accept-plain HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let rows = vec![Row::new(
        "Upgrade: h2c is dropped and served as a plain request",
        vec![
            send(h2c),
            Step::Expect(ok_from_target("GET /ws-accept-plain")),
            send(SMUGGLED),
            Step::Expect(Expect {
                body: Some(FORBIDDEN_BODY),
                ..from_tether(403)
            }),
        ],
    )
    .target(lacks("h2c"))
    .target(lacks("HTTP2-Settings"))
    .target(lacks("/forbidden"))];
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("h2c upgrades", rows.len(), &fails);

    // A 101 that no websocket request asked for is a 502, and nothing is tunnelled.
    let (switcher, _t) = canned_target(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let lb = TetherProc::start(&config(switcher, "")).await;
    let mut client = RawClient::connect(lb.addr()).await;
    client.send(h2c.as_bytes()).await;
    let responses = client
        .responses_until_quiet(Duration::from_millis(500), Duration::from_secs(4))
        .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [502],
        "{:?}",
        responses.iter().map(Resp::describe).collect::<Vec<_>>()
    );
}

/// Item 6. Fails before issue 20: `Host: admin.example.com:x` was taken, and its
/// name went past a host rule that a target's reading of the Host would match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_refuse_a_host_outside_the_one_host_grammar() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let mut rows: Vec<Row> = [
        "Host: admin.example.com:x",
        "Host: admin.example.com:",
        "Host: admin.example.com:65536",
        "Host: %61dmin.example.com",
        "Host: user@admin.example.com",
        "Host: [::1",
    ]
    .into_iter()
    .map(|host| {
        let head = format!("GET /h HTTP/1.1\r\n{host}\r\n\r\n");
        Row::new(host, vec![send(head), Step::Expect(from_tether(400))])
            .target(Seen::Nothing)
            .closes()
    })
    .collect();
    rows.push(
        Row::new(
            "absolute-form with a bad port",
            vec![
                send("GET http://admin.example.com:x/h HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
    );
    for host in ["admin.example.com:8080", "[::1]:443", "10.0.0.1"] {
        rows.push(
            Row::new(
                format!("Host: {host} is taken"),
                vec![
                    send(format!("GET /h HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                    Step::Expect(ok_from_target("GET /h")),
                ],
            )
            .keeps_open(),
        );
    }
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("Host grammar", rows.len(), &fails);
}

/// Item 7. Each row fails before issue 20: a bare LF went on as it came, trailers and
/// chunk extensions of any content went through, `Transfer-Encoding: ,` was no
/// coding at all, and `Connection: expect` left tether waiting for a 100 the target
/// was never asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_forward_no_parser_discrepancy_material() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let long_ext = format!(
        "POST /ext HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n",
        "a".repeat(4096)
    );
    // The head may have gone before the bad body bytes came: the target never gets
    // those, and its connection is closed.
    let refused = |name: &str, bytes: String, bad: &str| {
        Row::new(name, vec![send(bytes), Step::Expect(from_tether(400))])
            .target(lacks(bad))
            .closes()
    };
    let rows = vec![
        Row::new(
            "bare LF line ends are forwarded as CRLF",
            vec![
                send("GET /lf HTTP/1.1\nHost: t\nX-A: b  \n\n"),
                Step::Expect(ok_from_target("GET /lf")),
            ],
        )
        .target(exact("GET /lf HTTP/1.1\r\nHost: t\r\nX-A: b  \r\n\r\n"))
        .keeps_open(),
        refused(
            "a trailer that is not a field line",
            "POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"
                .into(),
            "no colon",
        ),
        refused(
            "a trailer with a control character",
            "POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\x01b\r\n\r\n"
                .into(),
            "a\x01b",
        ),
        refused("a chunk extension over 4 KiB", long_ext, "aaaaaaaa"),
        refused(
            "whitespace after a chunk size without an extension",
            "POST /ws HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"
                .into(),
            "5 x",
        ),
        Row::new(
            "a fragment in the request target",
            vec![
                send("GET /forbidden#x HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Transfer-Encoding with no coding",
            vec![
                send("POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Connection: expect does not wait for a 100",
            vec![
                send(
                    "POST /expect-hop HTTP/1.1\r\nHost: t\r\nConnection: expect\r\n\
                     Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
                ),
                Step::Expect(ok_from_target("POST /expect-hop")),
            ],
        )
        .target(lacks("100-continue"))
        .keeps_open(),
    ];
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("parser-discrepancy material", rows.len(), &fails);

    // Interim responses lose their hop-by-hop lines, and HTTP/1.0 clients get none.
    let (hints, _t) = canned_target(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-hop\r\n\
          X-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let lb = TetherProc::start(&config(hints, "")).await;
    let http11 = raw_exchange(
        lb.addr(),
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let interim = http11
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(interim.starts_with("http/1.1 103"), "{http11:?}");
    assert!(interim.contains("link: </a.css>"), "{http11:?}");
    for hop in ["x-hop", "keep-alive", "connection"] {
        assert!(!interim.contains(hop), "the 103 kept {hop}: {http11:?}");
    }
    let http10 = raw_exchange(lb.addr(), b"GET /a HTTP/1.0\r\nHost: t\r\n\r\n").await;
    assert!(
        http10.starts_with("HTTP/1.1 200"),
        "an HTTP/1.0 client got {http10:?}"
    );
    assert!(
        !http10.contains(" 103 "),
        "an HTTP/1.0 client got a 103: {http10:?}"
    );
}
