//! `tether demo`: a few in-process backends (hyper) behind tether, for a first look
//! at what tether is for: sticky sessions (`AWSALB`), Socket.IO pinning by `sid`,
//! and websockets that stay on their backend.
//!
//! Each backend answers with its id (header `X-Tether-Demo-Backend` and in the body),
//! serves browsers a page at `/` naming the backend they are pinned to, echoes
//! websockets after a greeting, and opens Engine.IO polling sessions.

mod backend;

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::server::Tether;

pub use backend::BACKEND_HEADER;

/// The demo's config: one listener, one round-robin group over the backends with
/// `lb_cookie` stickiness and `socketio` pinning, health checks on `/`.
fn demo_config(listen: SocketAddr, backends: &[SocketAddr], sticky_key: &str) -> String {
    let targets: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"[load_balancer]
name = "demo"
idle_timeout = "60s"
threads = 1
sticky_keys = ["{sticky_key}"]   # made at start: cookies last as long as this demo

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
stickiness = {{ type = "lb_cookie", duration = "1d" }}   # AWSALB: a browser stays on its backend
socketio = {{ path = "/socket.io/" }}                   # clients without cookies stay by Engine.IO sid
health_check = {{ path = "/", interval = "5s", timeout = "2s", healthy_threshold = 2 }}
"#,
        ip = listen.ip(),
        port = listen.port(),
        targets = targets.join(", ")
    )
}

/// What to try, printed after the first line.
fn instructions(listen: SocketAddr) -> String {
    let url = format!("http://{listen}/");
    format!(
        r#"In a browser: open {url}
  The page names the backend tether pinned you to with its AWSALB cookie. Reload:
  you stay there. Its websocket echo goes through tether to the same backend.
  A private window (no cookie) may land elsewhere.

With curl:
  curl -s {url}                                   # no cookie jar: round robin, the backend changes each time
  curl -s -b /tmp/tether-demo.jar -c /tmp/tether-demo.jar {url}   # a cookie jar: the same backend every time
  curl -si {url} | grep -i -e x-tether-demo-backend -e set-cookie  # the backend id and the AWSALB cookie
  curl -s '{url}socket.io/?EIO=4&transport=polling'    # a Socket.IO session: note its sid, then, without cookies:
  curl -si '{url}socket.io/?EIO=4&transport=polling&sid=SID' | grep -i x-tether-demo-backend   # always its backend
  curl -s {url}health                             # a fixed response made by tether itself
"#
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
                tokio::spawn(backend::serve(listener, format!("backend-{i}")));
            }
            Ok::<_, std::io::Error>(addrs)
        })
        .map_err(DemoError::Backends)?;
    // Keep the backends' runtime alive on its own thread for the life of the process.
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));

    let sticky_key = hex::encode(rand::random::<[u8; 32]>());
    let text = demo_config(listen, &addrs, &sticky_key);
    let config = Config::parse(&text, Path::new("<demo>"))?;
    let tether = Tether::build(&config)?;
    // The address as bound: `--listen 127.0.0.1:0` picks a free port.
    let listen = tether.listeners.first().map_or(listen, |(_, addr)| *addr);
    println!(
        "tether demo: {} backends behind http://{listen}/\n",
        addrs.len()
    );
    println!("{}", instructions(listen));
    println!("config:\n{}", text.replace(&sticky_key, "…"));
    println!("Ctrl-C stops it.");
    tether.run()
}
