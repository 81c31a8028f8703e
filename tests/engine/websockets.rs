//! Nine thousand idle websockets are held; a one-way websocket outlives the idle timeout.

use super::trickle::raise_nofile;
use super::*;

// === Nine thousand websockets ===

/// Open connections (in-flight requests and websockets) tether counts to `target`.
async fn open_connections(admin: SocketAddr, target: SocketAddr) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tether::admin::fetch_targets(admin).await {
            Ok(groups) => {
                return groups
                    .iter()
                    .flat_map(|g| g.targets.iter())
                    .find(|t| t.port == target.port())
                    .map_or(0, |t| t.connections)
            }
            Err(e) if Instant::now() > deadline => panic!("admin /targets: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits (bounded) until tether counts `want` open connections to `target`.
async fn wait_connections(admin: SocketAddr, target: SocketAddr, want: u64, within: Duration) {
    poll(within, Duration::from_millis(100), || async move {
        let n = open_connections(admin, target).await;
        if n == want {
            return Ok(());
        }
        Err(format!(
            "tether counts {n} open connections to the target, expected {want}"
        ))
    })
    .await
}

const WS_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A websocket through tether: the upgrade sent, its 101 read.
async fn open_websocket(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(WS_UPGRADE)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the 101's head is consumed.
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while head_end(&head).is_none() {
            match s.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return Err(format!("closed after {}", show(&head))),
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => return Err(format!("no 101 in 10 s: {}", show(&head))),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        return Err(format!("not a 101: {}", show(&head)));
    }
    Ok(s)
}

/// Sends a masked text frame and reads the echo.
async fn echo(s: &mut TcpStream, text: &str) -> Result<(), String> {
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mask = rand::random::<[u8; 4]>();
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; 2 + payload.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .map_err(|_| "no echo in 5 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let mut want = vec![0x81, payload.len() as u8];
    want.extend_from_slice(payload);
    if back != want {
        return Err(format!("echo {} for {}", show(&back), show(&want)));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_should_hold_nine_thousand_idle_websockets() {
    use futures_util::StreamExt;
    const SOCKETS: usize = 9000;
    let _heavy = HEAVY.lock().await;
    // This process holds both ends' client and backend sockets (2 × 9000); tether,
    // which inherits the limit, a client and a target socket per websocket.
    raise_nofile(2 * SOCKETS as u64 + 500);
    let backend = Backend::start("ws").await;
    let lb = TetherProc::start(&config(
        &[backend.addr],
        "idle_timeout = \"600s\"\nadmin = \"127.0.0.1:{admin}\"",
        "",
    ))
    .await;
    let addr = lb.addr();
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));

    let t0 = Instant::now();
    let opened: Vec<Result<TcpStream, String>> = futures_util::stream::iter(0..SOCKETS)
        .map(|_| open_websocket(addr))
        .buffer_unordered(128)
        .collect()
        .await;
    let open_time = t0.elapsed();
    let mut sockets = Vec::with_capacity(SOCKETS);
    let mut errors = Vec::new();
    for r in opened {
        match r {
            Ok(s) => sockets.push(s),
            Err(e) => errors.push(e),
        }
    }
    eprintln!(
        "{} websockets open in {open_time:?}, {} failed",
        sockets.len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} of {SOCKETS} upgrades failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    wait_connections(admin, backend.addr, SOCKETS as u64, Duration::from_secs(10)).await;

    // Held, idle: none closed a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut probe = [0u8; 1];
    let closed = sockets
        .iter()
        .filter(|s| !matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    assert_eq!(
        closed, 0,
        "{closed} idle websockets were closed or sent something"
    );
    for i in [0, SOCKETS / 2, SOCKETS - 1] {
        echo(&mut sockets[i], &format!("hello {i}"))
            .await
            .unwrap_or_else(|e| panic!("websocket {i} of {SOCKETS}: {e}"));
    }
    assert_eq!(open_connections(admin, backend.addr).await, SOCKETS as u64);

    let t1 = Instant::now();
    drop(sockets);
    wait_connections(admin, backend.addr, 0, Duration::from_secs(30)).await;
    eprintln!("all closed through tether in {:?}", t1.elapsed());
    // Still serving.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/").await.text(), "ws");
}

// === Idle timeout on a websocket that talks one way ===

/// A target that answers any upgrade with a 101 and then only listens.
async fn silent_websocket_target() -> (SocketAddr, JoinHandle<()>) {
    serve_raw(|mut s| async move {
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        if s.write_all(reply).await.is_err() {
            return;
        }
        while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
    })
    .await
}

/// ALB counts the idle timeout on bytes either way: a websocket on which only the
/// client talks stays open past it, and closes once both sides are silent for it.
#[tokio::test]
async fn it_should_keep_a_one_way_websocket_open_past_the_idle_timeout() {
    let (target, _t) = silent_websocket_target().await;
    let lb = TetherProc::start(&config(&[target], "idle_timeout = \"1s\"", "")).await;
    let mut ws = TcpStream::connect(lb.addr()).await.expect("connect");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("upgrade request");
    let mut head = [0u8; 1024];
    let n = ws.read(&mut head).await.expect("101");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // 3 s (three idle timeouts) of client-to-target frames, the target silent.
    let frame = [0x82u8, 0x84, 1, 2, 3, 4, 0, 0, 0, 0];
    let until = Instant::now() + Duration::from_secs(3);
    let mut last_write = Instant::now();
    while Instant::now() < until {
        last_write = Instant::now();
        ws.write_all(&frame)
            .await
            .expect("tether closed a websocket that talks one way");
        let mut probe = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(300), ws.read(&mut probe)).await {
            Err(_) => {}
            Ok(r) => panic!("the websocket ended while the client talked: {r:?}"),
        }
    }
    // Both silent: closed an idle timeout after the last byte. Measured from the
    // last write (tether saw that byte after it was written), not from the end of
    // the loop, whose last 300 ms wait can run long on a loaded machine.
    let mut rest = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(5), ws.read(&mut rest)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "a silent websocket stayed open: {end:?}"
    );
    let silent_for = last_write.elapsed();
    assert!(
        silent_for >= Duration::from_millis(950),
        "closed {silent_for:?} after the last byte, before the 1 s idle timeout"
    );
}
