//! HTTP/1.1: the published smuggling classes.

use super::*;

/// A connection to tether from a loopback address of its own for each target and
/// role (attack, victim), so that each connection's log lines are its own: the
/// same port may serve connections from one address to two listeners at once.
pub(crate) async fn connect(addr: SocketAddr, t: usize, victim: bool) -> (TcpStream, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let source = [127, 0, 0, 1 + t as u8 + if victim { 2 } else { 0 }];
    socket.bind(SocketAddr::from((source, 0))).expect("bind");
    let s = socket.connect(addr).await.expect("connect to tether");
    let local = s.local_addr().expect("local");
    (s, local)
}

pub(crate) async fn victim_h1(
    addr: SocketAddr,
    t: usize,
    path: &str,
) -> (SocketAddr, Result<(u16, String), String>) {
    let (mut s, client) = connect(addr, t, true).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let (reply, hung) = read_all(&mut s).await;
    let got = match responses(&reply).first() {
        _ if hung => Err("no answer in 3 s".into()),
        Some((status, body)) => Ok((*status, body.clone().unwrap_or_default())),
        None => Err("nothing".into()),
    };
    (client, got)
}

/// Writes (20 ms apart), the client's FIN, and all tether answers until it closes.
pub(crate) async fn attack_h1(addr: SocketAddr, t: usize, writes: &[Vec<u8>]) -> Attack {
    let (mut s, client) = connect(addr, t, false).await;
    for (i, w) in writes.iter().enumerate() {
        if i > 0 {
            pause(20).await;
        }
        let _ = s.write_all(w).await;
    }
    let _ = s.shutdown().await;
    let (reply, hung) = read_all(&mut s).await;
    let mut problems = Problems::new();
    if hung {
        problems.push((
            "hang",
            "tether neither answered nor closed in 3 s after the FIN".into(),
        ));
    }
    let bytes = writes.concat();
    let (sent, replies) = (esc(&bytes, 400), responses(&reply));
    let expect = String::new();
    Attack {
        client,
        sent,
        replies,
        bytes: Ok(bytes),
        problems,
        expect,
    }
}

/// A case on both targets at once.
pub(crate) async fn both(env: &Env, name: &str, writes: &[Vec<u8>], failures: &mut Vec<String>) {
    let node = run(env, 0, name, attack_h1(env.http[0], 0, writes));
    let hyper = run(env, 1, name, attack_h1(env.http[1], 1, writes));
    let (a, b) = tokio::join!(node, hyper);
    failures.extend(a.into_iter().chain(b));
}

/// PortSwigger's classes and the issue's list: `name|bytes`, escaped as
/// [`unescape`] reads them; `{SPLIT}` splits writes, `{CL}` is the length of what
/// follows the head. Chunk sizes: ADMIN is 0x25 bytes, HALF 0x18.
pub(crate) const CORPUS: &str = r"
portswigger/cl.te|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HALF}
portswigger/te.cl|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n
portswigger/te.te-cow|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/te.te-space-colon|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/cl.0|POST /static/x.css HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
portswigger/connection-content-length|POST / HTTP/1.1\r\nHost: a.test\r\nConnection: Content-Length\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
portswigger/connection-transfer-encoding|POST / HTTP/1.1\r\nHost: a.test\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n25\r\n{ADMIN}\r\n0\r\n\r\n
portswigger/connection-content-length-plain-body|POST /g HTTP/1.1\r\nHost: a.test\r\nConnection: Content-Length\r\nContent-Length: {CL}\r\n\r\nabcdefghijklmnopqrstuvwxyzabcde
portswigger/connection-content-length-http10|DELETE /g HTTP/1.0\nConnection: keep-alive\r\nConnection: Content-Length\r\nContent-Length: 023\r\n\n000a\r\nabcdefghij\r\n0\r\n\r\n
portswigger/connection-host|GET /c HTTP/1.1\r\nHost: a.test\r\nConnection: Host\r\n\r\n
portswigger/connection-close-then-more|GET /c HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n{ADMIN}
h2c/upgrade-then-admin|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n{ADMIN}
h2c/upgrade-then-get|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\n\r\n
h2c/upgrade-without-connection|GET /h2c HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n
h2c/prior-knowledge|PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n
upgrade/websocket-then-get|GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/three|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/admin-in-the-middle|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\n{ADMIN}GET /p3 HTTP/1.1\r\nHost: a.test\r\n\r\n
pipelining/split-mid-head|GET /p1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /p2 HTTP/1.1\r\nHo{SPLIT}st: a.test\r\n\r\n
pipelining/split-mid-body|POST /p1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabcde{SPLIT}fghijGET /p2 HTTP/1.1\r\nHost: a.test\r\n\r\n
pool-poisoning/half-head-in-body|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{HALF}
pool-poisoning/half-head-after-body|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc{HALF}
pool-poisoning/half-head-in-chunk|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n18\r\n{HALF}\r\n0\r\n\r\n
pool-poisoning/half-head-after-chunks|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HALF}
chunk-ext/token|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nZ\r\n0\r\n\r\n
chunk-ext/quoted|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\x22b c\x22\r\nZ\r\n0\r\n\r\n
chunk-ext/space-before|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1 ;a\r\nZ\r\n0\r\n\r\n
chunk-ext/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n2a\r\n0\r\n\r\n{ADMIN}\r\n0\r\n\r\n
chunk-ext/bare-cr|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rZ\r\n0\r\n\r\n
chunk-ext/nul|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a\0b\r\nZ\r\n0\r\n\r\n
chunk-size/leading-space|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\nZ\r\n0\r\n\r\n
chunk-size/0x|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nZ\r\n0\r\n\r\n
chunk-size/plus|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nZ\r\n0\r\n\r\n
chunk-size/trailing-space|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nZ\r\n0\r\n\r\n
chunk-size/overflow|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nZ\r\n0\r\n\r\n
chunk-data/missing-crlf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ0\r\n\r\n
chunk-data/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\n0\r\n\r\n
chunk-data/longer-than-size|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZZ\r\n0\r\n\r\n{ADMIN}
bare-lf/head|GET /lf HTTP/1.1\nHost: a.test\n\n
bare-lf/one-header|GET /lf HTTP/1.1\r\nHost: a.test\nX: y\r\n\r\n
bare-lf/chunked-body|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\nZ\n0\n\n
bare-cr/head|GET /cr HTTP/1.1\rHost: a.test\r\n\r\n
trailers/valid|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX-T: 1\r\n\r\n
trailers/no-colon|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nbad trailer\r\n\r\n
trailers/content-length|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nContent-Length: 50\r\n\r\n
trailers/transfer-encoding|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n
trailers/bare-lf|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX: 1\n\r\n
trailers/folded|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX: 1\r\n 2\r\n\r\n
trailers/request-head|POST /te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{ADMIN}
te/empty-with-cl|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc
te/empty|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n\r\nabc
te/identity-chunked|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: identity, chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n
te/split-lines|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n
te/folded|POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n
te/http10|POST /old HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n
cl/plus|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +3\r\n\r\nabc
cl/list-equal|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3, 3\r\n\r\nabc
cl/list-differ|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3, 30\r\n\r\nabc
cl/duplicate-equal|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc
cl/duplicate-differ|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc
cl/leading-zeros|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 003\r\n\r\nabc
cl/hex|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0x3\r\n\r\nabc
cl/space-inside|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3 3\r\n\r\nabc
cl/negative|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -3\r\n\r\nabc
cl/huge|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999999999999999\r\n\r\nabc
cl/get-with-body|GET /g HTTP/1.1\r\nHost: a.test\r\nContent-Length: {CL}\r\n\r\n{ADMIN}
host/port-not-a-number|GET /h HTTP/1.1\r\nHost: a:x\r\n\r\n
host/missing|GET /h HTTP/1.1\r\n\r\n
host/duplicate|GET /h HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n
host/userinfo|GET /h HTTP/1.1\r\nHost: u@a.test\r\n\r\n
host/absolute-form-differs|GET http://b.test/abs HTTP/1.1\r\nHost: a.test\r\n\r\n
method/connect|CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n{ADMIN}
method/lowercase|get /m HTTP/1.1\r\nHost: a.test\r\n\r\n
expect/100-continue|POST /e HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc
request-line/space-in-target|GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n
request-line/http2-version|GET /v HTTP/2.0\r\nHost: a.test\r\n\r\n
request-line/nul|GET /a\0 HTTP/1.1\r\nHost: a.test\r\n\r\n
header/nul-in-value|GET /n HTTP/1.1\r\nHost: a.test\r\nX: a\0b\r\n\r\n
header/space-before-colon|POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length : 3\r\n\r\nabc
header/obs-fold|GET /f HTTP/1.1\r\nHost: a.test\r\nX: a\r\n b\r\n\r\n
";

/// The `smuggler` scanner's TE mutations (github.com/defparam/smuggler, configs/):
/// exhaustive.py's named ones (default.py's first four among them) and two more.
pub(crate) const SMUGGLER_NAMED: &str = r#"
nameprefix1| Transfer-Encoding: chunked
tabprefix1|Transfer-Encoding:\tchunked
tabprefix2|Transfer-Encoding\t:\tchunked
spacejoin1|Transfer Encoding: chunked
underjoin1|Transfer_Encoding: chunked
smashed|Transfer Encoding:chunked
space1|Transfer-Encoding : chunked
valueprefix1|Transfer-Encoding:  chunked
vertprefix1|Transfer-Encoding:\x0bchunked
commaCow|Transfer-Encoding: chunked, cow
cowComma|Transfer-Encoding: cow, chunked
contentEnc|Content-Encoding: chunked
linewrapped1|Transfer-Encoding:\n chunked
quoted|Transfer-Encoding: "chunked"
aposed|Transfer-Encoding: 'chunked'
lazygrep|Transfer-Encoding: chunk
sarcasm|TrAnSFer-EnCODinG: cHuNkeD
yelling|TRANSFER-ENCODING: CHUNKED
0dsuffix|Transfer-Encoding: chunked\r
tabsuffix|Transfer-Encoding: chunked\t
revdualchunk|Transfer-Encoding: cow\r\nTransfer-Encoding: chunked
0dspam|Transfer\r-Encoding: chunked
nested|Transfer-Encoding: cow chunked bar
spaceFF|Transfer-Encoding:\xffchunked
accentCH|Transfer-Encoding: ch\x96nked
accentTE|Transf\x82r-Encoding: chunked
x-rout|X:X\rTransfer-Encoding: chunked
x-nout|X:X\nTransfer-Encoding: chunked
chunked-identity|Transfer-Encoding: chunked, identity
duplicate|Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked
"#;

/// smuggler's byte patterns, `%` standing for the byte: default.py's (for 13 bytes),
/// and with `TETHER_DIFF_FULL=1` exhaustive.py's and doubles.py's (0x01-0x20, 0x7f-0xff).
pub(crate) const SMUGGLER_DEFAULT: &str = r"
midspace|Transfer-Encoding:%chunked
postspace|Transfer-Encoding%: chunked
prespace|%Transfer-Encoding: chunked
endspace|Transfer-Encoding: chunked%
xprespace|X: X%Transfer-Encoding: chunked
endspacex|Transfer-Encoding: chunked%X: X
rxprespace|X: X\r%Transfer-Encoding: chunked
xnprespace|X: X%\nTransfer-Encoding: chunked
endspacerx|Transfer-Encoding: chunked\r%X: X
endspacexn|Transfer-Encoding: chunked%\nX: X
";
pub(crate) const SMUGGLER_DOUBLES: &str = r"
XX-XX-..-..|%Transfer-Encoding%: chunked
XX-..-XX-..|%Transfer-Encoding:%chunked
XX-..-..-XX|%Transfer-Encoding: chunked%
..-XX-XX-..|Transfer-Encoding%:%chunked
..-XX-..-XX|Transfer-Encoding%: chunked%
..-..-XX-XX|Transfer-Encoding:%chunked%
";

/// `name|text` lines of a table.
pub(crate) fn table(t: &str) -> impl Iterator<Item = (&str, &str)> {
    t.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once('|').expect("name|text"))
}

/// A corpus entry's writes.
pub(crate) fn corpus_writes(text: &str) -> Vec<Vec<u8>> {
    let text = text.replace("{ADMIN}", &ADMIN.escape_default().to_string());
    let mut bytes = unescape(&text.replace("{HALF}", &HALF.escape_default().to_string()));
    if let Some(at) = bytes.windows(4).position(|w| w == b"{CL}") {
        let body = bytes.len() - head_end(&bytes).expect("a head");
        bytes.splice(at..at + 4, body.to_string().into_bytes());
    }
    let mut writes = Vec::new();
    while let Some(at) = bytes.windows(7).position(|w| w == b"{SPLIT}") {
        writes.push(bytes[..at].to_vec());
        bytes.drain(..at + 7);
    }
    writes.push(bytes);
    writes
}

/// smuggler's gadgets (bytes sent as bytes: smuggler sends those above 0x7f UTF-8
/// encoded), and its two probes of each: TE.CL (length 6 over `0\r\n\r\nX`) and CL.TE
/// (length 4 over `1\r\nZ\r\n0\r\n\r\n`).
pub(crate) fn smuggler_probes(full: bool) -> Vec<(String, Vec<u8>)> {
    let mut gadgets: Vec<(String, Vec<u8>)> = table(SMUGGLER_NAMED)
        .map(|(n, g)| (n.into(), unescape(g)))
        .collect();
    let few = [
        0x1u8, 0x4, 0x8, 0x9, 0xa, 0xb, 0xc, 0xd, 0x1f, 0x20, 0x7f, 0xa0, 0xff,
    ];
    let all: Vec<u8> = (0x1u8..0x21).chain(0x7f..=0xff).collect();
    let sweeps = [
        (SMUGGLER_DEFAULT, &few[..]),
        (SMUGGLER_DEFAULT, &all),
        (SMUGGLER_DOUBLES, &all),
    ];
    for (patterns, bytes) in sweeps.into_iter().take(if full { 3 } else { 1 }) {
        for ((name, pattern), c) in table(patterns).flat_map(|p| bytes.iter().map(move |c| (p, *c)))
        {
            let gadget = unescape(pattern)
                .into_iter()
                .map(|b| if b == b'%' { c } else { b });
            gadgets.push((format!("{name}-{c:02x}"), gadget.collect()));
        }
    }
    let mut names = std::collections::HashSet::new();
    gadgets.retain(|(n, _)| names.insert(n.clone()));
    let mut probes = Vec::new();
    for (i, (name, gadget)) in gadgets.iter().enumerate() {
        for (probe, cl, body) in [
            ("te.cl", 6, "0\r\n\r\nX"),
            ("cl.te", 4, "1\r\nZ\r\n0\r\n\r\n"),
        ] {
            let head = format!("POST /?cb={i} HTTP/1.1\r\n");
            let tail = format!(
                "\r\nHost: a.test\r\nUser-Agent: smuggler\r\nContent-type: application/\
                 x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: {cl}\r\n\r\n{body}"
            );
            let bytes = [head.as_bytes(), gadget, tail.as_bytes()].concat();
            probes.push((format!("smuggler/{probe}/{name}"), bytes));
        }
    }
    probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_published_smuggling_classes_should_reach_targets_as_tether_logged_them() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    let mut runs = 0;
    for (name, text) in table(CORPUS) {
        both(&env, name, &corpus_writes(text), &mut failures).await;
        runs += 2;
    }
    for (name, bytes) in smuggler_probes(env_is("TETHER_DIFF_FULL")) {
        both(&env, &name, &[bytes], &mut failures).await;
        runs += 2;
    }
    let n = failures.len();
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        failures.join("\n")
    );
}
