//! Config parsing and validation: every rule a file can break, with the file,
//! line and column it is reported at.

use super::*;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("t.toml"))
}

const OK: &str = r##"
[load_balancer]
name = "demo"
idle_timeout = "60s"
threads = 2

[[listener]]
address = "127.0.0.1"
port = 8080
protocol = "HTTP"
default_action = { forward = "web" }

  [[listener.rule]]
  priority = 10
  conditions = { path_pattern = ["/api/*"], host_header = ["*.example.com"], http_request_method = ["GET","POST"], source_ip = ["127.0.0.0/8"], http_header = [{ name = "X-Env", values = ["blue*"] }], query_string = [{ key = "v", value = "2" }] }
  action = { forward = "api" }

  [[listener.rule]]
  priority = 20
  conditions = { path_pattern = ["/maint"] }
  action = { fixed_response = { status = 503, content_type = "text/plain", body = "maintenance" } }

  [[listener.rule]]
  priority = 30
  conditions = { path_pattern = ["/old/*"] }
  action = { redirect = { protocol = "HTTPS", port = "443", host = "#{host}", path = "/#{path}", query = "#{query}", status = 301 } }

  [[listener.rule]]
  priority = 40
  conditions = { path_pattern = ["/bg/*"] }
  action = { forward = { target_groups = [{ name = "web", weight = 90 }, { name = "api", weight = 10 }] } }

[target_group.web]
algorithm = "round_robin"
targets = ["127.0.0.1:9001", "127.0.0.1:9002"]

[target_group.api]
algorithm = "least_outstanding_requests"
targets = ["127.0.0.1:9003"]
"##;

#[test]
fn the_issue_example_is_accepted() {
    let c = parse(OK).unwrap();
    assert_eq!(c.load_balancer.threads, 2);
    assert_eq!(c.listeners[0].rules.rules().len(), 4);
    assert_eq!(c.target_groups.len(), 2);
    assert!(c.summary().contains("4 rule(s)"));
}

fn err_at(src: &str) -> (usize, usize, String) {
    match parse(src).unwrap_err() {
        ConfigError::Invalid { span, problem, .. } => (span.line, span.column, problem.to_string()),
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
    assert_eq!(line_column("x", 0), (1, 1));
}

#[test]
fn an_unknown_key_is_an_error_at_its_place() {
    let (line, col, msg) = err_at("[load_balancer]\nnmae = \"x\"\n");
    assert_eq!((line, col), (2, 1));
    assert!(msg.contains("unknown field `nmae`"), "{msg}");
}

#[test]
fn a_forward_to_an_undefined_group_names_it() {
    let src = "[[listener]]\nport = 80\ndefault_action = { forward = \"nope\" }\n";
    let (line, _, msg) = err_at(src);
    assert_eq!(line, 3);
    assert!(msg.contains("unknown target group \"nope\""), "{msg}");
}

// === Errors are values: callers match their kind, not their text ===

#[test]
fn an_idle_timeout_out_of_range_is_a_problem_of_that_field_at_its_line() {
    let src = "[load_balancer]\nname = \"x\"\nidle_timeout = \"5000s\"\n";
    match parse(src).unwrap_err() {
        ConfigError::Invalid {
            problem:
                Problem::OutOfRange {
                    field: "idle_timeout",
                    allowed,
                },
            span,
            ..
        } => {
            assert_eq!((span.line, span.column), (3, 16));
            assert_eq!(&src[span.bytes], "\"5000s\"");
            assert_eq!(allowed, "between 1s and 4000s");
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_forward_to_an_undefined_group_carries_the_name() {
    let src = "[[listener]]\nport = 80\ndefault_action = { forward = \"nope\" }\n";
    match parse(src).unwrap_err() {
        ConfigError::Invalid {
            problem: Problem::UnknownTargetGroup(name),
            span,
            ..
        } => assert_eq!((name.as_str(), span.line), ("nope", 3)),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_second_rule_with_a_priority_is_a_duplicate_of_it() {
    let src = "[[listener]]\nport = 80\ndefault_action = { forward = \"web\" }\n\
               [[listener.rule]]\npriority = 7\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n\
               [[listener.rule]]\npriority = 7\nconditions = { path_pattern = [\"/b\"] }\naction = { forward = \"web\" }\n\
               [target_group.web]\ntargets = [\"127.0.0.1:9001\"]\n";
    let e = parse(src).unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Invalid {
                problem: Problem::Duplicate(Duplicate::Priority(7)),
                span: Span { line: 9, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "t.toml:9:12: duplicate priority 7: each rule of a listener needs its own"
    );
}

// === Each kind of bad config, at the line and column `tether check` prints ===

/// Parses `src` as `bad.toml` and asserts that the error, as `tether check`
/// prints it, is `bad.toml:` followed by `want` ("LINE:COLUMN: message").
#[track_caller]
fn rejects(src: &str, want: &str) {
    match Config::parse(src, Path::new("bad.toml")) {
        Ok(_) => panic!("accepted; want `{want}`"),
        Err(e @ ConfigError::Invalid { .. }) => {
            let got = e.to_string();
            assert!(
                got.starts_with(&format!("bad.toml:{want}")),
                "want `bad.toml:{want}`, got `{got}`"
            );
        }
        Err(e) => panic!("want `bad.toml:{want}`, got `{e}`"),
    }
}

#[test]
fn a_misspelt_listener_key_is_an_unknown_field() {
    rejects(
        "[[listener]]\nport = 8080\nprotocl = \"HTTP\"\ndefault_action = { forward = \"web\" }\n",
        "3:1: unknown field `protocl`",
    );
}

#[test]
fn a_string_port_is_the_wrong_type() {
    rejects(
        "[[listener]]\nport = \"eighty\"\ndefault_action = { forward = \"web\" }\n",
        "2:8: invalid type: string \"eighty\", expected u16",
    );
}

#[test]
fn a_duration_needs_a_known_unit() {
    rejects(
        "[load_balancer]\nidle_timeout = \"60 parsecs\"\n",
        "2:16: invalid duration \"60 parsecs\"",
    );
}

#[test]
fn the_idle_timeout_is_between_1s_and_4000s() {
    rejects(
        "[load_balancer]\nidle_timeout = \"2h\"\n",
        "2:16: idle_timeout must be between 1s and 4000s",
    );
}

#[test]
fn threads_must_be_at_least_one() {
    rejects(
        "[load_balancer]\nthreads = 0\n",
        "2:11: threads must be at least 1",
    );
}

// === Header attributes (load balancer and listener) ===

/// One HTTP listener with `listener_extra` lines, after `[load_balancer]` lines.
fn with_attributes(lb: &str, listener_extra: &str) -> String {
    format!(
        "[load_balancer]\n{lb}\n[[listener]]\nport = 8080\n{listener_extra}\ndefault_action = {{ forward = \"web\" }}\n[target_group.web]\ntargets = [\"127.0.0.1:9001\"]\n"
    )
}

#[test]
fn header_attributes_default_to_albs() {
    let c = parse(&with_attributes("", "")).unwrap();
    let lb = &c.load_balancer;
    assert_eq!(lb.shaping, crate::settings::RequestShaping::default());
    assert_eq!(lb.shaping.xff_mode, crate::settings::XffMode::Append);
    assert_eq!(lb.client_keep_alive, Duration::from_secs(3600));
    assert!(lb.http2_enabled);
    let h = &c.listeners[0].headers;
    assert!(h.server && h.response.is_empty() && h.is_noop());
    assert_eq!(&*h.tls_version_name, "X-Amzn-Tls-Version");
    assert_eq!(&*h.tls_cipher_suite_name, "X-Amzn-Tls-Cipher-Suite");
}

#[test]
fn header_attributes_are_read_by_their_alb_names() {
    let c = parse(&with_attributes(
        "xff_header_processing = \"preserve\"\nxff_client_port = true\npreserve_host_header = true\n\
         drop_invalid_header_fields = true\ntls_version_and_cipher_headers = true\n\
         client_keep_alive = \"2h\"\nhttp2_enabled = false",
        "response_headers = { strict_transport_security = \"max-age=31536000; includeSubDomains\", \
         access_control_allow_origin = \"https://app.example.com\", access_control_allow_methods = \"GET, POST\", \
         access_control_allow_headers = \"*\", access_control_allow_credentials = \"true\", \
         access_control_expose_headers = \"X-Request-Id\", access_control_max_age = \"600\", \
         content_security_policy = \"default-src 'self'\", x_content_type_options = \"nosniff\", \
         x_frame_options = \"ALLOW-FROM https://example.com\", server = false }",
    ))
    .unwrap();
    let s = c.load_balancer.shaping;
    assert_eq!(s.xff_mode, crate::settings::XffMode::Preserve);
    assert!(s.xff_client_port && s.preserve_host_header);
    assert!(s.drop_invalid_header_fields && s.tls_version_and_cipher_headers);
    assert_eq!(c.load_balancer.client_keep_alive, Duration::from_secs(7200));
    assert!(!c.load_balancer.http2_enabled);
    let h = &c.listeners[0].headers;
    assert!(!h.server);
    let names: Vec<&str> = h.response.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(h.replaces("Server") && h.replaces("X-Frame-Options") && !h.replaces("x-other"));
    assert!(h
        .response
        .iter()
        .any(|(n, v)| *n == "access-control-max-age" && &**v == "600"));
}

#[test]
fn xff_header_processing_is_append_preserve_or_remove() {
    rejects(
        &with_attributes("xff_header_processing = \"drop\"", ""),
        "2:25: unknown xff_header_processing \"drop\": expected \"append\", \"preserve\" or \"remove\"",
    );
}

#[test]
fn client_keep_alive_is_between_a_minute_and_7_days() {
    rejects(
        &with_attributes("client_keep_alive = \"30s\"", ""),
        "2:21: client_keep_alive must be between 1m and 7days",
    );
    rejects(
        &with_attributes("client_keep_alive = \"8d\"", ""),
        "2:21: client_keep_alive must be between 1m and 7days",
    );
    // Shorter only when the config opts out of ALB's limits (tests).
    let c = parse(&with_attributes(
        "alb_limits = false\nclient_keep_alive = \"2s\"",
        "",
    ))
    .unwrap();
    assert_eq!(c.load_balancer.client_keep_alive, Duration::from_secs(2));
    rejects(
        &with_attributes("alb_limits = false\nclient_keep_alive = \"500ms\"", ""),
        "3:21: client_keep_alive must be between 1s and 7days",
    );
}

#[test]
fn a_header_attribute_switch_is_a_boolean() {
    rejects(
        &with_attributes("preserve_host_header = \"yes\"", ""),
        "2:24: invalid type: string \"yes\", expected a boolean",
    );
}

#[test]
fn x_frame_options_is_deny_sameorigin_or_allow_from() {
    rejects(
        &with_attributes("", "response_headers = { x_frame_options = \"NEVER\" }"),
        "5:40: invalid x-frame-options \"NEVER\": expected \"DENY\", \"SAMEORIGIN\" or \"ALLOW-FROM <origin>\"",
    );
    rejects(
        &with_attributes(
            "",
            "response_headers = { x_frame_options = \"ALLOW-FROM \" }",
        ),
        "5:40: invalid x-frame-options",
    );
}

#[test]
fn x_content_type_options_is_nosniff() {
    rejects(
        &with_attributes(
            "",
            "response_headers = { x_content_type_options = \"sniff\" }",
        ),
        "5:47: invalid x-content-type-options \"sniff\": the only value is \"nosniff\"",
    );
}

#[test]
fn access_control_allow_credentials_is_true() {
    rejects(
        &with_attributes(
            "",
            "response_headers = { access_control_allow_credentials = \"false\" }",
        ),
        "5:57: invalid access-control-allow-credentials \"false\": the only value is \"true\"",
    );
}

#[test]
fn response_header_values_are_checked_for_their_header() {
    rejects(
        &with_attributes(
            "",
            "response_headers = { strict_transport_security = \"includeSubDomains\" }",
        ),
        "5:50: invalid strict-transport-security \"includeSubDomains\": it needs max-age=<seconds>",
    );
    rejects(
        &with_attributes("", "response_headers = { access_control_max_age = \"1h\" }"),
        "5:47: invalid access-control-max-age \"1h\": expected a number of seconds",
    );
    rejects(
        &with_attributes(
            "",
            "response_headers = { access_control_allow_origin = \"example.com\" }",
        ),
        "5:52: invalid access-control-allow-origin \"example.com\"",
    );
    rejects(
        &with_attributes(
            "",
            "response_headers = { access_control_allow_methods = \"GET POST\" }",
        ),
        "5:53: invalid access-control-allow-methods \"GET POST\"",
    );
}

#[test]
fn a_response_header_value_is_short_visible_text() {
    rejects(
        &with_attributes("", "response_headers = { content_security_policy = \"\" }"),
        "5:48: content-security-policy must have 1-1024 characters",
    );
    rejects(
        &with_attributes(
            "",
            "response_headers = { content_security_policy = \"a\\nb\" }",
        ),
        "5:48: content-security-policy must be visible ASCII text",
    );
    let long = format!(
        "response_headers = {{ content_security_policy = \"{}\" }}",
        "a".repeat(1025)
    );
    rejects(
        &with_attributes("", &long),
        "5:48: content-security-policy must have 1-1024 characters",
    );
}

#[test]
fn an_unknown_response_header_is_an_unknown_field() {
    rejects(
        &with_attributes("", "response_headers = { x_powered_by = \"me\" }"),
        "5:22: unknown field `x_powered_by`",
    );
}

#[test]
fn tls_header_names_go_with_https_listeners() {
    rejects(
        &with_attributes(
            "",
            "request_header_names = { x_amzn_tls_version = \"X-Tls\" }",
        ),
        "5:24: request_header_names go with protocol = \"HTTPS\"",
    );
}

#[test]
fn a_duplicate_priority_is_reported_at_the_second_rule() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/b\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "9:12: duplicate priority 5",
    );
}

#[test]
fn a_weighted_forward_to_an_undefined_group_is_reported_at_its_name() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = { target_groups = [{ name = \"web\", weight = 1 }, { name = \"api\", weight = 1 }] } }\n[target_group.web]\ntargets = []\n",
        "3:88: unknown target group \"api\"",
    );
}

#[test]
fn a_source_ip_must_be_a_valid_cidr() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = { source_ip = [\"10.0.0.0/33\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:29: invalid CIDR \"10.0.0.0/33\"",
    );
}

#[test]
fn a_port_above_65535_does_not_fit_u16() {
    rejects(
        "[[listener]]\nport = 70000\ndefault_action = { forward = \"web\" }\n",
        "2:8: invalid value: integer `70000`, expected u16",
    );
}

/// Port 0 (beyond ALB, which wants 1–65535) asks for a free port at start; two
/// such listeners on one address are two ports, not a duplicate. A fixed port twice
/// still is.
#[test]
fn port_zero_picks_a_free_port_and_never_collides() {
    let two = "[[listener]]\nport = 0\ndefault_action = { forward = \"web\" }\n[[listener]]\nport = 0\ndefault_action = { forward = \"web\" }\n[target_group.web]\ntargets = []\n";
    let config = parse(two).expect("two port-0 listeners");
    assert_eq!(config.listeners.len(), 2);
    assert!(config.listeners.iter().all(|l| l.addr.port() == 0));
    rejects(
        &two.replace("port = 0", "port = 8080"),
        "5:8: a listener on 0.0.0.0:8080 is already defined",
    );
}

#[test]
fn a_target_needs_a_port() {
    rejects(
        "[target_group.web]\ntargets = [\"10.0.0.1\"]\n",
        "2:12: invalid target \"10.0.0.1\": expected IP:port",
    );
}

#[test]
fn a_priority_above_50000_is_out_of_range() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 50001\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "5:12: priority must be between 1 and 50000",
    );
}

#[test]
fn a_redirect_must_change_something() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { redirect = { status = 301 } }\n",
        "3:18: a redirect must change something",
    );
}

#[test]
fn a_fixed_response_cannot_be_3xx() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { fixed_response = { status = 302 } }\n",
        "3:48: status must be 2XX, 4XX or 5XX",
    );
}

#[test]
fn a_method_condition_is_upper_case() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = { http_request_method = [\"get\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:39: invalid method \"get\"",
    );
}

#[test]
fn a_rule_needs_a_condition() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = {}\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:14: a rule needs at least one condition",
    );
}

#[test]
fn a_config_needs_a_listener() {
    rejects("[target_group.web]\ntargets = []\n", "1:1: no [[listener]]");
}

#[test]
fn an_awsalb_app_cookie_name_is_reserved() {
    rejects(
        "[target_group.web]\nstickiness = { type = \"app_cookie\", cookie_name = \"AWSALBAPP-1\" }\n",
        "2:51: cookie name \"AWSALBAPP-1\" is reserved",
    );
}

#[test]
fn app_cookie_stickiness_needs_a_cookie_name() {
    rejects(
        "[target_group.web]\nstickiness = { type = \"app_cookie\" }\n",
        "2:14: type = \"app_cookie\" needs cookie_name",
    );
}

#[test]
fn an_unknown_stickiness_type_is_named() {
    rejects(
        "[target_group.web]\nstickiness = { type = \"source_ip\" }\n",
        "2:23: unknown stickiness type \"source_ip\"",
    );
}

#[test]
fn a_stickiness_duration_is_at_most_7_days() {
    rejects(
        "[target_group.web]\nstickiness = { type = \"lb_cookie\", duration = \"8d\" }\n",
        "2:47: duration must be between 1s and 7days",
    );
}

#[test]
fn a_sticky_key_needs_32_bytes() {
    rejects(
        "[load_balancer]\nsticky_keys = [\"abcdef\"]\n",
        "2:16: sticky key (literal): key material is 3 bytes; at least 32 random bytes are needed",
    );
}

#[test]
fn a_sticky_key_is_hex_or_base64() {
    rejects(
        "[load_balancer]\nsticky_keys = [\"this is not a key at all, not at all!!\"]\n",
        "2:16: sticky key (literal): key material is neither hex nor base64",
    );
}

#[test]
fn a_sticky_key_from_an_unset_variable_names_it() {
    rejects(
        "[load_balancer]\nsticky_keys = [\"env:TETHER_TEST_SURELY_UNSET\"]\n",
        "2:16: sticky key \"env:TETHER_TEST_SURELY_UNSET\": environment variable TETHER_TEST_SURELY_UNSET is not set",
    );
}

#[test]
fn a_sticky_key_from_a_missing_file_names_it() {
    rejects(
        "[load_balancer]\nsticky_keys = [\"file:/nonexistent/key\"]\n",
        "2:16: sticky key \"file:/nonexistent/key\": cannot read /nonexistent/key",
    );
}

#[test]
fn a_weighted_forward_stickiness_is_at_least_1s() {
    rejects(
        "[[listener]]\nport = 80\ndefault_action = { forward = { target_groups = [{ name = \"a\" }, { name = \"b\" }], stickiness = { duration = \"0s\" } } }\n[target_group.a]\n[target_group.b]\n",
        "3:108: duration must be between 1s and 7days",
    );
}

#[test]
fn a_health_check_interval_is_at_least_5s_as_on_alb() {
    rejects(
        "[target_group.web]\nhealth_check = { interval = \"1s\" }\n",
        "2:29: interval must be between 5s and 5m",
    );
}

#[test]
fn a_matcher_above_599_is_invalid() {
    rejects(
        "[target_group.web]\nhealth_check = { matcher = \"600\" }\n",
        "2:28: invalid matcher \"600\"",
    );
}

#[test]
fn a_healthy_threshold_is_at_most_10() {
    rejects(
        "[target_group.web]\nhealth_check = { healthy_threshold = 11 }\n",
        "2:38: healthy_threshold must be between 2 and 10",
    );
}

#[test]
fn a_health_check_timeout_is_shorter_than_the_interval() {
    rejects(
        "[target_group.web]\nhealth_check = { interval = \"10s\", timeout = \"10s\" }\n",
        "2:46: timeout must be shorter than interval",
    );
}

#[test]
fn a_health_check_protocol_is_http_or_https() {
    rejects(
        "[target_group.web]\nhealth_check = { protocol = \"TCP\" }\n",
        "2:29: unknown health check protocol",
    );
}

#[test]
fn a_health_check_port_is_a_number_or_traffic_port() {
    rejects(
        "[target_group.web]\nhealth_check = { port = \"eighty\" }\n",
        "2:25: port must be 1-65535 or \"traffic-port\"",
    );
}

#[test]
fn slow_start_is_between_30s_and_15m() {
    rejects(
        "[target_group.web]\nslow_start = \"10s\"\n",
        "2:14: slow_start must be between 30s and 15m",
    );
}

#[test]
fn the_deregistration_delay_is_at_most_1h() {
    rejects(
        "[target_group.web]\nderegistration_delay = \"2h\"\n",
        "2:24: deregistration_delay must be between 0s and 1h",
    );
}

#[test]
fn minimum_healthy_targets_is_a_count_or_a_percentage_not_both() {
    rejects(
        "[target_group.web]\nminimum_healthy_targets = { count = 1, percentage = 50 }\n",
        "2:27: give either { count = N } or { percentage = N }",
    );
}

#[test]
fn a_minimum_healthy_percentage_is_at_most_100() {
    rejects(
        "[target_group.web]\nminimum_healthy_targets = { percentage = 101 }\n",
        "2:42: percentage must be between 1 and 100",
    );
}

#[test]
fn slow_start_does_not_go_with_least_outstanding_requests() {
    rejects(
        "[target_group.web]\nalgorithm = \"least_outstanding_requests\"\nslow_start = \"60s\"\n",
        "3:14: slow_start does not go with least_outstanding_requests",
    );
}

#[test]
fn a_toml_syntax_error_has_a_place_too() {
    rejects("[[listener]\nport = 8080\n", "1:11: ");
}

mod jwt;
mod options;
