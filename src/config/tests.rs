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
        ConfigError::Invalid {
            line,
            column,
            message,
            ..
        } => (line, column, message),
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
