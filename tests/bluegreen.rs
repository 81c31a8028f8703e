//! Blue/green as ALB users do it: a weighted forward with group stickiness
//! (`AWSALBTG`) shifted 100/0 → 50/50 → 0/100 by `POST /reload` while clients keep
//! sending requests. No request fails, every pinned client stays on its group
//! through the shifts, and new clients follow the weights in force.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{request, wait_state, Backend, Client, TetherProc};
use parking_lot::Mutex;
use tokio::net::TcpStream;

const KEY: &str = "5f1c0a7be3d24a96b8e0c4f1a2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5";

fn config(blue: &Backend, green: &Backend, weights: (u32, u32)) -> String {
    format!(
        r#"
[load_balancer]
sticky_keys = ["{KEY}"]
admin = "127.0.0.1:{{admin}}"
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = {{ target_groups = [{{ name = "blue", weight = {} }}, {{ name = "green", weight = {} }}], stickiness = {{ duration = "1h" }} }} }}
[target_group.blue]
targets = ["{}"]
[target_group.green]
targets = ["{}"]
"#,
        weights.0, weights.1, blue.addr, green.addr
    )
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Requests that did not get a 200 from a backend (errors included).
    failed: AtomicUsize,
    ok: AtomicUsize,
    /// Pinned clients' requests answered by another group than their own.
    strayed: AtomicUsize,
    /// New clients (no cookie), by the phase their request started in: (blue, green).
    new_clients: Mutex<[(usize, usize); 3]>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock();
        if errors.len() < 10 {
            errors.push(why);
        }
    }
}

/// GET / on `client` with `cookie`; the backend that answered and the `AWSALBTG`
/// pair the response set, or why it failed.
async fn get(
    client: &mut Client,
    cookie: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let reply = client
        .try_send(request("GET", "/", &headers))
        .await
        .map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("status {}", reply.status));
    }
    Ok((reply.text(), reply.cookie_pair("AWSALBTG")))
}

async fn connect(addr: SocketAddr) -> Result<Client, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(Client::over_io(stream, &addr.to_string()).await)
}

/// A client pinned at its first request, then sending requests on its keep-alive
/// connection (with the cookie the last response set, as a browser does) until
/// `stop`; each must be answered by its group.
async fn pinned_client(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicU64>) -> String {
    let mut client = match connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            tally.fail(e);
            return String::new();
        }
    };
    let (group, mut cookie) = match get(&mut client, None).await {
        Ok((group, Some(cookie))) => (group, cookie),
        Ok((_, None)) => {
            tally.fail("no AWSALBTG".into());
            return String::new();
        }
        Err(e) => {
            tally.fail(e);
            return String::new();
        }
    };
    tally.ok.fetch_add(1, Ordering::Relaxed);
    while stop.load(Ordering::Relaxed) == 0 {
        match get(&mut client, Some(&cookie)).await {
            Ok((answered, set)) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if answered != group {
                    tally.strayed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(set) = set {
                    cookie = set;
                }
            }
            Err(e) => tally.fail(e),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    group
}

/// The phase while a reload is under way: requests then are not counted by phase.
const SHIFTING: u64 = 99;

/// New clients, one after another, each on a new connection without a cookie: which
/// group takes them, by the phase in force for the whole of their request.
async fn new_clients(addr: SocketAddr, tally: Arc<Tally>, phase: Arc<AtomicU64>) {
    while phase.load(Ordering::Relaxed) != 3 {
        let at = phase.load(Ordering::Relaxed);
        let answered = match connect(addr).await {
            Ok(mut client) => get(&mut client, None).await,
            Err(e) => Err(e),
        };
        match answered {
            Ok((group, _)) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if at >= 3 || phase.load(Ordering::Relaxed) != at {
                    continue;
                }
                let at = at as usize;
                let mut seen = tally.new_clients.lock();
                match group.as_str() {
                    "blue" => seen[at].0 += 1,
                    "green" => seen[at].1 += 1,
                    other => panic!("answered by {other}"),
                }
            }
            Err(e) => tally.fail(e),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Puts `text` in the config file and reloads through the admin API; `phase`
/// reads [`SHIFTING`] meanwhile, then `next`.
async fn shift(lb: &TetherProc, text: &str, phase: &AtomicU64, next: u64) {
    phase.store(SHIFTING, Ordering::Relaxed);
    lb.write_config(text);
    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let r = admin.send(request("POST", "/reload", &[])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    phase.store(next, Ordering::Relaxed);
}

#[tokio::test]
async fn it_should_shift_blue_to_green_under_load_with_no_failure_and_pinned_clients_kept() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let lb = TetherProc::start(&config(&blue, &green, (100, 0))).await;
    wait_state(&lb, blue.addr, "healthy").await;
    wait_state(&lb, green.addr, "healthy").await;
    let addr = lb.addr();
    let tally = Arc::new(Tally::default());
    // Phase 0 is 100/0, 1 is 50/50, 2 is 0/100; 3 stops the new clients.
    let phase = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let pinned = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| tokio::spawn(pinned_client(addr, tally.clone(), stop.clone())))
            .collect()
    };
    let arrivals = tokio::spawn(new_clients(addr, tally.clone(), phase.clone()));
    // Clients that arrive at 100/0 are all pinned to blue.
    let mut early = pinned(6);
    tokio::time::sleep(Duration::from_millis(800)).await;

    shift(&lb, &config(&blue, &green, (50, 50)), &phase, 1).await;
    // Clients that arrive at 50/50 are pinned to either.
    let mid = pinned(16);
    tokio::time::sleep(Duration::from_millis(800)).await;

    shift(&lb, &config(&blue, &green, (0, 100)), &phase, 2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    phase.store(3, Ordering::Relaxed);
    stop.store(1, Ordering::Relaxed);
    arrivals.await.expect("new clients");
    let mut groups = Vec::new();
    for t in early.drain(..).chain(mid) {
        groups.push(t.await.expect("pinned client"));
    }

    let failed = tally.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "failed requests: {:?}", tally.errors.lock());
    assert_eq!(
        tally.strayed.load(Ordering::Relaxed),
        0,
        "pinned clients answered by another group"
    );
    assert!(
        groups[..6].iter().all(|g| g == "blue"),
        "pinned at 100/0: {groups:?}"
    );
    // At 50/50, 16 clients all on one side would happen once in 30,000 runs.
    let mid_blue = groups[6..].iter().filter(|g| *g == "blue").count();
    assert!(
        (1..16).contains(&mid_blue),
        "pinned at 50/50: {:?}",
        &groups[6..]
    );
    let seen = *tally.new_clients.lock();
    assert!(
        seen[0].0 > 0 && seen[0].1 == 0,
        "new clients at 100/0: {seen:?}"
    );
    assert!(
        seen[1].0 > 0 && seen[1].1 > 0,
        "new clients at 50/50: {seen:?}"
    );
    assert!(
        seen[2].0 == 0 && seen[2].1 > 0,
        "new clients at 0/100: {seen:?}"
    );
    assert!(
        tally.ok.load(Ordering::Relaxed) > 500,
        "too little load to show anything"
    );
}
