//! 1. Framing: requests and responses framed as RFC 9112 says.

use super::*;

fn framing_rows() -> Vec<Row> {
    let clte_in = "POST /clte HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\
                   Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let clte_out = "POST /clte HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\n\r\n";
    let chunked = "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                   Trailer: X-Checksum\r\n\r\n5;name=value\r\nhello\r\n6;flag\r\n world\r\n\
                   0\r\nX-Checksum: 42\r\n\r\n";
    let gzip_chunked = "POST /gzip-chunked HTTP/1.1\r\nHost: t\r\n\
                        Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let expect_head = "POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
                       Expect: 100-continue\r\n\r\n";
    let pipelined = "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n";
    let hop_in = "GET /hop HTTP/1.1\r\nHost: t\r\nConnection: x-foo\r\nX-Foo: 1\r\n\
                  Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\
                  Upgrade: h2c\r\nX-Keep: yes\r\n\r\n";
    vec![
        Row::new(
            "Content-Length body forwarded byte-exact",
            vec![
                send("POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"),
                Step::Expect(ok_from_target("POST /cl")),
            ],
        )
        .target(exact("POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"))
        .keeps_open(),
        Row::new(
            "chunked body with extensions and trailers forwarded byte-exact",
            vec![send(chunked), Step::Expect(ok_from_target("POST /chunked"))],
        )
        .target(exact(chunked))
        .keeps_open(),
        Row::new(
            "Transfer-Encoding: gzip, chunked forwarded",
            vec![send(gzip_chunked), Step::Expect(ok_from_target("POST /gzip-chunked"))],
        )
        .target(exact(gzip_chunked))
        .keeps_open(),
        Row::new(
            "Transfer-Encoding: chunked, gzip (chunked not last) is 400",
            vec![
                send(
                    "POST /te-not-last HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n\
                     3\r\nabc\r\n0\r\n\r\n",
                ),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Transfer-Encoding: gzip (no chunked) is 400",
            vec![
                send("POST /te-gzip HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "two different Content-Lengths are 400",
            vec![
                send(
                    "POST /two-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\
                     Content-Length: 5\r\n\r\nhello",
                ),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing)
        .closes(),
        Row::new(
            "Content-Length and Transfer-Encoding: per TE, CL removed, both connections closed",
            vec![send(clte_in), Step::Expect(ok_from_target("POST /clte"))],
        )
        .target(Seen::ExactButClose(clte_out.as_bytes().to_vec()))
        .closes()
        .closes_target(),
        Row::new(
            "obs-fold header line is 400",
            vec![
                send("GET /fold HTTP/1.1\r\nHost: t\r\nX-Note: a\r\n folded\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "bare CR in a header value is 400",
            vec![
                send("GET /bare-cr HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "NUL in a header value is 400",
            vec![
                send("GET /nul HTTP/1.1\r\nHost: t\r\nX-Note: a\0b\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "chunk-size overflow: never a 2xx, and what follows is no request",
            vec![
                send(
                    "POST /overflow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                     ffffffffffffffffff\r\nGET /after-overflow HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::No2xx,
            ],
        )
        .target(lacks("/after-overflow"))
        .closes(),
        Row::new(
            "HEAD answered with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send("HEAD /head HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(Expect {
                    head: true,
                    body: Some(""),
                    ..from_target(200, "HEAD /head")
                }),
                Step::Expect(ok_from_target("GET /after-head")),
            ],
        )
        .target(exact(
            "HEAD /head HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n",
        ))
        .keeps_open(),
        Row::new(
            "204 with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send(
                    "GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\nGET /after-204 HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some(""),
                    ..from_target(204, "GET /status/204")
                }),
                Step::Expect(ok_from_target("GET /after-204")),
            ],
        )
        .keeps_open(),
        Row::new(
            "304 with Content-Length: 5 and no body, then the next pipelined response",
            vec![
                send(
                    "GET /status/304 HTTP/1.1\r\nHost: t\r\n\r\nGET /after-304 HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some(""),
                    ..from_target(304, "GET /status/304")
                }),
                Step::Expect(ok_from_target("GET /after-304")),
            ],
        )
        .keeps_open(),
        Row::new(
            "chunked response with a trailer, then the next pipelined response",
            vec![
                send(
                    "GET /chunked-reply HTTP/1.1\r\nHost: t\r\n\r\nGET /after-chunked HTTP/1.1\r\nHost: t\r\n\r\n",
                ),
                Step::Expect(Expect {
                    body: Some("hello world"),
                    ..from_target(200, "GET /chunked-reply")
                }),
                Step::Expect(ok_from_target("GET /after-chunked")),
            ],
        )
        .keeps_open(),
        Row::new(
            "Expect: 100-continue: the target's 100 relayed before the body is sent",
            vec![
                send(expect_head),
                Step::Expect(from_target(100, "POST /expect")),
                send("hello"),
                Step::Expect(ok_from_target("POST /expect")),
            ],
        )
        .target(exact(format!("{expect_head}hello")))
        .keeps_open(),
        Row::new(
            "two pipelined GETs in one write: two responses in order",
            vec![
                send(pipelined),
                Step::Expect(ok_from_target("GET /p1")),
                Step::Expect(ok_from_target("GET /p2")),
            ],
        )
        .target(exact(pipelined))
        .keeps_open(),
        Row::new(
            "HTTP/1.0 without Host: served, then closed",
            vec![send("GET /ten HTTP/1.0\r\n\r\n"), Step::Expect(ok_from_target("GET /ten"))],
        )
        .target(has("GET /ten "))
        .closes(),
        Row::new(
            "HTTP/1.0 with Connection: keep-alive: served and kept open",
            vec![
                send("GET /ten-ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                Step::Expect(ok_from_target("GET /ten-ka")),
                send("GET /ten-ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                Step::Expect(ok_from_target("GET /ten-ka2")),
            ],
        )
        .target(has("GET /ten-ka2 "))
        .keeps_open(),
        Row::new(
            "HTTP/1.1 without Host is 400",
            vec![send("GET /no-host HTTP/1.1\r\n\r\n"), Step::Expect(from_tether(400))],
        )
        .target(Seen::Nothing),
        Row::new(
            "two Host headers are 400",
            vec![
                send("GET /two-hosts HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
                Step::Expect(from_tether(400)),
            ],
        )
        .target(Seen::Nothing),
        Row::new(
            "absolute-form: the target gets origin-form and the URI's host",
            vec![
                send("GET http://example.com/a?b HTTP/1.1\r\nHost: ignored.test\r\n\r\n"),
                Step::Expect(ok_from_target("GET /a?b")),
            ],
        )
        .target(Seen::ExactAnyCase(
            b"GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
        ))
        .keeps_open(),
        Row::new(
            "hop-by-hop headers removed before the target",
            vec![send(hop_in), Step::Expect(ok_from_target("GET /hop"))],
        )
        .target(exact("GET /hop HTTP/1.1\r\nHost: t\r\nX-Keep: yes\r\n\r\n"))
        .keeps_open(),
        Row::new(
            "close-delimited response reaches the client whole, then close",
            vec![
                send("GET /close-delimited HTTP/1.1\r\nHost: t\r\n\r\n"),
                Step::Expect(Expect {
                    body: Some("close-delimited body"),
                    ..from_target(200, "GET /close-delimited")
                }),
            ],
        )
        .closes(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_frame_requests_and_responses_as_rfc_9112_says() {
    let target = RecordingTarget::start().await;
    let lb = TetherProc::start(&config(target.addr, "")).await;
    let rows = framing_rows();
    let fails = run_table(lb.addr(), &target, &rows).await;
    assert_table("framing", rows.len(), &fails);
}
