//! One run: an attack on one target, a victim, the checks.

use super::*;

pub(crate) type Reply = (u16, Option<String>);

/// A run's problems by kind, the first word of each report line:
/// - `target-refused-head`: the target refused bytes tether sent before any request;
/// - `target-body-error`: the target found an error in a request tether forwarded;
/// - `body-length`: tether and the target took bodies of different lengths;
/// - `not-parsed`: tether forwarded a request the target did not parse as such;
/// - `smuggled`: the target parsed a request tether did not route there;
/// - `admin-bypass`: a request for `/admin*` reached a target;
/// - `answers-differ`: the client's answers are not the target's, in its order;
/// - `victim`: a request on a fresh connection did not get its own answer;
/// - `victim-log`, `log-unparseable`, `wrong-target`, `tether-5xx`, `hang`, and
///   `h2-downgrade` (see [`H2_CASES`]).
pub(crate) type Problems = Vec<(&'static str, String)>;

/// What an attack did.
pub(crate) struct Attack {
    /// Its client address (its log lines).
    pub(crate) client: SocketAddr,
    /// What was sent, for the report.
    pub(crate) sent: String,
    /// Status and, for a recorder's answer, its body, in the order they came.
    pub(crate) replies: Vec<Reply>,
    /// The body lengths tether had: worked out from the bytes sent and each line's
    /// received bytes (HTTP/1.1), or the DATA sent (HTTP/2).
    pub(crate) bytes: Result<Vec<u8>, u64>,
    pub(crate) problems: Problems,
    /// HTTP/2: what else the target's record must show (see [`H2_CASES`]).
    pub(crate) expect: String,
}

pub(crate) async fn run<F: Future<Output = Attack>>(
    env: &Env,
    t: usize,
    name: &str,
    attack: F,
) -> Option<String> {
    let target = &env.targets[t];
    let from = target.reset().await;
    let mut a = attack.await;
    let vpath = format!("/victim/{}", env.victims.fetch_add(1, SeqCst));
    let (vclient, vgot) = match a.bytes {
        Ok(_) => victim_h1(env.http[t], t, &vpath).await,
        Err(_) => {
            let victim = http::Request::get(format!("https://a.test{vpath}"));
            let victim = victim.body(Full::default()).expect("victim");
            let (client, got) = h2_send(env, t, true, victim).await;
            pause(20).await;
            (client, got.map(|(s, n)| (s, n.unwrap_or_default())))
        }
    };
    let [lines, victim_lines] = env.lines(a.client, vclient).await;
    let seen = target.seen(from, &vpath).await;
    let p = &mut a.problems;
    let mut routed = Vec::new();
    for line in lines {
        match line {
            Ok(r) => routed.push(r),
            Err(l) => p.push(("log-unparseable", l)),
        }
    }
    // Each line's received bytes follow the previous line's in what was sent.
    let mut offset = 0usize;
    for r in &mut routed {
        r.len = match &a.bytes {
            Ok(bytes) => {
                let end = (offset + r.received as usize).min(bytes.len());
                let seg = &bytes[offset.min(end)..end];
                offset = end;
                body_len(seg)
            }
            Err(data) => *data,
        };
    }
    let reqs: Vec<&Seen> = seen.iter().filter_map(Rec::req).collect();
    for r in &seen {
        if let Rec::Err(e) = r {
            p.push(("target-refused-head", e.clone()));
        }
    }
    for r in routed
        .iter()
        .filter(|r| r.target.is_none() && r.elb >= Some(500))
    {
        p.push(("tether-5xx", r.to_string()));
    }
    // tether's forwarded requests and the target's, paired in order.
    let mut next = 0;
    for r in routed.iter().filter(|r| r.target.is_some()) {
        if r.target != Some(target.addr) {
            p.push(("wrong-target", format!("{r} to {:?}", r.target)));
        }
        match reqs.get(next) {
            Some(s) if s.method == r.method && no_fragment(&s.path) == r.path => {
                next += 1;
                match s.err.as_deref() {
                    Some(e) if !is_abort(e) => p.push(("target-body-error", s.to_string())),
                    // Cut off: a prefix of the body, on a connection then closed.
                    Some(_) if s.len <= r.len => {}
                    _ if s.len == r.len => {}
                    _ => p.push(("body-length", format!("tether {r}, target {s}"))),
                }
            }
            // Refused by tether after choosing a target, before sending anything.
            _ if !r.answered && r.elb.is_some_and(|s| (400..500).contains(&s)) => {}
            _ => p.push(("not-parsed", r.to_string())),
        }
    }
    for s in reqs.iter().skip(next) {
        p.push(("smuggled", s.to_string()));
    }
    for s in reqs.iter().filter(|s| s.path.starts_with("/admin")) {
        p.push(("admin-bypass", s.to_string()));
    }
    for s in &reqs {
        let (host, cookies) = (s.host.as_deref(), &s.cookies);
        let bad = match a.expect.as_str() {
            "crumbs" => cookies != &["a=1; b=2"],
            "userinfo" => host.is_some_and(|h| h.contains('@')),
            "host" => host != Some("a.test"),
            _ => false,
        };
        if bad {
            p.push(("h2-downgrade", format!("Host {host:?}, Cookie {cookies:?}")));
        }
    }
    // What the recorder answered (a HEAD's answer has no body) and what the client got.
    let answer = |s: &&Seen| match s.method.as_str() {
        "HEAD" => String::new(),
        m => format!("{m} {} {}", s.path, s.len),
    };
    let whole = reqs.iter().filter(|s| s.err.is_none());
    let answers: Vec<String> = whole.map(answer).collect();
    let got: Vec<String> = a.replies.iter().filter_map(|r| r.1.clone()).collect();
    if got != answers {
        p.push(("answers-differ", format!("got {got:?}, gave {answers:?}")));
    }
    if !matches!(&vgot, Ok((200, body)) if *body == format!("GET {vpath} 0")) {
        p.push(("victim", format!("{vpath} got {vgot:?}")));
    }
    let vl: Vec<_> = victim_lines.iter().flatten().collect();
    if vl.len() != 1 || vl[0].path != vpath {
        p.push(("victim-log", format!("{victim_lines:?}")));
    }
    let (problems, tether) = (
        list(p.iter().map(|(k, d)| format!("{k}: {d}"))),
        list(&routed),
    );
    let replies = list(
        a.replies
            .iter()
            .map(|(s, n)| format!("{s} {}", n.as_deref().unwrap_or("-"))),
    );
    let (name, target, sent) = (format!("[{}] {name}", target.name), list(&seen), a.sent);
    let report = format!(
        "{name}: {problems}\n    sent:    {sent}\n    tether:  {tether}\n    \
         target:  {target}\n    replies: {replies}"
    );
    if env_is("TETHER_DIFF_TRACE") {
        eprintln!("{report}");
    }
    (!p.is_empty()).then_some(report)
}

pub(crate) fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    items.join(" | ")
}

pub(crate) fn esc(b: impl AsRef<[u8]>, max: usize) -> String {
    let s = b.as_ref().escape_ascii().to_string();
    if s.len() > max {
        format!("{}...", &s[..max])
    } else {
        s
    }
}

/// `\r \n \t \0 \\ \xNN` escapes, as the tables below write bytes.
pub(crate) fn unescape(s: &str) -> Vec<u8> {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let (byte, used) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'r')) => (b'\r', 2),
            (b'\\', Some(b'n')) => (b'\n', 2),
            (b'\\', Some(b't')) => (b'\t', 2),
            (b'\\', Some(b'0')) => (0, 2),
            (b'\\', Some(b'\\')) => (b'\\', 2),
            (b'\\', Some(b'x')) => (u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"), 4),
            (c, _) => (c, 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Where a head ends, as tether finds it: LF, then LF or CRLF.
pub(crate) fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| match (b[i], b.get(i + 1), b.get(i + 2)) {
        (b'\n', Some(b'\n'), _) => Some(i + 2),
        (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
        _ => None,
    })
}

/// A chunked body's data and the bytes it used, leniently, as far as it goes.
pub(crate) fn dechunk(mut b: &[u8]) -> (Vec<u8>, usize) {
    let (start, mut data) = (b.len(), Vec::new());
    while let Some(nl) = b.iter().position(|c| *c == b'\n') {
        let digits = b[..nl]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
            .min(15);
        let size = std::str::from_utf8(&b[..digits]).unwrap_or("0");
        let size = usize::from_str_radix(size, 16).unwrap_or(0);
        b = &b[nl + 1..];
        if size == 0 {
            // Trailer lines, up to the empty one.
            while let Some(nl) = b.iter().position(|c| *c == b'\n') {
                let empty = b[..nl].iter().all(|c| *c == b'\r');
                b = &b[nl + 1..];
                if empty {
                    break;
                }
            }
            break;
        }
        let take = size.min(b.len());
        data.extend_from_slice(&b[..take]);
        b = &b[take..];
        if take < size {
            break;
        }
        b = b
            .strip_prefix(b"\r\n")
            .or_else(|| b.strip_prefix(b"\n"))
            .unwrap_or(b);
    }
    (data, start - b.len())
}

/// The body length tether took for the request in `seg` (the bytes it logged as
/// received for it): chunked when the head has a Transfer-Encoding line (tether
/// refuses any other coding), else what came after the head.
pub(crate) fn body_len(seg: &[u8]) -> u64 {
    let Some(end) = head_end(seg) else { return 0 };
    let mut lines = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut lines);
    let parsed = req.parse(&seg[..end]).is_ok();
    match parsed
        && req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        true => dechunk(&seg[end..]).0.len() as u64,
        false => (seg.len() - end) as u64,
    }
}

/// The responses in what tether wrote: status, and a recorder's body.
pub(crate) fn responses(mut b: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        let Ok(httparse::Status::Complete(n)) = r.parse(b) else {
            out.push((0, Some(format!("unparseable: {}", esc(b, 80)))));
            break;
        };
        let status = r.code.unwrap_or(0);
        let get = |name: &str| r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        let named = get("x-recorder").is_some();
        let chunked = get("transfer-encoding").is_some_and(|h| h.value.ends_with(b"chunked"));
        let cl = get("content-length").and_then(|h| std::str::from_utf8(h.value).ok());
        let cl: Option<usize> = cl.and_then(|v| v.parse().ok());
        let rest = &b[n..];
        let (body, used) = match cl {
            _ if (100..200).contains(&status) => (Vec::new(), 0),
            _ if chunked => dechunk(rest),
            // A HEAD's answer has a length and no body.
            Some(cl) if cl > 0 && rest.starts_with(b"HTTP/1.") => (Vec::new(), 0),
            Some(cl) => (rest[..cl.min(rest.len())].to_vec(), cl.min(rest.len())),
            None => (rest.to_vec(), rest.len()),
        };
        if !(100..200).contains(&status) {
            out.push((
                status,
                named.then(|| String::from_utf8_lossy(&body).into_owned()),
            ));
        }
        b = &rest[used..];
    }
    out
}

pub(crate) async fn read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let hung = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .is_err();
    (out, hung)
}
