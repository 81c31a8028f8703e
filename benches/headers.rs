//! Per-request header work: the ALB rewrite of a forwarded request
//! (X-Forwarded-For/-Proto/-Port, X-Amzn-Trace-Id) on pingora's own `RequestHeader`,
//! exactly as the proxy runs it, and the Set-Cookie values of a sticky response.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use pingora::http::RequestHeader;
use tether::forwarded::rewrite_request;
use tether::sticky::{expires, request_cookie, set_cookie, CookieFlags, AWSALB, AWSALBCORS};

// The allocator the tether binary uses: header maps allocate and grow.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A browser's request: 9 headers, a cookie with the AWSALB pin among others.
fn browser_request(extra: &[(&'static str, &'static str)]) -> RequestHeader {
    let mut req =
        RequestHeader::build("GET", b"/socket.io/?EIO=4&transport=polling", None).expect("request");
    for (k, v) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "*/*"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/"),
        ("origin", "https://app.example.com"),
        ("connection", "keep-alive"),
        ("cookie", "_ga=GA1.1.12345; AWSALB=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij; theme=dark"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        req.append_header(k, v).expect("header");
    }
    req
}

fn bench(c: &mut Criterion) {
    let client: IpAddr = "203.0.113.7".parse().expect("ip");
    let proto = HeaderValue::from_static("https");
    let port = HeaderValue::from_static("443");
    let mut g = c.benchmark_group("headers");

    let plain = browser_request(&[]);
    g.bench_function("clone + rewrite request (no forwarded headers in)", |b| {
        b.iter(|| {
            let mut req = plain.clone();
            let _ = rewrite_request(black_box(&mut req), Some(client), &proto, &port);
            req
        })
    });
    let behind = browser_request(&[
        ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
        (
            "x-amzn-trace-id",
            "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1",
        ),
    ]);
    g.bench_function(
        "clone + rewrite request (behind a proxy: XFF and trace in)",
        |b| {
            b.iter(|| {
                let mut req = behind.clone();
                let _ = rewrite_request(black_box(&mut req), Some(client), &proto, &port);
                req
            })
        },
    );
    g.bench_function("clone request (subtract from the two above)", |b| {
        b.iter(|| plain.clone())
    });
    g.bench_function("find AWSALB in the Cookie header", |b| {
        b.iter(|| {
            let cookies = plain.headers.get_all(http::header::COOKIE);
            black_box(
                request_cookie(cookies.iter(), AWSALB)
                    .or_else(|| request_cookie(cookies.iter(), AWSALBCORS)),
            )
        })
    });
    let value =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij";
    g.bench_function("Set-Cookie values AWSALB + AWSALBCORS", |b| {
        b.iter(|| {
            let exp = expires(SystemTime::now());
            let flags = CookieFlags::default();
            let a = set_cookie(AWSALB, black_box(value), &exp, flags);
            let c = set_cookie(
                AWSALBCORS,
                black_box(value),
                &exp,
                CookieFlags {
                    cross_site: true,
                    ..flags
                },
            );
            black_box((a, c))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
