//! Zero-downtime upgrade through the real binary: `tether run --upgrade` takes the
//! listening sockets of the running tether, which is sent SIGQUIT; a load of
//! keep-alive and new-connection requests runs across the hand-over and the old
//! process's exit, and the old process's websockets stay until `upgrade_grace` and
//! then get Close 1001.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The grace the test gives websockets after the old process stops accepting.
const GRACE: Duration = Duration::from_secs(2);
/// pingora's hand-over window: after SIGQUIT the old process keeps accepting this
/// long (both processes do), then stops (pingora-core's `CLOSE_TIMEOUT`).
const HAND_OVER: Duration = Duration::from_secs(5);
const WEBSOCKETS: usize = 50;

fn config(backend: SocketAddr) -> String {
    one_group_config(
        backend,
        r#"threads = 2
admin = "127.0.0.1:{admin}"
upgrade_grace = "2s""#,
    )
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Connections the server ended with `Connection: close` (the old process's
    /// way of sending keep-alive clients to the new one).
    told_to_close: AtomicU64,
}

/// Requests on keep-alive connections, opening a new one when a response says
/// `Connection: close`.
async fn keep_alive_loop(addr: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr).await else {
            load.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut client = Client::over_io(stream, &addr.to_string()).await;
        while !stop.load(Ordering::Relaxed) {
            match client.try_send(request("GET", "/", &[])).await {
                Ok(r) if r.status == 200 => {
                    load.ok.fetch_add(1, Ordering::Relaxed);
                    if r.header("connection") == Some("close") {
                        load.told_to_close.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                Ok(r) => {
                    eprintln!("keep-alive request: {}", r.status);
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    eprintln!("keep-alive request: {e}");
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// One request per new connection.
async fn new_connection_loop(addr: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr).await else {
            load.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut client = Client::over_io(stream, &addr.to_string()).await;
        match client.try_send(request("GET", "/", &[])).await {
            Ok(r) if r.status == 200 => load.ok.fetch_add(1, Ordering::Relaxed),
            other => {
                eprintln!("new-connection request: {:?}", other.map(|r| r.status));
                load.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// How one websocket ended: when, and with which Close code.
#[derive(Debug)]
struct WsEnd {
    at: Instant,
    code: Option<u16>,
    /// It still echoed after the old process stopped accepting.
    echoed_in_grace: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn it_should_hand_over_the_listeners_without_a_failed_request_and_close_websockets_at_the_grace(
) {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("upgrade.sock");
    let socket_arg = socket.to_str().expect("a UTF-8 temp path");
    let old = TetherProc::start_with_args(
        &config(backend.addr),
        &[],
        &["--upgrade-socket", socket_arg],
    )
    .await;
    let addr = old.addr();

    // 50 websockets on the old process, each echoing.
    let mut sockets = Vec::new();
    for i in 0..WEBSOCKETS {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket");
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let echo = ws.next().await.expect("open").expect("frame");
        assert_eq!(
            echo.into_text().expect("text").as_str(),
            format!("hello {i}")
        );
        sockets.push(ws);
    }

    // The load runs from before the upgrade until after the old process is gone.
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(tokio::spawn(keep_alive_loop(
            addr,
            load.clone(),
            stop.clone(),
        )));
        workers.push(tokio::spawn(new_connection_loop(
            addr,
            load.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.ok.load(Ordering::Relaxed);
    assert!(before > 0, "no load before the upgrade");

    // The new process waits on the upgrade socket; then the old one gets SIGQUIT.
    let old_addresses = std::fs::read_to_string(&old.addresses_path).expect("addresses");
    let old_inode = inode(&old.addresses_path);
    let mut new = old.spawn_upgrade(&["--upgrade-socket", socket_arg]);
    until(
        &mut new,
        Duration::from_secs(10),
        "the new tether made no upgrade socket",
        || socket.exists(),
    )
    .await;
    let quit_at = Instant::now();
    old.signal("QUIT");

    // Each websocket: still echoing once the old process has stopped accepting,
    // then closed with 1001.
    let stopped_accepting = quit_at + HAND_OVER;
    let mut watchers = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        watchers.push(tokio::spawn(async move {
            tokio::time::sleep_until((stopped_accepting + Duration::from_millis(500)).into()).await;
            let text = format!("still here {i}");
            let mut echoed_in_grace = false;
            if ws.send(Message::text(text.clone())).await.is_ok() {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    echoed_in_grace = t.as_str() == text;
                }
            }
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        return WsEnd {
                            at: Instant::now(),
                            code: frame.map(|f| u16::from(f.code)),
                            echoed_in_grace,
                        }
                    }
                    Some(Ok(_)) => continue,
                    _ => {
                        return WsEnd {
                            at: Instant::now(),
                            code: None,
                            echoed_in_grace,
                        }
                    }
                }
            }
        }));
    }

    // The new process has the sockets once it writes its addresses (a new file
    // renamed over the old one's): the same listener addresses.
    until(
        &mut new,
        Duration::from_secs(15),
        "the new tether did not take over",
        || inode(&old.addresses_path) != old_inode,
    )
    .await;
    let new_addresses = std::fs::read_to_string(&old.addresses_path).expect("addresses");
    assert_eq!(listeners(&new_addresses), listeners(&old_addresses));

    let mut ends = Vec::new();
    for w in watchers {
        ends.push(w.await.expect("watcher"));
    }

    // The old process exits once its websockets are closed.
    let mut old = old;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = old.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the old tether did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_at = Instant::now();
    assert!(status.success(), "old tether: {status}");

    // Load on the new process alone for a while, then stop.
    let at_exit = load.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(
        new.0.try_wait().expect("wait").is_none(),
        "the new tether exited"
    );

    let (ok, failed, refused) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "requests: {ok} ok, {failed} failed, {refused} refused connections, {} keep-alive connections told to close; old exited {:?} after SIGQUIT",
        load.told_to_close.load(Ordering::Relaxed),
        exited_at - quit_at
    );
    assert_eq!(failed, 0, "failed requests");
    assert_eq!(refused, 0, "refused connections");
    assert!(
        ok > at_exit,
        "no requests served after the old tether exited"
    );
    assert!(
        load.told_to_close.load(Ordering::Relaxed) > 0,
        "no keep-alive connection was sent on by the old tether"
    );

    // Websockets: alive through the grace, closed with 1001 at its end, not before.
    let close_at = stopped_accepting + GRACE;
    for (i, end) in ends.iter().enumerate() {
        assert!(
            end.echoed_in_grace,
            "websocket {i} did not echo in the grace: {end:?}"
        );
        assert_eq!(end.code, Some(1001), "websocket {i}: {end:?}");
        assert!(
            end.at + Duration::from_millis(500) >= close_at,
            "websocket {i} closed {:?} before the grace ended",
            close_at - end.at
        );
        assert!(
            end.at <= close_at + Duration::from_secs(3),
            "websocket {i} closed {:?} after the grace ended",
            end.at - close_at
        );
    }
}

fn inode(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The `listener …` lines of an addresses file.
fn listeners(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("listener "))
        .collect()
}

#[tokio::test]
async fn it_should_stop_as_on_sigterm_on_a_sigquit_that_no_new_tether_waits_for() {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("upgrade.sock");
    let socket_arg = socket.to_str().expect("a UTF-8 temp path");
    let mut lb = TetherProc::start_with_args(
        &config(backend.addr),
        &[],
        &["--upgrade-socket", socket_arg],
    )
    .await;
    let mut client = Client::connect(lb.addr()).await;
    assert_eq!(client.get("/").await.status, 200);
    let quit_at = Instant::now();
    lb.signal("QUIT");
    // No hand-over (pingora would try to send the sockets for about 6 s and wait
    // its 5 s): the stop begins at once, and the keep-alive client between two
    // requests gets its next response with `Connection: close`.
    loop {
        let reply = client.get("/").await;
        assert_eq!(reply.status, 200);
        if reply.header("connection") == Some("close") {
            break;
        }
        assert!(
            quit_at.elapsed() < Duration::from_secs(1),
            "no stop within 1 s of SIGQUIT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = loop {
        if let Some(status) = lb.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            quit_at.elapsed() < Duration::from_secs(4),
            "tether still running {:?} after SIGQUIT",
            quit_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn it_should_close_websockets_with_1001_at_once_and_exit_on_sigterm() {
    let backend = Backend::start("a").await;
    let mut lb = TetherProc::start(&config(backend.addr).replace("\"2s\"", "\"30s\"")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", lb.addr()))
        .await
        .expect("websocket");
    ws.send(Message::text("hello")).await.expect("send");
    ws.next().await.expect("open").expect("echo");
    let term_at = Instant::now();
    lb.signal("TERM");
    // The grace is for upgrades: a stop closes websockets at once.
    let frame = close_frame(&mut ws, Duration::from_secs(1)).await;
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
    // Nothing open: the process exits without sleeping out pingora's grace period.
    let status = loop {
        if let Some(status) = lb.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            term_at.elapsed() < Duration::from_secs(4),
            "tether still running {:?} after SIGTERM",
            term_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_hand_over_a_fixed_port_listener() {
    let backend = Backend::start("a").await;
    // A fixed port, as deployments have (the other tests use port 0).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let fixed = config(backend.addr).replace("port = {port}", &format!("port = {port}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("upgrade.sock");
    let socket_arg = socket.to_str().expect("a UTF-8 temp path");
    let mut old = TetherProc::start_with_args(&fixed, &[], &["--upgrade-socket", socket_arg]).await;
    let addr = old.addr();
    assert_eq!(addr.port(), port);

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = [
        tokio::spawn(keep_alive_loop(addr, load.clone(), stop.clone())),
        tokio::spawn(new_connection_loop(addr, load.clone(), stop.clone())),
    ];
    let mut new = old.spawn_upgrade(&["--upgrade-socket", socket_arg]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the new tether made no upgrade socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    old.signal("QUIT");
    let deadline = Instant::now() + Duration::from_secs(15);
    while old.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the old tether did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_exit = load.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(
        new.0.try_wait().expect("wait").is_none(),
        "the new tether exited"
    );
    assert_eq!(load.failed.load(Ordering::Relaxed), 0, "failed requests");
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "refused connections"
    );
    assert!(
        load.ok.load(Ordering::Relaxed) > at_exit,
        "nothing served after the old tether exited"
    );
}

/// Waits until `done`, failing with `what` after `limit`, or at once if the new
/// tether exits.
async fn until(new: &mut KillOnDrop, limit: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        assert!(
            new.0.try_wait().expect("wait").is_none(),
            "the new tether exited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
