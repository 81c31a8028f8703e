//! `tether demo`: one command for a newcomer. It must show what tether is for:
//! a client with a cookie jar stays on its backend (`AWSALB`), one without is spread
//! by round robin, a Socket.IO session stays on its backend by `sid` without
//! cookies, and the websocket echo goes to the pinned backend.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{request, Client, Reply};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The `tether demo` process, killed when the test ends, failed assertions included.
struct Demo {
    child: std::process::Child,
    addr: SocketAddr,
    // Kept open to the end: the demo prints more, and a closed pipe would fail it.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `tether demo` on a free port and waits until it listens and every
    /// backend has passed its first health check.
    async fn start() -> Demo {
        // Port 0: the demo picks a free port and prints it in its first line,
        // "tether demo: 3 backends behind http://127.0.0.1:PORT/".
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["demo", "--listen", "127.0.0.1:0", "--backends", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tether demo");
        let mut stdout = BufReader::new(child.stdout.take().expect("demo stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the demo's first line");
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("tether demo: 3 backends behind http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
        let demo = Demo {
            child,
            addr,
            _stdout: stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "demo did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Targets take traffic after their first passing health check (at start,
        // within milliseconds of each other): wait until round robin reaches all three.
        let mut client = Client::connect(addr).await;
        let mut ids = HashSet::new();
        while ids.len() < 3 {
            assert!(Instant::now() < deadline, "backends seen: {ids:?}");
            ids.insert(backend_of(&client.get("/").await));
        }
        demo
    }
}

fn backend_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r
        .header("x-tether-demo-backend")
        .expect("backend id")
        .to_string();
    assert!(r.text().contains(&id), "the body names the backend too");
    id
}

/// Like `curl` with a cookie jar: sends back the `AWSALB` cookie it was last given.
async fn get_with_jar(client: &mut Client, jar: &mut Option<String>, path: &str) -> Reply {
    let headers: Vec<(&str, &str)> = jar.iter().map(|c| ("cookie", c.as_str())).collect();
    let r = client.send(request("GET", path, &headers)).await;
    if let Some(pair) = r.cookie_pair("AWSALB") {
        *jar = Some(pair);
    }
    r
}

#[tokio::test]
async fn it_should_spread_clients_without_cookies_and_keep_a_cookie_jar_on_one_backend() {
    let demo = Demo::start().await;
    let mut client = Client::connect(demo.addr).await;

    // Negative control: no cookie jar, round robin over all three.
    let mut spread = HashSet::new();
    for _ in 0..20 {
        spread.insert(backend_of(&client.get("/").await));
    }
    assert_eq!(spread.len(), 3, "without cookies: {spread:?}");

    let mut jar = None;
    let mut pinned = HashSet::new();
    for _ in 0..20 {
        pinned.insert(backend_of(&get_with_jar(&mut client, &mut jar, "/").await));
    }
    assert!(jar.is_some(), "the demo sets AWSALB");
    assert_eq!(pinned.len(), 1, "with a cookie jar: {pinned:?}");

    // A new connection with the same jar (a reload) lands there too.
    let mut reload = Client::connect(demo.addr).await;
    let r = get_with_jar(&mut reload, &mut jar, "/").await;
    assert!(pinned.contains(&backend_of(&r)));

    assert_eq!(client.get("/health").await.text(), "ok");
}

#[tokio::test]
async fn it_should_serve_browsers_a_page_naming_their_backend() {
    let demo = Demo::start().await;
    let mut client = Client::connect(demo.addr).await;
    let r = client
        .send(request("GET", "/", &[("accept", "text/html,*/*;q=0.8")]))
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let id = r.header("x-tether-demo-backend").expect("backend id");
    let page = r.text();
    assert!(page.contains(&format!("You are on <b id=\"backend\">{id}</b>")));
    assert!(page.contains("new WebSocket("), "the page opens the echo");
    assert!(r.cookie_pair("AWSALB").is_some());
}

#[tokio::test]
async fn it_should_echo_websockets_on_the_pinned_backend() {
    let demo = Demo::start().await;
    let mut client = Client::connect(demo.addr).await;
    let mut jar = None;
    let pinned = backend_of(&get_with_jar(&mut client, &mut jar, "/").await);
    // Several times: without the cookie, round robin would pick another backend
    // at least once.
    for i in 0..4 {
        let mut req = format!("ws://{}/ws", demo.addr)
            .into_client_request()
            .expect("ws request");
        let cookie = jar.clone().expect("AWSALB");
        req.headers_mut()
            .insert("cookie", cookie.parse().expect("cookie header"));
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("ws");
        assert_eq!(resp.status(), 101);
        let greeting = ws.next().await.expect("greeting").expect("frame");
        assert_eq!(greeting, Message::text(format!("hello from {pinned}")));
        let text = format!("echo {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        assert_eq!(
            ws.next().await.expect("echo").expect("frame"),
            Message::text(text)
        );
        let _ = ws.close(None).await;
    }
}

#[tokio::test]
async fn it_should_keep_a_socketio_session_on_its_backend_without_cookies() {
    let demo = Demo::start().await;
    let mut client = Client::connect(demo.addr).await;
    let open = client.get("/socket.io/?EIO=4&transport=polling").await;
    let backend = open
        .header("x-tether-demo-backend")
        .expect("id")
        .to_string();
    let body = open.text();
    let sid = body
        .strip_prefix("0{\"sid\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("not an Engine.IO open packet: {body}"));
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for _ in 0..10 {
        // No cookie: only the sid pins these requests.
        let r = client.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-tether-demo-backend"), Some(backend.as_str()));
    }
    // Negative control: a sid nobody opened is spread, and the backends refuse it
    // as a Socket.IO server does.
    let r = client
        .get("/socket.io/?EIO=4&transport=polling&sid=unknown")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Session ID unknown"));
}
