//! HTTP/1.1 framing and anti-smuggling through the real binary, against a raw target
//! that records every byte it receives: message framing (RFC 9112 §6), a corpus of
//! request-smuggling attempts, ALB's desync mitigation modes (`http_desync_guardian`
//! classes, as AWS's ALB guide describes desync mitigation) and the request size and time
//! limits (ALB's HTTP request limits).
//!
//! Every table reports all its failing rows at once, each named.

//!
//! One test binary, a module per subject: framing, smuggling, desync, limits and
//! the edge rules of issue 20. The kit (parser, recording target, raw client) is
//! tests/common/raw_http.rs; the table rows every subject uses are here.

#[path = "../common/mod.rs"]
mod common;

mod desync;
mod edge;
mod framing;
mod limits;
mod smuggling;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::raw_http::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The request every smuggling case tries to sneak past tether: tether answers
/// `/forbidden/*` itself with a 403, so it must never reach the target.
const SMUGGLED: &str = "GET /forbidden/x HTTP/1.1\r\nHost: t\r\n\r\n";

/// Header tether's own rule answers with (the 403 of `/forbidden/*`).
const FORBIDDEN_BODY: &str = "forbidden by tether";

/// How long to wait for one expected response.
const RESPONSE_WAIT: Duration = Duration::from_secs(3);

// === Config ===

/// One HTTP listener: `/forbidden/*` answered by tether with a 403, everything else
/// forwarded to the one target; no health checks, no passive health (no retries: a
/// request reaches the target at most once). `lb_extra` goes into `[load_balancer]`.
/// The Host goes as the client wrote it (`preserve_host_header`): ALB's default adds
/// the listener's port, which would show in every byte-exact check.
fn config(target: SocketAddr, lb_extra: &str) -> String {
    let forbidden =
        format!(r#"{{ fixed_response = {{ status = 403, body = "{FORBIDDEN_BODY}" }} }}"#);
    let listener = listener("web", &[(1, "/forbidden/*", &forbidden)]);
    format!(
        r#"
[load_balancer]
threads = 2
preserve_host_header = true
{lb_extra}

{listener}
[target_group.web]
targets = ["{target}"]
health_check = {{ enabled = false }}
passive_health = {{ enabled = false }}
"#
    )
}

fn desync_config(target: SocketAddr, mode: &str) -> String {
    config(target, &format!("desync_mitigation_mode = \"{mode}\""))
}

// === Table rows ===

/// Who must have made a response.
#[derive(Debug, Clone)]
enum Saw {
    /// The target, answering this `METHOD TARGET`.
    Target(String),
    /// tether itself (no `X-Target-Saw`).
    Tether,
}

#[derive(Debug, Clone)]
struct Expect {
    status: u16,
    body: Option<&'static str>,
    /// The request was HEAD: the response has no body whatever its headers say.
    head: bool,
    saw: Saw,
}

fn from_target(status: u16, saw: &str) -> Expect {
    Expect {
        status,
        body: None,
        head: false,
        saw: Saw::Target(saw.to_string()),
    }
}

fn ok_from_target(saw: &str) -> Expect {
    Expect {
        body: Some("ok"),
        ..from_target(200, saw)
    }
}

fn from_tether(status: u16) -> Expect {
    Expect {
        status,
        body: None,
        head: false,
        saw: Saw::Tether,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Send(Vec<u8>),
    Pause(Duration),
    Expect(Expect),
    /// Read until tether closes or goes quiet: no response may be a 2xx.
    No2xx,
}

fn send(s: impl AsRef<[u8]>) -> Step {
    Step::Send(s.as_ref().to_vec())
}

/// What must (not) reach the target during a row, after [`strip_added`].
#[derive(Debug, Clone)]
enum Seen {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Exactly these bytes, give or take a `Connection: close` line.
    ExactButClose(Vec<u8>),
    /// These bytes, ASCII case aside (for a header tether rewrites).
    ExactAnyCase(Vec<u8>),
    /// No byte at all.
    Nothing,
    /// These bytes somewhere.
    Has(Vec<u8>),
    /// Never these bytes.
    Lacks(Vec<u8>),
}

fn exact(s: impl AsRef<[u8]>) -> Seen {
    Seen::Exact(s.as_ref().to_vec())
}

fn has(s: impl AsRef<[u8]>) -> Seen {
    Seen::Has(s.as_ref().to_vec())
}

fn lacks(s: impl AsRef<[u8]>) -> Seen {
    Seen::Lacks(s.as_ref().to_vec())
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    steps: Vec<Step>,
    target: Vec<Seen>,
    /// `Some(true)`: tether closes the client connection after the last response;
    /// `Some(false)`: it keeps it open.
    client_closed: Option<bool>,
    /// tether closes the target connection(s) the row used.
    target_closed: bool,
}

impl Row {
    fn new(name: impl Into<String>, steps: Vec<Step>) -> Row {
        Row {
            name: name.into(),
            steps,
            target: Vec::new(),
            client_closed: None,
            target_closed: false,
        }
    }

    fn target(mut self, seen: Seen) -> Row {
        self.target.push(seen);
        self
    }

    fn keeps_open(mut self) -> Row {
        self.client_closed = Some(false);
        self
    }

    fn closes(mut self) -> Row {
        self.client_closed = Some(true);
        self
    }

    fn closes_target(mut self) -> Row {
        self.target_closed = true;
        self
    }
}

fn check_response(r: &Resp, e: &Expect) -> Vec<String> {
    let mut fails = Vec::new();
    if r.status != e.status {
        fails.push(format!(
            "expected status {}, got {}",
            e.status,
            r.describe()
        ));
    }
    if let Some(body) = e.body {
        if r.body != body.as_bytes() {
            fails.push(format!("expected body {body:?}, got {}", r.describe()));
        }
    }
    match &e.saw {
        Saw::Target(saw) if r.saw() != Some(saw.as_str()) => fails.push(format!(
            "expected the target's answer to {saw:?}, got {}",
            r.describe()
        )),
        Saw::Tether if r.saw().is_some() => fails.push(format!(
            "expected tether's own answer, got the target's: {}",
            r.describe()
        )),
        _ => {}
    }
    fails
}

/// Runs one row on a new client connection; returns its failures, named.
async fn run_row(addr: SocketAddr, target: &RecordingTarget, row: &Row) -> Vec<String> {
    let mut fails = Vec::new();
    let snap = target.snapshot();
    let mut client = RawClient::connect(addr).await;
    let mut broken = false;
    for step in &row.steps {
        if broken {
            break;
        }
        match step {
            Step::Send(bytes) => {
                if !client.send(bytes).await {
                    fails.push(format!(
                        "tether closed before {} bytes were sent",
                        bytes.len()
                    ));
                }
            }
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::Expect(e) => match client.response(e.head, RESPONSE_WAIT).await {
                Ok(r) => fails.extend(check_response(&r, e)),
                Err(why) => {
                    fails.push(format!("expected a {} response: {why}", e.status));
                    broken = true;
                }
            },
            Step::No2xx => {
                let rs = client
                    .responses_until_quiet(Duration::from_millis(1500), Duration::from_secs(5))
                    .await;
                for r in rs.iter().filter(|r| (200..300).contains(&r.status)) {
                    fails.push(format!("expected no 2xx, got {}", r.describe()));
                }
            }
        }
    }
    if !broken {
        let closed = match row.client_closed {
            Some(true) => Some(client.closed_within(Duration::from_secs(3)).await),
            Some(false) => Some(client.closed_within(Duration::from_millis(300)).await),
            None => None,
        };
        match (row.client_closed, closed) {
            (Some(true), Some(false)) => {
                fails.push("the client connection is still open 3 s after the response".into())
            }
            (Some(false), Some(true)) => {
                fails.push("tether closed the client connection; expected keep-alive".into())
            }
            _ => {}
        }
        if !client.buf.is_empty() {
            fails.push(format!(
                "unexpected bytes after the expected responses: {}",
                show(&client.buf)
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new = target.since(&snap);
    let got: Vec<u8> = new.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for seen in &row.target {
        match seen {
            Seen::Exact(want) => {
                if strip_added(&got) != *want {
                    fails.push(format!(
                        "the target got {} (tether's X-Forwarded-*/X-Amzn-Trace-Id removed); expected {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::ExactButClose(want) => {
                if strip_added_and_close(&got) != strip_added_and_close(want) {
                    fails.push(format!(
                        "the target got {}; expected {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::ExactAnyCase(want) => {
                if !strip_added(&got).eq_ignore_ascii_case(want) {
                    fails.push(format!(
                        "the target got {}; expected (any case) {}",
                        show(&strip_added(&got)),
                        show(want)
                    ));
                }
            }
            Seen::Nothing => {
                if !got.is_empty() {
                    fails.push(format!(
                        "expected nothing at the target, it got {}",
                        show(&got)
                    ));
                }
            }
            Seen::Has(want) => {
                if !contains(&got, want) {
                    fails.push(format!(
                        "the target never got {}; it got {}",
                        show(want),
                        show(&got)
                    ));
                }
            }
            Seen::Lacks(bad) => {
                if contains(&got, bad) {
                    fails.push(format!("the target got {}: {}", show(bad), show(&got)));
                }
            }
        }
    }
    if row.target_closed {
        if new.is_empty() {
            fails.push("no target connection was used".into());
        }
        for (idx, _) in &new {
            if !target.wait_closed(*idx, Duration::from_secs(3)).await {
                fails.push(format!(
                    "target connection #{idx} still open 3 s after the response"
                ));
            }
        }
    }
    fails
        .into_iter()
        .map(|f| format!("[{}] {f}", row.name))
        .collect()
}

async fn run_table(addr: SocketAddr, target: &RecordingTarget, rows: &[Row]) -> Vec<String> {
    let mut fails = Vec::new();
    for row in rows {
        fails.extend(run_row(addr, target, row).await);
    }
    fails
}

fn assert_table(what: &str, rows: usize, fails: &[String]) {
    assert!(
        fails.is_empty(),
        "{what}: {} failure(s) over {rows} rows:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}
