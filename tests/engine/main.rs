//! tether's HTTP/1 engine through the real binary, under random input and under load:
//! random valid requests reach the target byte for byte, random broken heads never
//! do, a thousand clients trickling their heads are cut off at
//! `client_header_timeout` while others are served, POSTs survive targets closing
//! idle keep-alive connections, and nine thousand idle websockets are held.
//!
//! One test binary, a module per subject: random valid requests, random broken
//! heads, tricklers, keep-alive races, websockets. The config, the recording
//! target and the response reader they share are here.

#[path = "../common/mod.rs"]
mod common;

mod broken;
mod keepalive;
mod trickle;
mod valid;
mod websockets;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw_http::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

/// What the recording target answers to every whole request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Held by the tests that load the machine or measure time (the tests of one file
/// run in parallel): they run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long to wait for one response.
const RESPONSE_WAIT: Duration = Duration::from_secs(3);

/// The header lines tether adds to every forwarded request (ALB's).
const ADDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-amzn-trace-id",
];

/// Header names the generators never use: the ones tether adds, the hop-by-hop ones
/// it removes, and the ones that frame or route a request (set by the generator
/// itself, once).
const RESERVED: [&str; 14] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-amzn-trace-id",
    "connection",
    "keep-alive",
    "te",
    "proxy-connection",
    "proxy-authenticate",
    "upgrade",
    "host",
    "content-length",
    "transfer-encoding",
    "expect",
];

// === Config ===

/// One HTTP listener forwarding everything to `targets`; no health checks (every
/// target takes traffic at once). `lb_extra` goes into `[load_balancer]`, `tg_extra`
/// into the target group.
fn config(targets: &[SocketAddr], lb_extra: &str, tg_extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|a| format!("\"{a}\"")).collect();
    web_config(
        &format!("threads = 2\n{lb_extra}"),
        &format!(
            "targets = [{}]\nhealth_check = {{ enabled = false }}\n{tg_extra}",
            list.join(", ")
        ),
    )
}

/// A recording target answering [`OK`] to everything, and tether in front of it
/// (`lb_extra` in its `[load_balancer]`), started on `rt`.
fn recorded_lb(rt: &tokio::runtime::Runtime, lb_extra: &str) -> (RecordingTarget, TetherProc) {
    rt.block_on(async {
        let target = RecordingTarget::start_with(TargetReply::Fixed(OK)).await;
        let lb = TetherProc::start(&config(&[target.addr], lb_extra, "")).await;
        (target, lb)
    })
}

// === Client side ===

/// How reading a response ended without one.
#[derive(Debug)]
enum NoResp {
    /// Closed (FIN) after `partial` bytes.
    Closed(Vec<u8>),
    /// Reset after `partial` bytes.
    Reset(Vec<u8>),
    /// Neither a whole response nor a close in time.
    Timeout(Vec<u8>),
    Garbage(String),
}

impl std::fmt::Display for NoResp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoResp::Closed(p) => write!(f, "closed after {:?}", show(p)),
            NoResp::Reset(p) => write!(f, "reset after {:?}", show(p)),
            NoResp::Timeout(p) => write!(f, "no response in time; got {:?}", show(p)),
            NoResp::Garbage(e) => write!(f, "bad response: {e}"),
        }
    }
}

/// Reads one final response (content-length, chunked or close-delimited body) from
/// `s` with the kit's reader.
async fn read_response(s: &mut TcpStream, wait: Duration) -> Result<Resp, NoResp> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        match parse_response(&buf, false, false) {
            Some(Ok((r, _))) if !(100..200).contains(&r.status) => return Ok(r),
            Some(Err(e)) => return Err(NoResp::Garbage(e)),
            _ => {}
        }
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Err(_) => return Err(NoResp::Timeout(buf)),
            Ok(Err(_)) => return Err(NoResp::Reset(buf)),
            Ok(Ok(0)) => {
                // A close-delimited body ends here.
                return match parse_response(&buf, false, true) {
                    Some(Ok((r, _))) if !(100..200).contains(&r.status) => Ok(r),
                    _ => Err(NoResp::Closed(buf)),
                };
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `bytes` on a new connection and reads one response.
async fn exchange_once(addr: SocketAddr, bytes: &[u8]) -> Result<Resp, String> {
    let mut s = tokio::time::timeout(RESPONSE_WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.write_all(bytes)
        .await
        .map_err(|e| format!("write to {addr}: {e}"))?;
    read_response(&mut s, RESPONSE_WAIT)
        .await
        .map_err(|e| e.to_string())
}
