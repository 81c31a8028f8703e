//! Config checks for the `jwt_validation` action: its forms, where it may go (before
//! a forward, on an HTTPS listener), ALB's limits, and the JWKS sources.

use super::*;

use crate::jwt::{ClaimFormat, JwksSource};
use crate::rules::Action;

use crate::jwt::tests::jwt_keys;

/// A temp dir with a self-signed certificate for an HTTPS listener, and the config
/// path in it (`jwks_file`s are relative to it).
struct Site {
    dir: tempfile::TempDir,
    cert: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let cert = dir.path().join("site.pem");
        let key = dir.path().join("site.key");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let cert = format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        );
        Site { dir, cert }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("t.toml")
    }

    /// An HTTPS listener (line 1) whose one rule's action is `action` on line 9, and
    /// whose default action is `default` on line 5.
    fn config(&self, default: &str, action: &str) -> String {
        self.config_with("HTTPS", default, action)
    }

    fn config_with(&self, protocol: &str, default: &str, action: &str) -> String {
        let certs = if protocol == "HTTPS" {
            format!("certificates = [{}]", self.cert)
        } else {
            "# no certificates".to_string()
        };
        format!(
            "[[listener]]\nport = 8443\nprotocol = \"{protocol}\"\n{certs}\ndefault_action = {default}\n[[listener.rule]]\npriority = 1\nconditions = {{ path_pattern = [\"/api/*\"] }}\naction = {action}\n[target_group.api]\ntargets = []\n[target_group.web]\ntargets = []\n"
        )
    }

    fn parse(&self, src: &str) -> Result<Config, ConfigError> {
        Config::parse(src, &self.path())
    }

    /// Asserts that `src` is refused at the first `needle` on `line`, with `message`.
    #[track_caller]
    fn rejects_at(&self, src: &str, line: usize, needle: &str, message: &str) {
        let l = src.lines().nth(line - 1).expect("line");
        let col = l[..l.find(needle).expect("needle on the line")]
            .chars()
            .count()
            + 1;
        match self.parse(src) {
            Ok(_) => panic!("accepted; want {line}:{col}: {message}"),
            Err(ConfigError::Invalid { span, problem, .. }) => {
                assert_eq!(
                    (span.line, span.column, problem.to_string()),
                    (line, col, message.to_string())
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
}

const ENDPOINT: &str = "https://issuer.example.com/.well-known/jwks.json";

fn jwt(fields: &str) -> String {
    format!("{{ jwt_validation = {{ issuer = \"https://issuer.example.com\", {fields} }}, forward = \"api\" }}")
}

fn forward_of(action: &Action<usize>) -> &crate::rules::Forward<usize> {
    match action {
        Action::Forward(f) => f,
        other => panic!("not a forward: {other:?}"),
    }
}

#[test]
fn the_readme_form_is_accepted_with_its_claims() {
    let site = Site::new();
    let action = jwt(&format!(
        "jwks_endpoint = \"{ENDPOINT}\", additional_claims = [{{ name = \"scope\", format = \"space-separated-values\", values = [\"read\"] }}, {{ name = \"groups\", format = \"string-array\", values = [\"ops\", \"dev\"] }}, {{ name = \"client_id\", format = \"single-string\", values = [\"svc\"] }}]"
    ));
    let c = site
        .parse(&site.config("{ forward = \"web\" }", &action))
        .unwrap();
    let rules = &c.listeners[0].rules;
    let f = forward_of(&rules.rules()[0].action);
    let v = f.jwt_validation.as_ref().expect("jwt_validation");
    assert_eq!(v.issuer, "https://issuer.example.com");
    assert_eq!(*v.keys.source(), JwksSource::Endpoint(ENDPOINT.to_string()));
    let formats: Vec<_> = v
        .claims
        .iter()
        .map(|c| (c.name.as_str(), c.format))
        .collect();
    assert_eq!(
        formats,
        [
            ("scope", ClaimFormat::SpaceSeparatedValues),
            ("groups", ClaimFormat::StringArray),
            ("client_id", ClaimFormat::SingleString)
        ]
    );
    assert_eq!(v.claims[1].values, ["ops", "dev"]);
    // The default action has none.
    assert!(forward_of(rules.default_action()).jwt_validation.is_none());
}

#[test]
fn it_goes_with_a_weighted_forward_and_on_the_default_action() {
    let site = Site::new();
    let default = format!(
        "{{ forward = {{ target_groups = [{{ name = \"api\", weight = 1 }}, {{ name = \"web\", weight = 1 }}] }}, jwt_validation = {{ issuer = \"i\", jwks_endpoint = \"{ENDPOINT}\" }} }}"
    );
    let c = site
        .parse(&site.config(&default, "{ forward = \"api\" }"))
        .unwrap();
    let f = forward_of(c.listeners[0].rules.default_action());
    assert_eq!(f.groups.len(), 2);
    assert!(f.jwt_validation.is_some());
    // The forward stays a forward to its groups once live (map_groups keeps it).
    let live = c.listeners[0].rules.map_groups(&|g: &usize| *g + 100);
    assert!(forward_of(live.default_action()).jwt_validation.is_some());
}

#[test]
fn actions_of_the_same_source_share_their_keys() {
    let site = Site::new();
    let a = jwt(&format!("jwks_endpoint = \"{ENDPOINT}\""));
    let default = format!(
        "{{ forward = \"web\", jwt_validation = {{ issuer = \"other\", jwks_endpoint = \"{ENDPOINT}\" }} }}"
    );
    let c = site.parse(&site.config(&default, &a)).unwrap();
    let rules = &c.listeners[0].rules;
    let k1 = &forward_of(&rules.rules()[0].action)
        .jwt_validation
        .as_ref()
        .unwrap()
        .keys;
    let k2 = &forward_of(rules.default_action())
        .jwt_validation
        .as_ref()
        .unwrap()
        .keys;
    assert!(std::sync::Arc::ptr_eq(k1, k2));
}

#[test]
fn a_jwks_file_is_read_relative_to_the_config() {
    let site = Site::new();
    let signer = jwt_keys::Signer::es256("k");
    std::fs::write(
        site.dir.path().join("jwks.json"),
        jwt_keys::jwks(&[&signer]).to_string(),
    )
    .unwrap();
    let c = site
        .parse(&site.config("{ forward = \"web\" }", &jwt("jwks_file = \"jwks.json\"")))
        .unwrap();
    let v = forward_of(&c.listeners[0].rules.rules()[0].action)
        .jwt_validation
        .clone()
        .unwrap();
    assert_eq!(
        *v.keys.source(),
        JwksSource::File(site.dir.path().join("jwks.json"))
    );
    assert_eq!(v.keys.snapshot().len(), 1, "read at load");
    // Missing, or not a JWKS: an error at the key.
    let src = site.config("{ forward = \"web\" }", &jwt("jwks_file = \"nope.json\""));
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("jwks_file") && e.contains("nope.json"),
        "{e}"
    );
    std::fs::write(site.dir.path().join("bad.json"), "{\"keys\": 3}").unwrap();
    let src = site.config("{ forward = \"web\" }", &jwt("jwks_file = \"bad.json\""));
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(e.contains("not a JWKS"), "{e}");
}

#[test]
fn it_goes_only_before_a_forward() {
    let site = Site::new();
    let fixed = "{ fixed_response = { status = 200 }, jwt_validation = { issuer = \"i\", jwks_endpoint = \"https://a.test/jwks\" } }";
    site.rejects_at(
        &site.config("{ forward = \"web\" }", fixed),
        9,
        "{ issuer",
        "jwt_validation goes with forward: ALB runs it before a forward, not before a fixed_response or redirect",
    );
    let redirect = "{ jwt_validation = { issuer = \"i\", jwks_endpoint = \"https://a.test/jwks\" }, redirect = { protocol = \"HTTPS\" } }";
    site.rejects_at(
        &site.config("{ forward = \"web\" }", redirect),
        9,
        "{ issuer",
        "jwt_validation goes with forward: ALB runs it before a forward, not before a fixed_response or redirect",
    );
    let alone = "{ jwt_validation = { issuer = \"i\", jwks_endpoint = \"https://a.test/jwks\" } }";
    site.rejects_at(
        &site.config(alone, "{ forward = \"api\" }"),
        5,
        "{ issuer",
        "jwt_validation needs a forward in the same action (forward = \"group\"): it runs before the forward",
    );
}

#[test]
fn it_goes_only_on_https_listeners() {
    let site = Site::new();
    let src = site.config_with(
        "HTTP",
        "{ forward = \"web\" }",
        &jwt(&format!("jwks_endpoint = \"{ENDPOINT}\"")),
    );
    site.rejects_at(
        &src,
        9,
        "{ issuer",
        "jwt_validation goes with protocol = \"HTTPS\": ALB validates bearer tokens on HTTPS listeners only",
    );
}

#[test]
fn it_takes_one_jwks_source() {
    let site = Site::new();
    let both = site.config(
        "{ forward = \"web\" }",
        &jwt(&format!(
            "jwks_endpoint = \"{ENDPOINT}\", jwks_file = \"j.json\""
        )),
    );
    site.rejects_at(
        &both,
        9,
        "\"j.json\"",
        "jwt_validation takes jwks_endpoint or jwks_file, not both",
    );
    let neither = site.config("{ forward = \"web\" }", &jwt("additional_claims = []"));
    site.rejects_at(
        &neither,
        9,
        "{ issuer",
        "jwt_validation needs jwks_endpoint = \"https://…\" or jwks_file = \"jwks.json\"",
    );
}

#[test]
fn the_endpoint_is_https_or_http_on_loopback() {
    let site = Site::new();
    for ok in [
        "http://127.0.0.1:8080/jwks.json",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
    ] {
        let src = site.config(
            "{ forward = \"web\" }",
            &jwt(&format!("jwks_endpoint = \"{ok}\"")),
        );
        assert!(site.parse(&src).is_ok(), "{ok}");
    }
    for bad in [
        "http://issuer.example.com/jwks.json",
        "ftp://127.0.0.1/jwks",
        "/jwks.json",
    ] {
        let src = site.config(
            "{ forward = \"web\" }",
            &jwt(&format!("jwks_endpoint = \"{bad}\"")),
        );
        let e = site.parse(&src).unwrap_err().to_string();
        assert!(
            e.contains(":9:") && e.contains("jwks_endpoint must be"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn additional_claims_keep_to_albs_limits() {
    let site = Site::new();
    let with_claims = |claims: &str| {
        site.config(
            "{ forward = \"web\" }",
            &jwt(&format!(
                "jwks_endpoint = \"{ENDPOINT}\", additional_claims = [{claims}]"
            )),
        )
    };
    site.rejects_at(
        &with_claims("{ name = \"exp\", format = \"single-string\", values = [\"x\"] }"),
        9,
        "\"exp\"",
        "name must not be exp, iss, nbf or iat: ALB validates those itself",
    );
    site.rejects_at(
        &with_claims("{ name = \"scope\", format = \"space-list\", values = [\"x\"] }"),
        9,
        "\"space-list\"",
        "unknown format \"space-list\": use \"single-string\", \"string-array\", \"space-separated-values\"",
    );
    site.rejects_at(
        &with_claims(
            "{ name = \"scope\", format = \"space-separated-values\", values = [\"read write\"] }",
        ),
        9,
        "\"read write\"",
        "values must have no spaces with format = \"space-separated-values\"",
    );
    site.rejects_at(
        &with_claims("{ name = \"scope\", format = \"single-string\", values = [] }"),
        9,
        "[] }",
        "an additional claim takes 1 to 10 values",
    );
    let eleven_values = (0..11)
        .map(|i| format!("\"v{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    site.rejects_at(
        &with_claims(&format!(
            "{{ name = \"scope\", format = \"string-array\", values = [{eleven_values}] }}"
        )),
        9,
        "[\"v0\"",
        "an additional claim takes 1 to 10 values",
    );
    let long = "x".repeat(257);
    site.rejects_at(
        &with_claims(&format!(
            "{{ name = \"sub\", format = \"single-string\", values = [\"{long}\"] }}"
        )),
        9,
        "\"xxx",
        "values must be 1 to 256 characters each",
    );
    site.rejects_at(
        &with_claims("{ name = \"a\", format = \"single-string\", values = [\"x\"] }, { name = \"a\", format = \"single-string\", values = [\"y\"] }"),
        9,
        "\"a\", format = \"single-string\", values = [\"y\"]",
        "claim \"a\" is listed twice",
    );
    let eleven = (0..11)
        .map(|i| format!("{{ name = \"c{i}\", format = \"single-string\", values = [\"x\"] }}"))
        .collect::<Vec<_>>()
        .join(", ");
    site.rejects_at(
        &with_claims(&eleven),
        9,
        "[{ name",
        "jwt_validation takes at most 10 additional_claims",
    );
}

#[test]
fn the_issuer_is_1_to_256_characters() {
    let site = Site::new();
    let src = site.config(
        "{ forward = \"web\" }",
        &format!("{{ jwt_validation = {{ issuer = \"\", jwks_endpoint = \"{ENDPOINT}\" }}, forward = \"api\" }}"),
    );
    site.rejects_at(&src, 9, "\"\"", "issuer must be 1 to 256 characters");
}

#[test]
fn unknown_keys_stay_errors() {
    let site = Site::new();
    // In the jwt_validation table.
    let src = site.config(
        "{ forward = \"web\" }",
        &jwt(&format!("jwks_endpoint = \"{ENDPOINT}\", audience = \"x\"")),
    );
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("unknown field `audience`"),
        "{e}"
    );
    // In the action table.
    let src = site.config("{ forward = \"web\" }", "{ forwrd = \"api\" }");
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("unknown field `forwrd`") && e.contains("`jwt_validation`"),
        "{e}"
    );
    // Two routing actions in one table.
    let src = site.config(
        "{ forward = \"web\" }",
        "{ forward = \"api\", fixed_response = { status = 200 } }",
    );
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("one of forward, fixed_response and redirect"),
        "{e}"
    );
    // An empty table.
    let src = site.config("{ forward = \"web\" }", "{}");
    let e = site.parse(&src).unwrap_err().to_string();
    assert!(e.contains(":9:") && e.contains("needs forward"), "{e}");
}
