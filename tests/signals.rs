//! Stopping always stops. Every ordered pair of SIGINT, SIGTERM and SIGQUIT, sent
//! 0, 50 or 100 ms apart to a tether holding an idle keep-alive connection and an
//! open websocket, ends the process within 10 s with under 1 MB of log; and Ctrl-C
//! on examples/socketio-chat/run (SIGINT to its process group) ends every process
//! of the group — tether included — within 10 s, its logs under 1 MB.
//!
//! The example needs node, redis-server, openssl, python3 and `npm ci` in
//! examples/socketio-chat: `scripts/setup --tests` installs them.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::example::{Example, Swarm};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SIGNALS: [&str; 3] = ["INT", "TERM", "QUIT"];
const GAPS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(100),
];
/// How long a stopped process may take, whatever the signals.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// The most log (stdout and stderr) a stop may leave.
const LOG_LIMIT: u64 = 1 << 20;

/// One test at a time: the pairs start 27 tethers, the example Redis, four Node
/// servers and tether, on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `signal` to `pid` (which may have exited already: no check).
fn send(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn log_size(lb: &TetherProc) -> u64 {
    lb.log_path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// The log's last 400 bytes, for a failure's message.
fn log_tail(lb: &TetherProc) -> String {
    let Some(text) = lb.log_path.as_ref().and_then(|p| std::fs::read(p).ok()) else {
        return String::new();
    };
    let tail = &text[text.len().saturating_sub(400)..];
    String::from_utf8_lossy(tail).into_owned()
}

/// Starts tether, opens a keep-alive connection (one request answered, then idle)
/// and a websocket (one message echoed), sends `first`, then `second` after `gap`;
/// the time the process took to exit after `second`, or why it failed.
async fn stop_case(
    backend: SocketAddr,
    first: &'static str,
    second: &'static str,
    gap: Duration,
) -> Result<Duration, String> {
    let mut lb = TetherProc::start_logged(&one_group_config(backend, ""), &[]).await;
    let mut client = Client::connect(lb.addr()).await;
    let reply = client.get("/").await;
    assert_eq!(reply.status, 200);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", lb.addr()))
        .await
        .expect("websocket");
    ws.send(Message::text("hello")).await.expect("send");
    ws.next().await.expect("open").expect("echo");

    let pid = lb.child.id();
    send(pid, first);
    if !gap.is_zero() {
        tokio::time::sleep(gap).await;
    }
    send(pid, second);
    let sent = Instant::now();
    let outcome = loop {
        if let Ok(Some(status)) = lb.child.try_wait() {
            break Ok((sent.elapsed(), status));
        }
        // A process logging without end fails at once (and fills no disk).
        if sent.elapsed() > EXIT_WITHIN || log_size(&lb) > LOG_LIMIT {
            break Err(sent.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let size = log_size(&lb);
    // The client side stays open until the process is gone.
    drop((client, ws));
    match outcome {
        Ok((took, _)) if size <= LOG_LIMIT => Ok(took),
        Ok((took, status)) => Err(format!(
            "exited ({status}) after {took:?} but logged {size} bytes: …{}",
            log_tail(&lb)
        )),
        Err(waited) => Err(format!(
            "still running {waited:?} after the second signal, {size} bytes logged: …{}",
            log_tail(&lb)
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_of_stop_signals_ends_tether_within_10_s_and_1_mb_of_log() {
    let _serial = SERIAL.lock().await;
    let backend = Backend::start("a").await;
    let started = Instant::now();
    let mut cases = Vec::new();
    for first in SIGNALS {
        for second in SIGNALS {
            for gap in GAPS {
                let case = tokio::spawn(stop_case(backend.addr, first, second, gap));
                cases.push((format!("SIG{first}, {gap:?}, SIG{second}"), case));
            }
        }
    }
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, case) in cases {
        match case.await {
            Ok(Ok(took)) => slowest = slowest.max(took),
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(e) => failures.push(format!("{name}: panicked: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 27 cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "27 cases in {:?}, the slowest exit {slowest:?} after its second signal",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_the_example_ends_every_process_of_its_group_within_10_s() {
    let _serial = SERIAL.lock().await;
    let mut example = Example::start(false, &[]);
    // Clients on the page (socket.io connections: websockets, after polling),
    // chatting when Ctrl-C comes: tether's threads are busy as it stops.
    let mut swarm = Swarm::start(&example, 10);
    swarm.wait_connected(10, Duration::from_secs(30));
    swarm.cmd("stream 10");
    std::thread::sleep(Duration::from_millis(500));
    let pressed = Instant::now();
    let left = example.interrupt(EXIT_WITHIN);
    let took = pressed.elapsed();
    drop(swarm);
    let logs = example.log_sizes();
    assert!(
        left.is_empty(),
        "Ctrl-C left processes running after {took:?}: {left:?}; logs: {logs:?}"
    );
    assert!(
        logs.iter().all(|(_, size)| *size <= LOG_LIMIT),
        "logs over 1 MB: {logs:?}"
    );
}
