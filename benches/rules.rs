//! Rule matching cost per request: 100 rules with path and host patterns.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tether::rules::{
    Action, Condition, FixedResponse, Forward, Pattern, RequestInfo, Rule, RuleSet,
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

fn bench(c: &mut Criterion) {
    let set = rule_set();
    let headers: [tether::headers::Header<'_>; 0] = [];
    let req = |path: &'static str, host: &'static str| RequestInfo {
        method: "GET",
        path,
        query: Some("a=1"),
        host: Some(host),
        headers: tether::headers::Headers(&headers),
        source_ip: None,
    };
    let mut group = c.benchmark_group("rules_100");
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
