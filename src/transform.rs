//! Rule transforms, as ALB's "Transforms for listener rules": a rule may rewrite the
//! URL (path and query string) and the Host of a request it forwards, each with one
//! regex and one replacement. The routing decision is made on the request as it came;
//! the target sees the rewritten one.
//!
//! - No match: the request goes on unchanged.
//! - A match whose result cannot be sent (a URL not starting with `/`, a character not
//!   allowed in a request target or a host): the request fails with 500, as on ALB.
//! - Only the first match is replaced; `$1` / `${1}` / `${name}` insert a capture
//!   group (empty when the group took no part in the match), `$$` a dollar sign.

use regex::{Regex, RegexBuilder};

use crate::alb_regex::{check_alb_regex, describe_regex_error};

/// The longest transform regex and replacement, in characters (ALB's `RewriteConfig`).
pub const MAX_REWRITE_LEN: usize = 1024;

/// The longest URL a rewrite may make: ALB's request line limit.
const MAX_URL: usize = 16 * 1024;

/// The longest Host a rewrite may make: a DNS name (253) and `:port`.
const MAX_HOST: usize = 253 + 6;

/// Compiled-size cap of one transform regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a rewrite cannot be built: which half, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("{0}")]
    Regex(String),
    #[error("{0}")]
    Replace(String),
}

/// A rewrite's result cannot be sent (ALB answers 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformFailed {
    #[error("the rewritten URL \"{0}\" is not an origin-form request target")]
    Url(String),
    #[error("the rewritten host \"{0}\" is not a valid Host value")]
    Host(String),
}

// === impl Rewrite ===

/// One regex and its replacement.
#[derive(Debug, Clone)]
pub struct Rewrite {
    regex: Regex,
    replace: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Group(usize),
}

impl Rewrite {
    /// Compiles `regex` in ALB's dialect and parses `replace`, whose groups must
    /// exist in `regex`. Regexes are case-sensitive unless `case_insensitive`.
    pub fn new(regex: &str, replace: &str, case_insensitive: bool) -> Result<Self, RewriteError> {
        if regex.chars().count() > MAX_REWRITE_LEN {
            return Err(RewriteError::Regex(format!(
                "regex is longer than {MAX_REWRITE_LEN} characters"
            )));
        }
        if replace.chars().count() > MAX_REWRITE_LEN {
            return Err(RewriteError::Replace(format!(
                "replace is longer than {MAX_REWRITE_LEN} characters"
            )));
        }
        check_alb_regex(regex).map_err(RewriteError::Regex)?;
        let compiled = RegexBuilder::new(regex)
            .case_insensitive(case_insensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| RewriteError::Regex(describe_regex_error(regex, &e)))?;
        let replace = parse_replace(&compiled, replace).map_err(RewriteError::Replace)?;
        Ok(Rewrite {
            regex: compiled,
            replace,
        })
    }

    /// `input` with its first match replaced; `None` when the regex does not match.
    pub fn apply(&self, input: &str) -> Option<String> {
        let caps = self.regex.captures(input)?;
        let whole = caps.get(0)?;
        let mut out = String::with_capacity(input.len() + 32);
        out.push_str(&input[..whole.start()]);
        for part in &self.replace {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Group(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
            }
        }
        out.push_str(&input[whole.end()..]);
        Some(out)
    }
}

/// `$N`, `${N}`, `${name}` and `$$`; a `$` followed by anything else is refused so
/// that a typo does not silently drop part of a URL.
fn parse_replace(regex: &Regex, replace: &str) -> Result<Vec<Part>, String> {
    let groups = regex.captures_len() - 1;
    let group = |i: usize| {
        if i <= groups {
            Ok(Part::Group(i))
        } else {
            Err(format!(
                "replace refers to group {i} but the regex has {groups} group(s)"
            ))
        }
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = replace;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (part, used) = if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            rest = tail;
            continue;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| "replace has a '${' without its '}'".to_string())?;
            let name = &inner[..end];
            let part = match name.parse::<usize>() {
                Ok(i) => group(i)?,
                Err(_) => {
                    let i = regex
                        .capture_names()
                        .position(|n| n == Some(name))
                        .ok_or_else(|| {
                            format!("replace refers to ${{{name}}}, which the regex does not name")
                        })?;
                    Part::Group(i)
                }
            };
            (part, 1 + end + 1)
        } else {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(
                    "replace has a lone '$': write $1 or ${name} for a group, $$ for a dollar sign"
                        .to_string(),
                );
            }
            let i = after[..digits].parse::<usize>().map_err(|_| {
                format!(
                    "replace refers to group {}, which is too large",
                    &after[..digits]
                )
            })?;
            (group(i)?, digits)
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
        rest = &after[used..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

// === impl Transforms ===

/// A rule's transforms: at most one URL rewrite and one Host rewrite.
#[derive(Debug, Clone, Default)]
pub struct Transforms {
    /// Applied to the path with its query string (`/a/b?x=1`).
    pub url: Option<Rewrite>,
    /// Applied to the Host value as the client sent it (port included).
    pub host: Option<Rewrite>,
}

/// What the transforms changed (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// The new origin-form target: path, and `?query` when there is one.
    pub url: Option<String>,
    pub host: Option<String>,
}

impl Transforms {
    /// Whether the rule rewrites nothing.
    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.host.is_none()
    }

    /// Rewrites a request's URL (`path`, `query`) and Host.
    pub fn apply(
        &self,
        path: &str,
        query: Option<&str>,
        host: Option<&str>,
    ) -> Result<Rewritten, TransformFailed> {
        let mut out = Rewritten::default();
        if let Some(rw) = &self.url {
            let url = match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            if let Some(new) = rw.apply(&url) {
                if !valid_url(&new) {
                    return Err(TransformFailed::Url(new));
                }
                out.url = Some(new);
            }
        }
        if let (Some(rw), Some(host)) = (&self.host, host) {
            if let Some(new) = rw.apply(host) {
                if !valid_host(&new) {
                    return Err(TransformFailed::Host(new));
                }
                out.host = Some(new);
            }
        }
        Ok(out)
    }
}

/// An origin-form request target: `/`, then visible ASCII without `#`.
fn valid_url(url: &str) -> bool {
    url.starts_with('/')
        && url.len() <= MAX_URL
        && url.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// A host (name, IPv4 or bracketed IPv6) with an optional port: RFC 3986 reg-name
/// characters, `:` and brackets.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(regex: &str, replace: &str) -> Transforms {
        Transforms {
            url: Some(Rewrite::new(regex, replace, false).unwrap()),
            host: None,
        }
    }

    fn host(regex: &str, replace: &str) -> Transforms {
        Transforms {
            url: None,
            host: Some(Rewrite::new(regex, replace, true).unwrap()),
        }
    }

    #[test]
    fn it_should_rewrite_the_host_as_in_awss_host_header_example() {
        // "Transforms for listener rules": mywebsite-example.com becomes
        // internal.dev.example.myweb.com.
        let t = host("^mywebsite-(.+).com$", "internal.dev.$1.myweb.com");
        let out = t.apply("/project-a", None, Some("mywebsite-example.com"));
        assert_eq!(
            out.unwrap().host.as_deref(),
            Some("internal.dev.example.myweb.com")
        );
    }

    #[test]
    fn it_should_rewrite_the_url_as_in_awss_url_example() {
        // "Transforms for listener rules": /dp/B09G3HRMW becomes
        // /product.php?id=B09G3HRMW (a directory structure to a query string).
        let t = url("^/dp/([A-Za-z0-9]+)/?$", "/product.php?id=$1");
        for path in ["/dp/B09G3HRMW", "/dp/B09G3HRMW/"] {
            let out = t.apply(path, None, Some("www.example.com")).unwrap();
            assert_eq!(
                out.url.as_deref(),
                Some("/product.php?id=B09G3HRMW"),
                "{path}"
            );
            assert_eq!(out.host, None);
        }
    }

    #[test]
    fn it_should_leave_a_request_that_does_not_match_unchanged() {
        let t = url("^/dp/([A-Za-z0-9]+)/?$", "/product.php?id=$1");
        let out = t.apply("/dp/B0-9", None, None).unwrap();
        assert_eq!(out, Rewritten::default());
        // The regex sees the query string too: `$` no longer ends the path.
        let out = t.apply("/dp/B09G3HRMW", Some("ref=x"), None).unwrap();
        assert_eq!(out.url, None);
    }

    #[test]
    fn it_should_replace_only_the_matched_part_and_keep_the_rest() {
        let t = url("/api/v1/", "/v2/");
        let out = t.apply("/x/api/v1/users", Some("a=1"), None).unwrap();
        assert_eq!(out.url.as_deref(), Some("/x/v2/users?a=1"));
        // The first match only.
        let out = t.apply("/api/v1/api/v1/", None, None).unwrap();
        assert_eq!(out.url.as_deref(), Some("/v2/api/v1/"));
    }

    #[test]
    fn it_should_rewrite_the_query_string() {
        let t = url(r"^/search\?q=(.*)$", "/find?query=$1&src=alb");
        let out = t.apply("/search", Some("q=cats"), None).unwrap();
        assert_eq!(out.url.as_deref(), Some("/find?query=cats&src=alb"));
    }

    #[test]
    fn replacements_take_numbered_named_and_braced_groups() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (r"^/(\w+)/(\w+)$", "/$2/$1", "/a/b", "/b/a"),
            (r"^/(?P<first>\w+)/(\w+)$", "/${first}-$2", "/a/b", "/a-b"),
            // Digits end a bare group number: `$1x` is group 1 then "x" (the
            // `regex` crate's own syntax would read a group named "1x").
            (r"^/(\w)(\w)$", "/$1x$2", "/ab", "/axb"),
            (r"^/(\w)(\w)$", "/${1}0$2", "/ab", "/a0b"),
            (r"^/(\w+)$", "/$$$1", "/a", "/$a"),
            (r"^/(a)?(b)$", "/[$1]$2", "/b", "/[]b"),
            (r"^/(\w+)$", "/$0!", "/ab", "//ab!"),
        ];
        for (regex, replace, input, want) in cases {
            let out = url(regex, replace).apply(input, None, None).unwrap();
            assert_eq!(
                out.url.as_deref(),
                Some(*want),
                "{regex} → {replace} on {input}"
            );
        }
    }

    #[test]
    fn it_should_refuse_replacements_that_name_missing_groups() {
        let err = |regex: &str, replace: &str| Rewrite::new(regex, replace, false).unwrap_err();
        assert_eq!(
            err("^/(a)$", "/$2"),
            RewriteError::Replace("replace refers to group 2 but the regex has 1 group(s)".into())
        );
        assert!(matches!(
            err("^/(a)$", "/${nope}"),
            RewriteError::Replace(_)
        ));
        assert!(matches!(err("^/(a)$", "/${1"), RewriteError::Replace(_)));
        assert!(matches!(err("^/(a)$", "/$x"), RewriteError::Replace(_)));
        assert!(matches!(err("(?=a)", "/"), RewriteError::Regex(_)));
        assert!(matches!(err(r"\p{L}", "/"), RewriteError::Regex(_)));
        assert!(matches!(
            err(&"a".repeat(MAX_REWRITE_LEN + 1), "/"),
            RewriteError::Regex(_)
        ));
        assert!(matches!(
            err("a", &"b".repeat(MAX_REWRITE_LEN + 1)),
            RewriteError::Replace(_)
        ));
    }

    #[test]
    fn a_rewrite_that_cannot_be_sent_fails() {
        let t = url("^/(.*)$", "$1");
        assert_eq!(
            t.apply("/no-slash", None, None),
            Err(TransformFailed::Url("no-slash".into()))
        );
        let t = url("^/(.*)$", "/a b/$1");
        assert!(t.apply("/x", None, None).is_err());
        let t = host("^(.*)$", "bad/host");
        assert_eq!(
            t.apply("/", None, Some("a.example.com")),
            Err(TransformFailed::Host("bad/host".into()))
        );
        let t = host("^.*$", "");
        assert!(t.apply("/", None, Some("a.example.com")).is_err());
    }

    #[test]
    fn host_rewrites_are_case_insensitive_and_see_the_port() {
        let t = host(r"^api\.example\.com:8080$", "internal:9000");
        let out = t.apply("/", None, Some("API.Example.com:8080")).unwrap();
        assert_eq!(out.host.as_deref(), Some("internal:9000"));
        assert_eq!(
            t.apply("/", None, Some("api.example.com")).unwrap().host,
            None
        );
        // No Host (HTTP/1.0): nothing to rewrite.
        assert_eq!(t.apply("/", None, None).unwrap(), Rewritten::default());
    }
}
