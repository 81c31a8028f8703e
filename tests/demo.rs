//! `tether demo`: one command for a newcomer; curl through it, see several backends.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Client;

/// The `tether demo` process, killed when the test ends, failed assertions included.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn it_should_serve_the_demo_across_several_backends() {
    // Port 0: the demo picks a free port and prints it in its first line,
    // "tether demo: 3 backends behind http://127.0.0.1:PORT/".
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["demo", "--listen", "127.0.0.1:0", "--backends", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tether demo"),
    );
    // Kept open to the end: the demo prints more, and a closed pipe would fail it.
    let mut stdout = BufReader::new(demo.0.stdout.take().expect("demo stdout"));
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "demo did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client::connect(addr).await;
    let mut ids = HashSet::new();
    // Targets take traffic after their first passing health check (at start, within
    // milliseconds of each other): allow a few requests for all three to be seen.
    for _ in 0..30 {
        if ids.len() == 3 {
            break;
        }
        let r = client.get("/").await;
        assert_eq!(r.status, 200);
        let id = r
            .header("x-tether-demo-backend")
            .expect("backend id")
            .to_string();
        assert!(r.text().contains(&id));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(client.get("/health").await.text(), "ok");
}
