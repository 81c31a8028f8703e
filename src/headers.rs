//! A request's header lines as the engines hand them to the exchange core: names and
//! values borrowed from the bytes the client sent, in order, nothing rebuilt. The
//! HTTP/1 engine lends its parse; HTTP/2 lends a list made from its header map.

/// One header line (`httparse`'s own shape: a name and raw value bytes).
pub type Header<'a> = httparse::Header<'a>;

/// A request's header lines, looked up by case-insensitive name.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a>(pub &'a [Header<'a>]);

impl<'a> Headers<'a> {
    /// Values of every line called `name` (any case), in order.
    pub fn get_all(self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The first value of `name`.
    pub fn get(self, name: &str) -> Option<&'a [u8]> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The first value of `name` as text, if it is valid UTF-8.
    pub fn get_str(self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
    pub fn has_token(self, name: &'a str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The lines, in the order they came.
    pub fn iter(self) -> std::slice::Iter<'a, Header<'a>> {
        self.0.iter()
    }
}

/// Whether `host` is an authority as a `Host` line or `:authority` may carry it: a
/// reg-name, an IPv4 address or an `[IPv6]` literal, with an optional all-digit port
/// of at most 65535 (RFC 9110 §7.2, RFC 3986 §3.2.2). No userinfo, and no
/// percent-encoding: a target that decoded `%41dmin` would see a host that no rule
/// saw. Anything else is refused, so that host rules see what targets see.
pub fn valid_host(host: &[u8]) -> bool {
    let (name, port) = if host.first() == Some(&b'[') {
        let Some(end) = memchr::memchr(b']', host) else {
            return false;
        };
        let literal = std::str::from_utf8(&host[1..end]).ok();
        if literal
            .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok())
            .is_none()
        {
            return false;
        }
        match &host[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b"ipv6"[..], Some(port)),
            _ => return false,
        }
    } else {
        match memchr::memrchr(b':', host) {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
    });
    port_ok && !name.is_empty() && name.iter().all(|b| is_reg_name_byte(*b))
}

/// RFC 3986's reg-name characters (unreserved and sub-delims), less `%`.
fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

/// [`is_reg_name_byte`] as a table: every request's Host goes through it.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric();
        i += 1;
    }
    let extra = b"-._~!$&'()*+,;=";
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
};

/// `host:port` → `host`, keeping IPv6 literals (`[::1]:80` → `[::1]`) whole.
pub fn strip_port(host: &str) -> &str {
    &host[..name_len(host.as_bytes())]
}

/// The length of a Host value without its port ([`strip_port`] on bytes, for the
/// engines, which hold the head's bytes).
pub fn name_len(host: &[u8]) -> usize {
    if host.starts_with(b"[") {
        return memchr::memchr(b']', host).map_or(host.len(), |end| end + 1);
    }
    match memchr::memrchr(b':', host) {
        Some(i) if host[i + 1..].iter().all(u8::is_ascii_digit) => i,
        _ => host.len(),
    }
}

/// Whether a header is hop-by-hop (RFC 9110 §7.6.1) and so never forwarded as is.
/// `Transfer-Encoding` is not among them: tether forwards bodies in their coding.
/// `HTTP2-Settings` belongs to the `h2c` upgrade, which tether never forwards.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authenticate",
        "http2-settings",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether `b` may be in a header name (RFC 9110's tchar).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_find_values_by_any_case_in_order() {
        let lines = [
            Header {
                name: "Cookie",
                value: b"a=1",
            },
            Header {
                name: "Connection",
                value: b"keep-alive, Upgrade",
            },
            Header {
                name: "cookie",
                value: b"b=2",
            },
        ];
        let h = Headers(&lines);
        assert_eq!(
            h.get_all("COOKIE").collect::<Vec<_>>(),
            [&b"a=1"[..], b"b=2"]
        );
        assert_eq!(h.get_str("connection"), Some("keep-alive, Upgrade"));
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert_eq!(h.get("host"), None);
    }

    #[test]
    fn strip_port_keeps_ipv6_literals() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.b"), "a.b");
    }

    #[test]
    fn it_should_take_only_hosts_of_rfc_3986_with_a_real_port() {
        for good in [
            &b"a.example"[..],
            b"a.example:80",
            b"a.example:65535",
            b"10.0.0.1:8080",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"under_score.example",
        ] {
            assert!(valid_host(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"admin.example.com:x",
            b"a.example:",
            b"a.example:65536",
            b"a.example:123456",
            b"user@a.example",
            b"a example",
            b"a.example/x",
            b"%41dmin.example",
            b"[::1",
            b"[nothex]",
            b"[::1]x",
            b"[::1]:",
            b":80",
            b"a:b:80",
            b"a\x00b",
        ] {
            assert!(!valid_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
