//! Request and response heads: parsed once with `httparse`, checked (RFC 9112 framing,
//! ALB's size limits, `Host`, the desync classes), and turned into the bytes sent on,
//! copied line by line from what arrived, less the hop-by-hop lines, plus tether's own.

pub use crate::headers::is_hop_by_hop;
use crate::headers::{Header, Headers};
use crate::settings::DesyncMode;

/// ALB's limits: request line 16 KiB, one header line 16 KiB, all headers 64 KiB.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
pub const MAX_HEADER_LINE: usize = 16 * 1024;
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;
/// The largest request head: the line, the headers and the empty line.
pub const MAX_REQUEST_HEAD: usize = MAX_REQUEST_LINE + MAX_HEADERS_BYTES + 4;
/// ALB's limit on a target's response head (else 502).
pub const MAX_RESPONSE_HEAD: usize = 32 * 1024;
/// Header lines per head (each fits in the byte limits above).
pub const MAX_HEADERS: usize = 256;

/// Where a head ends in `buf` (just past its empty line), looking from `from`.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
        let lf = i + off;
        match buf.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if buf.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            Some(_) => {}
            None => return None,
        }
        i = lf + 1;
    }
    None
}

/// Whether a head that has not ended yet is already past the limits.
pub fn head_too_long(buf: &[u8], limit: usize) -> bool {
    if buf.len() > limit {
        return true;
    }
    // The request line alone.
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    line_end > MAX_REQUEST_LINE
}

/// Why a head is refused: its framing cannot be decided without doubt, or its
/// `Connection` lines are not ones tether forwards around (a 400 for a request, a
/// 502 for a response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("invalid content-length")]
    InvalidLength,
    #[error("conflicting content-length")]
    ConflictingLength,
    #[error("transfer-encoding must end with chunked")]
    ChunkedNotLast,
    #[error("transfer-encoding without a coding")]
    NoCoding,
    #[error("tab in transfer-encoding")]
    TabInTransferEncoding,
    #[error("transfer-encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("connection names a framing header")]
    ConnectionNamesFraming,
    #[error("too many connection options")]
    TooManyConnectionOptions,
}

/// How a message body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// What the engine does with a request the desync classifier flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Serve it, then close the client and target connections.
    PassThenClose,
    /// 400, and close.
    Reject,
}

/// ALB's desync action table ("Desync mitigation mode" in AWS's Application Load
/// Balancer user guide, https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#desync-mitigation-mode).
pub fn desync_verdict(mode: DesyncMode, tier: http_desync_guardian::RequestSafetyTier) -> Verdict {
    use http_desync_guardian::RequestSafetyTier as T;
    match (mode, tier) {
        (_, T::Compliant) => Verdict::Pass,
        (DesyncMode::Monitor, _) => Verdict::Pass,
        (DesyncMode::Defensive, T::Acceptable) => Verdict::Pass,
        (DesyncMode::Defensive, T::Ambiguous) => Verdict::PassThenClose,
        (DesyncMode::Defensive, T::Severe) => Verdict::Reject,
        (DesyncMode::Strictest, _) => Verdict::Reject,
    }
}

/// A header's value as a list of comma-separated tokens, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Most header names one head's `Connection` lines may list (beyond `close`,
/// `keep-alive` and `upgrade`). No client needs more, and the bound keeps the
/// hop-by-hop check of every line linear in the head's size.
pub const MAX_CONNECTION_OPTIONS: usize = 16;

/// The header names a head's `Connection` lines list: hop-by-hop, so never
/// forwarded. Collected once per head, in the same pass as its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Named<'a> {
    names: [&'a [u8]; MAX_CONNECTION_OPTIONS],
    len: usize,
}

impl<'a> Named<'a> {
    fn push(&mut self, name: &'a [u8]) -> Result<(), Malformed> {
        if self.names[..self.len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
        {
            return Ok(());
        }
        let slot = self
            .names
            .get_mut(self.len)
            .ok_or(Malformed::TooManyConnectionOptions)?;
        *slot = name;
        self.len += 1;
        Ok(())
    }

    /// Whether `name` is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.names[..self.len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Whether `Connection` names no header.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Headers that decide a message's framing or routing: a `Connection` line may not
/// name them (removing them would change how a second parser frames the bytes).
fn is_framing_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// What a request's header lines say about its body, host and connection, found in
/// one pass over them (this runs on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestScan<'a> {
    pub framing: Framing,
    /// `Content-Length` lines to leave out: `Transfer-Encoding` wins.
    pub drop_length: bool,
    /// The length the `Content-Length` lines say (they agree). They are forwarded
    /// as one line with the plain number, however they came (a list, duplicates,
    /// trailing whitespace), so that no second parser reads them otherwise.
    pub content_length: Option<u64>,
    /// The `Host` value, and how many `Host` lines there were.
    pub host: Option<&'a [u8]>,
    pub hosts: usize,
    /// `Connection` options.
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade_option: bool,
    /// The other headers `Connection` names.
    pub named: Named<'a>,
    /// An `Upgrade` line whose one protocol is `websocket`: the only upgrade tether
    /// tunnels, as ALB. Any other (`h2c`) is dropped as hop-by-hop.
    pub upgrade_websocket: bool,
    /// `Expect: 100-continue`, and `Connection` does not name `Expect`.
    pub expect_continue: bool,
}

/// Scans a request's header lines (see [`RequestScan`]). `Err` when its body cannot
/// be framed without doubt, or a `Connection` line names a framing header or too many
/// (answered 400 in every desync mode: a body whose end is uncertain is never
/// forwarded).
pub fn scan_request<'a>(headers: Headers<'a>, http10: bool) -> Result<RequestScan<'a>, Malformed> {
    let mut scan = RequestScan {
        framing: Framing::None,
        drop_length: false,
        content_length: None,
        host: None,
        hosts: 0,
        close: false,
        keep_alive: false,
        upgrade_option: false,
        named: Named::default(),
        upgrade_websocket: false,
        expect_continue: false,
    };
    let mut upgrades = 0;
    let mut te_seen = false;
    let mut chunked_last = false;
    let mut length = None;
    for h in headers.iter() {
        let name = h.name;
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => {
                scan.hosts += 1;
                scan.host.get_or_insert(h.value);
            }
            6 if name.eq_ignore_ascii_case("expect") => {
                scan.expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            7 if name.eq_ignore_ascii_case("upgrade") => {
                upgrades += 1;
                scan.upgrade_websocket = h.value.trim_ascii().eq_ignore_ascii_case(b"websocket");
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        scan.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        scan.keep_alive = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        scan.upgrade_option = true;
                    } else if is_framing_header(t) {
                        return Err(Malformed::ConnectionNamesFraming);
                    } else {
                        scan.named.push(t)?;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => add_length(h.value, &mut length)?,
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                if h.value.contains(&b'\t') {
                    // llhttp refuses it; no reading of it is worth the doubt.
                    return Err(Malformed::TabInTransferEncoding);
                }
                for t in tokens(h.value) {
                    if chunked_last {
                        // Something after chunked: not the final coding.
                        return Err(Malformed::ChunkedNotLast);
                    }
                    te_seen = true;
                    chunked_last = t.eq_ignore_ascii_case(b"chunked");
                }
                if tokens(h.value).next().is_none() {
                    return Err(Malformed::NoCoding);
                }
            }
            _ => {}
        }
    }
    if te_seen {
        if http10 {
            return Err(Malformed::TransferEncodingInHttp10);
        }
        if !chunked_last {
            return Err(Malformed::ChunkedNotLast);
        }
        scan.framing = Framing::Chunked;
        scan.drop_length = length.is_some();
    } else if let Some(n) = length.filter(|n| *n > 0) {
        scan.framing = Framing::Length(n);
    }
    scan.content_length = length;
    // Two `Upgrade` lines are one list: not websocket alone.
    scan.upgrade_websocket &= upgrades == 1;
    scan.expect_continue &= !scan.named.contains("expect");
    Ok(scan)
}

/// The framing of a request's body and whether its `Content-Length` lines are left
/// out ([`scan_request`]'s part of it).
pub fn request_framing(headers: Headers<'_>, http10: bool) -> Result<(Framing, bool), Malformed> {
    scan_request(headers, http10).map(|s| (s.framing, s.drop_length))
}

/// The `Content-Length` of a message: every value (and list member) must be the
/// same decimal number.
pub fn content_length(headers: Headers<'_>) -> Result<Option<u64>, Malformed> {
    let mut length = None;
    for v in headers.get_all("content-length") {
        add_length(v, &mut length)?;
    }
    Ok(length)
}

/// Adds one `Content-Length` value (a list of decimal numbers) to what earlier lines
/// said: all must agree.
fn add_length(value: &[u8], length: &mut Option<u64>) -> Result<(), Malformed> {
    for t in value.split(|b| *b == b',').map(|t| t.trim_ascii()) {
        if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
            return Err(Malformed::InvalidLength);
        }
        let n = t.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return Err(Malformed::ConflictingLength);
        }
        *length = Some(n);
    }
    Ok(())
}

/// What a response's header lines say about its body and connection, found in one
/// pass over them (this runs on every response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseScan<'a> {
    pub framing: Framing,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive` (HTTP/1.0 targets).
    pub keep_alive: bool,
    /// A `Transfer-Encoding` line (its `Content-Length` is not forwarded).
    pub transfer_encoding: bool,
    /// A transfer coding other than `chunked` (`gzip, chunked`): the body is that
    /// coding's bytes, which only an HTTP/1 client can be told of.
    pub other_codings: bool,
    /// The length the `Content-Length` lines agree on (none when they do not, or
    /// beside a `Transfer-Encoding`): forwarded as one plain line.
    pub length: Option<u64>,
    /// A `Content-Length` line beside the `Transfer-Encoding`: the target frames its
    /// responses in a way a reader could take two ways, and its connection is not
    /// reused (RFC 9112 §6.3).
    pub both_lengths: bool,
    /// The other headers `Connection` names (never a framing header: such tokens
    /// are ignored in a response, whose framing is decided by its own lines).
    pub named: Named<'a>,
    /// `Upgrade: websocket`, alone.
    pub upgrade_websocket: bool,
}

/// Scans a response's header lines (see [`ResponseScan`]); `Err` when its
/// `Content-Length` is invalid or `Connection` lists too many names.
pub fn scan_response<'a>(
    status: u16,
    head_request: bool,
    headers: Headers<'a>,
) -> Result<ResponseScan<'a>, Malformed> {
    let mut scan = ResponseScan {
        framing: Framing::None,
        close: false,
        keep_alive: false,
        transfer_encoding: false,
        other_codings: false,
        length: None,
        both_lengths: false,
        named: Named::default(),
        upgrade_websocket: false,
    };
    let mut upgrades = 0;
    let mut length_lines = false;
    let mut chunked_last = false;
    let mut length: Option<u64> = None;
    // Only an error when the body's framing depends on it.
    let mut length_error = None;
    for h in headers.iter() {
        let name = h.name;
        match name.len() {
            10 if name.eq_ignore_ascii_case("connection") => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        scan.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        scan.keep_alive = true;
                    } else if !t.eq_ignore_ascii_case(b"upgrade") && !is_framing_header(t) {
                        scan.named.push(t)?;
                    }
                }
            }
            7 if name.eq_ignore_ascii_case("upgrade") => {
                upgrades += 1;
                scan.upgrade_websocket = h.value.trim_ascii().eq_ignore_ascii_case(b"websocket");
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                for t in tokens(h.value) {
                    scan.transfer_encoding = true;
                    chunked_last = t.eq_ignore_ascii_case(b"chunked");
                    scan.other_codings |= !chunked_last;
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                length_lines = true;
                if let Err(e) = add_length(h.value, &mut length) {
                    length_error = Some(e);
                }
            }
            _ => {}
        }
    }
    scan.framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if scan.transfer_encoding {
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(e) = length_error {
        return Err(e);
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    scan.upgrade_websocket &= upgrades == 1;
    scan.both_lengths = scan.transfer_encoding && length_lines;
    if !scan.transfer_encoding && length_error.is_none() {
        scan.length = length;
    }
    Ok(scan)
}

/// The `http_desync_guardian` class of a request that `httparse` parsed: the
/// classifier runs on the parsed lines (its documented fast path for a parser that
/// is not lenient), and the one leniency `httparse` has, bare LF line ends, is found
/// here and classed Acceptable, as the classifier's raw mode does. What else its raw
/// mode finds (obs-fold, missing colons, partial lines) `httparse` refuses outright.
///
/// Returns the tier, and for a request that is not compliant the access log's
/// `classification` and `classification_reason` in ALB's names.
pub fn desync_class(
    head: &[u8],
    method: &str,
    target: &str,
    http10: bool,
    headers: Headers<'_>,
) -> (
    http_desync_guardian::RequestSafetyTier,
    Option<(&'static str, &'static str)>,
) {
    use http_desync_guardian::request_analyzer::{HttpHeader, HttpRequestData};
    use http_desync_guardian::RequestSafetyTier as T;
    let mut request = HttpRequestData {
        method: method.as_bytes(),
        version: if http10 { b"HTTP/1.0" } else { b"HTTP/1.1" },
        uri: target.as_bytes(),
        headers: headers
            .iter()
            .map(|h| HttpHeader::new(h.name.as_bytes(), h.value))
            .collect(),
    };
    let analysis = request.analyze_parsed_request();
    if analysis.tier < T::Acceptable && has_bare_lf(head) {
        return (
            T::Acceptable,
            Some(("Acceptable", "NonCrLfLineTermination")),
        );
    }
    let class = tier_name(analysis.tier).map(|tier| (tier, reason_name(analysis.reason)));
    (analysis.tier, class)
}

/// A classification reason's name, as ALB's access log writes it.
fn reason_name(reason: http_desync_guardian::ClassificationReason) -> &'static str {
    use http_desync_guardian::ClassificationReason as R;
    match reason {
        R::Compliant => "Compliant",
        R::EmptyHeader => "EmptyHeader",
        R::SuspiciousHeader => "SuspiciousHeader",
        R::NonCompliantHeader => "NonCompliantHeader",
        R::BadHeader => "BadHeader",
        R::AmbiguousUri => "AmbiguousUri",
        R::SpaceInUri => "SpaceInUri",
        R::BadUri => "BadUri",
        R::NonCompliantVersion => "NonCompliantVersion",
        R::BadVersion => "BadVersion",
        R::GetHeadZeroContentLength => "GetHeadZeroContentLength",
        R::UndefinedContentLengthSemantics => "UndefinedContentLengthSemantics",
        R::MultipleContentLength => "MultipleContentLength",
        R::DuplicateContentLength => "DuplicateContentLength",
        R::BadContentLength => "BadContentLength",
        R::UndefinedTransferEncodingSemantics => "UndefinedTransferEncodingSemantics",
        R::MultipleTransferEncodingChunked => "MultipleTransferEncodingChunked",
        R::BadTransferEncoding => "BadTransferEncoding",
        R::BothTeClPresent => "BothTeClPresent",
        R::BadMethod => "BadMethod",
        R::NonCrLfLineTermination => "NonCrLfLineTermination",
        R::MultilineHeader => "MultilineHeader",
        R::PartialHeaderLine => "PartialHeaderLine",
        R::MissingLastEmptyLine => "MissingLastEmptyLine",
        R::MissingHeaderColon => "MissingHeaderColon",
        R::MissingUri => "MissingUri",
    }
}

/// A non-compliant tier's name, as ALB's access log writes it.
fn tier_name(tier: http_desync_guardian::RequestSafetyTier) -> Option<&'static str> {
    use http_desync_guardian::RequestSafetyTier as T;
    match tier {
        T::Compliant => None,
        T::Acceptable => Some("Acceptable"),
        T::Ambiguous => Some("Ambiguous"),
        T::Severe => Some("Severe"),
    }
}

/// Whether a head ends a line with LF alone.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// Whether tether takes `method`: the methods Node's parser (llhttp) knows, which
/// the Socket.IO and other Node targets behind tether parse with. A method outside
/// them is answered 400 by tether, as it would be by such a target, rather than
/// routed to one that refuses it.
pub fn known_method(method: &str) -> bool {
    const METHODS: [&str; 34] = [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "PATCH",
        "COPY",
        "LOCK",
        "MKCOL",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "SEARCH",
        "UNLOCK",
        "BIND",
        "REBIND",
        "UNBIND",
        "ACL",
        "REPORT",
        "MKACTIVITY",
        "CHECKOUT",
        "MERGE",
        "M-SEARCH",
        "NOTIFY",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PURGE",
        "MKCALENDAR",
        "LINK",
        "UNLINK",
        "SOURCE",
    ];
    METHODS.contains(&method)
}

/// Copies header line `h` of `head` to `out` as the sender wrote it (from its name
/// through its value's end, trailing spaces included), ended with CRLF whatever
/// ended it in `head`: a bare LF is never forwarded.
pub fn copy_line(out: &mut Vec<u8>, head: &[u8], h: &Header<'_>) {
    let base = head.as_ptr() as usize;
    let start = (h.name.as_ptr() as usize).saturating_sub(base);
    let value_end = if h.value.is_empty() {
        start + h.name.len()
    } else {
        (h.value.as_ptr() as usize).saturating_sub(base) + h.value.len()
    };
    let from = value_end.min(head.len());
    let lf = memchr::memchr(b'\n', &head[from..]).map_or(head.len(), |i| from + i);
    if lf > from && head[lf - 1] == b'\r' {
        // CRLF, as nearly every line ends: copied with the line.
        out.extend_from_slice(&head[start.min(lf)..(lf + 1).min(head.len())]);
        return;
    }
    out.extend_from_slice(&head[start.min(lf)..lf]);
    out.extend_from_slice(b"\r\n");
}

/// Writes a header line.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Splits an absolute-form request target (`http://host[:port]/path?query`) into its
/// authority and origin-form rest (`/` when it has no path).
pub fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .or_else(|| {
            // Scheme names are case-insensitive.
            let (scheme, rest) = target.split_once("://")?;
            (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
                .then_some(rest)
        })?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((authority, if path.is_empty() { "/" } else { path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs<'a>(lines: &'a [(&'a str, &'a str)]) -> Vec<Header<'a>> {
        lines
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn it_should_frame_requests_as_rfc_9112_says() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(Framing, bool), ()>);
        let cases: &[Case<'_>] = &[
            (&[], Ok((Framing::None, false))),
            (&[("Content-Length", "5")], Ok((Framing::Length(5), false))),
            (
                &[("Content-Length", "5, 5")],
                Ok((Framing::Length(5), false)),
            ),
            (
                &[("Content-Length", "5"), ("content-length", "5")],
                Ok((Framing::Length(5), false)),
            ),
            (&[("Content-Length", "5"), ("content-length", "6")], Err(())),
            (&[("Content-Length", "+5")], Err(())),
            (&[("Content-Length", "")], Err(())),
            (&[("Content-Length", "99999999999999999999")], Err(())),
            (
                &[("Transfer-Encoding", "chunked")],
                Ok((Framing::Chunked, false)),
            ),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                Ok((Framing::Chunked, false)),
            ),
            (&[("Transfer-Encoding", "chunked, gzip")], Err(())),
            (&[("Transfer-Encoding", "gzip")], Err(())),
            (&[("Transfer-Encoding", "xchunked")], Err(())),
            (
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(()),
            ),
            (
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
                Ok((Framing::Chunked, true)),
            ),
        ];
        for (lines, want) in cases {
            let h = hdrs(lines);
            let got = request_framing(Headers(&h), false).map_err(|_| ());
            assert_eq!(&got, want, "{lines:?}");
        }
        let h = hdrs(&[("Transfer-Encoding", "chunked")]);
        assert!(
            request_framing(Headers(&h), true).is_err(),
            "TE in HTTP/1.0"
        );
    }

    #[test]
    fn it_should_frame_responses_as_rfc_9112_says() {
        let framing = |status, head, lines: &[(&str, &str)]| {
            let h = hdrs(lines);
            scan_response(status, head, Headers(&h)).map(|s| s.framing)
        };
        let cl: &[(&str, &str)] = &[("Content-Length", "5")];
        let te: &[(&str, &str)] = &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")];
        let gz: &[(&str, &str)] = &[("Transfer-Encoding", "gzip")];
        let two: &[(&str, &str)] = &[("Content-Length", "5"), ("Content-Length", "6")];
        assert_eq!(framing(200, false, &[]), Ok(Framing::Close));
        assert_eq!(framing(200, false, cl), Ok(Framing::Length(5)));
        assert_eq!(
            framing(
                404,
                false,
                &[("content-length", "5, 5"), ("Connection", "close")]
            ),
            Ok(Framing::Length(5))
        );
        assert_eq!(framing(200, true, cl), Ok(Framing::None));
        for status in [100, 101, 204, 304] {
            assert_eq!(framing(status, false, cl), Ok(Framing::None));
            // No body: a bad length there is not an error.
            assert_eq!(framing(status, false, two), Ok(Framing::None));
        }
        assert_eq!(framing(200, true, two), Ok(Framing::None));
        assert!(framing(200, false, two).is_err());
        assert!(framing(200, false, &[("Content-Length", "+5")]).is_err());
        assert_eq!(framing(200, false, te), Ok(Framing::Chunked));
        let h = hdrs(te);
        assert!(scan_response(200, false, Headers(&h)).unwrap().both_lengths);
        let h = hdrs(cl);
        assert!(!scan_response(200, false, Headers(&h)).unwrap().both_lengths);
        assert_eq!(
            framing(
                200,
                false,
                &[
                    ("Transfer-Encoding", "gzip, chunked"),
                    ("Content-Length", "x")
                ]
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(framing(200, false, gz), Ok(Framing::Close));
    }

    #[test]
    fn it_should_scan_a_requests_host_connection_and_expect_in_one_pass() {
        let h = hdrs(&[
            ("Host", "a.example"),
            ("Connection", "Upgrade, X-Hop"),
            ("upgrade", "websocket"),
            ("Expect", " 100-Continue "),
            ("host", "b.example"),
        ]);
        let scan = scan_request(Headers(&h), false).unwrap();
        assert_eq!((scan.host, scan.hosts), (Some(&b"a.example"[..]), 2));
        assert!(scan.upgrade_websocket && scan.upgrade_option && scan.expect_continue);
        assert!(scan.named.contains("x-hop") && !scan.named.contains("upgrade"));
        assert!(!scan.close && !scan.keep_alive);
        let h = hdrs(&[("Connection", "close"), ("Expect", "something")]);
        let scan = scan_request(Headers(&h), true).unwrap();
        assert!(scan.close && !scan.expect_continue && scan.named.is_empty());
        assert!(!scan.upgrade_websocket);
        assert_eq!((scan.host, scan.hosts), (None, 0));
    }

    #[test]
    fn it_should_scan_connection_options_in_the_same_pass() {
        let h = hdrs(&[
            ("Connection", "keep-alive, X-Foo"),
            ("Transfer-Encoding", "chunked"),
        ]);
        let scan = scan_response(200, false, Headers(&h)).unwrap();
        assert!(scan.keep_alive && scan.named.contains("X-FOO"));
        assert!(scan.transfer_encoding && !scan.close);
        let h = hdrs(&[("connection", "Close, upgrade")]);
        let scan = scan_response(200, false, Headers(&h)).unwrap();
        assert!(scan.close && !scan.keep_alive && scan.named.is_empty() && !scan.transfer_encoding);
    }

    #[test]
    fn it_should_class_parsed_requests_as_the_raw_classifier_does() {
        use http_desync_guardian::request_analyzer::HttpRequestData;
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET /?a b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            let mut lines = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut lines);
            let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
                continue;
            };
            let (method, target, http10) = (req.method.unwrap(), req.path.unwrap(), req.version == Some(0));
            let (ours, _) = desync_class(head, method, target, http10, Headers(req.headers));
            let raw = HttpRequestData::analyze_raw_request(head).tier;
            assert_eq!(ours, raw, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn it_should_find_head_ends_and_split_absolute_targets() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(
            absolute_form("http://example.com:8080/a?b"),
            Some(("example.com:8080", "/a?b"))
        );
        assert_eq!(
            absolute_form("HTTP://example.com"),
            Some(("example.com", "/"))
        );
        assert_eq!(
            absolute_form("http://example.com?q"),
            Some(("example.com", "?q"))
        );
        assert_eq!(absolute_form("/a"), None);
        assert_eq!(absolute_form("http://u@h/"), None);
    }

    #[test]
    fn it_should_copy_raw_header_lines() {
        let head = b"GET / HTTP/1.1\r\nHost:x\r\nX-A:  b c \r\n\r\n";
        let mut lines = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut lines);
        assert!(req.parse(head).unwrap().is_complete());
        let copied = |h| {
            let mut out = Vec::new();
            copy_line(&mut out, head, h);
            out
        };
        assert_eq!(copied(&req.headers[0]), b"Host:x\r\n");
        assert_eq!(copied(&req.headers[1]), b"X-A:  b c \r\n");
        let head = b"GET / HTTP/1.1\nHost: x\nX-B: y  \n\n";
        let mut lines = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut lines);
        assert!(req.parse(head).unwrap().is_complete());
        let mut out = Vec::new();
        copy_line(&mut out, head, &req.headers[1]);
        assert_eq!(out, b"X-B: y  \r\n", "a bare LF is forwarded as CRLF");
    }

    #[test]
    fn it_should_refuse_a_connection_line_that_names_a_framing_header() {
        for named in [
            "Content-Length",
            "transfer-encoding",
            "close, Host",
            "keep-alive,CONTENT-LENGTH",
        ] {
            let lines = [
                ("Host", "t"),
                ("Connection", named),
                ("Content-Length", "3"),
            ];
            let h = hdrs(&lines);
            assert!(scan_request(Headers(&h), false).is_err(), "{named}");
        }
        // In a response such a name is ignored: the lines stay and frame the body.
        let h = hdrs(&[("Connection", "Content-Length"), ("Content-Length", "3")]);
        let scan = scan_response(200, false, Headers(&h)).unwrap();
        assert_eq!(scan.framing, Framing::Length(3));
        assert!(scan.named.is_empty());
    }

    #[test]
    fn it_should_bound_connection_options_and_stay_linear() {
        let many: String = (0..MAX_CONNECTION_OPTIONS + 1)
            .map(|i| format!("x-{i},"))
            .collect();
        let lines = [("Host", "t"), ("Connection", many.as_str())];
        let h = hdrs(&lines);
        assert!(scan_request(Headers(&h), false).is_err());
        assert!(scan_response(200, false, Headers(&h)).is_err());
        // The same name many times is one option.
        let same = "x-a, ".repeat(12_000);
        let lines = [("Host", "t"), ("Connection", same.as_str())];
        let h = hdrs(&lines);
        let scan = scan_request(Headers(&h), false).unwrap();
        assert!(scan.named.contains("X-A"));
    }

    #[test]
    fn it_should_tunnel_websocket_upgrades_only() {
        let upgrade = |lines: &[(&str, &str)]| {
            let h = hdrs(lines);
            scan_request(Headers(&h), false).unwrap().upgrade_websocket
        };
        assert!(upgrade(&[("Upgrade", "WebSocket")]));
        assert!(!upgrade(&[("Upgrade", "h2c")]));
        assert!(!upgrade(&[("Upgrade", "h2c, websocket")]));
        assert!(!upgrade(&[("Upgrade", "websocket"), ("Upgrade", "h2c")]));
        assert!(is_hop_by_hop("HTTP2-Settings"));
    }

    #[test]
    fn it_should_not_wait_for_100_continue_when_expect_is_hop_by_hop() {
        let h = hdrs(&[
            ("Host", "t"),
            ("Connection", "Expect"),
            ("Expect", "100-continue"),
        ]);
        let scan = scan_request(Headers(&h), false).unwrap();
        assert!(!scan.expect_continue && scan.named.contains("expect"));
    }

    #[test]
    fn it_should_refuse_a_transfer_encoding_without_a_coding() {
        for value in ["", " ", ",", " , ,"] {
            let lines = [("Host", "t"), ("Transfer-Encoding", value)];
            let h = hdrs(&lines);
            assert!(scan_request(Headers(&h), false).is_err(), "{value:?}");
        }
    }
}
