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
