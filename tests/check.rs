//! `tether check` (and `run`) as a process: exit 0 with a one-line summary
//! for good configs, exit 2 with FILE:LINE:COLUMN: message on stderr for bad
//! ones. What each rule reports, and where, is unit-tested against
//! `Config::parse` in `src/config/tests.rs`; these cases keep what only the
//! binary shows: exit codes, the streams, paths on disk and the environment.

use std::process::Command;

/// Runs `tether check` on `text` written to a temp `bad.toml`: exit code,
/// stdout, trimmed stderr, and the path it was written to.
fn check(text: &str) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run tether check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
        path.display().to_string(),
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
    let (code, stdout, _, _) = check(GOOD);
    assert_eq!(code, 0);
    assert!(stdout.contains("1 listener(s)"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
}

/// (what, config, expected "LINE:COLUMN: message" prefix of stderr after
/// "FILE:"): one TOML syntax error, one serde error, one validation error.
/// Every other rule is a unit test of `Config::parse` in `src/config/tests.rs`.
const BAD: &[(&str, &str, &str)] = &[
    ("TOML syntax", "[[listener]\nport = 8080\n", "1:11: "),
    (
        "unknown key",
        "[[listener]]\nport = 8080\nprotocl = \"HTTP\"\ndefault_action = { forward = \"web\" }\n",
        "3:1: unknown field `protocl`",
    ),
    (
        "duplicate priority",
        "[[listener]]\nport = 8080\ndefault_action = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/a\"] }\naction = { forward = \"web\" }\n[[listener.rule]]\npriority = 5\nconditions = { path_pattern = [\"/b\"] }\naction = { forward = \"web\" }\n[target_group.web]\ntargets = []\n",
        "9:12: duplicate priority 5",
    ),
];

#[test]
fn it_should_exit_2_with_file_line_column_and_message_on_stderr() {
    for (what, text, want) in BAD {
        let (code, stdout, stderr, path) = check(text);
        assert_eq!(code, 2, "{what}: exit code; stderr: {stderr}");
        assert!(stdout.is_empty(), "{what}: {stdout}");
        let want = format!("{path}:{want}");
        assert!(
            stderr.starts_with(&want),
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

#[test]
fn it_should_refuse_an_admin_address_that_is_not_loopback_without_a_token() {
    let exposed = format!("[load_balancer]\nadmin = \"0.0.0.0:9900\"\n{GOOD}");
    let (code, stdout, stderr, path) = check(&exposed);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!(
            "{path}:2:9: admin address 0.0.0.0:9900 is not loopback: set admin_token"
        )),
        "{stderr}"
    );
    // The same address with a token (here from the environment) is accepted.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exposed.toml");
    std::fs::write(
        &path,
        format!(
            "[load_balancer]\nadmin = \"0.0.0.0:9900\"\nadmin_token = \"env:TETHER_CHECK_ADMIN_TOKEN\"\n{GOOD}"
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--config"])
        .arg(&path)
        .env("TETHER_CHECK_ADMIN_TOKEN", "a-long-enough-admin-token")
        .output()
        .expect("run tether check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
