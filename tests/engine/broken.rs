//! Random broken heads are refused with a 4xx and never forwarded.

use super::valid::{field_value, method, origin, proptest_config, runtime, token_name};
use super::*;

// === Random broken heads ===

/// One way to break a valid request head.
#[derive(Debug, Clone)]
enum Mangle {
    /// `byte` inside token `token` (method, target, version) of the request line,
    /// between two of its bytes (so never a lenient reading's extra whitespace
    /// around a separator).
    LineByte { token: usize, at: usize, byte: u8 },
    /// `byte` in the name of header `header` (`at` from its start up to the colon).
    NameByte { header: usize, at: usize, byte: u8 },
    /// Whitespace between a header's name and its colon.
    SpaceBeforeColon { header: usize, ws: &'static str },
    /// A header line without its colon.
    MissingColon { header: usize },
    /// A request target longer than 16 KiB (ALB's request line limit).
    LongTarget { len: usize },
    /// A header line longer than 16 KiB (ALB's header line limit).
    LongValue { header: usize, len: usize },
}

#[derive(Debug, Clone)]
struct BrokenRequest {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    host_at: usize,
    mangle: Mangle,
}

/// Control bytes (NUL and bare CR among them; not LF or HTAB, which would make
/// another valid message or a lenient reading's separator).
fn control() -> impl Strategy<Value = u8> {
    prop_oneof![
        0u8..=8,
        0x0bu8..=0x0c,
        Just(b'\r'),
        0x0eu8..=0x1f,
        Just(0x7fu8),
        Just(0u8),
    ]
}

fn mangle() -> impl Strategy<Value = Mangle> {
    let name_byte = prop_oneof![
        3 => control(),
        1 => Just(b' '),
        1 => Just(b'\t'),
        1 => Just(b'('),
        1 => Just(b'"'),
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![
        (0usize..3, any::<usize>(), control()).prop_map(|(token, at, byte)| Mangle::LineByte {
            token,
            at,
            byte
        }),
        (0usize..3, any::<usize>(), 0x80u8..=0xff).prop_map(|(t, at, byte)| {
            // High bytes only where they are never valid: method and version.
            Mangle::LineByte {
                token: if t == 1 { 0 } else { t },
                at,
                byte,
            }
        }),
        (any::<usize>(), any::<usize>(), name_byte)
            .prop_map(|(header, at, byte)| Mangle::NameByte { header, at, byte }),
        (any::<usize>(), prop::sample::select(vec![" ", "  ", "\t"]))
            .prop_map(|(header, ws)| Mangle::SpaceBeforeColon { header, ws }),
        any::<usize>().prop_map(|header| Mangle::MissingColon { header }),
        (16 * 1024 + 1..20 * 1024usize).prop_map(|len| Mangle::LongTarget { len }),
        (any::<usize>(), 16 * 1024 + 1..20 * 1024usize)
            .prop_map(|(header, len)| Mangle::LongValue { header, len }),
    ]
}

fn broken_request() -> impl Strategy<Value = BrokenRequest> {
    (
        method(),
        origin(),
        prop::collection::vec((token_name(), field_value()), 0..6),
        any::<usize>(),
        mangle(),
    )
        .prop_map(|(method, target, headers, host_at, mangle)| BrokenRequest {
            method,
            target,
            headers,
            host_at,
            mangle,
        })
}

impl BrokenRequest {
    fn bytes(&self) -> Vec<u8> {
        let mut line: Vec<Vec<u8>> = vec![
            self.method.as_bytes().to_vec(),
            self.target.as_bytes().to_vec(),
            b"HTTP/1.1".to_vec(),
        ];
        // Each header: name, separator, value.
        let mut headers: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.clone().into_bytes(),
                    b":".to_vec(),
                    v.clone().into_bytes(),
                )
            })
            .collect();
        let at = self.host_at % (headers.len() + 1);
        headers.insert(
            at,
            (b"Host".to_vec(), b": ".to_vec(), b"t.example".to_vec()),
        );
        let n = headers.len();
        match self.mangle {
            Mangle::LineByte { token, at, byte } => {
                let t = &mut line[token];
                // Strictly inside the token: between two of its bytes.
                let at = 1 + at % (t.len() - 1);
                t.insert(at, byte);
            }
            Mangle::NameByte { header, at, byte } => {
                let name = &mut headers[header % n].0;
                let mut at = at % (name.len() + 1);
                if matches!(byte, b' ' | b'\t') && at == 0 {
                    // Leading whitespace would be an obs-fold line, which a server
                    // may also unfold: keep to the unambiguous cases.
                    at = 1;
                }
                name.insert(at, byte);
            }
            Mangle::SpaceBeforeColon { header, ws } => {
                headers[header % n].0.extend_from_slice(ws.as_bytes());
            }
            Mangle::MissingColon { header } => {
                headers[header % n].1 = b" ".to_vec();
            }
            Mangle::LongTarget { len } => {
                let t = &mut line[1];
                t.resize(len.max(t.len()), b'a');
                // Keep a query, if any, at the end: still a valid target shape.
            }
            Mangle::LongValue { header, len } => {
                headers[header % n].2.resize(len, b'v');
            }
        }
        let mut out = line.join(&b' ');
        out.extend_from_slice(b"\r\n");
        for (name, sep, value) in headers {
            out.extend_from_slice(&name);
            out.extend_from_slice(&sep);
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Sends a broken head through tether: a 4xx or a close, and nothing to the target.
async fn check_refused(
    target: &RecordingTarget,
    lb: SocketAddr,
    req: &BrokenRequest,
) -> Result<(), String> {
    let bytes = req.bytes();
    let mut s = TcpStream::connect(lb)
        .await
        .map_err(|e| format!("connect to tether: {e}"))?;
    // tether may answer and close before the whole head is in: write errors are fine.
    let _ = s.write_all(&bytes).await;
    let outcome = read_response(&mut s, RESPONSE_WAIT).await;
    let refused = match &outcome {
        Ok(r) => (400..500).contains(&r.status),
        Err(NoResp::Closed(p) | NoResp::Reset(p)) => p.is_empty(),
        Err(_) => false,
    };
    let raw = target.all_bytes();
    if !raw.is_empty() {
        return Err(format!(
            "bytes reached the target: {}\nrequest: {}",
            show(&raw),
            show(&bytes)
        ));
    }
    if !refused {
        let got = match outcome {
            Ok(r) => format!("{} {}", show(r.head.start_line.as_bytes()), show(&r.body)),
            Err(e) => e.to_string(),
        };
        return Err(format!(
            "not refused with a 4xx or a close: {got}\nrequest: {}",
            show(&bytes)
        ));
    }
    Ok(())
}

#[test]
fn it_should_refuse_random_invalid_heads_with_a_4xx_and_never_forward_them() {
    let rt = runtime();
    let (target, lb) = recorded_lb(&rt, "");
    let addr = lb.addr();
    let mut runner = TestRunner::new(proptest_config(64));
    let result = runner.run(&broken_request(), |req| {
        rt.block_on(check_refused(&target, addr, &req))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        // Anything forwarded late would show now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            target.all_bytes().is_empty(),
            "a refused head reached the target late: {}",
            show(&target.all_bytes())
        );
        // Still serving.
        let r = exchange_once(addr, b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("a normal GET after the broken heads");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let seen = target.take_requests();
        assert_eq!(seen.len(), 1, "one request forwarded");
        assert!(
            seen[0].starts_with(b"GET /after HTTP/1.1\r\n"),
            "{}",
            show(&seen[0])
        );
    });
    drop(lb);
    drop(target);
}
