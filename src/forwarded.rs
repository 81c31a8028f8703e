//! Headers ALB adds to forwarded requests: `X-Forwarded-For` (appended),
//! `X-Forwarded-Proto`, `X-Forwarded-Port` and `X-Amzn-Trace-Id`. Written as bytes
//! straight into the head sent to the target, whatever protocol the client spoke.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_PORT: &str = "x-forwarded-port";
pub const X_AMZN_TRACE_ID: &str = "x-amzn-trace-id";

/// Whether tether writes this header itself (the client's copy is replaced, or
/// appended to for `X-Forwarded-For`).
pub fn is_rewritten(name: &str) -> bool {
    name.len() >= 15
        && (name.eq_ignore_ascii_case(X_FORWARDED_FOR)
            || name.eq_ignore_ascii_case(X_FORWARDED_PROTO)
            || name.eq_ignore_ascii_case(X_FORWARDED_PORT)
            || name.eq_ignore_ascii_case(X_AMZN_TRACE_ID))
}

/// ALB answers 463 to a request whose X-Forwarded-For holds more addresses.
pub const MAX_FORWARDED_FOR: usize = 30;

/// Number of addresses in all `X-Forwarded-For` header lines.
pub fn forwarded_for_count<'a>(values: impl Iterator<Item = &'a [u8]>) -> usize {
    values
        .map(|v| {
            v.split(|b| *b == b',')
                .filter(|a| a.iter().any(|b| !b.is_ascii_whitespace()))
                .count()
        })
        .sum()
}

/// Writes the new `X-Forwarded-For` value: existing addresses, then the client's.
pub fn append_forwarded_for<'a>(
    out: &mut Vec<u8>,
    existing: impl Iterator<Item = &'a [u8]>,
    client: IpAddr,
) {
    for v in existing {
        let v = v.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
        v4 => v4,
    };
    match client {
        // Most clients: four decimal octets without the formatting machinery (a tenth
        // of the rewrite's cost went to `Display for Ipv4Addr`).
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        v6 => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// What a forwarded request's added headers are made of.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedFor<'a> {
    /// The socket peer (unknown for a Unix socket client).
    pub client: Option<IpAddr>,
    /// `http` or `https`.
    pub proto: &'a [u8],
    /// The listener's port, in decimal.
    pub port: &'a [u8],
}

/// Writes the header lines ALB adds to a forwarded request: the client's address
/// appended to `X-Forwarded-For` (when known), `X-Forwarded-Proto` and
/// `X-Forwarded-Port` set to the listener's, and `X-Amzn-Trace-Id` set. The client's
/// own lines of these headers must be left out of the head by the caller
/// ([`is_rewritten`]); `xff` and `trace` are their values.
pub fn write_headers<'a>(
    out: &mut Vec<u8>,
    fwd: &ForwardedFor<'_>,
    xff: impl Iterator<Item = &'a [u8]>,
    trace: Option<&[u8]>,
) {
    if let Some(ip) = fwd.client {
        out.extend_from_slice(b"x-forwarded-for: ");
        append_forwarded_for(out, xff, ip);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(fwd.proto);
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    out.extend_from_slice(fwd.port);
    out.extend_from_slice(b"\r\nx-amzn-trace-id: ");
    trace_id(out, trace);
    out.extend_from_slice(b"\r\n");
}

const TRACE_PART_LEN: usize = 2 + 8 + 1 + 24;

/// A new trace id part, `1-<8 hex seconds>-<24 hex random>`, written into the
/// first [`TRACE_PART_LEN`] bytes of `out`.
fn write_trace_part(out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let mut random = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut random);
    out[0] = b'1';
    out[1] = b'-';
    for (i, shift) in (0..8).rev().enumerate() {
        out[2 + i] = HEX[((secs >> (shift * 4)) & 0xf) as usize];
    }
    out[10] = b'-';
    for (i, b) in random.iter().enumerate() {
        out[11 + 2 * i] = HEX[usize::from(b >> 4)];
        out[12 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
}

fn trace_part() -> [u8; TRACE_PART_LEN] {
    let mut part = [0u8; TRACE_PART_LEN];
    write_trace_part(&mut part);
    part
}

/// Writes the `X-Amzn-Trace-Id` to forward: a new `Root` when none came in;
/// otherwise the incoming fields are kept and `Self` is set (replaced if present), as
/// ALB does.
pub fn trace_id(out: &mut Vec<u8>, incoming: Option<&[u8]>) {
    let incoming = incoming
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(incoming) = incoming else {
        out.extend_from_slice(b"Root=");
        out.extend_from_slice(&trace_part());
        return;
    };
    let has_root = incoming.split(';').any(|f| f.trim().starts_with("Root="));
    out.extend_from_slice(if has_root { b"Self=" } else { b"Root=" });
    out.extend_from_slice(&trace_part());
    for f in incoming.split(';').map(str::trim) {
        // Drop an old Self; without a Root of ours, keep what the client sent (it may
        // carry Parent/Sampled).
        if f.is_empty() || f.starts_with("Self=") {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(f.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(existing: &[&[u8]], ip: IpAddr) -> String {
        let mut out = Vec::new();
        append_forwarded_for(&mut out, existing.iter().copied(), ip);
        String::from_utf8(out).unwrap()
    }

    fn trace(incoming: Option<&str>) -> String {
        let mut out = Vec::new();
        trace_id(&mut out, incoming.map(str::as_bytes));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let a: &[u8] = b"1.2.3.4, 5.6.7.8";
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(xff(&[a], ip), "1.2.3.4, 5.6.7.8, 127.0.0.1");
        assert_eq!(xff(&[], ip), "127.0.0.1");
        assert_eq!(forwarded_for_count([a, a].into_iter()), 4);
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "10.0.100.1",
            "::1",
            "2001:db8::7",
        ] {
            assert_eq!(xff(&[], ip.parse().unwrap()), ip);
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 3, 7]);
            assert_eq!(xff(&[], ip), ip.to_string());
        }
        let mapped: IpAddr = "::ffff:192.0.2.128".parse().unwrap();
        assert_eq!(xff(&[], mapped), "192.0.2.128");
    }

    #[test]
    fn it_should_write_the_four_alb_headers() {
        let mut out = Vec::new();
        let fwd = ForwardedFor {
            client: Some("198.51.100.7".parse().unwrap()),
            proto: b"https",
            port: b"443",
        };
        write_headers(&mut out, &fwd, [&b"10.0.0.1"[..]].into_iter(), None);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "x-forwarded-for: 10.0.0.1, 198.51.100.7");
        assert_eq!(lines[1], "x-forwarded-proto: https");
        assert_eq!(lines[2], "x-forwarded-port: 443");
        assert!(lines[3].starts_with("x-amzn-trace-id: Root=1-"), "{text}");
        assert_eq!(lines[4], "");
        assert!(is_rewritten("X-Forwarded-Port") && !is_rewritten("x-forwarded-host"));
    }

    #[test]
    fn a_new_trace_id_has_the_alb_shape() {
        let t = trace(None);
        let root = t.strip_prefix("Root=1-").unwrap();
        let (secs, random) = root.split_once('-').unwrap();
        assert_eq!(secs.len(), 8);
        assert_eq!(random.len(), 24);
        assert!(root.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn an_incoming_header_without_root_gets_one() {
        let t = trace(Some("Sampled=1"));
        assert!(t.starts_with("Root=1-") && t.ends_with(";Sampled=1"), "{t}");
    }

    #[test]
    fn an_incoming_root_is_kept_and_self_is_replaced() {
        let t = trace(Some(
            "Self=1-0-0;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        ));
        assert!(t.starts_with("Self=1-"), "{t}");
        assert!(
            t.ends_with(";Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
            "{t}"
        );
        assert_eq!(t.matches("Self=").count(), 1);
    }
}
