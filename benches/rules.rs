//! Rule matching cost per request: 100 rules with path and host patterns, written
//! once as ALB wildcards and once as regex values of the same shapes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tether::rules::{
    Action, Condition, FixedResponse, Forward, Pattern, RegexValue, RequestInfo, Rule, RuleSet,
    Values,
};

fn rule_set() -> RuleSet<usize> {
    let rules = (0..100u32)
        .map(|i| {
            let mut conditions = vec![Condition::PathPattern(
                vec![
                    Pattern::case_sensitive(&format!("/svc{i}/*")),
                    Pattern::case_sensitive(&format!("/v?/svc{i}/*.json")),
                ]
                .into(),
            )];
            if i % 2 == 0 {
                conditions.push(Condition::HostHeader(
                    vec![Pattern::case_insensitive(&format!("*.svc{i}.example.com"))].into(),
                ));
            }
            Rule {
                priority: i + 1,
                conditions,
                action: Action::Forward(Forward::single(i as usize)),
                transforms: Default::default(),
            }
        })
        .collect();
    RuleSet::new(
        rules,
        Action::FixedResponse(FixedResponse {
            status: 404,
            content_type: "text/plain".into(),
            body: String::new(),
        }),
    )
}

/// The same 100 rules with regex values: what each wildcard says, anchored.
fn regex_rule_set() -> RuleSet<usize> {
    let regex = |p: String, ci: bool| RegexValue::new(&p, ci).expect("bench regex");
    let rules = (0..100u32)
        .map(|i| {
            let mut conditions = vec![Condition::PathPattern(Values {
                wildcards: Vec::new(),
                regexes: vec![
                    regex(format!("^/svc{i}/"), false),
                    regex(format!(r"^/v./svc{i}/.*\.json$"), false),
                ],
            })];
            if i % 2 == 0 {
                conditions.push(Condition::HostHeader(Values {
                    wildcards: Vec::new(),
                    regexes: vec![regex(format!(r"^.*\.svc{i}\.example\.com$"), true)],
                }));
            }
            Rule {
                priority: i + 1,
                conditions,
                action: Action::Forward(Forward::single(i as usize)),
                transforms: Default::default(),
            }
        })
        .collect();
    RuleSet::new(
        rules,
        Action::FixedResponse(FixedResponse {
            status: 404,
            content_type: "text/plain".into(),
            body: String::new(),
        }),
    )
}

fn bench(c: &mut Criterion) {
    bench_set(c, "rules_100", &rule_set());
    bench_set(c, "rules_100_regex", &regex_rule_set());
}

fn bench_set(c: &mut Criterion, name: &str, set: &RuleSet<usize>) {
    let headers: [tether::headers::Header<'_>; 0] = [];
    let req = |path: &'static str, host: &'static str| RequestInfo {
        method: "GET",
        path,
        query: Some("a=1"),
        host: Some(host),
        headers: tether::headers::Headers(&headers),
        source_ip: None,
    };
    let mut group = c.benchmark_group(name);
    let first = req("/svc0/items", "a.svc0.example.com");
    group.bench_function("first rule matches", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&first))))
    });
    let last = req("/svc99/items", "www.example.com");
    group.bench_function("last rule matches", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&last))))
    });
    let glob = req("/v1/svc98/x/y/z.json", "a.svc98.example.com");
    group.bench_function("glob near the end", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&glob))))
    });
    let none = req("/nothing/here", "www.example.com");
    group.bench_function("no rule matches", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&none))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
