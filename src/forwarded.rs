//! Headers ALB adds to forwarded requests: `X-Forwarded-For` (appended, preserved or
//! removed), `X-Forwarded-Proto`, `X-Forwarded-Port`, `X-Amzn-Trace-Id` and, when
//! asked, the TLS version and cipher suite; and the `Host` ALB sends. Written as
//! bytes straight into the head sent to the target, whatever protocol the client
//! spoke.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::settings::{ListenerHeaders, RequestShaping, XffMode};
use crate::tls_session::TlsSession;

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

/// Whether a client's header line stays out of the head sent to the target: a line
/// tether writes itself ([`is_rewritten`]; `X-Forwarded-For` passes in `preserve`
/// mode), a line whose name is not valid when `drop_invalid_header_fields` is on, or
/// the client's own copy of a TLS header tether adds.
pub fn leaves_out(name: &str, shaping: &RequestShaping, listener: &ListenerHeaders) -> bool {
    if is_rewritten(name) {
        return !(shaping.xff_mode == XffMode::Preserve
            && name.eq_ignore_ascii_case(X_FORWARDED_FOR));
    }
    (shaping.drop_invalid_header_fields && !is_valid_name(name))
        || is_mtls_header(name)
        || (shaping.tls_version_and_cipher_headers
            && (name.eq_ignore_ascii_case(&listener.tls_version_name)
                || name.eq_ignore_ascii_case(&listener.tls_cipher_suite_name)))
}

/// A client's own `X-Amzn-Mtls-Clientcert*` line: never forwarded, mutual TLS on or
/// off, since a target written for ALB trusts what it says of the client.
fn is_mtls_header(name: &str) -> bool {
    const PREFIX: &str = "x-amzn-mtls-clientcert";
    name.len() >= PREFIX.len()
        && name.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
}

/// ALB's valid header name: `[-A-Za-z0-9]+` (stricter than HTTP's tokens, which
/// allow `_`, `.` and others).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Writes the `Host` value ALB sends when `preserve_host_header` is off: on a
/// listener on port 80 or 443 without any port; on another port with the
/// listener's port added when the client gave none (a port the client gave is
/// kept).
pub fn write_host(out: &mut Vec<u8>, host: &[u8], listener_port: u16, port_text: &[u8]) {
    let name = &host[..crate::headers::name_len(host)];
    if listener_port == 80 || listener_port == 443 {
        out.extend_from_slice(name);
    } else if name.len() < host.len() {
        out.extend_from_slice(host);
    } else {
        out.extend_from_slice(host);
        out.push(b':');
        out.extend_from_slice(port_text);
    }
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

/// Writes the new `X-Forwarded-For` value: existing addresses, then the client's
/// (`ip:port`, `[ip6]:port`, with a `port`).
pub fn append_forwarded_for<'a>(
    out: &mut Vec<u8>,
    existing: impl Iterator<Item = &'a [u8]>,
    client: IpAddr,
    port: Option<u16>,
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
            let _ = match port {
                Some(_) => write!(out, "[{v6}]"),
                None => write!(out, "{v6}"),
            };
        }
    }
    if let Some(port) = port {
        use std::io::Write;
        let _ = write!(out, ":{port}");
    }
}

/// What a forwarded request's added headers are made of.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedFor<'a> {
    /// The socket peer (unknown for a Unix socket client).
    pub client: Option<IpAddr>,
    /// The peer's port, when `X-Forwarded-For` carries it (`xff_client_port`).
    pub client_port: Option<u16>,
    pub xff_mode: XffMode,
    /// `http` or `https`.
    pub proto: &'a [u8],
    /// The listener's port, in decimal.
    pub port: &'a [u8],
    /// The TLS headers to add, with their names (version, cipher suite).
    pub tls: Option<(&'a str, &'a str, TlsSession)>,
}

/// Writes the header lines ALB adds to a forwarded request: the client's address
/// appended to `X-Forwarded-For` (when known, in `append` mode), `X-Forwarded-Proto`
/// and `X-Forwarded-Port` set to the listener's, `X-Amzn-Trace-Id` set, and the TLS
/// headers when asked. The client's own lines of these headers must be left out of
/// the head by the caller ([`leaves_out`]); `xff` and `trace` are their values.
/// Returns where in `out` the trace id sent is (for the access log).
pub fn write_headers<'a>(
    out: &mut Vec<u8>,
    fwd: &ForwardedFor<'_>,
    xff: impl Iterator<Item = &'a [u8]>,
    trace: Option<&[u8]>,
) -> std::ops::Range<usize> {
    if let (Some(ip), XffMode::Append) = (fwd.client, fwd.xff_mode) {
        out.extend_from_slice(b"x-forwarded-for: ");
        append_forwarded_for(out, xff, ip, fwd.client_port);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((version_name, cipher_name, session)) = fwd.tls {
        for (name, value) in [
            (version_name, session.version),
            (cipher_name, session.cipher_suite),
        ] {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(fwd.proto);
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    out.extend_from_slice(fwd.port);
    out.extend_from_slice(b"\r\nx-amzn-trace-id: ");
    let start = out.len();
    trace_id(out, trace);
    let sent = start..out.len();
    out.extend_from_slice(b"\r\n");
    sent
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
        append_forwarded_for(&mut out, existing.iter().copied(), ip, None);
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
            client_port: None,
            xff_mode: XffMode::Append,
            proto: b"https",
            port: b"443",
            tls: None,
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

    fn host(value: &str, listener_port: u16) -> String {
        let mut out = Vec::new();
        let text = listener_port.to_string();
        write_host(&mut out, value.as_bytes(), listener_port, text.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn without_preserve_host_the_port_follows_albs_rule() {
        // Listeners on 80 and 443: no port.
        assert_eq!(host("example.com", 80), "example.com");
        assert_eq!(host("example.com:8080", 80), "example.com");
        assert_eq!(host("example.com:443", 443), "example.com");
        assert_eq!(host("[2001:db8::1]:8443", 443), "[2001:db8::1]");
        assert_eq!(host("[2001:db8::1]", 443), "[2001:db8::1]");
        // Other listeners: the listener's port unless the client gave one.
        assert_eq!(host("example.com", 8080), "example.com:8080");
        assert_eq!(host("example.com:9000", 8080), "example.com:9000");
        assert_eq!(host("[2001:db8::1]", 8080), "[2001:db8::1]:8080");
        assert_eq!(host("[2001:db8::1]:9000", 8080), "[2001:db8::1]:9000");
    }

    #[test]
    fn forwarded_for_may_carry_the_client_port() {
        let mut out = Vec::new();
        append_forwarded_for(
            &mut out,
            [&b"10.0.0.1"[..]].into_iter(),
            "198.51.100.7".parse().unwrap(),
            Some(4711),
        );
        assert_eq!(out, b"10.0.0.1, 198.51.100.7:4711");
        let mut out = Vec::new();
        append_forwarded_for(
            &mut out,
            std::iter::empty(),
            "2001:db8::7".parse().unwrap(),
            Some(4711),
        );
        assert_eq!(out, b"[2001:db8::7]:4711");
    }

    #[test]
    fn the_client_lines_left_out_follow_the_attributes() {
        let listener = ListenerHeaders::default();
        let mut shaping = RequestShaping::default();
        assert!(leaves_out("X-Forwarded-For", &shaping, &listener));
        assert!(leaves_out("x-forwarded-proto", &shaping, &listener));
        assert!(!leaves_out("X_Custom", &shaping, &listener));
        assert!(!leaves_out("x-amzn-tls-version", &shaping, &listener));
        shaping.xff_mode = XffMode::Preserve;
        assert!(!leaves_out("X-Forwarded-For", &shaping, &listener));
        assert!(leaves_out("X-Forwarded-Port", &shaping, &listener));
        shaping.xff_mode = XffMode::Remove;
        assert!(leaves_out("X-Forwarded-For", &shaping, &listener));
        shaping.drop_invalid_header_fields = true;
        for bad in ["X_Custom", "x.y", "a b", "é"] {
            assert!(leaves_out(bad, &shaping, &listener), "{bad}");
        }
        assert!(!leaves_out("X-Custom-2", &shaping, &listener));
        shaping.tls_version_and_cipher_headers = true;
        assert!(leaves_out("x-amzn-tls-version", &shaping, &listener));
        assert!(leaves_out("X-Amzn-Tls-Cipher-Suite", &shaping, &listener));
    }

    #[test]
    fn each_xff_mode_writes_its_header_and_tls_headers_when_asked() {
        let write = |mode: XffMode, tls: bool| {
            let mut out = Vec::new();
            let fwd = ForwardedFor {
                client: Some("198.51.100.7".parse().unwrap()),
                client_port: None,
                xff_mode: mode,
                proto: b"https",
                port: b"443",
                tls: tls.then_some((
                    "X-Amzn-Tls-Version",
                    "X-Amzn-Tls-Cipher-Suite",
                    TlsSession {
                        version: "TLSv1.2",
                        cipher_suite: "ECDHE-RSA-AES128-GCM-SHA256",
                    },
                )),
            };
            write_headers(&mut out, &fwd, [&b"10.0.0.1"[..]].into_iter(), None);
            String::from_utf8(out).unwrap()
        };
        assert!(
            write(XffMode::Append, false).contains("x-forwarded-for: 10.0.0.1, 198.51.100.7\r\n")
        );
        assert!(!write(XffMode::Preserve, false).contains("x-forwarded-for"));
        assert!(!write(XffMode::Remove, false).contains("x-forwarded-for"));
        let text = write(XffMode::Append, true);
        assert!(text.contains("X-Amzn-Tls-Version: TLSv1.2\r\n"), "{text}");
        assert!(
            text.contains("X-Amzn-Tls-Cipher-Suite: ECDHE-RSA-AES128-GCM-SHA256\r\n"),
            "{text}"
        );
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
