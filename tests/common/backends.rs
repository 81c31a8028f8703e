//! Real hyper backends with test endpoints, and a raw one.

use super::*;

// === Backends ===

/// A hyper backend with test endpoints:
/// - any path: body = id, header `x-backend: id`;
/// - `/headers`: the request headers, one `name: value` per line;
/// - `/upload` (POST): `sha256hex length` of the streamed body;
/// - `/download?bytes=N`: N deterministic bytes ([`pattern_bytes`]), chunked;
/// - `/slow?ms=N`: answers after N ms;
/// - `/login`: sets the application cookie `JSESSIONID`;
/// - websocket upgrade: echo.
pub struct Backend {
    pub addr: SocketAddr,
    pub id: String,
    health: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

/// How a backend answers its health check path `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Ok = 0,
    Fail500 = 1,
    Hang = 2,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deterministic test bytes.
pub fn pattern_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers a websocket upgrade with 101 (naming the backend in `x-backend` and, as
/// the demo backends do, `x-tether-demo-backend`) and echoes every text and binary
/// message until the client closes.
fn websocket_echo(mut req: Request<Incoming>, id: &str) -> Response<Body> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
    let key = req
        .headers()
        .get("sec-websocket-key")
        .expect("the test client sends Sec-WebSocket-Key")
        .clone();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() || ((msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err())
            {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header(BACKEND_HEADER, id)
        .header("x-tether-demo-backend", id)
        .body(full(Bytes::new()))
        .expect("101 response")
}

async fn backend_handle(
    req: Request<Incoming>,
    id: String,
    health: Arc<AtomicU8>,
) -> Result<Response<Body>, Infallible> {
    if is_websocket_upgrade(&req) {
        return Ok(websocket_echo(req, &id));
    }
    let mut resp = match req.uri().path() {
        "/health" => match health.load(Ordering::Relaxed) {
            0 => Response::new(full("ok")),
            1 => {
                let mut r = Response::new(full("failing"));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
            _ => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Response::new(full("late"))
            }
        },
        "/stream" => {
            // `ms` of chunks, one every 250 ms: a long streaming response.
            let ms = query_param(&req, "ms").unwrap_or(1000);
            let chunks = (ms / 250).max(1);
            let stream = futures_util::stream::unfold(0u64, move |i| async move {
                if i >= chunks {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk {i}\n")))),
                    i + 1,
                ))
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/headers" => {
            let mut text = String::new();
            for (name, value) in req.headers() {
                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            Response::new(full(text))
        }
        "/upload" => {
            let mut hasher = Sha256::new();
            let mut len = 0usize;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    break;
                };
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    len += data.len();
                }
            }
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Response::new(full(format!("{hex} {len}")))
        }
        "/download" => {
            let n = query_param(&req, "bytes").unwrap_or(0) as usize;
            let data = Bytes::from(pattern_bytes(n, 7));
            // Stream it in 64 KiB frames with no Content-Length: chunked.
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..n)
                .step_by(65536)
                .map(|start| Ok(Frame::data(data.slice(start..(start + 65536).min(n)))))
                .collect();
            Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
        }
        "/login" => {
            let mut r = Response::new(full(id.clone()));
            r.headers_mut().insert(
                http::header::SET_COOKIE,
                "JSESSIONID=app-session; Path=/".parse().expect("cookie"),
            );
            r
        }
        "/status" => {
            // `/status?code=404`: that status, for tests that count target codes.
            let code = query_param(&req, "code").unwrap_or(200);
            let mut r = Response::new(full(id.clone()));
            *r.status_mut() = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::OK);
            r
        }
        "/slow" => {
            let ms = query_param(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(id.clone()))
        }
        _ => Response::new(full(id.clone())),
    };
    resp.headers_mut()
        .insert(BACKEND_HEADER, id.parse().expect("header value"));
    Ok(resp)
}

impl Backend {
    pub async fn start(id: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Self::serve(listener, id)
    }

    /// Serves on a given address (e.g. 127.0.0.3:port, as an ECS task's address).
    pub async fn start_at(addr: SocketAddr, id: &str) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        Self::serve(listener, id)
    }

    fn serve(listener: TcpListener, id: &str) -> Backend {
        let addr = listener.local_addr().expect("addr");
        let id = id.to_string();
        let task_id = id.clone();
        let health = Arc::new(AtomicU8::new(Health::Ok as u8));
        let task_health = health.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set: dropping the backend kills them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of descriptors (or another accept error): back off instead
                    // of spinning on the error.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let id = task_id.clone();
                let health = task_health.clone();
                connections.spawn(async move {
                    let service =
                        service_fn(move |req| backend_handle(req, id.clone(), health.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Backend {
            addr,
            id,
            health,
            task,
        }
    }

    /// How `/health` answers from now on.
    pub fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Relaxed);
    }
}

/// A "backend" that accepts connections and answers with `reply` bytes, then closes.
pub async fn raw_backend(reply: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
            // Drop without a clean shutdown: a reset if anything is unread.
            let _ = s.set_zero_linger();
        }
    });
    (addr, task)
}
