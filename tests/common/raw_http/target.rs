//! The kit's recording raw target, and raw targets of other kinds.

use super::*;

// === The recording raw target ===

/// What one target connection received.
#[derive(Debug, Default, Clone)]
pub struct ConnRecord {
    pub bytes: Vec<u8>,
    /// tether closed (or reset) the connection.
    pub peer_closed: bool,
}

/// A raw HTTP/1.1 target: records every byte per connection and answers each request
/// (framed by Content-Length or chunked, trailers included) with a canned response
/// chosen by the request:
/// - `HEAD`: `200` with `Content-Length: 5` and no body;
/// - `/status/204`, `/status/304`: that status with `Content-Length: 5` and no body;
/// - `/chunked-reply`: a chunked `hello world` with chunk extensions and a trailer;
/// - `/close-delimited`: neither Content-Length nor Transfer-Encoding, then close;
/// - an Upgrade request to `/ws-accept…`: `101`, then records silently;
/// - a path containing `slow`: answered after 600 ms;
/// - anything else: `200`, `Content-Length: 2`, `ok`.
///
/// Every response (the interim `100 Continue` too, sent when the request has
/// `Expect: 100-continue` and a body) carries `X-Target-Saw: METHOD TARGET`. The
/// connection stays open for more requests unless the request asks to close. A
/// request it cannot frame (bad chunk size, unknown coding) gets no answer.
///
/// That is [`TargetReply::ByPath`]; [`RecordingTarget::start_with`] picks another answer.
/// Every whole request is also kept, in arrival order ([`RecordingTarget::take_requests`]).
pub struct RecordingTarget {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<ConnRecord>>>,
    pub requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
    pub hang_health: Arc<AtomicBool>,
    pub task: JoinHandle<()>,
}

/// How a [`RecordingTarget`] answers each whole request.
#[derive(Debug, Clone, Copy)]
pub enum TargetReply {
    /// The canned responses chosen by the request (see [`RecordingTarget`]).
    ByPath,
    /// These bytes, as they are, to every request; the connection stays open.
    Fixed(&'static [u8]),
    /// `200` with the body `target=<request-target>\nhost=<Host>\n`; stays open.
    EchoTargetAndHost,
    /// A target like a backend named `id`: `200` with the body `id` (closing when
    /// the request asks to), `/slow?ms=N` after N ms (1000 without `ms`), and
    /// `/health` never once [`RecordingTarget::hang_health`] is called.
    Id(&'static str),
}

impl Drop for RecordingTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingTarget {
    pub async fn start() -> RecordingTarget {
        RecordingTarget::start_with(TargetReply::ByPath).await
    }

    pub async fn start_with(reply: TargetReply) -> RecordingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target addr");
        let conns: Arc<Mutex<Vec<ConnRecord>>> = Arc::default();
        let task_conns = conns.clone();
        let requests: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let task_requests = requests.clone();
        let hang_health: Arc<AtomicBool> = Arc::default();
        let task_hang = hang_health.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set: dropping the target ends them all.
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let idx = {
                    let mut c = lock(&task_conns);
                    c.push(ConnRecord::default());
                    c.len() - 1
                };
                let (rd, wr) = stream.into_split();
                let (tx, rx) = unbounded_channel();
                set.spawn(record(rd, idx, task_conns.clone(), tx));
                set.spawn(answer(
                    wr,
                    rx,
                    reply,
                    task_requests.clone(),
                    task_hang.clone(),
                ));
                while set.try_join_next().is_some() {}
            }
        });
        RecordingTarget {
            addr,
            conns,
            requests,
            hang_health,
            task,
        }
    }

    /// From now on `/health` never answers ([`TargetReply::Id`]).
    pub fn hang_health(&self) {
        self.hang_health.store(true, Ordering::Relaxed);
    }

    /// Stops it as a crashed process stops: its listener closes (connects are
    /// refused) and its open connections close, with whatever they were serving.
    pub async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// The request-target of every whole request received (and not taken).
    pub fn targets(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter_map(|r| match parse_head(r) {
                Some(Ok(h)) => Some(h.request_parts().1),
                _ => None,
            })
            .collect()
    }

    /// How many requests for `path` (without its query) arrived.
    pub fn count(&self, path: &str) -> usize {
        self.targets()
            .iter()
            .filter(|t| t.split('?').next() == Some(path))
            .count()
    }

    /// Whether a request for exactly `path_and_query` arrived.
    pub fn got(&self, path_and_query: &str) -> bool {
        self.targets().iter().any(|t| t == path_and_query)
    }

    /// The whole requests received since the last call (head and body as sent).
    pub fn take_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.requests).drain(..).collect()
    }

    /// The start lines of the whole requests received (and not taken).
    pub fn start_lines(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter_map(|r| match parse_head(r) {
                Some(Ok(h)) => Some(h.start_line),
                _ => None,
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<usize> {
        lock(&self.conns).iter().map(|c| c.bytes.len()).collect()
    }

    /// Bytes received since `snap`, per connection index (connections with none left out).
    pub fn since(&self, snap: &[usize]) -> Vec<(usize, Vec<u8>)> {
        lock(&self.conns)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let from = snap.get(i).copied().unwrap_or(0);
                (c.bytes.len() > from).then(|| (i, c.bytes[from..].to_vec()))
            })
            .collect()
    }

    pub fn conn(&self, idx: usize) -> ConnRecord {
        lock(&self.conns).get(idx).cloned().unwrap_or_default()
    }

    pub fn all_bytes(&self) -> Vec<u8> {
        lock(&self.conns)
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// Waits (bounded) until tether has closed connection `idx`.
    pub async fn wait_closed(&self, idx: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.conn(idx).peer_closed {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub async fn record(
    mut rd: OwnedReadHalf,
    idx: usize,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    tx: UnboundedSender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if let Some(c) = lock(&conns).get_mut(idx) {
                    c.peer_closed = true;
                }
                return;
            }
            Ok(n) => {
                if let Some(c) = lock(&conns).get_mut(idx) {
                    c.bytes.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(buf[..n].to_vec());
            }
        }
    }
}

/// Keeps the write side open and answers nothing more (the recorder keeps recording).
pub async fn go_silent(rx: &mut UnboundedReceiver<Vec<u8>>) {
    while rx.recv().await.is_some() {}
}

pub async fn answer(
    mut wr: OwnedWriteHalf,
    mut rx: UnboundedReceiver<Vec<u8>>,
    reply: TargetReply,
    requests: Arc<Mutex<VecDeque<Vec<u8>>>>,
    hang_health: Arc<AtomicBool>,
) {
    let by_path = matches!(reply, TargetReply::ByPath);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = loop {
            match parse_head(&buf) {
                Some(Ok(h)) => break h,
                Some(Err(())) => return go_silent(&mut rx).await,
                None => match rx.recv().await {
                    Some(b) => buf.extend_from_slice(&b),
                    None => return,
                },
            }
        };
        let (method, target, _) = head.request_parts();
        let saw = format!("{method} {target}").replace(|c: char| c.is_control(), "?");
        if by_path && head.header("upgrade").is_some() && target.starts_with("/ws-accept") {
            let _ = wr
                .write_all(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nX-Target-Saw: {saw}\r\n\
                         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            return go_silent(&mut rx).await;
        }
        let framing = request_framing(&head, View::Rfc);
        let expects_continue = head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if by_path && expects_continue && framing != Framing::Empty {
            let interim = format!("HTTP/1.1 100 Continue\r\nX-Target-Saw: {saw}\r\n\r\n");
            if wr.write_all(interim.as_bytes()).await.is_err() {
                return;
            }
        }
        let total = loop {
            match body_len(&buf[head.len..], framing) {
                Some(Ok(n)) => break head.len + n,
                Some(Err(())) => return go_silent(&mut rx).await,
                None => match rx.recv().await {
                    Some(b) => buf.extend_from_slice(&b),
                    None => return,
                },
            }
        };
        lock(&requests).push_back(buf.drain(..total).collect());
        if by_path && target.contains("slow") {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        if let TargetReply::Id(_) = reply {
            let path = target.split('?').next().unwrap_or("");
            if path == "/health" && hang_health.load(Ordering::Relaxed) {
                return go_silent(&mut rx).await;
            }
            if path == "/slow" {
                let ms = target
                    .split_once('?')
                    .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let (bytes, close) = match reply {
            TargetReply::ByPath => reply_for(&head, &method, &target, &saw),
            TargetReply::Fixed(bytes) => (bytes.to_vec(), false),
            TargetReply::EchoTargetAndHost => {
                let host = head.header("host").unwrap_or_default();
                let body = format!("target={target}\nhost={host}\n");
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                (text.into_bytes(), false)
            }
            TargetReply::Id(id) => {
                let close = asks_to_close(&head);
                let conn = if close { "Connection: close\r\n" } else { "" };
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n{id}",
                    id.len()
                );
                (text.into_bytes(), close)
            }
        };
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
        if close {
            let _ = wr.shutdown().await;
            return go_silent(&mut rx).await;
        }
    }
}

/// Whether a request asks to close after its response (`Connection: close`, or
/// HTTP/1.0 without `keep-alive`).
pub fn asks_to_close(head: &MsgHead) -> bool {
    let connection = head.values("connection").join(",").to_ascii_lowercase();
    let http10 = head.request_parts().2 == "HTTP/1.0";
    connection.contains("close") || (http10 && !connection.contains("keep-alive"))
}

pub fn reply_for(head: &MsgHead, method: &str, target: &str, saw: &str) -> (Vec<u8>, bool) {
    let close = asks_to_close(head);
    let conn = if close { "Connection: close\r\n" } else { "" };
    let text = if method == "HEAD" {
        format!("HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Length: 5\r\n{conn}\r\n")
    } else if target.starts_with("/status/204") {
        format!("HTTP/1.1 204 No Content\r\nX-Target-Saw: {saw}\r\nContent-Length: 5\r\n{conn}\r\n")
    } else if target.starts_with("/status/304") {
        format!(
            "HTTP/1.1 304 Not Modified\r\nX-Target-Saw: {saw}\r\nETag: \"v1\"\r\n\
             Content-Length: 5\r\n{conn}\r\n"
        )
    } else if target.starts_with("/chunked-reply") {
        format!(
            "HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nTransfer-Encoding: chunked\r\n\
             Trailer: X-Checksum\r\n{conn}\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\
             X-Checksum: 42\r\n\r\n"
        )
    } else if target.starts_with("/close-delimited") {
        let text = format!(
            "HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Type: text/plain\r\n\r\n\
             close-delimited body"
        );
        return (text.into_bytes(), true);
    } else {
        format!("HTTP/1.1 200 OK\r\nX-Target-Saw: {saw}\r\nContent-Length: 2\r\n{conn}\r\nok")
    };
    (text.into_bytes(), close)
}

/// The next whole request on `s` (framed as [`request_len`] frames it), with what
/// came before it already in `buf`; `None` once `s` closes or fails.
pub async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = vec![0u8; 16384];
    loop {
        if let Some(Ok(n)) = request_len(buf) {
            return Some(buf.drain(..n).collect());
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw target on 127.0.0.1 that runs `serve` on each connection it accepts; its
/// connections live in the task, so dropping or aborting the task ends them all.
pub async fn serve_raw<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.spawn(serve(s));
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, task)
}
