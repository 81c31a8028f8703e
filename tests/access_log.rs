//! ALB access logs through the binary: the lines of a known mix (HTTP, HTTPS, h2,
//! ws and wss; forwards, a target's 404, a fixed response, a redirect, a 503 with no
//! targets, a failed connect, a non-compliant request) read back by a strict parser
//! written from AWS's field list; and a log on a pipe nobody reads, which loses no
//! request and counts the lines it drops.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::alb_log::{self, AlbLine};
use common::{raw_exchange, request, tls_connect, Backend, Client, KeyKind, Pki, TetherProc};

/// The mix of tests/common, logged to `log`, with an HTTPS listener too.
fn config(web: SocketAddr, dead: SocketAddr, log: &Path, cert: &(PathBuf, PathBuf)) -> String {
    common::mix_config(
        web,
        dead,
        &format!(r#"access_log = {{ path = "{}" }}"#, log.display()),
        &format!(
            r#"[[listener]]
address = "127.0.0.1"
port = 0
protocol = "HTTPS"
certificates = [{{ cert = "{}", key = "{}" }}]
default_action = {{ forward = "web" }}"#,
            cert.0.display(),
            cert.1.display()
        ),
        "",
    )
}

/// Waits until the log holds `n` lines, then parses every one strictly.
async fn lines(path: &Path, n: usize) -> Vec<AlbLine> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let count = text.lines().count();
        if count >= n {
            assert_eq!(count, n, "more lines than requests:\n{text}");
            assert!(text.ends_with('\n'), "a line is cut: {text:?}");
            return text
                .lines()
                .map(|l| alb_log::parse(l).unwrap_or_else(|e| panic!("{e}\nin: {l}")))
                .collect();
        }
        assert!(Instant::now() < deadline, "{count} of {n} lines:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// tether with the mix config and its log, and what the tests reach it with.
struct Mix {
    web: Backend,
    dead: SocketAddr,
    pki: Pki,
    log: PathBuf,
    lb: TetherProc,
    _dir: tempfile::TempDir,
}

impl Mix {
    async fn start() -> Mix {
        let web = Backend::start("web").await;
        let dead = common::refused_addr();
        let pki = Pki::new();
        let cert = pki.leaf("a", &["a.test"], KeyKind::Ecdsa, false);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access.log");
        let lb = TetherProc::start(&config(web.addr, dead, &log, &cert)).await;
        Mix {
            web,
            dead,
            pki,
            log,
            lb,
            _dir: dir,
        }
    }
}

fn path_of(line: &AlbLine) -> String {
    line.request.as_ref().expect("a request").url.clone()
}

#[tokio::test]
async fn it_should_log_every_kind_of_request_in_albs_format() {
    let Mix {
        web,
        dead,
        pki,
        log,
        lb,
        _dir,
    } = Mix::start().await;
    let https = lb.listener_addr(1).await;
    let ua = "tether-test/1 \"quoted\"";

    // HTTP, one connection: a forward with a user agent, a target's 404, a fixed
    // response, a redirect.
    let mut client = Client::connect(lb.addr()).await;
    let r = client
        .send(request("GET", "/a?b=c", &[("user-agent", ua)]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(client.get("/status?code=404").await.status, 404);
    assert_eq!(client.get("/fixed").await.status, 200);
    assert_eq!(client.get("/old").await.status, 301);
    drop(client);
    common::mix_failures(lb.addr()).await;
    let reply = raw_exchange(
        lb.addr(),
        b"GET /lf HTTP/1.1\nHost: a.test\nConnection: close\n\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Two Content-Lengths that disagree: Severe, refused in the default mode.
    let reply = raw_exchange(
        lb.addr(),
        b"POST /severe HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");

    // A websocket (logged when it closes).
    let url = format!("ws://{}/ws", lb.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    ws.send(Message::text("hello")).await.expect("send");
    ws.next().await.expect("echo").expect("echo");
    ws.close(None).await.expect("close");
    while ws.next().await.is_some() {}
    drop(ws);

    // HTTPS over HTTP/1.1, then h2, then wss: SNI a.test.
    let (tls, _) = tls_connect(https, "a.test", pki.client_config(&[b"http/1.1"]))
        .await
        .expect("tls");
    let mut client = Client::over_io(tls, "a.test").await;
    assert_eq!(client.get("/tls").await.status, 200);
    drop(client);
    let (tls, _) = tls_connect(https, "a.test", pki.client_config(&[b"h2"]))
        .await
        .expect("tls");
    let mut h2 = common::h2_client(tls).await;
    let resp = h2
        .send_request(
            http::Request::get("https://a.test/h2")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("h2 request");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    drop(h2);
    let (tls, _) = tls_connect(https, "a.test", pki.client_config(&[b"http/1.1"]))
        .await
        .expect("tls");
    let req = "wss://a.test/wss"
        .into_client_request()
        .expect("wss request");
    let (mut wss, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("wss");
    wss.send(Message::text("hello")).await.expect("send");
    wss.next().await.expect("echo").expect("echo");
    wss.close(None).await.expect("close");
    while wss.next().await.is_some() {}
    drop(wss);

    let all = lines(&log, 12).await;
    let find = |path: &str| {
        all.iter()
            .find(|l| path_of(l).ends_with(path))
            .unwrap_or_else(|| panic!("no line for {path}: {all:#?}"))
    };
    let port = lb.addr().port();
    for l in &all {
        assert_eq!(l.elb, "app/edge/tether");
        assert!(l.request_creation_time <= l.time);
        assert!(l.client.ip().is_loopback());
    }

    let ok = find("/a?b=c");
    assert_eq!(ok.kind, "http");
    assert_eq!(
        path_of(ok),
        format!("http://127.0.0.1:{port}/a?b=c"),
        "ALB's URL: scheme, host, listener port, path and query"
    );
    assert_eq!(ok.user_agent.as_deref(), Some(ua));
    assert_eq!(
        (ok.elb_status_code, ok.target_status_code),
        (Some(200), Some(200))
    );
    assert_eq!(ok.target, Some(web.addr));
    assert_eq!(ok.target_port_list, [web.addr]);
    assert_eq!(ok.target_status_code_list, [Some(200)]);
    assert_eq!(ok.actions_executed, ["forward"]);
    assert_eq!(ok.matched_rule_priority, Some(0));
    assert!(ok
        .target_group_arn
        .as_deref()
        .is_some_and(|a| a.ends_with("targetgroup/web")));
    assert!(ok
        .trace_id
        .as_deref()
        .is_some_and(|t| t.starts_with("Root=1-")));
    assert!(ok.request_processing_time.is_some() && ok.target_processing_time.is_some());
    assert!(ok.received_bytes > 30 && ok.sent_bytes > 30);
    assert_eq!(
        (ok.ssl_cipher.as_deref(), ok.domain_name.as_deref()),
        (None, None)
    );

    let not_found = find("/status?code=404");
    assert_eq!(
        (not_found.elb_status_code, not_found.target_status_code),
        (Some(404), Some(404))
    );

    let fixed = find("/fixed");
    assert_eq!(fixed.actions_executed, ["fixed-response"]);
    assert_eq!(fixed.matched_rule_priority, Some(10));
    assert_eq!(
        (fixed.elb_status_code, fixed.target_status_code),
        (Some(200), None)
    );
    assert_eq!((fixed.target, fixed.target_processing_time), (None, None));

    let moved = find("/old");
    assert_eq!(moved.actions_executed, ["redirect"]);
    assert_eq!(moved.elb_status_code, Some(301));
    assert_eq!(
        moved.redirect_url.as_deref(),
        Some(&*format!("http://127.0.0.1:{port}/new"))
    );

    let empty = find("/empty");
    assert_eq!((empty.elb_status_code, empty.target), (Some(503), None));
    assert_eq!(empty.matched_rule_priority, Some(30));

    let refused = find("/dead");
    assert_eq!(
        (refused.elb_status_code, refused.target_status_code),
        (Some(502), None)
    );
    assert_eq!(refused.target, Some(dead));
    // The one target tried answered nothing: the list is `-`.
    assert!(refused.target_status_code_list.is_empty());
    assert_eq!(
        refused.error_reason.as_deref(),
        Some("TargetConnectionErrorCode")
    );
    assert_eq!(refused.target_processing_time, None);

    let lf = find("/lf");
    assert_eq!(lf.classification.as_deref(), Some("Acceptable"));
    assert_eq!(
        lf.classification_reason.as_deref(),
        Some("NonCrLfLineTermination")
    );

    let severe = find("/severe");
    assert_eq!((severe.elb_status_code, severe.target), (Some(400), None));
    assert_eq!(severe.classification.as_deref(), Some("Severe"));
    assert!(severe.classification_reason.is_some());
    assert_eq!(
        severe.request_processing_time, None,
        "refused before dispatch: -1"
    );

    let ws = find("/ws");
    assert_eq!(ws.kind, "ws");
    assert_eq!(
        (ws.elb_status_code, ws.target_status_code),
        (Some(101), Some(101))
    );
    assert!(
        ws.received_bytes > 100 && ws.sent_bytes > 100,
        "frames counted: {ws:?}"
    );

    let https_line = find("/tls");
    assert_eq!(https_line.kind, "https");
    assert_eq!(
        path_of(https_line),
        format!("https://a.test:{}/tls", https.port())
    );
    assert_eq!(https_line.domain_name.as_deref(), Some("a.test"));
    assert!(https_line
        .ssl_protocol
        .as_deref()
        .is_some_and(|p| p.starts_with("TLSv1.")));
    assert!(https_line.ssl_cipher.is_some());

    let h2_line = find("/h2");
    assert_eq!(h2_line.kind, "h2");
    assert_eq!(
        h2_line.request.as_ref().expect("request").version,
        "HTTP/2.0"
    );
    assert_eq!(h2_line.domain_name.as_deref(), Some("a.test"));

    let wss_line = find("/wss");
    assert_eq!(wss_line.kind, "wss");
    assert_eq!(wss_line.elb_status_code, Some(101));
}

#[tokio::test]
async fn it_should_lose_no_request_when_the_log_cannot_keep_up_and_count_what_it_drops() {
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("access.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // The read end is opened (so that tether's open of the write end returns) and
    // never read: once the pipe's buffer is full, every write blocks.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).expect("open the read end"))
    };
    let config = common::one_group_config(
        web.addr,
        &format!(
            "admin = \"127.0.0.1:{{admin}}\"
access_log = {{ path = \"{}\" }}",
            fifo.display()
        ),
    );
    let lb = TetherProc::start(&config).await;
    let _read_end = reader.join().expect("reader");

    const REQUESTS: usize = 100_000;
    const CLIENTS: usize = 16;
    let addr = lb.addr();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut failed = 0;
                for _ in 0..REQUESTS / CLIENTS {
                    match client.try_send(request("GET", "/", &[])).await {
                        Ok(r) if r.status == 200 => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    // A logger that made requests wait would hang them: bound the whole load.
    let all = futures_util::future::join_all(tasks);
    let results = tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .expect("the load did not finish in 300 s: requests waited on the log");
    let failed: usize = results.into_iter().map(|r| r.expect("client task")).sum();
    assert_eq!(failed, 0, "requests failed while the log was stuck");

    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let text = admin.get("/metrics").await.text();
    let metric = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let (dropped, written) = (
        metric("tether_access_log_lines_dropped_total"),
        metric("tether_access_log_lines_total"),
    );
    assert_eq!(metric("tether_request_count_total"), REQUESTS as u64);
    // What the pipe took, what waits in the queue (65,536 at most) and what was
    // dropped make every request.
    assert!(dropped > 0, "nothing dropped: the pipe kept up?");
    assert!(
        written + dropped <= REQUESTS as u64 && written + dropped + 65_536 >= REQUESTS as u64,
        "written {written}, dropped {dropped}"
    );
}

#[tokio::test]
async fn it_should_reopen_the_log_on_sigusr1_for_logrotate() {
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let config = common::one_group_config(
        web.addr,
        &format!("access_log = {{ path = \"{}\" }}", log.display()),
    );
    let lb = TetherProc::start(&config).await;
    let mut client = Client::connect(lb.addr()).await;
    assert_eq!(client.get("/before").await.status, 200);
    lines(&log, 1).await;

    // logrotate moves the file, then signals.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    lb.signal("USR1");
    // The reopen happens on the writer's next look (at most 500 ms idle): until the
    // new file exists, lines would still go to the rotated one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new file after SIGUSR1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.get("/after").await.status, 200);
    let new = lines(&log, 1).await;
    assert!(path_of(&new[0]).ends_with("/after"));
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert_eq!(old.lines().count(), 1);
    assert!(old.contains("/before"));
}

#[tokio::test]
async fn it_should_log_an_h2_stream_the_client_reset_before_its_response() {
    let Mix {
        web,
        pki,
        log,
        lb,
        _dir,
        ..
    } = Mix::start().await;
    let (tls, _) = tls_connect(
        lb.listener_addr(1).await,
        "a.test",
        pki.client_config(&[b"h2"]),
    )
    .await
    .expect("tls");
    let mut h2 = common::h2_client(tls).await;
    let slow = h2.send_request(
        http::Request::get("https://a.test/slow?ms=3000")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request"),
    );
    // Given up before the target answers: dropping the response resets the stream.
    assert!(tokio::time::timeout(Duration::from_millis(300), slow)
        .await
        .is_err());
    let line = lines(&log, 1).await.remove(0);
    assert_eq!(line.kind, "h2");
    assert!(path_of(&line).ends_with("/slow?ms=3000"));
    assert_eq!(line.error_reason.as_deref(), Some("ClientClosedConnection"));
    assert_eq!(
        (line.elb_status_code, line.target_status_code),
        (None, None)
    );
    assert_eq!(line.target, Some(web.addr));
}

#[tokio::test]
async fn it_should_survive_sigusr1_without_an_access_log() {
    // logrotate's postrotate may signal a tether that logs nothing.
    let web = Backend::start("web").await;
    let mut lb = TetherProc::start(&common::one_group_config(web.addr, "")).await;
    lb.signal("USR1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        lb.child.try_wait().expect("wait").is_none(),
        "SIGUSR1 ended tether"
    );
    assert_eq!(Client::connect(lb.addr()).await.get("/").await.status, 200);
}
