//! Random valid requests reach the target byte for byte.

use super::*;

// === Random requests ===

/// A header name: a random token, in random case, none of [`RESERVED`].
pub(super) fn token_name() -> impl Strategy<Value = String> {
    "[0-9A-Za-z!#$%&'*+.^_`|~-]{1,16}".prop_filter("reserved header name", |n| {
        !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(n))
    })
}

/// A header value: visible ASCII and spaces (leading and trailing ones included).
pub(super) fn field_value() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

/// An origin-form target of unreserved characters, two bytes at least.
pub(super) fn origin() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9._~-]{1,12}(/[A-Za-z0-9._~-]{0,8}){0,3}(\\?[A-Za-z0-9=&%._-]{0,16})?"
}

pub(super) fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
}

/// `name` with the letters picked by `bits` in upper case, the others in lower.
fn recase(name: &str, bits: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if bits >> (i % 32) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    /// `;name[=value]…`
    ext: Option<String>,
    upper_hex: bool,
    leading_zeros: usize,
}

#[derive(Debug, Clone)]
enum BodySpec {
    None,
    Length(Vec<u8>),
    Chunked {
        chunks: Vec<Chunk>,
        last_ext: Option<String>,
        trailers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
struct ValidRequest {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    /// Where Host and the framing header go among the headers, and their case.
    host_at: usize,
    framing_at: usize,
    case_bits: u32,
    body: BodySpec,
}

fn chunk_ext() -> impl Strategy<Value = String> {
    "(;[a-z]{1,6}(=[a-z0-9]{1,6})?){1,2}"
}

fn body_spec() -> impl Strategy<Value = BodySpec> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..400),
        prop::option::of(chunk_ext()),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(data, ext, upper_hex, leading_zeros)| Chunk {
            data,
            ext,
            upper_hex,
            leading_zeros,
        });
    let chunked = (
        prop::collection::vec(chunk, 0..6),
        prop::option::of(chunk_ext()),
        prop::collection::vec((token_name(), field_value()), 0..3),
    )
        .prop_map(|(chunks, last_ext, trailers)| BodySpec::Chunked {
            chunks,
            last_ext,
            trailers,
        });
    prop_oneof![
        Just(BodySpec::None),
        prop::collection::vec(any::<u8>(), 0..1500).prop_map(BodySpec::Length),
        chunked,
    ]
}

fn valid_request() -> impl Strategy<Value = ValidRequest> {
    (
        method(),
        origin(),
        prop::collection::vec((token_name(), field_value()), 0..12),
        any::<usize>(),
        any::<usize>(),
        any::<u32>(),
        body_spec(),
    )
        .prop_map(
            |(method, target, headers, host_at, framing_at, case_bits, body)| ValidRequest {
                method,
                target,
                headers,
                host_at,
                framing_at,
                case_bits,
                body,
            },
        )
}

impl ValidRequest {
    fn bytes(&self) -> Vec<u8> {
        let mut headers = self.headers.clone();
        let at = self.host_at % (headers.len() + 1);
        headers.insert(
            at,
            (recase("host", self.case_bits), " t.example".to_string()),
        );
        let framing = match &self.body {
            BodySpec::None => None,
            BodySpec::Length(b) => Some((
                recase("content-length", self.case_bits.rotate_left(7)),
                format!(" {}", b.len()),
            )),
            BodySpec::Chunked { .. } => Some((
                recase("transfer-encoding", self.case_bits.rotate_left(13)),
                " chunked".to_string(),
            )),
        };
        if let Some(f) = framing {
            let at = self.framing_at % (headers.len() + 1);
            headers.insert(at, f);
        }
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (n, v) in &headers {
            out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        match &self.body {
            BodySpec::None => {}
            BodySpec::Length(b) => out.extend_from_slice(b),
            BodySpec::Chunked {
                chunks,
                last_ext,
                trailers,
            } => {
                for c in chunks {
                    let size = if c.upper_hex {
                        format!("{:X}", c.data.len())
                    } else {
                        format!("{:x}", c.data.len())
                    };
                    out.extend_from_slice("0".repeat(c.leading_zeros).as_bytes());
                    out.extend_from_slice(size.as_bytes());
                    out.extend_from_slice(c.ext.as_deref().unwrap_or("").as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&c.data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0");
                out.extend_from_slice(last_ext.as_deref().unwrap_or("").as_bytes());
                out.extend_from_slice(b"\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

/// A request as the target saw it less the lines tether adds, and those lines.
fn split_added(req: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
    let head = head_end(req).unwrap_or(req.len());
    let mut kept = Vec::with_capacity(req.len());
    let mut added = Vec::new();
    let mut first = true;
    // Lines of the head, each with its CRLF; the empty line stays.
    let mut rest = &req[..head];
    while !rest.is_empty() {
        let end = find(rest, b"\r\n").map_or(rest.len(), |i| i + 2);
        let line = &rest[..end];
        rest = &rest[end..];
        let text = String::from_utf8_lossy(line);
        let name = text.split(':').next().unwrap_or("").trim();
        if !first && ADDED.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            let value = text.split_once(':').map_or("", |(_, v)| v).trim();
            added.push((name.to_ascii_lowercase(), value.to_string()));
        } else {
            kept.extend_from_slice(line);
        }
        first = false;
    }
    kept.extend_from_slice(&req[head..]);
    (kept, added)
}

/// Sends one request straight to the target and once through tether, and compares
/// what the target received.
async fn check_forwarded(
    target: &RecordingTarget,
    lb: SocketAddr,
    req: &ValidRequest,
) -> Result<(), String> {
    let bytes = req.bytes();
    target.take_requests();
    let direct = exchange_once(target.addr, &bytes)
        .await
        .map_err(|e| format!("straight to the target: {e}"))?;
    if direct.status != 200 || direct.body != b"ok" {
        return Err(format!("the target itself answered {direct:?}"));
    }
    let mut seen = target.take_requests();
    if seen.len() != 1 || seen[0] != bytes {
        return Err(format!(
            "the recording target misread the request sent straight to it: {:?}",
            seen.iter().map(|r| show(r)).collect::<Vec<_>>()
        ));
    }
    let direct_bytes = seen.remove(0);

    let via = exchange_once(lb, &bytes)
        .await
        .map_err(|e| format!("through tether: {e}\nrequest: {}", show(&bytes)))?;
    if via.status != 200 || via.body != b"ok" {
        return Err(format!(
            "tether answered {} {} (body {}) to {}",
            via.status,
            show(via.head.start_line.as_bytes()),
            show(&via.body),
            show(&bytes)
        ));
    }
    let seen = target.take_requests();
    if seen.len() != 1 {
        return Err(format!(
            "the target got {} requests through tether for one: {:?}",
            seen.len(),
            seen.iter().map(|r| show(r)).collect::<Vec<_>>()
        ));
    }
    let (kept, added) = split_added(&seen[0]);
    let (want, _) = split_added(&direct_bytes);
    if kept != want {
        return Err(format!(
            "not byte-identical apart from the added lines\nsent:      {}\nforwarded: {}",
            show(&want),
            show(&seen[0])
        ));
    }
    let mut names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut expected = ADDED.to_vec();
    expected.sort_unstable();
    if names != expected {
        return Err(format!(
            "added lines {added:?}, expected one each of {ADDED:?}"
        ));
    }
    let value = |n: &str| {
        added
            .iter()
            .find(|(a, _)| a == n)
            .map_or("", |(_, v)| v.as_str())
    };
    let port = lb.port().to_string();
    if value("x-forwarded-for") != "127.0.0.1"
        || value("x-forwarded-proto") != "http"
        || value("x-forwarded-port") != port
        || !value("x-amzn-trace-id").starts_with("Root=1-")
    {
        return Err(format!("added lines with wrong values: {added:?}"));
    }
    Ok(())
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub(super) fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Each shrinking step is a network round trip (a few seconds when tether
        // hangs): bounded.
        max_shrink_iters: 256,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

#[test]
fn it_should_forward_random_valid_requests_byte_identical() {
    // proptest's closures are synchronous: one runtime of our own, one target and
    // one tether for every case.
    let rt = runtime();
    // The Host as the client wrote it: by default ALB adds the listener's port to it
    // (on a listener not on 80 or 443), which is not framing.
    let (target, lb) = recorded_lb(&rt, "preserve_host_header = true");
    let addr = lb.addr();
    let mut runner = TestRunner::new(proptest_config(64));
    let result = runner.run(&valid_request(), |req| {
        rt.block_on(check_forwarded(&target, addr, &req))
            .map_err(TestCaseError::fail)
    });
    drop(lb);
    drop(target);
    if let Err(e) = result {
        panic!("{e}");
    }
}
