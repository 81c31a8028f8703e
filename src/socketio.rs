//! Socket.IO pinning without cookies: remember which target opened each Engine.IO
//! session (`sid`), and send every later request carrying that `sid` to it.
//!
//! Entries are forgotten when the session ends (its websocket closes), after
//! pingInterval + pingTimeout of silence, or — when the table is full — not stored at
//! all (the cookie still works). Memory is bounded by `capacity`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Engine.IO v4's defaults: pingInterval 25 s + pingTimeout 20 s.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(45);

/// Default bound on remembered sessions per target group.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    target: SocketAddr,
    idle: Duration,
    last_seen: Instant,
    /// When the shared store last heard of this session (its pin's expiry pushed back).
    shared_at: Instant,
}

/// A live session met again: its target, and whether its shared pin is due a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    pub target: SocketAddr,
    pub idle: Duration,
    /// A third of its idle time has passed since the shared store last heard of it.
    pub refresh: bool,
}

/// sid → target, sharded to keep lock hold times short across threads.
#[derive(Debug)]
pub struct SidTable {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl SidTable {
    /// A table holding about `capacity` sids, sharded for concurrent use.
    pub fn new(capacity: usize) -> Self {
        SidTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    fn shard(&self, sid: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        &self.shards[(self.hasher.hash_one(sid) as usize) % SHARDS]
    }

    /// Remembers a new session. Returns false when the table is full.
    pub fn insert(&self, sid: &str, target: SocketAddr, idle: Duration, now: Instant) -> bool {
        let mut map = self.shard(sid).lock();
        if map.len() >= self.per_shard {
            map.retain(|_, e| now.duration_since(e.last_seen) <= e.idle);
            if map.len() >= self.per_shard {
                return false;
            }
        }
        map.insert(
            sid.into(),
            Entry {
                target,
                idle,
                last_seen: now,
                shared_at: now,
            },
        );
        true
    }

    /// The target of a live session, refreshing its last-seen time.
    pub fn touch(&self, sid: &str, now: Instant) -> Option<SocketAddr> {
        self.visit(sid, now).map(|v| v.target)
    }

    /// A live session met again: refreshes its last-seen time, and says whether the
    /// shared store is due to hear of it (it then counts as heard).
    pub fn visit(&self, sid: &str, now: Instant) -> Option<Visit> {
        let mut map = self.shard(sid).lock();
        let entry = map.get_mut(sid)?;
        if now.duration_since(entry.last_seen) > entry.idle {
            map.remove(sid);
            return None;
        }
        entry.last_seen = now;
        let refresh = now.duration_since(entry.shared_at) >= entry.idle / 3;
        if refresh {
            entry.shared_at = now;
        }
        Some(Visit {
            target: entry.target,
            idle: entry.idle,
            refresh,
        })
    }

    /// Whether `sid` is a live session here (nothing is refreshed).
    pub fn contains(&self, sid: &str, now: Instant) -> bool {
        self.shard(sid)
            .lock()
            .get(sid)
            .is_some_and(|e| now.duration_since(e.last_seen) <= e.idle)
    }

    /// Forgets `sid` (its session ended).
    pub fn remove(&self, sid: &str) {
        self.shard(sid).lock().remove(sid);
    }

    /// How many sids are pinned now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no sid is pinned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `sid` query parameter, if any.
pub fn sid_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("sid="))
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether a request is an Engine.IO polling handshake (no sid yet) under `path`.
pub fn is_polling_handshake(path: &str, query: Option<&str>, prefix: &str) -> bool {
    let Some(query) = query else { return false };
    path.starts_with(prefix)
        && query.split('&').any(|kv| kv.starts_with("EIO="))
        && query.split('&').any(|kv| kv == "transport=polling")
        && sid_param(Some(query)).is_none()
}

/// An Engine.IO open packet: `0{"sid":"…","pingInterval":25000,"pingTimeout":20000,…}`
/// (v4; v3 payloads carry a `len:` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPacket {
    pub sid: String,
    /// pingInterval + pingTimeout: silence after which the client gives up.
    pub idle: Duration,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenJson {
    sid: String,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
}

/// Parses the open packet at the start of a handshake response body.
pub fn parse_open_packet(body: &[u8]) -> Option<OpenPacket> {
    let start = body.windows(2).position(|w| w == b"0{")? + 1;
    if start > 16 {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_slice(&body[start..]).into_iter::<OpenJson>();
    let open = stream.next()?.ok()?;
    if open.sid.is_empty() || open.sid.len() > 128 {
        return None;
    }
    let idle = match (open.ping_interval, open.ping_timeout) {
        (Some(i), Some(t)) => Duration::from_millis(i.saturating_add(t)),
        _ => DEFAULT_SESSION_IDLE,
    };
    Some(OpenPacket {
        sid: open.sid,
        idle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn it_should_parse_a_v4_open_packet() {
        let body = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let open = parse_open_packet(body).unwrap();
        assert_eq!(open.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(open.idle, Duration::from_secs(45));
        let v3 = br#"96:0{"sid":"abc","upgrades":[],"pingInterval":1000,"pingTimeout":500}2:40"#;
        assert_eq!(
            parse_open_packet(v3).unwrap().idle,
            Duration::from_millis(1500)
        );
        assert_eq!(parse_open_packet(b"4hello"), None);
        assert_eq!(parse_open_packet(b"0{\"sid\":"), None);
    }

    #[test]
    fn it_should_recognise_handshakes_and_sids() {
        let p = "/socket.io/";
        assert!(is_polling_handshake(
            p,
            Some("EIO=4&transport=polling&t=abc"),
            p
        ));
        assert!(!is_polling_handshake(
            p,
            Some("EIO=4&transport=polling&sid=x"),
            p
        ));
        assert!(!is_polling_handshake(
            p,
            Some("EIO=4&transport=websocket"),
            p
        ));
        assert!(!is_polling_handshake(
            "/other/",
            Some("EIO=4&transport=polling"),
            p
        ));
        assert_eq!(
            sid_param(Some("EIO=4&transport=websocket&sid=abc")),
            Some("abc")
        );
        assert_eq!(sid_param(Some("EIO=4&xsid=abc")), None);
    }

    #[test]
    fn it_should_forget_silent_sessions() {
        let t = SidTable::new(100);
        let now = Instant::now();
        assert!(t.insert("a", addr(1), Duration::from_secs(45), now));
        assert_eq!(t.touch("a", now + Duration::from_secs(40)), Some(addr(1)));
        // touched at +40 s: still alive at +80 s, gone at +90 s.
        assert_eq!(t.touch("a", now + Duration::from_secs(80)), Some(addr(1)));
        assert_eq!(t.touch("a", now + Duration::from_secs(126)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn it_should_ask_for_a_shared_refresh_a_third_of_the_idle_time_after_the_last() {
        let t = SidTable::new(100);
        let now = Instant::now();
        let idle = Duration::from_secs(45);
        assert!(t.insert("a", addr(1), idle, now));
        let at = |s: u64| now + Duration::from_secs(s);
        assert_eq!(t.visit("a", at(10)).map(|v| v.refresh), Some(false));
        // 15 s (a third of 45 s) after the pin was published: refresh, once.
        assert_eq!(t.visit("a", at(15)).map(|v| v.refresh), Some(true));
        assert_eq!(t.visit("a", at(20)).map(|v| v.refresh), Some(false));
        assert_eq!(t.visit("a", at(30)).map(|v| v.refresh), Some(true));
        assert!(t.contains("a", at(30)));
        assert!(!t.contains("a", at(80)), "silent past its idle time");
        assert!(!t.contains("b", at(1)));
    }

    #[test]
    fn it_should_stay_within_its_capacity() {
        let t = SidTable::new(SHARDS); // one per shard
        let now = Instant::now();
        let stored = (0..200)
            .filter(|i| t.insert(&format!("s{i}"), addr(1), Duration::from_secs(45), now))
            .count();
        assert!(stored <= SHARDS);
        assert!(t.len() <= SHARDS);
        // Once entries expire, room is made again.
        let later = now + Duration::from_secs(46);
        assert!(t.insert("fresh", addr(2), Duration::from_secs(45), later));
    }
}
