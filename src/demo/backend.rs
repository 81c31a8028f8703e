//! One demo backend: answers with its id, serves a page that shows the pin, echoes
//! websockets, and opens Engine.IO polling sessions (just enough of the protocol to
//! show `socketio` pinning with curl).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-tether-demo-backend";

/// The page at `/` for browsers; `{BACKEND}` becomes the backend's id.
const PAGE: &str = include_str!("page.html");

/// Engine.IO sessions a backend remembers; past that it forgets them all (a demo).
const MAX_SESSIONS: usize = 10_000;

/// A backend's identity and the Engine.IO sessions it opened.
struct Backend {
    id: String,
    sessions: Mutex<HashSet<String>>,
}

/// Whether a request asks for a websocket upgrade.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the client prefers HTML (a browser), rather than curl's `*/*`.
fn wants_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn query_param<'a, B>(req: &'a Request<B>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn respond(
    status: StatusCode,
    id: &str,
    content_type: &str,
    body: String,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(BACKEND_HEADER, id)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::from(body))
        .unwrap_or_default()
}

/// Answers a websocket upgrade with 101, greets the client with
/// `hello from <id>`, then echoes every text and binary message until it closes.
fn websocket_echo(mut req: Request<Incoming>, id: &str) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return respond(
            StatusCode::BAD_REQUEST,
            id,
            "text/plain",
            "missing Sec-WebSocket-Key\n".into(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let greeting = format!("hello from {id}");
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws.send(Message::text(greeting)).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .header(BACKEND_HEADER, id)
        .body(Full::default())
        .unwrap_or_default()
}

/// Engine.IO v4 long-polling, the part that matters to a load balancer: a request
/// without `sid` opens a session (`0{"sid":…}`); a request with a `sid` this backend
/// did not open gets the 400 "Session ID unknown" a real Socket.IO server answers.
fn engine_io(req: &Request<Incoming>, backend: &Backend) -> Response<Full<Bytes>> {
    let id = &backend.id;
    let text = "text/plain; charset=UTF-8";
    match query_param(req, "sid") {
        None => {
            let sid = hex::encode(rand::random::<[u8; 10]>());
            let mut sessions = backend.sessions.lock();
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
            sessions.insert(sid.clone());
            let open = format!(
                r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#
            );
            respond(StatusCode::OK, id, text, open)
        }
        Some(sid) if backend.sessions.lock().contains(sid) => {
            // A noop packet: the session is alive on this backend.
            respond(StatusCode::OK, id, text, "6".into())
        }
        Some(_) => respond(
            StatusCode::BAD_REQUEST,
            id,
            "application/json",
            r#"{"code":1,"message":"Session ID unknown"}"#.into(),
        ),
    }
}

async fn handle(
    req: Request<Incoming>,
    backend: Arc<Backend>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = &backend.id;
    if is_websocket_upgrade(&req) {
        return Ok(websocket_echo(req, id));
    }
    if req.uri().path().starts_with("/socket.io/") {
        return Ok(engine_io(&req, &backend));
    }
    if req.uri().path() == "/" && wants_html(&req) {
        let page = PAGE.replace("{BACKEND}", id);
        return Ok(respond(
            StatusCode::OK,
            id,
            "text/html; charset=utf-8",
            page,
        ));
    }
    let body = format!("hello from {id}: {} {}\n", req.method(), req.uri());
    Ok(respond(StatusCode::OK, id, "text/plain", body))
}

/// Serves one demo backend named `id` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, id: String) {
    let backend = Arc::new(Backend {
        id,
        sessions: Mutex::new(HashSet::new()),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, backend.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
