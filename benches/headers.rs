//! Per-request head work of the HTTP/1 engine, as it runs: parse a browser's request
//! head, check it (framing, Host, desync class), decide it in the exchange core (rules,
//! target pick) and write the head sent to the target (the client's own lines, less
//! hop-by-hop ones, plus ALB's forwarded headers); and the Set-Cookie values of a
//! sticky response.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use tether::config::Config;
use tether::exchange::ListenerInfo;
use tether::http1::{prepare, ClientConn};
use tether::listener::ListenerApp;
use tether::routing::Routing;
use tether::sticky::{expires, request_cookie_or, set_cookie, CookieFlags, AWSALB, AWSALBCORS};

// The allocator the tether binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[[listener]]
port = 8080
default_action = { forward = "app" }

[target_group.app]
targets = ["127.0.0.1:9001", "127.0.0.1:9002"]
health_check = { enabled = false }
"#;

/// A browser's request: 9 headers, a cookie with the AWSALB pin among others.
fn browser_request(extra: &str) -> Vec<u8> {
    format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\
         host: app.example.com\r\n\
         user-agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
         accept: */*\r\n\
         accept-language: en-GB,en;q=0.5\r\n\
         accept-encoding: gzip, deflate, br, zstd\r\n\
         referer: https://app.example.com/\r\n\
         origin: https://app.example.com\r\n\
         connection: keep-alive\r\n\
         cookie: _ga=GA1.1.12345; AWSALB=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij; theme=dark\r\n\
         {extra}\r\n"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let client = ClientConn {
        ip: Some("203.0.113.7".parse::<IpAddr>().expect("ip")),
        port: 51234,
        tls: None,
        server_name: None,
        client_cert: None,
    };
    let config = Config::parse(CONFIG, std::path::Path::new("bench.toml")).expect("config");
    let routing = Arc::new(ArcSwap::from_pointee(Routing::build(
        &config,
        None,
        &Default::default(),
    )));
    let app = ListenerApp {
        listener: ListenerInfo::new(0, 8080, tether::settings::Protocol::Http),
        routing,
        client_header_timeout: std::time::Duration::from_secs(60),
        desync: Default::default(),
        tls13_only: false,
    };
    let mut g = c.benchmark_group("headers");

    let plain = browser_request("");
    g.bench_function(
        "prepare a browser request (parse, check, decide, forwarded head)",
        |b| b.iter(|| prepare(&app, black_box(&plain), &client).map(|p| p.upstream_head.len())),
    );
    let behind = browser_request(
        "x-forwarded-for: 198.51.100.1, 10.0.0.1\r\n\
         x-amzn-trace-id: Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1\r\n",
    );
    g.bench_function("prepare a request behind a proxy (XFF and trace in)", |b| {
        b.iter(|| prepare(&app, black_box(&behind), &client).map(|p| p.upstream_head.len()))
    });
    // Issue 20: Connection options are collected once per head, so a head whose
    // Connection line lists one option 2,700 times (near ALB's 16 KiB line limit)
    // beside 70 other lines costs in proportion to its size, not lines × options.
    let many_lines: String = (0..60).map(|i| format!("x-extra-{i}: v\r\n")).collect();
    let options = browser_request(&format!(
        "{many_lines}x-hop: 1\r\nconnection: {}x-hop\r\n",
        "x-hop,".repeat(2_700)
    ));
    g.bench_function("prepare a request with 2,700 Connection options", |b| {
        b.iter(|| prepare(&app, black_box(&options), &client).map(|p| p.upstream_head.len()))
    });
    g.bench_function("desync classification alone", |b| {
        b.iter(|| {
            http_desync_guardian::request_analyzer::HttpRequestData::analyze_raw_request(black_box(
                &plain,
            ))
            .tier
        })
    });
    g.bench_function("httparse alone", |b| {
        b.iter(|| {
            let mut lines = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut lines);
            black_box(req.parse(black_box(&plain)).is_ok())
        })
    });
    let cookie: &[u8] = b"_ga=GA1.1.12345; AWSALB=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij; theme=dark";
    g.bench_function("find AWSALB in the Cookie header", |b| {
        b.iter(|| {
            black_box(request_cookie_or(
                [black_box(cookie)].into_iter(),
                AWSALB,
                AWSALBCORS,
            ))
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
