//! Config checks for regex values and transforms, the upgrade grace, the admin API,
//! the access log and discovery (the fixtures are in the parent module).

use super::*;

// === Regex values and transforms ===

use crate::rules::Condition;

/// One listener whose one rule (priority 1, forward to "web") ends with `rule_lines`
/// from line 7 on.
fn with_rule(rule_lines: &str) -> String {
    format!(
        "[[listener]]\nport = 8080\ndefault_action = {{ forward = \"web\" }}\n[[listener.rule]]\npriority = 1\naction = {{ forward = \"web\" }}\n{rule_lines}\n[target_group.web]\ntargets = []\n"
    )
}

#[test]
fn regex_values_and_transforms_are_accepted_in_every_form() {
    let c = parse(&with_rule(concat!(
        "conditions = { path_pattern = { values = [\"/static/*\"], regex_values = [\"^/img/[0-9]+$\"] }, ",
        "host_header = { regex_values = [\"^api\\\\.example\\\\.com(:[0-9]+)?$\"] }, ",
        "http_header = [{ name = \"X-Env\", values = [\"blue*\"], regex_values = [\"^green-[0-9]$\"] }, { name = \"X-Tier\", regex_values = [\"^gold$\"] }] }\n",
        "transforms = [{ url_rewrite = { regex = \"^/img/([0-9]+)$\", replace = \"/images?id=$1\" } }, { host_header_rewrite = { regex = \"^api\\\\.(.*)$\", replace = \"internal.${1}\" } }]",
    )))
    .unwrap();
    let rule = &c.listeners[0].rules.rules()[0];
    assert_eq!(rule.conditions.len(), 4);
    let Condition::PathPattern(path) = &rule.conditions[0] else {
        panic!("{:?}", rule.conditions[0]);
    };
    assert_eq!((path.wildcards.len(), path.regexes.len()), (1, 1));
    assert!(rule.transforms.url.is_some() && rule.transforms.host.is_some());
    let out = rule
        .transforms
        .apply("/img/7", None, Some("api.example.com"))
        .unwrap();
    assert_eq!(out.url.as_deref(), Some("/images?id=7"));
    assert_eq!(out.host.as_deref(), Some("internal.example.com"));
    // The plain array still means wildcard values.
    let c = parse(&with_rule(
        "conditions = { host_header = [\"*.example.com\"] }",
    ))
    .unwrap();
    let Condition::HostHeader(host) = &c.listeners[0].rules.rules()[0].conditions[0] else {
        panic!("not a host condition");
    };
    assert_eq!((host.wildcards.len(), host.regexes.len()), (1, 0));
}

#[test]
fn transforms_on_the_default_action_are_refused() {
    rejects(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\ntransforms = [{ url_rewrite = { regex = \"a\", replace = \"/b\" } }]\n[target_group.web]\ntargets = []\n",
        "4:14: transforms go on a [[listener.rule]]: ALB allows none on the default action",
    );
}

#[test]
fn a_misspelt_rewrite_key_is_an_unknown_field() {
    let (line, column, message) = err_at(&with_rule(
        "conditions = { path_pattern = [\"/a\"] }\ntransforms = [{ url_rewrite = { regex = \"a\", replacement = \"/b\" } }]",
    ));
    assert_eq!(line, 8, "{message}");
    assert!(
        message.contains("unknown field `replacement`"),
        "{column}: {message}"
    );
}

#[test]
fn a_bad_path_regex_is_reported_at_its_value() {
    rejects(
        &with_rule("conditions = { path_pattern = { regex_values = [\"^/(a\"] } }"),
        "7:49: invalid regex \"^/(a\": unclosed group",
    );
}

#[test]
fn a_regex_value_over_128_characters_is_refused() {
    rejects(
        &with_rule(&format!(
            "conditions = {{ host_header = {{ regex_values = [\"^/{}\"] }} }}",
            "a".repeat(127)
        )),
        "7:48: regex value is longer than 128 characters",
    );
}

#[test]
fn a_look_ahead_in_a_header_regex_is_refused() {
    rejects(
        &with_rule("conditions = { http_header = [{ name = \"X-Env\", regex_values = [\"^blue(?=-)\"] }] }"),
        "7:65: invalid regex \"^blue(?=-)\": look-around",
    );
}

#[test]
fn a_unicode_class_is_refused_as_on_alb() {
    rejects(
        &with_rule("conditions = { path_pattern = { regex_values = [\"^/\\\\p{L}+$\"] } }"),
        "7:49: invalid regex \"^/\\p{L}+$\": Unicode classes",
    );
}

#[test]
fn a_condition_with_regex_values_takes_three_values_in_all() {
    rejects(
        &with_rule("conditions = { path_pattern = { values = [\"/a\", \"/b\"], regex_values = [\"^/c\", \"^/d\"] } }"),
        "7:79: path_pattern takes at most 3 values and regex_values together",
    );
}

#[test]
fn a_rule_takes_five_regex_values_in_all() {
    rejects(
        &with_rule("conditions = { path_pattern = { regex_values = [\"^/a\", \"^/b\", \"^/c\"] }, host_header = { regex_values = [\"^a\", \"^b\"] }, http_header = [{ name = \"X-A\", regex_values = [\"^x\"] }] }"),
        "7:167: a rule takes at most 5 regex values in all",
    );
}

#[test]
fn an_empty_values_table_needs_a_value() {
    rejects(
        &with_rule("conditions = { host_header = { } }"),
        "7:30: host_header needs at least one value",
    );
}

#[test]
fn a_second_url_rewrite_is_refused() {
    rejects(
        &with_rule("conditions = { path_pattern = [\"/a\"] }\ntransforms = [{ url_rewrite = { regex = \"a\", replace = \"/b\" } }, { url_rewrite = { regex = \"c\", replace = \"/d\" } }]"),
        "8:66: a rule takes at most one url_rewrite",
    );
}

#[test]
fn a_replace_naming_a_missing_group_is_reported_at_the_replace() {
    rejects(
        &with_rule("conditions = { path_pattern = [\"/a\"] }\ntransforms = [{ host_header_rewrite = { regex = \"^(.+)\\\\.example\\\\.com$\", replace = \"$1.$2.internal\" } }]"),
        "8:85: replace refers to group 2 but the regex has 1 group(s)",
    );
}

#[test]
fn a_bad_transform_regex_is_reported_at_the_regex() {
    rejects(
        &with_rule("conditions = { path_pattern = [\"/a\"] }\ntransforms = [{ url_rewrite = { regex = \"^/(?<=x)\", replace = \"/\" } }]"),
        "8:41: invalid regex \"^/(?<=x)\": look-around",
    );
}

// === Upgrade grace ===

#[test]
fn the_upgrade_grace_defaults_to_the_longest_deregistration_delay() {
    let c = parse(
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"a\" }\n\
         [target_group.a]\nderegistration_delay = \"20s\"\n\
         [target_group.b]\nderegistration_delay = \"90s\"\n",
    )
    .unwrap();
    assert_eq!(c.load_balancer.upgrade_grace, Duration::from_secs(90));
    let c = parse(&with_attributes("", "")).unwrap();
    assert_eq!(c.load_balancer.upgrade_grace, Duration::from_secs(300));
    let c = parse(&with_attributes("upgrade_grace = \"2s\"", "")).unwrap();
    assert_eq!(c.load_balancer.upgrade_grace, Duration::from_secs(2));
}

#[test]
fn the_upgrade_grace_is_at_most_1h() {
    rejects(
        "[load_balancer]\nupgrade_grace = \"2h\"\n",
        "2:17: upgrade_grace must be between 0s and 1h",
    );
}

// === admin API ===

const LISTENER: &str =
    "[[listener]]\nport = 80\ndefault_action = { fixed_response = { status = 200 } }\n";

#[test]
fn an_admin_address_that_is_not_loopback_needs_a_token() {
    rejects(
        "[load_balancer]\nadmin = \"0.0.0.0:9900\"\n",
        "2:9: admin address 0.0.0.0:9900 is not loopback: set admin_token",
    );
    rejects(
        "[load_balancer]\nadmin = \"[::]:9900\"\n",
        "2:9: admin address [::]:9900 is not loopback",
    );
    rejects(
        "[load_balancer]\nadmin = \"10.0.3.7:9900\"\n",
        "2:9: admin address 10.0.3.7:9900 is not loopback",
    );
}

#[test]
fn a_loopback_admin_address_needs_no_token() {
    for addr in ["127.0.0.1:9900", "[::1]:9900", "127.0.0.2:0"] {
        let c = parse(&format!("[load_balancer]\nadmin = \"{addr}\"\n{LISTENER}")).unwrap();
        assert_eq!(c.load_balancer.admin_token, None, "{addr}");
    }
}

#[test]
fn an_admin_address_that_is_not_loopback_is_accepted_with_a_token() {
    let c = parse(&format!(
        "[load_balancer]\nadmin = \"0.0.0.0:9900\"\nadmin_token = \"0123456789abcdef0123\"\n{LISTENER}"
    ))
    .unwrap();
    assert_eq!(
        c.load_balancer.admin_token,
        Some(AdminToken::new("0123456789abcdef0123"))
    );
    // Its Debug (a config in a log) does not show it.
    assert!(!format!("{:?}", c.load_balancer).contains("0123456789abcdef0123"));
}

#[test]
fn an_admin_token_is_read_from_a_file_next_to_the_config_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "s3cret-token-from-a-file\n").unwrap();
    let path = dir.path().join("t.toml");
    let c = Config::parse(
        &format!("[load_balancer]\nadmin = \"0.0.0.0:9900\"\nadmin_token = \"file:admin.token\"\n{LISTENER}"),
        &path,
    )
    .unwrap();
    assert_eq!(
        c.load_balancer.admin_token,
        Some(AdminToken::new("s3cret-token-from-a-file"))
    );
}

#[test]
fn an_admin_token_from_an_unset_variable_names_it() {
    rejects(
        "[load_balancer]\nadmin = \"0.0.0.0:9900\"\nadmin_token = \"env:TETHER_TEST_SURELY_UNSET\"\n",
        "3:15: admin_token \"env:TETHER_TEST_SURELY_UNSET\": environment variable TETHER_TEST_SURELY_UNSET is not set",
    );
}

#[test]
fn a_short_admin_token_is_refused() {
    rejects(
        "[load_balancer]\nadmin = \"127.0.0.1:9900\"\nadmin_token = \"hunter2\"\n",
        "3:15: admin_token (literal): expected at least 16 visible ASCII characters",
    );
}

#[test]
fn an_admin_token_without_an_admin_api_is_refused() {
    rejects(
        "[load_balancer]\nadmin_token = \"0123456789abcdef0123\"\n",
        "2:15: admin_token without admin",
    );
}

// === access log ===

#[test]
fn an_access_log_path_is_relative_to_the_config_file() {
    use crate::access_log::LogTarget;
    let at = |lb: &str| {
        Config::parse(
            &format!("[load_balancer]\n{lb}\n{LISTENER}"),
            Path::new("/etc/tether/tether.toml"),
        )
        .unwrap()
        .load_balancer
        .access_log
    };
    assert_eq!(at(""), None);
    assert_eq!(
        at("access_log = { path = \"logs/access.log\" }"),
        Some(LogTarget::File("/etc/tether/logs/access.log".into()))
    );
    assert_eq!(
        at("access_log = { path = \"/var/log/tether/access.log\" }"),
        Some(LogTarget::File("/var/log/tether/access.log".into()))
    );
    assert_eq!(at("access_log = { path = \"-\" }"), Some(LogTarget::Stdout));
}

#[test]
fn an_unknown_access_log_key_is_an_error_at_its_place() {
    rejects(
        "[load_balancer]\naccess_log = { path = \"a.log\", format = \"json\" }\n",
        "2:32: unknown field `format`, expected `path`",
    );
}

#[test]
fn an_access_log_needs_a_path() {
    rejects(
        "[load_balancer]\naccess_log = { path = \"\" }\n",
        "2:23: access_log path is empty: give a file, or \"-\" for stdout",
    );
    rejects(
        "[load_balancer]\naccess_log = {}\n",
        "2:14: missing field `path`",
    );
}

// === Discovery ===

/// A listener forwarding to `web`, whose group is `group` (TOML lines).
fn with_web_group(group: &str) -> String {
    format!(
        "[[listener]]\nport = 8080\ndefault_action = {{ forward = \"web\" }}\n[target_group.web]\n{group}\n"
    )
}

#[test]
fn a_targets_file_is_taken_from_the_config_files_directory_and_need_not_exist() {
    let src = with_web_group("discovery = { file = { path = \"targets.json\" } }");
    let c = Config::parse(&src, Path::new("/etc/tether/tether.toml")).unwrap();
    assert_eq!(
        c.target_groups[0].discovery,
        Some(crate::discovery::DiscoverySpec::File(
            crate::discovery::FileDiscovery {
                path: PathBuf::from("/etc/tether/targets.json"),
                interval: Duration::from_secs(5),
            }
        ))
    );
    let src = with_web_group(
        "discovery = { file = { path = \"/run/targets.txt\", interval = \"200ms\" } }",
    );
    let c = Config::parse(&src, Path::new("/etc/tether/tether.toml")).unwrap();
    let Some(crate::discovery::DiscoverySpec::File(f)) = &c.target_groups[0].discovery else {
        panic!("{:?}", c.target_groups[0].discovery);
    };
    assert_eq!(f.path, Path::new("/run/targets.txt"));
    assert_eq!(f.interval, Duration::from_millis(200));
}

#[test]
fn a_discovery_block_needs_one_source_with_its_keys() {
    rejects(
        &with_web_group("discovery = {}"),
        "5:13: discovery needs a source: `ecs = { … }` or `file = { path = \"…\" }`",
    );
    rejects(
        &with_web_group("discovery = { file = { path = \"t.json\" }, ecs = { cluster = \"c\", service = \"s\", container_port = 80 } }"),
        "5:22: discovery takes one source: `ecs` or `file`, not both",
    );
    rejects(
        &with_web_group("discovery = { file = { interval = \"5s\" } }"),
        "5:22: missing field `path`",
    );
    rejects(
        &with_web_group("discovery = { file = { path = \"t.json\", format = \"json\" } }"),
        "5:41: unknown field `format`, expected `path` or `interval`",
    );
    rejects(
        &with_web_group("discovery = { file = { path = \" \" } }"),
        "5:31: file discovery needs a path",
    );
    rejects(
        &with_web_group("discovery = { file = { path = \"t.json\", interval = \"10ms\" } }"),
        "5:52: interval must be between 100ms and 1h",
    );
    rejects(
        &with_web_group(
            "targets = [\"127.0.0.1:9001\"]\ndiscovery = { file = { path = \"t.json\" } }",
        ),
        "5:12: a group takes targets from either `targets` or `discovery`, not both",
    );
}

// === Shared state ===

/// A config whose `[load_balancer]` is `lb` (line 2 on).
fn with_lb(lb: &str) -> String {
    format!("[load_balancer]\n{lb}\n[[listener]]\nport = 8080\ndefault_action = {{ fixed_response = {{ status = 200 }} }}\n")
}

#[test]
fn shared_state_takes_redis_rediss_and_unix_addresses_with_defaults() {
    let c = parse(&with_lb(
        "shared_state = { redis = \"redis://:secret@127.0.0.1:6379/1\" }",
    ))
    .unwrap();
    let s = c.load_balancer.shared_state.expect("shared_state");
    assert_eq!(s.key_prefix, "tether:");
    assert_eq!(s.lookup_timeout, Duration::from_millis(5));
    assert_eq!(s.redacted(), "redis://:***@127.0.0.1:6379/1");
    assert!(!format!("{s:?}").contains("secret"), "no password in Debug");
    let c = parse(&with_lb("shared_state = { redis = \"unix:/run/redis.sock\", key_prefix = \"chat:\", lookup_timeout = \"20ms\" }")).unwrap();
    let s = c.load_balancer.shared_state.expect("shared_state");
    assert_eq!(
        (s.key_prefix.as_str(), s.lookup_timeout),
        ("chat:", Duration::from_millis(20))
    );
    assert!(parse(&with_lb(""))
        .unwrap()
        .load_balancer
        .shared_state
        .is_none());
}

#[test]
fn shared_state_errors_name_their_place() {
    rejects(
        &with_lb("shared_state = { redis = \"http://127.0.0.1:6379\" }"),
        "2:26: invalid redis address \"http://127.0.0.1:6379\"",
    );
    rejects(
        &with_lb("shared_state = { redis = \"redis://h:1\", lookup_timeout = \"2s\" }"),
        "2:58: lookup_timeout must be between 1ms and 1s",
    );
    rejects(
        &with_lb("shared_state = { redis = \"redis://h:1\", ca_bundle = \"ca.pem\" }"),
        "2:53: ca_bundle goes with a rediss:// address",
    );
    rejects(
        &with_lb("shared_state = { redis = \"redis://h:1\", key_prefix = \"a b\" }"),
        "2:54: key_prefix must have no spaces or control characters",
    );
    rejects(
        &with_lb("shared_state = { url = \"redis://h:1\" }"),
        "2:18: unknown field `url`",
    );
}

// === Mutual TLS ===

/// An HTTPS listener (a certificate made now, in `dir`) whose
/// `mutual_authentication` is `mtls`, on line 6.
fn with_mtls(dir: &Path, mtls: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("site.pem"), dir.join("site.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    format!(
        "[[listener]]\nport = 8443\nprotocol = \"HTTPS\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\ndefault_action = {{ fixed_response = {{ status = 200 }} }}\nmutual_authentication = {mtls}\n",
        c.display(),
        k.display()
    )
}

#[test]
fn mutual_authentication_errors_name_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let with_mtls = |m: &str| with_mtls(dir.path(), m);
    rejects(
        &with_mtls("{ mode = \"verify\" }"),
        "6:25: mode = \"verify\" needs trust_store = { ca_bundle = \"ca.pem\" }",
    );
    rejects(
        &with_mtls("{ mode = \"optional\" }"),
        "6:34: unknown mutual_authentication mode \"optional\"",
    );
    rejects(
        &with_mtls("{ mode = \"passthrough\", trust_store = { ca_bundle = \"ca.pem\" } }"),
        "6:63: trust_store goes with mode = \"verify\"",
    );
    rejects(
        &with_mtls("{ mode = \"verify\", trust_store = { ca_bundle = \"/nonexistent/ca.pem\" } }"),
        "6:58: /nonexistent/ca.pem:",
    );
    rejects(
        "[[listener]]\nport = 80\ndefault_action = { fixed_response = { status = 200 } }\nmutual_authentication = { mode = \"passthrough\" }\n",
        "4:25: mutual_authentication goes with protocol = \"HTTPS\"",
    );
}
