//! A strict parser of ALB access log lines, written from the field list of "Access
//! log entries" in AWS's ALB user guide, apart from tether's writer, so that tests
//! can hold tether's lines to ALB's format.
//!
//! Strict: exactly the 33 fields AWS lists, each quoted or not as AWS writes it, each
//! typed; `-` is a missing value (`None`). Inside quotes `\"`, `\\` and `\xHH` are
//! read as escapes; in an unquoted field `\xHH` is.
//!
//! Also included by `src/access_log.rs`'s unit tests, so it uses std only.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fields of a line, in AWS's order.
pub const FIELDS: usize = 33;

/// One access log line, typed. `None` is ALB's `-` (or `-1` for a processing time).
#[derive(Debug, Clone, PartialEq)]
pub struct AlbLine {
    /// `http`, `https`, `h2`, `grpcs`, `ws` or `wss`.
    pub kind: String,
    pub time: SystemTime,
    pub elb: String,
    pub client: SocketAddr,
    pub target: Option<SocketAddr>,
    pub request_processing_time: Option<Duration>,
    pub target_processing_time: Option<Duration>,
    pub response_processing_time: Option<Duration>,
    pub elb_status_code: Option<u16>,
    pub target_status_code: Option<u16>,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// `None` for ALB's `"- - - "` (a request that could not be parsed).
    pub request: Option<RequestLine>,
    pub user_agent: Option<String>,
    pub ssl_cipher: Option<String>,
    pub ssl_protocol: Option<String>,
    pub target_group_arn: Option<String>,
    pub trace_id: Option<String>,
    pub domain_name: Option<String>,
    pub chosen_cert_arn: Option<String>,
    /// 1–50000 for a rule, 0 for the default action, -1 for an error in rule
    /// evaluation.
    pub matched_rule_priority: Option<i32>,
    pub request_creation_time: SystemTime,
    /// Empty for `-`.
    pub actions_executed: Vec<String>,
    pub redirect_url: Option<String>,
    pub error_reason: Option<String>,
    /// Empty for `-`.
    pub target_port_list: Vec<SocketAddr>,
    /// Empty for `-`; `None` for a `-` in the list.
    pub target_status_code_list: Vec<Option<u16>>,
    pub classification: Option<String>,
    pub classification_reason: Option<String>,
    pub conn_trace_id: Option<String>,
    pub transformed_host: Option<String>,
    pub transformed_uri: Option<String>,
    pub request_transform_status: Option<String>,
}

/// `METHOD protocol://host:port/uri HTTP/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    /// As written: `https://www.example.com:443/path?query`.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// From the first `/` after the authority (empty when there is none).
    pub path: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

const KINDS: &[&str] = &["http", "https", "h2", "grpcs", "ws", "wss"];
const ACTIONS: &[&str] = &[
    "waf",
    "waf-failed",
    "authenticate",
    "redirect",
    "fixed-response",
    "forward",
];
const CLASSIFICATIONS: &[&str] = &["Acceptable", "Ambiguous", "Severe"];
const VERSIONS: &[&str] = &["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];
const TLS_PROTOCOLS: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// Which fields AWS writes in double quotes (by position).
const QUOTED: [bool; FIELDS] = {
    let mut q = [false; FIELDS];
    // "request" "user_agent"
    q[12] = true;
    q[13] = true;
    // "trace_id" "domain_name" "chosen_cert_arn"
    q[17] = true;
    q[18] = true;
    q[19] = true;
    // "actions_executed" … "classification_reason"
    let mut i = 22;
    while i <= 28 {
        q[i] = true;
        i += 1;
    }
    // "transformed_host" "transformed_uri" "request_transform_status"
    q[30] = true;
    q[31] = true;
    q[32] = true;
    q
};

const NAMES: [&str; FIELDS] = [
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
];

/// A field as it was written: its unescaped text and whether it was quoted.
struct Token {
    text: String,
    quoted: bool,
}

/// Parses one line (a trailing `\n` is allowed).
pub fn parse(line: &str) -> Result<AlbLine, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let tokens = tokenize(line)?;
    if tokens.len() != FIELDS {
        return Err(format!("{} fields, want {FIELDS}: {line:?}", tokens.len()));
    }
    for (i, t) in tokens.iter().enumerate() {
        if t.quoted != QUOTED[i] {
            let how = if QUOTED[i] { "quoted" } else { "unquoted" };
            return Err(format!("{} must be {how}: {:?}", NAMES[i], t.text));
        }
        if t.text.is_empty() {
            return Err(format!("{} is empty (a missing value is -)", NAMES[i]));
        }
    }
    let f = |i: usize| tokens[i].text.as_str();
    let field = |i: usize, e: String| format!("{}: {e}", NAMES[i]);

    let kind = f(0);
    if !KINDS.contains(&kind) {
        return Err(field(0, format!("unknown type {kind:?}")));
    }
    let tls = matches!(kind, "https" | "h2" | "grpcs" | "wss");
    let time = timestamp(f(1)).map_err(|e| field(1, e))?;
    let elb = f(2);
    if elb == "-" {
        return Err(field(2, "missing".into()));
    }
    let client: SocketAddr = f(3)
        .parse()
        .map_err(|_| field(3, format!("not IP:port: {:?}", f(3))))?;
    let target = optional(f(4), |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("not IP:port: {s:?}"))
    })
    .map_err(|e| field(4, e))?;
    let request_processing_time = processing_time(f(5)).map_err(|e| field(5, e))?;
    let target_processing_time = processing_time(f(6)).map_err(|e| field(6, e))?;
    let response_processing_time = processing_time(f(7)).map_err(|e| field(7, e))?;
    let elb_status_code = optional(f(8), status).map_err(|e| field(8, e))?;
    let target_status_code = optional(f(9), status).map_err(|e| field(9, e))?;
    let received_bytes = f(10)
        .parse::<u64>()
        .map_err(|_| field(10, format!("not a byte count: {:?}", f(10))))?;
    let sent_bytes = f(11)
        .parse::<u64>()
        .map_err(|_| field(11, format!("not a byte count: {:?}", f(11))))?;
    let request = request_line(f(12)).map_err(|e| field(12, e))?;
    let user_agent = text(f(13));
    let ssl_cipher = optional(f(14), |s| {
        if s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            Ok(s.to_string())
        } else {
            Err(format!("not a cipher name: {s:?}"))
        }
    })
    .map_err(|e| field(14, e))?;
    let ssl_protocol = optional(f(15), |s| {
        if TLS_PROTOCOLS.contains(&s) {
            Ok(s.to_string())
        } else {
            Err(format!("not a TLS protocol: {s:?}"))
        }
    })
    .map_err(|e| field(15, e))?;
    if tls != ssl_cipher.is_some() || tls != ssl_protocol.is_some() {
        return Err(format!(
            "ssl_cipher and ssl_protocol are set on TLS types and only on them: type {kind}, {:?} {:?}",
            f(14),
            f(15)
        ));
    }
    let target_group_arn = optional(f(16), |s| {
        if s.starts_with("arn:") && s.contains(":targetgroup/") {
            Ok(s.to_string())
        } else {
            Err(format!("not a target group ARN: {s:?}"))
        }
    })
    .map_err(|e| field(16, e))?;
    let trace_id = text(f(17));
    let domain_name = text(f(18));
    let chosen_cert_arn = text(f(19));
    let matched_rule_priority = optional(f(20), |s| match s.parse::<i32>() {
        Ok(p) if (-1..=50_000).contains(&p) => Ok(p),
        _ => Err(format!("not a priority (-1 to 50000): {s:?}")),
    })
    .map_err(|e| field(20, e))?;
    let request_creation_time = timestamp(f(21)).map_err(|e| field(21, e))?;
    if request_creation_time > time {
        return Err(format!(
            "request_creation_time {} is after time {}",
            f(21),
            f(1)
        ));
    }
    let actions_executed = match f(22) {
        "-" => Vec::new(),
        s => s
            .split(',')
            .map(|a| {
                if ACTIONS.contains(&a) {
                    Ok(a.to_string())
                } else {
                    Err(field(22, format!("unknown action {a:?}")))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let redirect_url = text(f(23));
    if redirect_url.is_some() != actions_executed.iter().any(|a| a == "redirect") {
        return Err(format!(
            "redirect_url {:?} goes with a redirect action and only with one: {:?}",
            f(23),
            f(22)
        ));
    }
    let error_reason = optional(f(24), |s| {
        if s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(s.to_string())
        } else {
            Err(format!("not a reason code: {s:?}"))
        }
    })
    .map_err(|e| field(24, e))?;
    let target_port_list = list(f(25), |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("not IP:port: {s:?}"))
    })
    .map_err(|e| field(25, e))?;
    if target_port_list.last() != target.as_ref() {
        return Err(format!(
            "target:port_list {:?} must end with target:port {:?}",
            f(25),
            f(4)
        ));
    }
    let target_status_code_list = list(f(26), |s| optional(s, status)).map_err(|e| field(26, e))?;
    if let Some(code) = target_status_code {
        if target_status_code_list.last() != Some(&Some(code)) {
            return Err(format!(
                "target_status_code_list {:?} must end with target_status_code {code}",
                f(26)
            ));
        }
    }
    let classification = optional(f(27), |s| {
        if CLASSIFICATIONS.contains(&s) {
            Ok(s.to_string())
        } else {
            Err(format!("unknown classification {s:?}"))
        }
    })
    .map_err(|e| field(27, e))?;
    let classification_reason = optional(f(28), word).map_err(|e| field(28, e))?;
    if classification.is_some() != classification_reason.is_some() {
        return Err("classification and classification_reason go together".into());
    }
    let conn_trace_id = optional(f(29), |s| match s.strip_prefix("TID_") {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.to_string())
        }
        _ => Err(format!("not TID_<hex>: {s:?}")),
    })
    .map_err(|e| field(29, e))?;
    let transformed_host = text(f(30));
    let transformed_uri = text(f(31));
    let request_transform_status = optional(f(32), word).map_err(|e| field(32, e))?;

    Ok(AlbLine {
        kind: kind.to_string(),
        time,
        elb: elb.to_string(),
        client,
        target,
        request_processing_time,
        target_processing_time,
        response_processing_time,
        elb_status_code,
        target_status_code,
        received_bytes,
        sent_bytes,
        request,
        user_agent,
        ssl_cipher,
        ssl_protocol,
        target_group_arn,
        trace_id,
        domain_name,
        chosen_cert_arn,
        matched_rule_priority,
        request_creation_time,
        actions_executed,
        redirect_url,
        error_reason,
        target_port_list,
        target_status_code_list,
        classification,
        classification_reason,
        conn_trace_id,
        transformed_host,
        transformed_uri,
        request_transform_status,
    })
}

/// Splits on single spaces; a field that starts with `"` runs to the next unescaped
/// `"`, which must end the field.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut text = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed quote in field {}", tokens.len() + 1)),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => text.push('"'),
                        Some('\\') => text.push('\\'),
                        Some('x') => text.push(hex_escape(&mut chars)?),
                        other => return Err(format!("unknown escape \\{other:?} in quotes")),
                    },
                    Some(c) if c.is_control() => {
                        return Err(format!("raw control character {c:?} in quotes"))
                    }
                    Some(c) => text.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                match c {
                    ' ' => break,
                    '"' => {
                        return Err(format!(
                            "a quote inside unquoted field {}",
                            tokens.len() + 1
                        ))
                    }
                    '\\' => {
                        chars.next();
                        if chars.next() != Some('x') {
                            return Err("only \\xHH escapes outside quotes".into());
                        }
                        text.push(hex_escape(&mut chars)?);
                        continue;
                    }
                    c if c.is_control() => return Err(format!("raw control character {c:?}")),
                    c => text.push(c),
                }
                chars.next();
            }
        }
        tokens.push(Token { text, quoted });
        match chars.next() {
            None => return Ok(tokens),
            Some(' ') if chars.peek().is_some_and(|&c| c != ' ') => {}
            Some(' ') => return Err("two spaces, or a trailing space, between fields".into()),
            Some(c) => {
                return Err(format!(
                    "{c:?} right after field {}: fields are separated by one space",
                    tokens.len()
                ))
            }
        }
    }
}

fn hex_escape(chars: &mut impl Iterator<Item = char>) -> Result<char, String> {
    let hi = chars.next().and_then(|c| c.to_digit(16));
    let lo = chars.next().and_then(|c| c.to_digit(16));
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(char::from((hi * 16 + lo) as u8)),
        _ => Err("\\x needs two hex digits".into()),
    }
}

/// `-` as `None`, else `parse`d.
fn optional<T>(s: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if s == "-" {
        Ok(None)
    } else {
        parse(s).map(Some)
    }
}

/// Free text; `-` as `None`.
fn text(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_string())
}

fn word(s: &str) -> Result<String, String> {
    if s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(s.to_string())
    } else {
        Err(format!("not a code word: {s:?}"))
    }
}

/// A space-separated list; `-` alone is the empty list.
fn list<T>(s: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    if s == "-" {
        return Ok(Vec::new());
    }
    s.split(' ').map(item).collect()
}

/// A three-digit status code, 100–599.
fn status(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(code) if s.len() == 3 && (100..=599).contains(&code) => Ok(code),
        _ => Err(format!("not a status code: {s:?}")),
    }
}

/// `-1`, or seconds with ALB's millisecond precision: `0.086`.
fn processing_time(s: &str) -> Result<Option<Duration>, String> {
    if s == "-1" {
        return Ok(None);
    }
    let bad = || format!("not -1 or seconds with 3 decimals: {s:?}");
    let (whole, frac) = s.split_once('.').ok_or_else(bad)?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || frac.len() != 3 {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let millis: u64 = frac.parse().map_err(|_| bad())?;
    Ok(Some(
        Duration::from_secs(whole) + Duration::from_millis(millis),
    ))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC, six fractional digits.
fn timestamp(s: &str) -> Result<SystemTime, String> {
    let b = s.as_bytes();
    let bad = || format!("not YYYY-MM-DDTHH:MM:SS.ffffffZ: {s:?}");
    let shape = b.len() == 27
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return Err(bad());
    }
    let n = |range: std::ops::Range<usize>| -> i64 { s[range].parse().unwrap_or(-1) };
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let (hour, minute, second, micros) = (n(11..13), n(14..16), n(17..19), n(20..26));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if year < 1970 || day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    // Days before this date since 1970-01-01.
    let mut days = 0;
    for y in 1970..year {
        days += if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) {
            366
        } else {
            365
        };
    }
    for m in 1..month {
        days += match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if leap => 29,
            _ => 28,
        };
    }
    days += day - 1;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_micros(micros as u64))
}

/// `"- - - "` (ALB's line for a request it could not parse) as `None`, or
/// `METHOD protocol://host:port/uri HTTP/version`.
fn request_line(s: &str) -> Result<Option<RequestLine>, String> {
    if s == "- - - " {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split(' ').collect();
    let [method, url, version] = parts[..] else {
        return Err(format!("not METHOD URL VERSION: {s:?}"));
    };
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(tchar) {
        return Err(format!("not a method: {method:?}"));
    }
    if !VERSIONS.contains(&version) {
        return Err(format!("not an HTTP version: {version:?}"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not protocol://host:port/uri: {url:?}"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("protocol is http or https: {url:?}"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let port = authority
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => {}
        _ => return Err(format!("no host:port in {url:?}")),
    }
    Ok(Some(RequestLine {
        method: method.to_string(),
        url: url.to_string(),
        scheme: scheme.to_string(),
        authority: authority.to_string(),
        path: path.to_string(),
        version: version.to_string(),
    }))
}
