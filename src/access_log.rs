//! ALB access logs: one line per request (a websocket's when it closes), in ALB's
//! field order and quoting, written off the data path.
//!
//! The engines fill an [`Entry`] and hand it to [`AccessLog::push`]; a bounded queue
//! takes it to a writer thread that formats and writes the line. A full queue drops
//! the entry and counts it: logging never makes a request wait.
//!
//! The line has ALB's 33 fields, in ALB's order ("Access log entries" in ALB's user
//! guide), space separated, the same fields quoted as ALB quotes them:
//!
//! ```text
//! type time elb client:port target:port request_processing_time
//! target_processing_time response_processing_time elb_status_code target_status_code
//! received_bytes sent_bytes "request" "user_agent" ssl_cipher ssl_protocol
//! target_group_arn "trace_id" "domain_name" "chosen_cert_arn" matched_rule_priority
//! request_creation_time "actions_executed" "redirect_url" "error_reason"
//! "target:port_list" "target_status_code_list" "classification"
//! "classification_reason" conn_trace_id "transformed_host" "transformed_uri"
//! "request_transform_status"
//! ```
//!
//! Where ALB's guide is silent or tether has no such thing:
//! - `elb` is `app/<name>/tether` ([`resource_id`]): ALB's resource id is
//!   `app/<name>/<id>`, and log tools split it on `/`.
//! - `target_group_arn` is `arn:tether:elasticloadbalancing:::targetgroup/<name>`, so
//!   that tools that take the group's name out of the ARN find it.
//! - `chosen_cert_arn` is `-`: the engines do not know which certificate pingora's
//!   handshake chose (tether's resolver sees no connection).
//! - `conn_trace_id` is `-`: tether has no connection traceability id.
//! - `request_transform_status` is `TransformSuccess` when a transform rewrote the
//!   host or the URL, `-` otherwise.
//! - Escaping: ALB documents none. So that every line splits the same way, inside
//!   quotes `"` is written `\"`, `\` is `\\` and a control byte is `\xHH`; in an
//!   unquoted field a space, `"`, `\` or control byte is `\xHH`. An empty value is
//!   `-`, as a missing one. A user agent is cut at 8 KB, as ALB cuts it.
//! - JWT validation: ALB's field list has no JWT field (no claim, subject or
//!   result), and AWS lists no `error_reason` for it; tether fills
//!   `actions_executed` (`jwt-validation,forward`, or `jwt-validation` for a
//!   refused token, whose 401 is the load balancer's own processing) and leaves
//!   `error_reason` `-`. Why a token failed is in `tether_jwt_validations_total`.
//! - Processing times are seconds with millisecond precision (`0.086`), as ALB's;
//!   `time` and `request_creation_time` are UTC with microseconds
//!   (`2018-07-02T22:23:00.186641Z`).

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tls_session::TlsSession;

/// ALB's `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    H2,
    Ws,
    Wss,
}

impl Kind {
    /// The log's `type` field (`http`, `https`, `h2`, `ws`, `wss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::H2 => "h2",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }
}

/// What ALB's `actions_executed` lists (tether runs one routing action per request,
/// after a `jwt_validation` when the rule has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Forward,
    FixedResponse,
    Redirect,
    /// A `jwt_validation` that refused the token (the 401).
    JwtValidation,
    /// A `jwt_validation` that passed, then the forward.
    JwtValidationForward,
}

impl ActionKind {
    /// ALB's spelling in `actions_executed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Forward => "forward",
            ActionKind::FixedResponse => "fixed-response",
            ActionKind::Redirect => "redirect",
            // ALB lists every action it ran, comma-separated, in order
            // (`authenticate,forward`); AWS does not document the JWT action's entry,
            // so tether writes the action's type as the API names it.
            ActionKind::JwtValidation => "jwt-validation",
            ActionKind::JwtValidationForward => "jwt-validation,forward",
        }
    }
}

/// The facts of one access log line, in ALB's field order. `None` is written as ALB
/// writes a missing value (`-`, or `-1` for the processing times).
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// When the response ended (a websocket: when it closed).
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    /// The target that answered (the last one tried).
    pub target: Option<SocketAddr>,
    /// From the request head read to the request sent to the target (or to tether's
    /// own response).
    pub request_processing: Option<Duration>,
    /// From the request sent to the response head from the target.
    pub target_processing: Option<Duration>,
    /// From the response head to the end of the response.
    pub response_processing: Option<Duration>,
    pub elb_status: Option<u16>,
    pub target_status: Option<u16>,
    /// Bytes from the client (head and body).
    pub received_bytes: u64,
    /// Bytes to the client (head and body).
    pub sent_bytes: u64,
    /// `METHOD scheme://host:port/path?query HTTP/version`, as ALB writes it; `None`
    /// for a request that could not be parsed (ALB writes `"- - - "`).
    pub request: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    pub tls: Option<TlsSession>,
    pub target_group: Option<Arc<str>>,
    /// The `X-Amzn-Trace-Id` sent to the target.
    pub trace_id: Option<Box<str>>,
    /// The SNI name of a TLS connection.
    pub domain_name: Option<Box<str>>,
    /// The certificate presented (its file, in place of an ARN).
    pub chosen_cert: Option<Arc<str>>,
    /// The priority of the matched rule; 0 for the default action.
    pub matched_rule_priority: Option<u32>,
    /// When the first byte of the request head arrived.
    pub request_creation_time: SystemTime,
    pub actions_executed: Option<ActionKind>,
    pub redirect_url: Option<Box<str>>,
    /// ALB's `error_reason` (e.g. `TargetConnectionErrorCode`).
    pub error_reason: Option<&'static str>,
    /// Every target tried, in order.
    pub targets: Vec<SocketAddr>,
    /// The status each of them answered (`-` written for one that did not).
    pub target_statuses: Vec<Option<u16>>,
    /// The desync class of a request that is not compliant (`Acceptable`,
    /// `Ambiguous`, `Severe`) and its reason.
    pub classification: Option<&'static str>,
    pub classification_reason: Option<&'static str>,
    /// The `Host` a host header rewrite transform made (ALB's `transformed_host`).
    pub transformed_host: Option<Box<str>>,
    /// The path and query a URL rewrite transform made (ALB's `transformed_uri`).
    pub transformed_uri: Option<Box<str>>,
}

// === The line ===

/// ALB cuts a longer user agent.
const MAX_USER_AGENT: usize = 8 * 1024;

/// ALB's `elb` field for a load balancer named `name`: `app/<name>/tether`, the shape
/// of ALB's `app/<name>/<id>`.
pub fn resource_id(name: &str) -> String {
    format!("app/{name}/tether")
}

impl Entry {
    /// Appends this entry's line, in ALB's format and ending in `\n`, to `out`; `elb`
    /// is the load balancer's [`resource_id`].
    pub fn write_line(&self, elb: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.push(b' ');
        timestamp(out, self.time);
        out.push(b' ');
        bare(out, elb);
        out.push(b' ');
        address(out, self.client);
        out.push(b' ');
        address(out, self.target);
        for t in [
            self.request_processing,
            self.target_processing,
            self.response_processing,
        ] {
            out.push(b' ');
            seconds(out, t);
        }
        out.push(b' ');
        status(out, self.elb_status);
        out.push(b' ');
        status(out, self.target_status);
        out.push(b' ');
        number(out, self.received_bytes);
        out.push(b' ');
        number(out, self.sent_bytes);
        out.push(b' ');
        match &self.request {
            Some(r) => quoted(out, Some(r)),
            // ALB's request of a request it could not parse.
            None => out.extend_from_slice(b"\"- - - \""),
        }
        out.push(b' ');
        let ua = self.user_agent.as_deref().map(|ua| cut(ua, MAX_USER_AGENT));
        quoted(out, ua);
        out.push(b' ');
        bare(out, self.tls.map_or("", |t| t.cipher_suite));
        out.push(b' ');
        bare(out, self.tls.map_or("", |t| t.version));
        out.push(b' ');
        match &self.target_group {
            Some(name) => {
                out.extend_from_slice(b"arn:tether:elasticloadbalancing:::targetgroup/");
                bare(out, name);
            }
            None => out.push(b'-'),
        }
        out.push(b' ');
        quoted(out, self.trace_id.as_deref());
        out.push(b' ');
        quoted(out, self.domain_name.as_deref());
        out.push(b' ');
        quoted(out, self.chosen_cert.as_deref());
        out.push(b' ');
        match self.matched_rule_priority {
            Some(p) => number(out, u64::from(p)),
            None => out.push(b'-'),
        }
        out.push(b' ');
        timestamp(out, self.request_creation_time);
        out.push(b' ');
        quoted(out, self.actions_executed.map(ActionKind::as_str));
        out.push(b' ');
        quoted(out, self.redirect_url.as_deref());
        out.push(b' ');
        quoted(out, self.error_reason);
        out.push(b' ');
        self.target_lists(out);
        out.push(b' ');
        quoted(out, self.classification);
        out.push(b' ');
        quoted(out, self.classification_reason);
        // conn_trace_id: tether has no connection traceability id.
        out.extend_from_slice(b" - ");
        quoted(out, self.transformed_host.as_deref());
        out.push(b' ');
        quoted(out, self.transformed_uri.as_deref());
        out.push(b' ');
        let transformed = self.transformed_host.is_some() || self.transformed_uri.is_some();
        quoted(out, transformed.then_some("TransformSuccess"));
        out.push(b'\n');
    }

    /// `"target:port_list" "target_status_code_list"`: space separated, `-` when empty.
    fn target_lists(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        if self.targets.is_empty() {
            out.push(b'-');
        }
        for (i, t) in self.targets.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            address(out, Some(*t));
        }
        out.extend_from_slice(b"\" \"");
        if self.target_statuses.is_empty() {
            out.push(b'-');
        }
        for (i, s) in self.target_statuses.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            status(out, *s);
        }
        out.push(b'"');
    }
}

/// `n` in decimal, zero-padded to `width` digits. (`itoa` rather than `write!`: the
/// formatting machinery was most of a line's cost.)
fn digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let text = buf.format(n);
    for _ in text.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(text.as_bytes());
}

fn number(out: &mut Vec<u8>, n: u64) {
    digits(out, n, 0);
}

fn status(out: &mut Vec<u8>, s: Option<u16>) {
    match s {
        Some(s) => number(out, u64::from(s)),
        None => out.push(b'-'),
    }
}

fn address(out: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        Some(SocketAddr::V4(a)) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, u64::from(octet));
            }
            out.push(b':');
            number(out, u64::from(a.port()));
        }
        Some(a) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{a}");
        }
        None => out.push(b'-'),
    }
}

/// Seconds with millisecond precision, or ALB's `-1` for a step that did not happen.
fn seconds(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => {
            let ms = ((d.as_micros() + 500) / 1000).min(u128::from(u64::MAX)) as u64;
            number(out, ms / 1000);
            out.push(b'.');
            digits(out, ms % 1000, 3);
        }
        None => out.extend_from_slice(b"-1"),
    }
}

/// ISO 8601, UTC, microseconds: `2018-07-02T22:23:00.186641Z`.
fn timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    digits(out, year.max(0) as u64, 4);
    out.push(b'-');
    digits(out, u64::from(month), 2);
    out.push(b'-');
    digits(out, u64::from(day), 2);
    out.push(b'T');
    digits(out, rem / 3600, 2);
    out.push(b':');
    digits(out, rem / 60 % 60, 2);
    out.push(b':');
    digits(out, rem % 60, 2);
    out.push(b'.');
    digits(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn hex(out: &mut Vec<u8>, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        DIGITS[usize::from(b >> 4)],
        DIGITS[usize::from(b & 15)],
    ]);
}

/// An unquoted field: `-` when empty; a space, `"`, `\` or control byte as `\xHH`.
fn bare(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'-');
    }
    for &b in s.as_bytes() {
        if b <= b' ' || b == b'"' || b == b'\\' || b == 0x7f {
            hex(out, b);
        } else {
            out.push(b);
        }
    }
}

/// A quoted field: `"-"` when missing or empty; `"` as `\"`, `\` as `\\`, a control
/// byte as `\xHH`.
fn quoted(out: &mut Vec<u8>, s: Option<&str>) {
    out.push(b'"');
    match s {
        None | Some("") => out.push(b'-'),
        // Most values need no escape: copied at once.
        Some(s)
            if !s
                .bytes()
                .any(|b| b < b' ' || b == b'"' || b == b'\\' || b == 0x7f) =>
        {
            out.extend_from_slice(s.as_bytes())
        }
        Some(s) => {
            for &b in s.as_bytes() {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b if b < b' ' || b == 0x7f => hex(out, b),
                    b => out.push(b),
                }
            }
        }
    }
    out.push(b'"');
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// === The writer ===

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// A file, appended to (made when missing); reopened on SIGUSR1.
    File(PathBuf),
}

impl LogTarget {
    fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            LogTarget::Stdout => Box::new(io::stdout()),
            LogTarget::File(path) => Box::new(open_append(path)?),
        })
    }
}

fn open_append(path: &std::path::Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
}

/// Entries the queue holds: past this many waiting, entries are dropped and counted.
/// Entries are boxed, so the empty queue is 1 MB of slots; a full one holds some
/// 40 MB of entries (about 460 bytes each, and their strings).
pub const QUEUE_CAPACITY: usize = 64 * 1024;
/// The writer's buffer; it is flushed whenever the queue runs empty.
const BUFFER: usize = 64 * 1024;
/// How often an idle writer looks for a SIGUSR1.
const REOPEN_POLL: Duration = Duration::from_millis(500);
/// At most one warning about write errors this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

enum Message {
    Entry(Box<Entry>),
    /// Write out everything queued before, then answer.
    Flush(mpsc::Sender<()>),
    /// Write out everything queued before, answer, and end the writer.
    Stop(mpsc::Sender<()>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// The access log: a bounded queue to a writer thread (a std thread, off the
/// runtime). Dropping the last `Arc` ends the thread once it has written what was
/// queued.
pub struct AccessLog {
    queue: SyncSender<Message>,
    counters: Arc<Counters>,
    signal: Option<signal_hook::SigId>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl AccessLog {
    /// Opens `target` and starts the writer; `load_balancer` is the load balancer's
    /// name (the `elb` field is its [`resource_id`]). SIGUSR1 then makes the writer
    /// reopen a file target at the same path (logrotate's `postrotate`).
    pub fn start(target: LogTarget, load_balancer: &str) -> io::Result<Arc<AccessLog>> {
        let out = target.open()?;
        let reopen = Arc::new(AtomicBool::new(false));
        let signal = signal_hook::flag::register(signal_hook::consts::SIGUSR1, reopen.clone())?;
        let path = match target {
            LogTarget::File(path) => Some(path),
            LogTarget::Stdout => None,
        };
        let log = Self::spawn(
            out,
            path,
            resource_id(load_balancer),
            reopen,
            QUEUE_CAPACITY,
        );
        match log {
            Ok(mut log) => {
                log.signal = Some(signal);
                Ok(Arc::new(log))
            }
            Err(e) => {
                signal_hook::low_level::unregister(signal);
                Err(e)
            }
        }
    }

    /// The writer thread over `out`; `path` is what a reopen opens.
    fn spawn(
        out: Box<dyn Write + Send>,
        path: Option<PathBuf>,
        elb: String,
        reopen: Arc<AtomicBool>,
        capacity: usize,
    ) -> io::Result<AccessLog> {
        let (queue, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            out: BufWriter::with_capacity(BUFFER, out),
            path,
            elb,
            line: Vec::with_capacity(1024),
            reopen,
            counters: counters.clone(),
            last_warning: None,
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(AccessLog {
            queue,
            counters,
            signal: None,
        })
    }

    /// Queues `entry` for the writer. Never blocks: when the queue is full (the
    /// writer is behind), the entry is dropped and counted in [`Self::dropped`].
    pub fn push(&self, entry: Entry) {
        if self
            .queue
            .try_send(Message::Entry(Box::new(entry)))
            .is_err()
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries dropped: the queue was full, the writer had stopped, or the write
    /// failed.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Lines handed to the output (written, or in its buffer until the queue runs
    /// empty).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Waits until what was queued before is written and flushed; false if that took
    /// longer than `timeout` (a stuck output). For tests and shutdown.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.control(Message::Flush, timeout)
    }

    /// Writes and flushes what was queued, then ends the writer: later entries are
    /// dropped. False if that took longer than `timeout`. For shutdown.
    pub fn stop(&self, timeout: Duration) -> bool {
        self.control(Message::Stop, timeout)
    }

    fn control(&self, message: fn(mpsc::Sender<()>) -> Message, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, answer) = mpsc::channel();
        let mut message = message(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                // Already stopped: nothing is left to write.
                Err(TrySendError::Disconnected(_)) => return true,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some(signal) = self.signal.take() {
            signal_hook::low_level::unregister(signal);
        }
    }
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The file a SIGUSR1 reopens; none for stdout.
    path: Option<PathBuf>,
    elb: String,
    line: Vec<u8>,
    reopen: Arc<AtomicBool>,
    counters: Arc<Counters>,
    last_warning: Option<Instant>,
}

impl Writer {
    /// Writes entries until the queue's senders are gone (after writing what they
    /// queued) or a stop; flushes whenever the queue runs empty, so lines appear
    /// promptly.
    fn run(mut self, rx: Receiver<Message>) {
        loop {
            let mut next = match rx.recv_timeout(REOPEN_POLL) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.reopen_if_asked();
            while let Some(message) = next {
                match message {
                    Message::Entry(entry) => self.write(&entry),
                    Message::Flush(done) => {
                        self.flush();
                        let _ = done.send(());
                    }
                    Message::Stop(done) => {
                        self.flush();
                        // Entries queued after the stop are not written; once the
                        // queue is closed, pushes count their own.
                        let late = rx
                            .try_iter()
                            .filter(|m| matches!(m, Message::Entry(_)))
                            .count();
                        drop(rx);
                        self.counters
                            .dropped
                            .fetch_add(late as u64, Ordering::Relaxed);
                        let _ = done.send(());
                        return;
                    }
                }
                next = match rx.try_recv() {
                    Ok(m) => {
                        self.reopen_if_asked();
                        Some(m)
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
                };
            }
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, entry: &Entry) {
        self.line.clear();
        entry.write_line(&self.elb, &mut self.line);
        match self.out.write_all(&self.line) {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.warn("cannot write", &e);
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.warn("cannot write", &e);
        }
    }

    /// After a SIGUSR1: flush, and reopen the file at its path (logrotate moved the
    /// old one away). A file that does not open keeps the old one.
    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::Relaxed) {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        self.flush();
        match open_append(&path) {
            Ok(file) => {
                let file: Box<dyn Write + Send> = Box::new(file);
                let old = std::mem::replace(&mut self.out, BufWriter::with_capacity(BUFFER, file));
                // Flushed above; what could not be written is dropped with it.
                let _ = old.into_parts();
            }
            Err(e) => tracing::warn!(
                "access log: cannot reopen {}: {e}; writing on to the old file",
                path.display()
            ),
        }
    }

    /// A write error, at most once a minute: a full disk would otherwise log a
    /// warning per request.
    fn warn(&mut self, what: &str, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return;
        }
        self.last_warning = Some(now);
        let path = self
            .path
            .as_ref()
            .map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
        tracing::warn!(
            "access log: {what} to {path}: {e} ({} entries dropped so far)",
            self.counters.dropped.load(Ordering::Relaxed)
        );
    }
}

/// The strict parser the integration tests use, written apart from this writer:
/// every line the tests below make must pass it.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/alb_log.rs"]
mod alb_log;

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
