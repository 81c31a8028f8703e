//! `tether demo`: a few in-process backends (hyper) behind tether, for a first look.
//!
//! Each backend answers with its id (header `X-Tether-Demo-Backend` and in the body)
//! and echoes websockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::server::Tether;

pub const BACKEND_HEADER: &str = "x-tether-demo-backend";

/// Whether a request asks for a websocket upgrade.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers a websocket upgrade with 101 and echoes every text and binary message
/// until the client closes.
fn websocket_echo(mut req: Request<Incoming>, id: &str) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::from("missing Sec-WebSocket-Key\n"))
            .unwrap_or_default();
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
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

async fn handle(req: Request<Incoming>, id: String) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_websocket_upgrade(&req) {
        return Ok(websocket_echo(req, &id));
    }
    let body = format!("hello from {id}: {} {}\n", req.method(), req.uri());
    Ok(Response::builder()
        .header(BACKEND_HEADER, &id)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::from(body))
        .unwrap_or_default())
}

/// Serves one demo backend on `listener` until the runtime stops.
async fn serve_backend(listener: TcpListener, id: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let id = id.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, id.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// The demo's config: one listener, one round-robin group over the backends.
fn demo_config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let targets: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"[load_balancer]
name = "demo"
idle_timeout = "60s"
threads = 1

[[listener]]
address = "{ip}"
port = {port}
protocol = "HTTP"
default_action = {{ forward = "demo" }}

  [[listener.rule]]
  priority = 10
  conditions = {{ path_pattern = ["/health"] }}
  action = {{ fixed_response = {{ status = 200, content_type = "text/plain", body = "ok" }} }}

[target_group.demo]
algorithm = "round_robin"
targets = [{targets}]
"#,
        ip = listen.ip(),
        port = listen.port(),
        targets = targets.join(", ")
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the demo backends: {0}")]
    Backends(std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
}

/// Starts `count` backends on 127.0.0.1 (ephemeral ports) and tether on `listen`
/// (port 0: a free port, printed in the first line).
pub fn run(listen: SocketAddr, count: usize) -> Result<std::convert::Infallible, DemoError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(DemoError::Backends)?;
    let addrs = runtime
        .block_on(async {
            let mut addrs = Vec::new();
            for i in 1..=count {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addrs.push(listener.local_addr()?);
                tokio::spawn(serve_backend(listener, format!("backend-{i}")));
            }
            Ok::<_, std::io::Error>(addrs)
        })
        .map_err(DemoError::Backends)?;
    // Keep the backends' runtime alive on its own thread for the life of the process.
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));

    let text = demo_config(listen, &addrs);
    let config = Config::parse(&text, Path::new("<demo>"))?;
    let tether = Tether::build(&config)?;
    // The address as bound: `--listen 127.0.0.1:0` picks a free port.
    let listen = tether.listeners.first().map_or(listen, |(_, addr)| *addr);
    println!(
        "tether demo: {} backends behind http://{listen}/\n",
        addrs.len()
    );
    println!("config:\n{text}");
    println!("try:");
    println!("  curl -si http://{listen}/ | grep -i x-tether-demo-backend   # run it a few times: the backend changes");
    println!("  curl -s http://{listen}/health                             # a fixed response made by tether itself");
    println!("\nCtrl-C stops it.");
    tether.run()
}
