//! The strict ALB access log parser of `tests/common/alb_log.rs` against AWS's own
//! example lines ("Access log entries", ALB user guide), and lines it must refuse.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::alb_log::{parse, FIELDS};

/// AWS's examples, one line each: HTTP, HTTPS (with a host header rewrite), HTTP/2
/// (a redirect), secured WebSockets, and a Lambda target that failed.
const AWS_EXAMPLES: [&str; 5] = [
    r#"http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#,
    r#"https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90 "m.example.com" "-" "TransformSuccess""#,
    r#"h2 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.1.252:48160 10.0.0.66:9000 0.000 0.002 0.000 200 200 5 257 "GET https://10.0.2.105:773/ HTTP/2.0" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337327-72bd00b0343d75b906739c42" "-" "-" 1 2018-07-02T22:22:48.364000Z "redirect" "https://example.com:80/" "-" "10.0.0.66:9000" "200" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#,
    r#"wss 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.0.140:44244 10.0.0.171:8010 0.000 0.001 0.000 101 101 218 786 "GET https://10.0.0.30:443/ HTTP/1.1" "-" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 1 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.171:8010" "101" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#,
    r#"http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - 0.000 0.001 0.000 502 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" "-" "LambdaInvalidResponse" "-" "-" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#,
];

#[test]
fn it_should_accept_every_example_line_of_awss_guide() {
    for line in AWS_EXAMPLES {
        if let Err(e) = parse(line) {
            panic!("{e}\n{line}");
        }
    }
}

#[test]
fn it_should_type_every_field_of_the_https_example() {
    let l = parse(AWS_EXAMPLES[1]).unwrap();
    assert_eq!(l.kind, "https");
    assert_eq!(
        l.time,
        UNIX_EPOCH + Duration::from_secs(1_530_570_180) + Duration::from_micros(186_641)
    );
    assert_eq!(
        l.request_creation_time,
        UNIX_EPOCH + Duration::from_secs(1_530_570_168) + Duration::from_micros(364_000)
    );
    assert_eq!(l.elb, "app/my-loadbalancer/50dc6c495c0c9188");
    assert_eq!(l.client, "192.168.131.39:2817".parse().unwrap());
    assert_eq!(l.target, Some("10.0.0.1:80".parse().unwrap()));
    assert_eq!(l.request_processing_time, Some(Duration::from_millis(86)));
    assert_eq!(l.target_processing_time, Some(Duration::from_millis(48)));
    assert_eq!(l.response_processing_time, Some(Duration::from_millis(37)));
    assert_eq!(
        (l.elb_status_code, l.target_status_code),
        (Some(200), Some(200))
    );
    assert_eq!((l.received_bytes, l.sent_bytes), (0, 57));
    let r = l.request.unwrap();
    assert_eq!(
        (r.method.as_str(), r.scheme.as_str(), r.authority.as_str()),
        ("GET", "https", "www.example.com:443")
    );
    assert_eq!((r.path.as_str(), r.version.as_str()), ("/", "HTTP/1.1"));
    assert_eq!(l.user_agent.as_deref(), Some("curl/7.46.0"));
    assert_eq!(l.ssl_cipher.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
    assert_eq!(l.ssl_protocol.as_deref(), Some("TLSv1.2"));
    assert!(l
        .target_group_arn
        .unwrap()
        .ends_with(":targetgroup/my-targets/73e2d6bc24d8a067"));
    assert_eq!(l.domain_name.as_deref(), Some("www.example.com"));
    assert_eq!(l.matched_rule_priority, Some(1));
    assert_eq!(l.actions_executed, ["authenticate", "forward"]);
    assert_eq!((l.redirect_url, l.error_reason), (None, None));
    assert_eq!(l.target_port_list, ["10.0.0.1:80".parse().unwrap()]);
    assert_eq!(l.target_status_code_list, [Some(200)]);
    assert_eq!((l.classification, l.classification_reason), (None, None));
    assert_eq!(l.conn_trace_id.as_deref(), Some("TID_1234abcd5678ef90"));
    assert_eq!(l.transformed_host.as_deref(), Some("m.example.com"));
    assert_eq!(l.transformed_uri, None);
    assert_eq!(
        l.request_transform_status.as_deref(),
        Some("TransformSuccess")
    );
}

#[test]
fn it_should_read_albs_line_for_a_request_it_could_not_parse() {
    let line = r#"http 2025-03-01T10:03:17.218099Z app/MyALB1/240dbdc5244653c9 205.210.31.158:61084 - -1 -1 -1 400 - 0 272 "- - - " "-" - - - "-" "-" "-" - 2025-03-01T10:03:16.682000Z "-" "-" "-" "-" "-" "-" "-" TID_6cfb27fd2ef25c42932bd6e0ff56d631 "-" "-" "-""#;
    let l = parse(line).unwrap();
    assert_eq!(l.request, None);
    assert_eq!(l.request_processing_time, None);
    assert!(l.actions_executed.is_empty() && l.target_port_list.is_empty());
}

/// `AWS_EXAMPLES[0]` with `from` (which must occur once) replaced by `to`.
fn http_example_with(from: &str, to: &str) -> String {
    assert_eq!(AWS_EXAMPLES[0].matches(from).count(), 1, "{from}");
    AWS_EXAMPLES[0].replace(from, to)
}

#[track_caller]
fn refused(line: &str, why: &str) {
    match parse(line) {
        Ok(l) => panic!("accepted: {l:?}\n{line}"),
        Err(e) => assert!(e.contains(why), "want {why:?}, got {e:?}"),
    }
}

#[test]
fn it_should_refuse_a_line_with_a_field_missing_or_added() {
    refused(
        &http_example_with(" 34 366 ", " 34 "),
        &format!("{} fields, want {FIELDS}", FIELDS - 1),
    );
    refused(
        &format!("{} \"-\"", AWS_EXAMPLES[0]),
        &format!("{} fields, want {FIELDS}", FIELDS + 1),
    );
}

#[test]
fn it_should_refuse_a_time_that_is_not_utc_with_microseconds() {
    for bad in [
        "2018-07-02T22:23:00.186Z",
        "2018-07-02T22:23:00.186641",
        "2018-07-02t22:23:00.186641Z",
        "2018-07-02T22:23:00.186641+00:00",
        "2018-02-30T22:23:00.186641Z",
        "2018-07-02T24:23:00.186641Z",
    ] {
        refused(
            &http_example_with("2018-07-02T22:23:00.186641Z", bad),
            "time",
        );
    }
}

#[test]
fn it_should_refuse_an_unquoted_request() {
    refused(
        &http_example_with(
            r#""GET http://www.example.com:80/ HTTP/1.1""#,
            "GET http://www.example.com:80/ HTTP/1.1",
        ),
        "fields, want",
    );
    // The same number of fields, one of them unquoted.
    refused(
        &http_example_with(
            r#""GET http://www.example.com:80/ HTTP/1.1""#,
            "GET\\x20http://www.example.com:80/\\x20HTTP/1.1",
        ),
        "request must be quoted",
    );
}

#[test]
fn it_should_refuse_fields_of_the_wrong_type() {
    for (from, to, why) in [
        ("http 2018", "tcp 2018", "unknown type"),
        ("192.168.131.39:2817", "192.168.131.39", "client:port"),
        (" 0.000 0.001 ", " 0.000 0.0015 ", "target_processing_time"),
        (" 0.000 0.001 ", " 0.000 1 ", "target_processing_time"),
        (" 200 200 ", " 200 20 ", "target_status_code"),
        (" 34 366 ", " -34 366 ", "received_bytes"),
        ("HTTP/1.1\"", "HTTP/3\"", "request"),
        ("\"GET http://", "\"GET www.example.com:80/ x", "request"),
        ("\"forward\"", "\"forward,shout\"", "unknown action"),
        ("\"forward\"", "\"forward\" ", "two spaces"),
        (
            "\"10.0.0.1:80\"",
            "\"10.0.0.2:80\"",
            "must end with target:port",
        ),
        ("\"200\"", "\"404\"", "must end with target_status_code"),
        (
            " - - arn:",
            " ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:",
            "TLS types",
        ),
        ("arn:aws:elasticloadbalancing", "tg:aws", "target_group_arn"),
        (
            " 0 2018-07-02T22:22",
            " 50001 2018-07-02T22:22",
            "matched_rule_priority",
        ),
        ("2018-07-02T22:22:48", "2018-07-02T22:24:48", "after time"),
        ("TID_1234abcd5678ef90", "1234abcd5678ef90", "conn_trace_id"),
        ("\"curl/7.46.0\"", "\"curl\"7.46.0\"", "right after field"),
    ] {
        refused(&http_example_with(from, to), why);
    }
}
