//! A bare keep-alive HTTP/1.1 forwarder on hyper 1: `server::conn::http1` for the
//! client connection, `client::conn::http1` for its one target connection (round robin
//! over the targets), `X-Forwarded-For: <client ip>` appended. Any error closes the
//! connection.
//!
//!     fwd-hyper LISTEN TARGET...      e.g. fwd-hyper 127.0.0.1:8080 127.0.0.1:9001
use http::header::{HeaderName, HeaderValue};
use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

async fn serve(client_sock: TcpStream, target: SocketAddr) -> Result<(), BoxError> {
    let xff = HeaderValue::from_str(&client_sock.peer_addr()?.ip().to_string())?;
    let target_sock = TcpStream::connect(target).await?;
    client_sock.set_nodelay(true)?;
    target_sock.set_nodelay(true)?;
    let (sender, conn) = client::Builder::new().handshake::<_, Incoming>(TokioIo::new(target_sock)).await?;
    tokio::task::spawn_local(async move { let _ = conn.await; });
    // hyper's HTTP/1 server calls the service for one request at a time: the sender is
    // taken out for a request and put back once it is sent.
    let sender = Rc::new(Cell::new(Some(sender)));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let (sender, xff) = (sender.clone(), xff.clone());
        async move {
            req.headers_mut().append(X_FORWARDED_FOR.clone(), xff);
            let mut s = sender.take().ok_or("target connection lost")?;
            s.ready().await?;
            let resp = s.send_request(req);
            sender.set(Some(s));
            Ok::<_, BoxError>(resp.await?)
        }
    });
    server::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(client_sock), service)
        .await?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addrs: Option<Vec<SocketAddr>> = args.iter().map(|a| a.parse().ok()).collect();
    let Some((listen, targets)) = addrs.as_ref().and_then(|a| a.split_first()).filter(|(_, t)| !t.is_empty())
    else {
        eprintln!("usage: fwd-hyper LISTEN_ADDR TARGET_ADDR...");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let mut next = 0;
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let target = targets[next % targets.len()];
            next += 1;
            tokio::task::spawn_local(async move { let _ = serve(client, target).await; });
        }
    });
}
