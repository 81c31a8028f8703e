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

    pub fn iter(self) -> std::slice::Iter<'a, Header<'a>> {
        self.0.iter()
    }
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
}
