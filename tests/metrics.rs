//! `GET /metrics`: after a known mix of requests, each of ALB's CloudWatch-named
//! counters and the `TargetResponseTime` histogram holds exactly what the mix made,
//! and the exposition passes `promtool check metrics`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{raw_exchange, request, require_tools, Backend, Client, TetherProc};

/// The mix of tests/common, with `web` sticky.
fn config(web: SocketAddr, dead: SocketAddr) -> String {
    common::mix_config(
        web,
        dead,
        "",
        "",
        r#"stickiness = { type = "lb_cookie", duration = "1h" }"#,
    )
}

/// One sample: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// The exposition's samples.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label k=v");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        out.push((name, labels, value));
    }
    out
}

/// The one sample of `name` whose labels include `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one sample of {name} with {labels:?}, found {found:?} in:\n{text}"
    );
    found[0]
}

async fn scrape(lb: &TetherProc) -> String {
    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    let reply = admin.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn it_should_count_a_known_mix_in_albs_names_and_pass_promtool() {
    require_tools(&["promtool"]);
    let web = Backend::start("web").await;
    let dead = common::refused_addr();
    let lb = TetherProc::start(&config(web.addr, dead)).await;
    let lb_label = ("load_balancer", "edge");
    let web_target = web.addr.to_string();
    let web_labels = [lb_label, ("target_group", "web"), ("target", &web_target)];

    // Connection 1, kept alive: 5 × 200 (the first without a pin: non-sticky), a
    // 404 from the target, a fixed response and a redirect.
    let mut client = Client::connect(lb.addr()).await;
    let first = client.get("/").await;
    assert_eq!(first.status, 200);
    let pin = first.cookie_pair("AWSALB").expect("a sticky cookie");
    for _ in 0..4 {
        let r = client.send(request("GET", "/", &[("cookie", &pin)])).await;
        assert_eq!(r.status, 200);
    }
    let r = client
        .send(request("GET", "/status?code=404", &[("cookie", &pin)]))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(client.get("/fixed").await.status, 200);
    assert_eq!(client.get("/old").await.status, 301);
    drop(client);

    // Connection 2: a 503 (no targets). Connection 3: a 502 (connect refused).
    common::mix_failures(lb.addr()).await;

    // Connection 4: bare LF line ends, which the desync classifier calls Acceptable
    // (passed in the default defensive mode, counted as non-compliant).
    let reply = raw_exchange(
        lb.addr(),
        format!("GET /?lf HTTP/1.1\nHost: a.test\nCookie: {pin}\nConnection: close\n\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // Connection 5: a websocket, open while one scrape looks.
    let mut ws_req = format!("ws://{}/ws", lb.addr())
        .into_client_request()
        .expect("ws request");
    ws_req
        .headers_mut()
        .insert("cookie", pin.parse().expect("cookie value"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_req).await.expect("ws");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hi")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("echo"),
        Message::text("hi")
    );
    // Once tether has seen the other connections close, only the websocket's is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    let open = loop {
        let text = scrape(&lb).await;
        if value(&text, "tether_active_connections", &[lb_label]) == 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "connections still active:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&open, "tether_websockets_open", &web_labels), 1.0);
    ws.close(None).await.expect("close");
    drop(ws);

    // Closed connections are counted down as tether sees them close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&lb).await;
        if value(&text, "tether_active_connections", &[lb_label]) == 0.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "connections still active:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let listener = lb.addr().to_string();
    let port = listener.rsplit(':').next().expect("port");
    let l = [lb_label, ("listener", &*format!("HTTP:{port}"))];
    let expect = [
        // 5 + 404 + fixed + redirect + 503 + 502 + LF + websocket
        ("tether_request_count_total", 12.0),
        // The five above and TetherProc::start's probe that tether listens.
        ("tether_new_connection_count_total", 6.0),
        ("tether_rejected_connection_count_total", 0.0),
        ("tether_httpcode_elb_3xx_count_total", 1.0),
        ("tether_httpcode_elb_4xx_count_total", 0.0),
        ("tether_httpcode_elb_5xx_count_total", 2.0),
        ("tether_httpcode_elb_502_count_total", 1.0),
        ("tether_httpcode_elb_503_count_total", 1.0),
        ("tether_httpcode_elb_504_count_total", 0.0),
        ("tether_http_fixed_response_count_total", 1.0),
        ("tether_http_redirect_count_total", 1.0),
        ("tether_client_tls_negotiation_error_count_total", 0.0),
        (
            "tether_desyncmitigationmode_noncompliant_request_count_total",
            1.0,
        ),
        // Only the first request came without a pin.
        ("tether_non_sticky_request_count_total", 1.0),
    ];
    for (name, want) in expect {
        assert_eq!(value(&text, name, &l), want, "{name}");
    }
    assert!(value(&text, "tether_processed_bytes_total", &l) > 2000.0);

    // The web target: 5 + 1 (LF) 200s, one 404, one 101; the dead one: one failed connect.
    let per_target = [
        ("tether_request_count_per_target_total", 8.0),
        ("tether_httpcode_target_2xx_count_total", 6.0),
        ("tether_httpcode_target_3xx_count_total", 0.0),
        ("tether_httpcode_target_4xx_count_total", 1.0),
        ("tether_httpcode_target_5xx_count_total", 0.0),
        ("tether_target_connection_error_count_total", 0.0),
        ("tether_target_response_time_seconds_count", 8.0),
        ("tether_websockets_open", 0.0),
    ];
    for (name, want) in per_target {
        assert_eq!(value(&text, name, &web_labels), want, "{name}");
    }
    let inf = [
        lb_label,
        ("target_group", "web"),
        ("target", &web_target),
        ("le", "+Inf"),
    ];
    assert_eq!(
        value(&text, "tether_target_response_time_seconds_bucket", &inf),
        8.0
    );
    assert!(
        value(
            &text,
            "tether_target_response_time_seconds_sum",
            &web_labels
        ) > 0.0
    );
    let dead_target = dead.to_string();
    let dead_labels = [lb_label, ("target_group", "dead"), ("target", &dead_target)];
    assert_eq!(
        value(
            &text,
            "tether_target_connection_error_count_total",
            &dead_labels
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tether_target_response_time_seconds_count",
            &dead_labels
        ),
        0.0
    );

    // Health checks are off: ALB calls such targets healthy.
    let group = |g| [lb_label, ("target_group", g)];
    let states = common::target_states(&lb).await;
    let web_healthy = f64::from(u8::from(
        states.get(&web.addr.port()).map(String::as_str) == Some("healthy"),
    ));
    assert_eq!(
        value(&text, "tether_healthy_hosts", &group("web")),
        web_healthy
    );
    assert_eq!(
        value(&text, "tether_healthy_hosts", &group("web"))
            + value(&text, "tether_unhealthy_hosts", &group("web")),
        1.0
    );
    assert_eq!(value(&text, "tether_healthy_hosts", &group("empty")), 0.0);
    assert_eq!(value(&text, "tether_unhealthy_hosts", &group("empty")), 0.0);

    // A reload that works and one that does not.
    let mut admin = Client::connect(SocketAddr::from(([127, 0, 0, 1], lb.admin_port))).await;
    assert_eq!(
        admin.send(request("POST", "/reload", &[])).await.status,
        200
    );
    lb.write_config("[[listener]]\nport = oops\n");
    assert_eq!(
        admin.send(request("POST", "/reload", &[])).await.status,
        400
    );
    let text = scrape(&lb).await;
    let result = |r| [lb_label, ("result", r)];
    assert_eq!(
        value(&text, "tether_config_reloads_total", &result("success")),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tether_config_reloads_total",
            &result("invalid_config")
        ),
        1.0
    );
    assert_eq!(
        value(&text, "tether_config_reloads_total", &result("refused")),
        0.0
    );
    assert_eq!(
        value(&text, "tether_access_log_lines_dropped_total", &[lb_label]),
        0.0
    );

    // Every metric says which CloudWatch metric it is.
    for cloudwatch in [
        "RequestCount:",
        "RequestCountPerTarget:",
        "NonStickyRequestCount:",
        "ActiveConnectionCount:",
        "NewConnectionCount:",
        "RejectedConnectionCount:",
        "ProcessedBytes:",
        "TargetResponseTime:",
        "HTTPCode_ELB_3XX_Count:",
        "HTTPCode_ELB_4XX_Count:",
        "HTTPCode_ELB_5XX_Count:",
        "HTTPCode_ELB_502_Count:",
        "HTTPCode_ELB_503_Count:",
        "HTTPCode_ELB_504_Count:",
        "HTTPCode_Target_2XX_Count:",
        "HTTPCode_Target_3XX_Count:",
        "HTTPCode_Target_4XX_Count:",
        "HTTPCode_Target_5XX_Count:",
        "HTTP_Fixed_Response_Count:",
        "HTTP_Redirect_Count:",
        "HealthyHostCount:",
        "UnHealthyHostCount:",
        "TargetConnectionErrorCount:",
        "ClientTLSNegotiationErrorCount:",
        "DesyncMitigationMode_NonCompliant_Request_Count:",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("# HELP ") && l.contains(&format!(" {cloudwatch} "))),
            "no HELP names {cloudwatch}"
        );
    }
    promtool_check(&text);
}

#[tokio::test]
async fn promtool_should_fail_a_broken_exposition() {
    // The check above has teeth: promtool refuses what is not the text format.
    require_tools(&["promtool"]);
    let result = std::panic::catch_unwind(|| {
        promtool_check("# TYPE x counter\nx_total{a=\"b\" 1\n");
    });
    assert!(result.is_err(), "promtool accepted a broken exposition");
}
