//! `tether check`: exit 0 with a summary for good configs, exit 2 with
//! FILE:LINE:COLUMN: message for each kind of bad one.

use std::process::Command;

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run tether check");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // Strip the temp path so cases can assert the rest exactly.
    let prefix = format!("{}:", path.display());
    let stderr = stderr
        .strip_prefix(&prefix)
        .map(str::to_string)
        .unwrap_or(stderr);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

const GOOD: &str = r#"[[listener]]
port = 8080
default_action = { forward = "web" }
[target_group.web]
targets = ["127.0.0.1:9001"]
"#;

#[test]
fn it_should_accept_every_example_config_in_config_dir() {
    let mut seen = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).expect("config/")
    {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(env!("CARGO_BIN_EXE_tether"))
                .args(["check", "--config"])
                .arg(&path)
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected example configs in config/");
}

#[test]
fn it_should_print_a_one_line_summary_for_a_good_config() {
    let (code, stdout, _) = check(GOOD);
    assert_eq!(code, 0);
    assert!(stdout.contains("1 listener(s)"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
}

/// (config, expected "LINE:COLUMN: message" prefix of stderr)
const BAD: &[(&str, &str, &str)] = &[
    (
        "unknown key",
        "[[listener]]\nport = 8080\nprotocl = \"HTTP\"\ndefault_action = { forward = \"web\" }\n",
        "3:1: unknown field `protocl`",
    ),
    (
        "wrong type",
        "[[listener]]\nport = \"eighty\"\ndefault_action = { forward = \"web\" }\n",
        "2:8: invalid type: string \"eighty\", expected u16",
    ),
    (
        "bad duration",
        "[load_balancer]\nidle_timeout = \"60 parsecs\"\n",
        "2:16: invalid duration \"60 parsecs\"",
    ),
    (
        "duration out of range",
        "[load_balancer]\nidle_timeout = \"2h\"\n",
        "2:16: idle_timeout must be between 1s and 4000s",
    ),
    (
        "duplicate priority",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/b\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "9:12: duplicate priority 5",
    ),
    (
        "undefined target group",
        "[[listener]]\nport = 8080\ndefault_action = { forward = { target_groups = [{ name = \"web\", weight = 1 }, { name = \"api\", weight = 1 }] } }\n[target_group.web]\ntargets = []\n",
        "3:88: unknown target group \"api\"",
    ),
    (
        "bad CIDR",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = { source_ip = [\"10.0.0.0/33\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:29: invalid CIDR \"10.0.0.0/33\"",
    ),
    (
        "port out of range",
        "[[listener]]\nport = 70000\ndefault_action = { forward = \"web\" }\n",
        "2:8: invalid value: integer `70000`, expected u16",
    ),
    (
        "port zero",
        "[[listener]]\nport = 0\ndefault_action = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "2:8: port must be between 1 and 65535",
    ),
    (
        "bad target address",
        "[target_group.web]\ntargets = [\"10.0.0.1\"]\n",
        "2:12: invalid target \"10.0.0.1\": expected IP:port",
    ),
    (
        "priority out of range",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 50001\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "5:12: priority must be between 1 and 50000",
    ),
    (
        "redirect that changes nothing",
        "[[listener]]\nport = 8080\ndefault_action = { redirect = { status = 301 } }\n",
        "3:18: a redirect must change something",
    ),
    (
        "fixed response with a 3XX status",
        "[[listener]]\nport = 8080\ndefault_action = { fixed_response = { status = 302 } }\n",
        "3:48: status must be 2XX, 4XX or 5XX",
    ),
    (
        "lower-case method",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = { http_request_method = [\"get\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:39: invalid method \"get\"",
    ),
    (
        "rule without conditions",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 1\nconditions = {}\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "6:14: a rule needs at least one condition",
    ),
    (
        "no listener",
        "[target_group.web]\ntargets = []\n",
        "1:1: no [[listener]]",
    ),
    (
        "reserved app cookie name",
        "[target_group.web]\nstickiness = { type = \"app_cookie\", cookie_name = \"AWSALBAPP-1\" }\n",
        "2:51: cookie name \"AWSALBAPP-1\" is reserved",
    ),
    (
        "app cookie without a name",
        "[target_group.web]\nstickiness = { type = \"app_cookie\" }\n",
        "2:14: type = \"app_cookie\" needs cookie_name",
    ),
    (
        "unknown stickiness type",
        "[target_group.web]\nstickiness = { type = \"source_ip\" }\n",
        "2:23: unknown stickiness type \"source_ip\"",
    ),
    (
        "stickiness duration out of range",
        "[target_group.web]\nstickiness = { type = \"lb_cookie\", duration = \"8d\" }\n",
        "2:47: duration must be between 1s and 7days",
    ),
    (
        "sticky key too short",
        "[load_balancer]\nsticky_keys = [\"abcdef\"]\n",
        "2:16: sticky key (literal): key material is 3 bytes; at least 32 random bytes are needed",
    ),
    (
        "sticky key not hex or base64",
        "[load_balancer]\nsticky_keys = [\"this is not a key at all, not at all!!\"]\n",
        "2:16: sticky key (literal): key material is neither hex nor base64",
    ),
    (
        "sticky key from an unset variable",
        "[load_balancer]\nsticky_keys = [\"env:TETHER_TEST_SURELY_UNSET\"]\n",
        "2:16: sticky key \"env:TETHER_TEST_SURELY_UNSET\": environment variable TETHER_TEST_SURELY_UNSET is not set",
    ),
    (
        "sticky key from a missing file",
        "[load_balancer]\nsticky_keys = [\"file:/nonexistent/key\"]\n",
        "2:16: sticky key \"file:/nonexistent/key\": cannot read /nonexistent/key",
    ),
    (
        "group stickiness out of range",
        "[[listener]]\nport = 80\ndefault_action = { forward = { target_groups = [{ name = \"a\" }, { name = \"b\" }], stickiness = { duration = \"0s\" } } }\n[target_group.a]\n[target_group.b]\n",
        "3:108: duration must be between 1s and 7days",
    ),
    (
        "health check interval below ALB's minimum",
        "[target_group.web]\nhealth_check = { interval = \"1s\" }\n",
        "2:29: interval must be between 5s and 5m",
    ),
    (
        "matcher out of range",
        "[target_group.web]\nhealth_check = { matcher = \"600\" }\n",
        "2:28: invalid matcher \"600\"",
    ),
    (
        "healthy threshold out of range",
        "[target_group.web]\nhealth_check = { healthy_threshold = 11 }\n",
        "2:38: healthy_threshold must be between 2 and 10",
    ),
    (
        "timeout not below interval",
        "[target_group.web]\nhealth_check = { interval = \"10s\", timeout = \"10s\" }\n",
        "2:46: timeout must be shorter than interval",
    ),
    (
        "unknown health check protocol",
        "[target_group.web]\nhealth_check = { protocol = \"TCP\" }\n",
        "2:29: unknown health check protocol",
    ),
    (
        "bad health check port",
        "[target_group.web]\nhealth_check = { port = \"eighty\" }\n",
        "2:25: port must be 1-65535 or \"traffic-port\"",
    ),
    (
        "slow start out of range",
        "[target_group.web]\nslow_start = \"10s\"\n",
        "2:14: slow_start must be between 30s and 15m",
    ),
    (
        "deregistration delay out of range",
        "[target_group.web]\nderegistration_delay = \"2h\"\n",
        "2:24: deregistration_delay must be between 0s and 1h",
    ),
    (
        "minimum healthy with both kinds",
        "[target_group.web]\nminimum_healthy_targets = { count = 1, percentage = 50 }\n",
        "2:27: give either { count = N } or { percentage = N }",
    ),
    (
        "minimum healthy percentage out of range",
        "[target_group.web]\nminimum_healthy_targets = { percentage = 101 }\n",
        "2:42: percentage must be between 1 and 100",
    ),
    (
        "slow start with least outstanding requests",
        "[target_group.web]\nalgorithm = \"least_outstanding_requests\"\nslow_start = \"60s\"\n",
        "3:14: slow_start does not go with least_outstanding_requests",
    ),
    (
        "TOML syntax",
        "[[listener]\nport = 8080\n",
        "1:11: ",
    ),
];

#[test]
fn it_should_name_line_and_column_for_each_bad_config_kind() {
    for (what, text, want) in BAD {
        let (code, stdout, stderr) = check(text);
        assert_eq!(code, 2, "{what}: exit code; stderr: {stderr}");
        assert!(stdout.is_empty(), "{what}: {stdout}");
        assert!(
            stderr.starts_with(want),
            "{what}: want `{want}`, got `{stderr}`"
        );
    }
}

#[test]
fn it_should_read_sticky_keys_from_env_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("key"), format!("{}\n", "ab".repeat(32))).expect("key");
    let path = dir.path().join("ok.toml");
    let text =
        format!("[load_balancer]\nsticky_keys = [\"env:TETHER_TEST_KEY\", \"file:key\"]\n{GOOD}");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .env("TETHER_TEST_KEY", base64_of_40_bytes())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base64_of_40_bytes() -> &'static str {
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJw=="
}

#[test]
fn it_should_name_an_unreadable_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config", "/nonexistent/tether.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("/nonexistent/tether.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn it_should_refuse_to_run_a_bad_config_with_the_same_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[load_balancer]\nthreads = 0\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:11: threads must be at least 1"),
        "{stderr}"
    );
}
