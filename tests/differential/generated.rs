//! Generated heads and bodies.

use super::*;

/// One of the `|`-separated choices (Rust escapes are read as usual).
fn pick(choices: &'static str) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(choices.split('|').collect::<Vec<_>>())
}

/// One request, valid or not: a request line, a Host, up to four more header lines
/// (a Content-Length in some form, a Transfer-Encoding in some form, or another),
/// line ends mostly CRLF, a raw or chunked body (with a mutation), and what follows.
fn gen_request() -> impl Strategy<Value = Vec<u8>> {
    let method = pick("GET|GET|POST|POST|PUT|HEAD|DELETE|OPTIONS|get|CONNECT|G\x01T");
    let path = pick("/|/g|/g?q=1|/admin|/admin/x|/Admin|//admin|/%61dmin|/g?x=/admin|http://a.test/g|*|/g#f|/g\x7f");
    let version = pick("HTTP/1.1|HTTP/1.1|HTTP/1.1|HTTP/1.0|HTTP/1.2|HTTP/2.0|HTTP/1.1 ");
    let eol = || pick("\r\n|\r\n|\r\n|\r\n|\r\n|\n|\r");
    let host = pick("a.test|a.test|a.test|a.test:80|a:x||a b|-");
    let te_name = pick("Transfer-Encoding|transfer-encoding| Transfer-Encoding|Transfer-Encoding |Transfer_Encoding|X: X\nTransfer-Encoding");
    let te_value = pick("chunked|chunked|Chunked| chunked|chunked |\tchunked|xchunked|chunked, identity|identity, chunked|gzip, chunked||chunked\x0b|\"chunked\"|chunked\r\n chunked");
    let length = pick("{n}|{n}|{m}|{l}|0|+{n}|{n}, {n}|{n}, {m}|0{n}| {n} |{n}x|");
    let other = pick("Connection: keep-alive|Connection: close|Connection: Content-Length|Connection: Transfer-Encoding|Connection: Host|Connection: Upgrade|Upgrade: h2c|Upgrade: websocket|Expect: 100-continue|X-A: a\x00b|X-C: a\r\n b|Cookie: a=1");
    let header = (0..3u8, length, te_name, te_value, other, eol());
    let body = (
        any::<bool>(),
        proptest::collection::vec(0..20usize, 0..3),
        0..13usize,
    );
    let trailing = pick("||||GET /admin HTTP/1.1\r\nX: |GET /p HTTP/1.1\r\nHost: a.test\r\n\r\n|GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n|\r\n|X");
    let headers = proptest::collection::vec(header, 0..5);
    let parts = (method, path, version, host, eol(), headers, body, trailing);
    parts.prop_map(
        |(method, path, version, host, eol, headers, (chunked, sizes, mutation), trailing)| {
            let mut body = String::new();
            let nl = if mutation == 6 { "\n" } else { "\r\n" };
            for (i, n) in sizes.iter().enumerate().filter(|_| chunked) {
                let data: String = (0..*n)
                    .map(|k| (b'a' + ((i + k) % 26) as u8) as char)
                    .collect();
                body += &match mutation {
                    1 => format!("{n:X};a=b{nl}{data}{nl}"),
                    2 => format!("{n:x};a\n{data}{nl}"),
                    3 => format!("000{n:x}{nl}{data}{nl}"),
                    4 => format!("0x{n:x}{nl}{data}{nl}"),
                    5 => format!("{n:x} {nl}{data}{nl}"),
                    _ => format!("{n:x}{nl}{data}{nl}"),
                };
            }
            if chunked {
                let last = [
                    "0\r\n\r\n",
                    "0\r\nX-T: 1\r\n\r\n",
                    "0\r\nContent-Length: 9\r\n\r\n",
                    "0\r\n",
                    "0\r\n\r\nX",
                    "0\n\n",
                ];
                body += last[match mutation {
                    7..=10 => mutation - 6,
                    6 => 5,
                    _ => 0,
                }];
                if mutation == 11 {
                    body.truncate(body.len().saturating_sub(3));
                }
            } else {
                body = (0..sizes.iter().sum::<usize>())
                    .map(|k| (b'a' + (k % 26) as u8) as char)
                    .collect();
            }
            let n = body.len();
            let mut out = format!("{method} {path} {version}{eol}");
            if host != "-" {
                out += &format!("Host: {host}{eol}");
            }
            for (kind, length, name, value, other, eol) in headers {
                let length = length
                    .replace("{n}", &n.to_string())
                    .replace("{m}", &(n + 1).to_string());
                let length = length.replace("{l}", &n.saturating_sub(1).to_string());
                out += &match kind {
                    0 => format!("Content-Length: {length}{eol}"),
                    1 => format!(
                        "{name}:{}{value}{eol}",
                        if value.is_empty() { "" } else { " " }
                    ),
                    _ => format!("{other}{eol}"),
                };
            }
            format!("{out}{eol}{body}{trailing}").into_bytes()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_heads_and_bodies_should_reach_targets_as_tether_logged_them() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = var("TETHER_DIFF_CASES").unwrap_or(3000);
    let rng = match var("TETHER_DIFF_SEED") {
        Some(seed) => TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &[seed.to_le_bytes(), [0; 8], [0; 8], [0; 8]].concat(),
        ),
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng);
    let strategy = proptest::collection::vec(gen_request(), 1..=2).prop_map(|r| r.concat());
    let env = Env::start().await;
    let mut failures = Vec::new();
    for i in 0..cases {
        let bytes = strategy.new_tree(&mut runner).expect("a case").current();
        both(&env, &format!("generated/{i}"), &[bytes], &mut failures).await;
    }
    // By the kind of the first problem, with a few of each: a to-do list.
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in &failures {
        kinds
            .entry(f.split(": ").nth(1).unwrap_or_default())
            .or_default()
            .push(f);
    }
    let shown = if env_is("TETHER_DIFF_VERBOSE") {
        usize::MAX
    } else {
        3
    };
    let kinds = kinds.iter().map(|(k, v)| {
        let some = v.iter().take(shown).copied().collect::<Vec<_>>().join("\n");
        format!("{} x {k}, e.g.:\n{some}", v.len())
    });
    let (n, runs) = (failures.len(), 2 * cases);
    assert!(
        n == 0,
        "{n} of {runs} runs failed:\n{}",
        kinds.collect::<Vec<_>>().join("\n\n")
    );
}
