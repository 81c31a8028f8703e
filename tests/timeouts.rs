//! Every byte has a deadline (issue 20, item 4): a client that stops reading, a
//! target that stops reading a body, an HTTP/2 stream without flow-control window,
//! an idle HTTP/2 connection and an HTTP/2 head that never ends are each closed
//! within their timeout + 1 s, counted in `tether_idle_timeout_closed_total` and
//! logged. Each of these held its connections forever before issue 20.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The idle timeout (ALB's least) and header timeout of these tests.
const IDLE: Duration = Duration::from_secs(2);
const HEADER: Duration = Duration::from_secs(2);
/// What the issue allows past the timeout.
const SLACK: Duration = Duration::from_secs(1);

/// An HTTPS listener (HTTP/2 and HTTP/1.1) and an HTTP one, both to `target`.
fn config(pki: &Pki, target: SocketAddr) -> String {
    let (cert, key) = pki.leaf("edge", &["a.test"], KeyKind::Ecdsa, false);
    format!(
        r#"
[load_balancer]
threads = 1
idle_timeout = "2s"
client_header_timeout = "2s"
admin = "127.0.0.1:{{admin}}"

[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "web" }}

[[listener]]
address = "127.0.0.1"
port = 0
protocol = "HTTPS"
certificates = [{{ cert = "{}", key = "{}" }}]
default_action = {{ forward = "web" }}

[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
"#,
        cert.display(),
        key.display()
    )
}

/// The count of closures for `stalled` in tether's metrics.
async fn stalls(lb: &TetherProc, stalled: &str) -> u64 {
    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let text = admin.get("/metrics").await.text();
    let label = format!("stalled=\"{stalled}\"");
    text.lines()
        .filter(|l| l.starts_with("tether_idle_timeout_closed_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until a closure for `stalled` is counted and logged; returns how long
/// after `since` that was. Panics past `limit`.
async fn wait_stall(lb: &TetherProc, stalled: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        let logged = lb
            .log_lines()
            .iter()
            .any(|l| l.contains(&format!("{stalled} stalled")));
        if stalls(lb, stalled).await >= 1 && logged {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit + Duration::from_secs(2),
            "no {stalled} closure counted and logged after {:?} (limit {limit:?}); log: {:?}",
            since.elapsed(),
            lb.log_lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// tether in front of a backend, and a TLS connection to its HTTPS listener that
/// chose HTTP/2 (the backend and certificates live as long as the test holds them).
async fn https_client() -> (
    TetherProc,
    tokio_rustls::client::TlsStream<TcpStream>,
    (Backend, Pki),
) {
    let pki = Pki::new();
    let backend = Backend::start("a").await;
    let lb = TetherProc::start_logged(&config(&pki, backend.addr), &[]).await;
    let (tls, _) = tls_connect(
        lb.listener_addr(1).await,
        "a.test",
        pki.client_config(&[b"h2"]),
    )
    .await
    .expect("handshake");
    (lb, tls, (backend, pki))
}

/// A raw target that accepts connections and never reads from them.
async fn deaf_target() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// A raw target that answers any request with an endless chunked body, written as
/// fast as it is taken.
async fn endless_target() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            set.spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b'x', 0x10000));
                chunk.extend_from_slice(b"\r\n");
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_a_client_that_stops_reading() {
    let pki = Pki::new();
    let (target, _t) = endless_target().await;
    let lb = TetherProc::start_logged(&config(&pki, target), &[]).await;
    let mut s = TcpStream::connect(lb.addr()).await.expect("connect");
    s.write_all(b"GET /download HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    // Nothing is read: the socket buffers fill within moments, then tether waits.
    let started = Instant::now();
    let took = wait_stall(&lb, "client_write", started, IDLE + SLACK).await;
    assert!(took <= IDLE + SLACK, "closed after {took:?}");
    // The connection is closed: what is buffered drains, then the end.
    let mut sink = vec![0u8; 1 << 16];
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the client connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_a_target_that_stops_reading_a_body() {
    let pki = Pki::new();
    let (target, _t) = deaf_target().await;
    let lb = TetherProc::start_logged(&config(&pki, target), &[]).await;
    let s = TcpStream::connect(lb.addr()).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let total = 200_000_000u64;
    let writer = tokio::spawn(async move {
        let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 1 << 16];
        let mut sent = 0u64;
        while sent < total {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
        }
    });
    let started = Instant::now();
    let took = wait_stall(&lb, "target_write", started, IDLE + SLACK).await;
    assert!(took <= IDLE + SLACK, "closed after {took:?}");
    // The client hears ALB's 504 for a target that timed out, then the close.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 504"), "{text:?}");
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_an_http2_stream_without_window() {
    let (lb, tls, _backend) = https_client().await;
    // Windows of 64 KiB that are never given back: the client reads no body.
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .adaptive_window(false)
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get("https://a.test/download?bytes=50000000")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response head");
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let took = wait_stall(&lb, "h2_stream", started, IDLE + SLACK).await;
    assert!(took <= IDLE + SLACK, "closed after {took:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection stayed open");
    drop(resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_send_goaway_to_an_idle_http2_connection() {
    let (lb, tls, _backend) = https_client().await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get("https://a.test/")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    drop(resp);
    let started = Instant::now();
    let took = wait_stall(&lb, "h2_idle", started, IDLE + SLACK).await;
    assert!(took <= IDLE + SLACK, "GOAWAY after {took:?}");
    // The client's connection ends cleanly after the GOAWAY.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the connection did not end cleanly: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_close_an_http2_head_that_never_ends() {
    let (lb, mut tls, _backend) = https_client().await;
    // The preface, empty SETTINGS, and a HEADERS frame on stream 1 without
    // END_HEADERS (`:method GET` indexed): CONTINUATION frames should follow.
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82]);
    tls.write_all(&frames).await.expect("write");
    let started = Instant::now();
    let took = wait_stall(&lb, "client_read", started, HEADER + SLACK).await;
    assert!(took <= HEADER + SLACK, "closed after {took:?}");
    let mut sink = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut sink)).await;
    assert!(end.is_ok(), "the connection stayed open");
}
