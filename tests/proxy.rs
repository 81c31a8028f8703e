//! The core proxy through the real binary: selection, rules, actions, headers,
//! streaming, websockets, idle timeout and the LB's own error codes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn targets(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    list.join(", ")
}

fn single_group_config(algorithm: &str, backends: &[&Backend]) -> String {
    web_config(
        "threads = 2",
        &format!(
            "algorithm = \"{algorithm}\"\ntargets = [{}]",
            targets(backends)
        ),
    )
}

#[tokio::test]
async fn it_should_spread_requests_round_robin_across_three_targets() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = TetherProc::start(&single_group_config("round_robin", &[&a, &b, &c])).await;
    let mut client = Client::connect(lb.addr()).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        let r = client.get("/").await;
        assert_eq!(r.status, 200);
        seen.push(r.text());
    }
    // Each window of three consecutive requests visits every target once.
    for window in seen.chunks(3) {
        let mut w = window.to_vec();
        w.sort();
        assert_eq!(w, ["a", "b", "c"], "{seen:?}");
    }
}

#[tokio::test]
async fn it_should_split_a_weighted_forward_90_10() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = {{ target_groups = [{{ name = "blue", weight = 90 }}, {{ name = "green", weight = 10 }}] }} }}
[target_group.blue]
targets = ["{}"]
[target_group.green]
targets = ["{}"]
"#,
        blue.addr, green.addr
    );
    let lb = TetherProc::start(&config).await;
    let mut client = Client::connect(lb.addr()).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        *counts.entry(client.get("/").await.text()).or_default() += 1;
    }
    let green = counts.get("green").copied().unwrap_or(0);
    // Binomial(1000, 0.1): mean 100, sd ≈ 9.5; ±5 sd.
    assert!((52..=148).contains(&green), "{counts:?}");
    assert_eq!(counts.values().sum::<u32>(), 1000);
}

/// Rules answering with a fixed body each, so that the winning rule is visible.
const CONDITIONS: &str = r#"
[[listener]]
address = "127.0.0.1"
port = {port}
default_action = { fixed_response = { status = 200, body = "default" } }

  [[listener.rule]]
  priority = 1
  conditions = { path_pattern = ["/both"], http_request_method = ["POST"] }
  action = { fixed_response = { status = 200, body = "and" } }

  [[listener.rule]]
  priority = 5
  conditions = { path_pattern = ["/api/*", "/v?/x"] }
  action = { fixed_response = { status = 200, body = "path" } }

  [[listener.rule]]
  priority = 6
  conditions = { path_pattern = ["/api/special"] }
  action = { fixed_response = { status = 200, body = "never: lower priority than /api/*" } }

  [[listener.rule]]
  priority = 10
  conditions = { host_header = ["*.example.com", "exact.test"] }
  action = { fixed_response = { status = 200, body = "host" } }

  [[listener.rule]]
  priority = 20
  conditions = { http_request_method = ["PATCH"] }
  action = { fixed_response = { status = 200, body = "method" } }

  [[listener.rule]]
  priority = 30
  conditions = { http_header = [{ name = "X-Env", values = ["blue*", "gr?y"] }] }
  action = { fixed_response = { status = 200, body = "header" } }

  [[listener.rule]]
  priority = 40
  conditions = { query_string = [{ key = "v", value = "2" }, { value = "flag*" }] }
  action = { fixed_response = { status = 200, body = "query" } }

  [[listener.rule]]
  priority = 50
  conditions = { source_ip = ["127.0.0.2/32"] }
  action = { fixed_response = { status = 200, body = "source" } }
"#;

#[tokio::test]
async fn it_should_match_each_condition_kind_as_alb_does() {
    let lb = TetherProc::start(CONDITIONS).await;
    let mut client = Client::connect(lb.addr()).await;
    // (method, path, headers, expected rule)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("GET", "/api/users", &[], "path"),
        ("GET", "/api/special", &[], "path"),
        ("GET", "/API/users", &[], "default"), // path is case-sensitive
        ("GET", "/api", &[], "default"),
        ("GET", "/v1/x", &[], "path"),
        ("GET", "/v10/x", &[], "default"), // ? is exactly one character
        ("GET", "/", &[("host", "a.example.com")], "host"),
        ("GET", "/", &[("host", "A.EXAMPLE.com:8080")], "host"), // case-insensitive, port ignored
        ("GET", "/", &[("host", "example.com")], "default"),     // *.example.com needs a label
        ("GET", "/", &[("host", "exact.test")], "host"),
        ("PATCH", "/", &[], "method"),
        ("GET", "/", &[("x-env", "BLUE-2")], "header"), // value case-insensitive
        ("GET", "/", &[("X-ENV", "gray")], "header"),   // name case-insensitive
        ("GET", "/", &[("x-env", "green")], "default"),
        ("GET", "/?a=1&v=2", &[], "query"),
        ("GET", "/?V=2", &[], "query"), // case-insensitive
        ("GET", "/?v=3", &[], "default"),
        ("GET", "/?any=flag-on", &[], "query"), // value without key
        ("POST", "/both", &[], "and"),
        ("GET", "/both", &[], "default"), // AND across kinds
    ];
    for (method, path, headers, want) in cases {
        let r = client.send(request(method, path, headers)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), *want, "{method} {path} {headers:?}");
    }
    // Methods are exact: `patch` is not PATCH. Nor is it a method Node's parser
    // knows, so tether refuses it as its targets would (issue 20).
    let r = Client::connect(lb.addr())
        .await
        .send(request("patch", "/", &[]))
        .await;
    assert_eq!(r.status, 400);
    // source-ip is the socket peer, never X-Forwarded-For.
    let mut from2 = Client::connect_from(lb.addr(), "127.0.0.2".parse().unwrap()).await;
    assert_eq!(from2.get("/").await.text(), "source");
    let spoofed = client
        .send(request("GET", "/", &[("x-forwarded-for", "127.0.0.2")]))
        .await;
    assert_eq!(spoofed.text(), "default");
}

#[tokio::test]
async fn it_should_answer_redirects_and_fixed_responses() {
    let config = r##"
[[listener]]
address = "127.0.0.1"
port = {port}
default_action = { redirect = { protocol = "HTTPS", port = "443", status = 301 } }
  [[listener.rule]]
  priority = 1
  conditions = { path_pattern = ["/maint"] }
  action = { fixed_response = { status = 503, content_type = "application/json", body = "{\"down\":true}" } }
  [[listener.rule]]
  priority = 2
  conditions = { path_pattern = ["/old/*"] }
  action = { redirect = { host = "new.example.com", path = "/new/#{path}", query = "from=old&#{query}", status = 302 } }
"##;
    let lb = TetherProc::start(config).await;
    let mut client = Client::connect(lb.addr()).await;

    let r = client.get("/maint").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), "{\"down\":true}");

    let r = client
        .send(request("GET", "/a/b?x=1", &[("host", "site.test")]))
        .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://site.test/a/b?x=1"));

    let r = client
        .send(request("GET", "/old/page?k=v", &[("host", "site.test")]))
        .await;
    assert_eq!(r.status, 302);
    let want = format!(
        "http://new.example.com:{}/new/old/page?from=old&k=v",
        lb.port
    );
    assert_eq!(r.header("location"), Some(want.as_str()));
    // The LB's own responses carry a real date and no engine placeholder.
    let date = r.header("date").expect("date");
    assert!(!date.contains("1994"), "{date}");
    assert_eq!(r.header("server"), Some("tether"));
}

#[tokio::test]
async fn it_should_add_forwarded_headers_and_a_trace_id() {
    let a = Backend::start("a").await;
    let lb = TetherProc::start(&single_group_config("round_robin", &[&a])).await;
    let mut client = Client::connect(lb.addr()).await;

    let seen = client.get("/headers").await.text();
    let header = |name: &str| -> String {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {seen}"))
            .to_string()
    };
    assert_eq!(header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(header("x-forwarded-proto"), "http");
    assert_eq!(header("x-forwarded-port"), lb.port.to_string());
    let trace = header("x-amzn-trace-id");
    let root = trace.strip_prefix("Root=1-").expect("Root");
    assert_eq!(root.len(), 8 + 1 + 24, "{trace}");

    let seen = client
        .send(request(
            "GET",
            "/headers",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                (
                    "x-amzn-trace-id",
                    "Root=1-67891233-abcdef012345678912345678",
                ),
            ],
        ))
        .await
        .text();
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{seen}"
    );
    let trace = seen
        .lines()
        .find_map(|l| l.strip_prefix("x-amzn-trace-id: "))
        .expect("trace");
    assert!(trace.starts_with("Self=1-"), "{trace}");
    assert!(
        trace.ends_with(";Root=1-67891233-abcdef012345678912345678"),
        "{trace}"
    );
}

#[tokio::test]
async fn it_should_stream_ten_mebibytes_each_way_intact() {
    let a = Backend::start("a").await;
    let lb = TetherProc::start(&single_group_config("round_robin", &[&a])).await;
    let mut client = Client::connect(lb.addr()).await;
    const SIZE: usize = 10 * 1024 * 1024;

    let upload = Bytes::from(pattern_bytes(SIZE, 3));
    let want = format!("{} {}", sha256_hex(&upload), SIZE);
    let r = client
        .send(request_with_body(
            "POST",
            "/upload",
            chunked_body(upload.clone(), 100_000),
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), want, "chunked upload");

    let r = client
        .send(request_with_body(
            "POST",
            "/upload",
            http_body_util::BodyExt::boxed(http_body_util::Full::new(upload)),
        ))
        .await;
    assert_eq!(r.text(), want, "content-length upload");

    let r = client.get(&format!("/download?bytes={SIZE}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&pattern_bytes(SIZE, 7)));
}

async fn websocket(
    lb: &TetherProc,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/ws", lb.addr());
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket through tether");
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn it_should_tunnel_a_websocket_after_101() {
    let a = Backend::start("a").await;
    let lb = TetherProc::start(&single_group_config("round_robin", &[&a])).await;
    let mut ws = websocket(&lb).await;
    for i in 0..20 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echo = ws.next().await.expect("echo").expect("frame");
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_data().to_vec(), vec![0u8, 1, 2, 255]);
}

#[tokio::test]
async fn it_should_keep_busy_websockets_and_close_silent_ones_at_the_idle_timeout() {
    let a = Backend::start("a").await;
    let config = single_group_config("round_robin", &[&a])
        .replace("threads = 2", "threads = 2\nidle_timeout = \"2s\"");
    let lb = TetherProc::start(&config).await;

    // Busy: a message every 500 ms for 7 s (three and a half idle periods).
    let mut busy = websocket(&lb).await;
    let mut silent = websocket(&lb).await;
    for i in 0..14 {
        busy.send(Message::text(format!("{i}")))
            .await
            .expect("busy send");
        let echo = tokio::time::timeout(Duration::from_secs(2), busy.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("frame");
        assert_eq!(echo.into_text().unwrap().as_str(), format!("{i}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Silent for all that time: tether has closed it.
    let next = tokio::time::timeout(Duration::from_secs(3), silent.next()).await;
    match next {
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("silent websocket still open: {other:?}"),
    }
}

#[tokio::test]
async fn it_should_answer_503_for_an_empty_group() {
    let config = r#"
[[listener]]
address = "127.0.0.1"
port = {port}
default_action = { forward = "empty" }
[target_group.empty]
targets = []
"#;
    let lb = TetherProc::start(config).await;
    let r = Client::connect(lb.addr()).await.get("/").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("503 Service Unavailable"));
    assert!(!r.header("date").unwrap_or("").contains("1994"));
}

#[tokio::test]
async fn it_should_answer_502_when_a_target_resets_or_answers_garbage() {
    let (garbage, _g) = raw_backend(b"this is not http\r\n\r\n").await;
    let (reset, _r) = raw_backend(b"").await;
    let listener = listener("garbage", &[(1, "/reset", r#"{ forward = "reset" }"#)]);
    let config = format!(
        r#"
{listener}[target_group.garbage]
targets = ["{garbage}"]
[target_group.reset]
targets = ["{reset}"]
"#
    );
    let lb = TetherProc::start(&config).await;
    let r = Client::connect(lb.addr()).await.get("/").await;
    assert_eq!(r.status, 502);
    let r = Client::connect(lb.addr()).await.get("/reset").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("server"), Some("tether"));
}

#[tokio::test]
async fn it_should_answer_504_when_connect_takes_too_long() {
    // A listener with a backlog of one that never accepts: once the queue is full the
    // kernel drops further SYNs and a connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "slow" }}
[target_group.slow]
connect_timeout = "1s"
targets = ["{addr}"]
"#
    );
    let lb = TetherProc::start(&config).await;
    let started = std::time::Instant::now();
    let r = Client::connect(lb.addr()).await.get("/").await;
    assert_eq!(r.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn it_should_refuse_trace_malformed_requests_and_long_forwarded_chains() {
    let a = Backend::start("a").await;
    let lb = TetherProc::start(&single_group_config("round_robin", &[&a])).await;
    let mut client = Client::connect(lb.addr()).await;
    assert_eq!(client.send(request("TRACE", "/", &[])).await.status, 405);

    let chain: Vec<String> = (0..31).map(|i| format!("10.0.0.{i}")).collect();
    let chain = chain.join(", ");
    let mut client = Client::connect(lb.addr()).await;
    let r = client
        .send(request("GET", "/", &[("x-forwarded-for", chain.as_str())]))
        .await;
    assert_eq!(r.status, 463);
    // Thirty addresses are still fine.
    let ok: Vec<String> = (0..30).map(|i| format!("10.0.0.{i}")).collect();
    let ok = ok.join(", ");
    let mut client = Client::connect(lb.addr()).await;
    let r = client
        .send(request("GET", "/", &[("x-forwarded-for", ok.as_str())]))
        .await;
    assert_eq!(r.status, 200);

    let answer = raw_exchange(
        lb.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
