//! Headers ALB adds to forwarded requests: `X-Forwarded-For` (appended),
//! `X-Forwarded-Proto`, `X-Forwarded-Port` and `X-Amzn-Trace-Id`.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use rand::RngCore;

/// Lookups by a prebuilt name: a `&str` name is parsed and validated on every call.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// ALB answers 463 to a request whose X-Forwarded-For holds more addresses.
pub const MAX_FORWARDED_FOR: usize = 30;

/// Number of addresses in all `X-Forwarded-For` header lines.
pub fn forwarded_for_count<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> usize {
    values
        .map(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .filter(|a| a.iter().any(|b| !b.is_ascii_whitespace()))
                .count()
        })
        .sum()
}

/// The new `X-Forwarded-For`: existing addresses, then the client's.
pub fn append_forwarded_for<'a>(
    existing: impl Iterator<Item = &'a HeaderValue>,
    client: IpAddr,
) -> String {
    let mut out = String::with_capacity(64);
    for v in existing {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                out.push_str(s);
                out.push_str(", ");
            }
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
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        v6 => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
    out
}

/// Rewrites a request about to be forwarded as ALB does: the client's address
/// appended to `X-Forwarded-For` (when known), `X-Forwarded-Proto` and
/// `X-Forwarded-Port` set to the listener's, and `X-Amzn-Trace-Id` set.
pub fn rewrite_request(
    upstream: &mut RequestHeader,
    client: Option<IpAddr>,
    proto: &HeaderValue,
    port: &HeaderValue,
) -> pingora::Result<()> {
    if let Some(ip) = client {
        let xff = append_forwarded_for(upstream.headers.get_all(&X_FORWARDED_FOR).iter(), ip);
        upstream.insert_header("x-forwarded-for", xff)?;
    }
    upstream.insert_header("x-forwarded-proto", proto.clone())?;
    upstream.insert_header("x-forwarded-port", port.clone())?;
    let trace = trace_id(upstream.headers.get(&X_AMZN_TRACE_ID));
    upstream.insert_header("x-amzn-trace-id", trace)?;
    Ok(())
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

/// The `X-Amzn-Trace-Id` to forward: a new `Root` when none came in; otherwise the
/// incoming fields are kept and `Self` is set (replaced if present), as ALB does.
pub fn trace_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    let incoming = incoming
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(incoming) = incoming else {
        // The common case: no allocation beyond the header value itself.
        let mut v = [0u8; 5 + TRACE_PART_LEN];
        v[..5].copy_from_slice(b"Root=");
        write_trace_part(&mut v[5..]);
        return HeaderValue::from_bytes(&v).unwrap_or(HeaderValue::from_static(
            "Root=1-00000000-000000000000000000000000",
        ));
    };
    let has_root = incoming.split(';').any(|f| f.trim().starts_with("Root="));
    let (lead, part) = if has_root {
        ("Self=", trace_part())
    } else {
        ("Root=", trace_part())
    };
    let mut out = Vec::with_capacity(incoming.len() + 48);
    out.extend_from_slice(lead.as_bytes());
    out.extend_from_slice(&part);
    for f in incoming.split(';').map(str::trim) {
        // Drop an old Self; without a Root of ours, keep what the client sent (it may
        // carry Parent/Sampled).
        if f.is_empty() || f.starts_with("Self=") {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(f.as_bytes());
    }
    // Built from a valid header value and ASCII: cannot fail.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_client() {
        let a = HeaderValue::from_static("1.2.3.4, 5.6.7.8");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            append_forwarded_for([&a].into_iter(), ip),
            "1.2.3.4, 5.6.7.8, 127.0.0.1"
        );
        assert_eq!(append_forwarded_for(std::iter::empty(), ip), "127.0.0.1");
        assert_eq!(forwarded_for_count([&a, &a].into_iter()), 4);
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "10.0.100.1",
            "::1",
            "2001:db8::7",
        ] {
            assert_eq!(
                append_forwarded_for(std::iter::empty(), ip.parse().unwrap()),
                ip
            );
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 3, 7]);
            assert_eq!(append_forwarded_for(std::iter::empty(), ip), ip.to_string());
        }
        let mapped: IpAddr = "::ffff:192.0.2.128".parse().unwrap();
        assert_eq!(
            append_forwarded_for(std::iter::empty(), mapped),
            "192.0.2.128"
        );
    }

    #[test]
    fn a_new_trace_id_has_the_alb_shape() {
        let t = trace_id(None);
        let t = t.to_str().unwrap();
        let root = t.strip_prefix("Root=1-").unwrap();
        let (secs, random) = root.split_once('-').unwrap();
        assert_eq!(secs.len(), 8);
        assert_eq!(random.len(), 24);
        assert!(root.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn an_incoming_header_without_root_gets_one() {
        let v = HeaderValue::from_static("Sampled=1");
        let t = trace_id(Some(&v));
        let t = t.to_str().unwrap();
        assert!(t.starts_with("Root=1-") && t.ends_with(";Sampled=1"), "{t}");
    }

    #[test]
    fn an_incoming_root_is_kept_and_self_is_replaced() {
        let v = HeaderValue::from_static(
            "Self=1-0-0;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        );
        let t = trace_id(Some(&v));
        let t = t.to_str().unwrap();
        assert!(t.starts_with("Self=1-"), "{t}");
        assert!(
            t.ends_with(";Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
            "{t}"
        );
        assert_eq!(t.matches("Self=").count(), 1);
    }
}
