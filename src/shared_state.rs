//! Socket.IO pins shared between tether replicas through Redis
//! (`[load_balancer] shared_state`). Behind an L4 balancer (an NLB, DNS, ECMP) the
//! requests of one Engine.IO session reach several replicas; each knows only the
//! sessions it saw start. With a shared store:
//!
//! - a replica that learns a sid from a handshake response publishes sid → (group,
//!   target) before the response reaches the client, so that the client's next
//!   request finds it wherever it lands ([`SharedState::publish`], at most
//!   `lookup_timeout`);
//! - a replica that meets a sid it does not know asks Redis, for at most
//!   `lookup_timeout`, and then routes as it would without it
//!   ([`SharedState::recall`]);
//! - a pin expires with its session (pingInterval + pingTimeout, and a margin), and is
//!   refreshed while requests use it; a target that leaves its group takes its pins
//!   with it. Those writes go through a queue to a task of their own
//!   ([`SharedStateService`]): the data path never waits on them. A session that ends
//!   leaves its pin to expire: Engine.IO never reuses a sid.
//!
//! Redis is never a new failure: a locally known pin never asks it; while it is down
//! (no answer to the service's PING, once a second) nothing waits on it and every
//! replica routes with its own pins, as without a store. Redis keys, under the
//! prefix:
//!
//! - `{prefix}sid:{sid}` → `"{target} {idle ms} {group}"`;
//! - `{prefix}target:{group}:{target}` → the set of sids pinned to that target.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::settings::SharedStateSpec;

/// How long after its session's idle time a pin stays in Redis: a client's request
/// that arrives just late still finds it.
const MARGIN: Duration = Duration::from_secs(10);

/// How often the service PINGs Redis (and so how soon a return is noticed).
const PING_EVERY: Duration = Duration::from_secs(1);

/// The longest a background write or PING waits for Redis.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes waiting for the service; more are dropped (and counted).
const QUEUE: usize = 4096;

/// The results a lookup is counted under, in [`SharedState::lookups`] order.
pub const LOOKUP_RESULTS: [&str; 4] = ["hit", "miss", "error", "timeout"];

/// What Redis said of a sid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A pin: the session's group, target and idle time.
    Hit(SharedPin),
    /// No pin (never published, expired or removed).
    Miss,
    /// Redis is down or answered with an error: routed as without a store.
    Error,
    /// No answer within `lookup_timeout`: routed as without a store.
    Timeout,
}

/// A pin as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPin {
    pub group: String,
    pub target: SocketAddr,
    /// pingInterval + pingTimeout of the session.
    pub idle: Duration,
}

impl SharedPin {
    fn encode(&self) -> String {
        format!("{} {} {}", self.target, self.idle.as_millis(), self.group)
    }

    /// Reads a value of [`SharedPin::encode`]; anything else is no pin.
    fn decode(value: &str) -> Option<SharedPin> {
        let mut parts = value.splitn(3, ' ');
        let target = parts.next()?.parse().ok()?;
        let idle = Duration::from_millis(parts.next()?.parse().ok()?);
        let group = parts.next()?.to_string();
        Some(SharedPin {
            group,
            target,
            idle,
        })
    }
}

/// A write that the data path queues for the service.
#[derive(Debug)]
enum Write {
    /// The session is still in use: push its expiry back.
    Refresh {
        group: Box<str>,
        sid: Box<str>,
        target: SocketAddr,
        idle: Duration,
    },
    /// The target left the group: every pin to it goes.
    ForgetTarget { group: Box<str>, target: SocketAddr },
}

/// One replica's handle on the shared store.
pub struct SharedState {
    spec: SharedStateSpec,
    client: redis::Client,
    /// Set by the service when it starts (its runtime drives the connection).
    conn: ArcSwapOption<ConnectionManager>,
    up: AtomicBool,
    queue: mpsc::Sender<Write>,
    queued: parking_lot::Mutex<Option<mpsc::Receiver<Write>>>,
    /// Lookups by result, in [`LOOKUP_RESULTS`] order.
    lookups: [AtomicU64; 4],
    /// Pins published, and writes that failed or were dropped.
    published: AtomicU64,
    write_failures: AtomicU64,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("spec", &self.spec)
            .field("up", &self.is_up())
            .finish()
    }
}

/// Why the store cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("shared_state: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("shared_state: cannot read ca_bundle {path}: {source}")]
    CaBundle {
        path: String,
        source: std::io::Error,
    },
}

/// The client for `spec`: its URL (`unix:/path` included) and, for `rediss://`,
/// the CA bundle that verifies the server.
pub fn client(spec: &SharedStateSpec) -> Result<redis::Client, SharedStateError> {
    let url = match spec.redis.strip_prefix("unix:") {
        // `unix:/path` as users write it; redis-rs reads `unix:///path`.
        Some(path) if !path.starts_with("//") => format!("unix://{path}"),
        _ => spec.redis.clone(),
    };
    match &spec.ca_bundle {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|source| SharedStateError::CaBundle {
                path: path.display().to_string(),
                source,
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            Ok(redis::Client::build_with_tls(url.as_str(), certs)?)
        }
        None => Ok(redis::Client::open(url.as_str())?),
    }
}

impl SharedState {
    /// A handle for `spec`; nothing connects until [`SharedStateService`] runs.
    pub fn new(spec: SharedStateSpec) -> Result<Arc<SharedState>, SharedStateError> {
        let client = client(&spec)?;
        let (queue, queued) = mpsc::channel(QUEUE);
        Ok(Arc::new(SharedState {
            spec,
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            queue,
            queued: parking_lot::Mutex::new(Some(queued)),
            lookups: Default::default(),
            published: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
        }))
    }

    /// What the store was configured with.
    pub fn spec(&self) -> &SharedStateSpec {
        &self.spec
    }

    /// Whether Redis answered the last command sent to it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Lookups so far, by result ([`LOOKUP_RESULTS`] order).
    pub fn lookups(&self) -> [u64; 4] {
        self.lookups.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    /// Pins published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Writes that failed, timed out or found the queue full.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    fn count(&self, result: &Lookup) {
        let i = match result {
            Lookup::Hit(_) => 0,
            Lookup::Miss => 1,
            Lookup::Error => 2,
            Lookup::Timeout => 3,
        };
        self.lookups[i].fetch_add(1, Ordering::Relaxed);
    }

    fn sid_key(&self, sid: &str) -> String {
        format!("{}sid:{sid}", self.spec.key_prefix)
    }

    fn target_key(&self, group: &str, target: SocketAddr) -> String {
        format!("{}target:{group}:{target}", self.spec.key_prefix)
    }

    /// The connection, while Redis is up.
    fn live(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        self.conn.load().as_deref().cloned()
    }

    fn went_down(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "shared_state {}: {what} failed ({e}); routing with this replica's pins only until it answers",
                self.spec.redacted()
            );
        }
    }

    /// The pin of `sid`, waiting at most `lookup_timeout`. Redis down: an error at
    /// once, without waiting.
    pub async fn recall(&self, sid: &str) -> Lookup {
        let result = match self.live() {
            None => Lookup::Error,
            Some(mut conn) => {
                let cmd = redis::cmd("GET").arg(self.sid_key(sid)).clone();
                let get = cmd.query_async::<Option<String>>(&mut conn);
                match tokio::time::timeout(self.spec.lookup_timeout, get).await {
                    Err(_) => Lookup::Timeout,
                    Ok(Err(e)) => {
                        self.went_down("a lookup", &e);
                        Lookup::Error
                    }
                    Ok(Ok(None)) => Lookup::Miss,
                    Ok(Ok(Some(v))) => SharedPin::decode(&v).map_or(Lookup::Miss, Lookup::Hit),
                }
            }
        };
        self.count(&result);
        result
    }

    /// Publishes a new session's pin, waiting at most `lookup_timeout` (the handshake
    /// response waits for it, so that the client's next request finds it on any
    /// replica). Redis down: nothing is sent. The write runs as a task of its own: a
    /// late one still lands, and the caller's future stays `Sync` (an HTTP/2 body).
    pub async fn publish(self: &Arc<Self>, sid: &str, pin: &SharedPin) {
        let Some(mut conn) = self.live() else {
            return;
        };
        let ttl = ttl_ms(pin.idle);
        let set = self.target_key(&pin.group, pin.target);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.sid_key(sid))
            .arg(pin.encode())
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(&set)
            .arg(sid)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&set)
            .arg(ttl)
            .ignore();
        let state = self.clone();
        let write = tokio::spawn(async move {
            let written =
                tokio::time::timeout(BACKGROUND_TIMEOUT, pipe.query_async::<()>(&mut conn));
            match written.await {
                Ok(Ok(())) => {
                    state.published.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    state.write_failures.fetch_add(1, Ordering::Relaxed);
                    state.went_down("a publish", &e);
                }
                Err(_) => {
                    state.write_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Late: the response goes on; the pin lands when Redis answers.
        let _ = tokio::time::timeout(self.spec.lookup_timeout, write).await;
    }

    /// Pushes back the expiry of a pin in use (queued; never waits).
    pub fn refresh(&self, group: &str, sid: &str, target: SocketAddr, idle: Duration) {
        self.enqueue(Write::Refresh {
            group: group.into(),
            sid: sid.into(),
            target,
            idle,
        });
    }

    /// Removes every pin to a target that left its group (queued; never waits).
    pub fn forget_target(&self, group: &str, target: SocketAddr) {
        self.enqueue(Write::ForgetTarget {
            group: group.into(),
            target,
        });
    }

    fn enqueue(&self, write: Write) {
        if !self.is_up() || self.queue.try_send(write).is_err() {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one queued write.
    async fn write(&self, conn: &mut ConnectionManager, write: Write) -> redis::RedisResult<()> {
        match write {
            Write::Refresh {
                group,
                sid,
                target,
                idle,
            } => {
                let ttl = ttl_ms(idle);
                redis::pipe()
                    .cmd("PEXPIRE")
                    .arg(self.sid_key(&sid))
                    .arg(ttl)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(self.target_key(&group, target))
                    .arg(ttl)
                    .ignore()
                    .query_async(conn)
                    .await
            }
            Write::ForgetTarget { group, target } => {
                let set = self.target_key(&group, target);
                let sids: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query_async(conn).await?;
                let mut pipe = redis::pipe();
                for sid in &sids {
                    pipe.cmd("DEL").arg(self.sid_key(sid)).ignore();
                }
                pipe.cmd("DEL").arg(&set).ignore();
                pipe.query_async(conn).await
            }
        }
    }
}

/// A pin's time to live in Redis, in milliseconds.
fn ttl_ms(idle: Duration) -> u64 {
    u64::try_from((idle + MARGIN).as_millis()).unwrap_or(u64::MAX)
}

/// The task that owns the connection: it connects (and reconnects, with back-off),
/// PINGs once a second to know whether Redis is up, and sends the queued writes.
pub struct SharedStateService(pub Arc<SharedState>);

impl SharedStateService {
    /// Runs until `stop` resolves.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let state = &self.0;
        let Some(mut queued) = state.queued.lock().take() else {
            return;
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(BACKGROUND_TIMEOUT))
            .set_response_timeout(Some(BACKGROUND_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(5))
            .set_number_of_retries(3);
        let conn = match ConnectionManager::new_lazy_with_config(state.client.clone(), config) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!("shared_state {}: {e}", state.spec.redacted());
                return;
            }
        };
        state.conn.store(Some(Arc::new(conn.clone())));
        tokio::pin!(stop);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ping.tick() => state.ping(conn.clone()).await,
                Some(write) = queued.recv() => {
                    let mut conn = conn.clone();
                    match tokio::time::timeout(BACKGROUND_TIMEOUT, state.write(&mut conn, write)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            state.write_failures.fetch_add(1, Ordering::Relaxed);
                            state.went_down("a write", &e);
                        }
                        Err(_) => {
                            state.write_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

impl SharedState {
    /// One PING: up when it is answered.
    async fn ping(&self, mut conn: ConnectionManager) {
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(BACKGROUND_TIMEOUT, ping).await {
            Ok(Ok(_)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("shared_state {}: connected", self.spec.redacted());
                }
            }
            Ok(Err(e)) => self.went_down("PING", &e),
            Err(_) => self.went_down("PING", &"no answer within 1s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_reads_back_as_written() {
        let pin = SharedPin {
            group: "chat servers".to_string(),
            target: "127.0.0.1:3001".parse().unwrap(),
            idle: Duration::from_millis(45_000),
        };
        assert_eq!(SharedPin::decode(&pin.encode()), Some(pin));
        let v6 = SharedPin {
            group: "g".to_string(),
            target: "[::1]:80".parse().unwrap(),
            idle: Duration::from_secs(1),
        };
        assert_eq!(SharedPin::decode(&v6.encode()), Some(v6));
        for bad in ["", "x 1 g", "127.0.0.1:1 x g", "127.0.0.1:1 5"] {
            assert_eq!(SharedPin::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unix_paths_are_taken_as_users_write_them() {
        let spec = |redis: &str| SharedStateSpec {
            redis: redis.to_string(),
            key_prefix: "tether:".to_string(),
            lookup_timeout: Duration::from_millis(5),
            ca_bundle: None,
        };
        for ok in [
            "unix:/run/redis.sock",
            "unix:///run/redis.sock",
            "redis://127.0.0.1:6379",
            "redis://:secret@127.0.0.1:6379/2",
            "rediss://user:secret@example.com:6380",
        ] {
            assert!(client(&spec(ok)).is_ok(), "{ok}");
        }
        assert!(client(&spec("http://127.0.0.1")).is_err());
        assert_eq!(
            spec("redis://user:secret@h:1/0").redacted(),
            "redis://user:***@h:1/0"
        );
        assert_eq!(spec("redis://:pw@h:1").redacted(), "redis://:***@h:1");
        assert_eq!(spec("unix:/run/r.sock").redacted(), "unix:/run/r.sock");
    }
}
