//! Per-request stickiness cost: opening a cookie and finding its target, sealing a
//! new one, and a whole pick (cookie, sid, or the algorithm).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use tether::health::{Reason, State};
use tether::settings::{Algorithm, HealthCheck, Lifecycle, Stickiness, StickinessKind};
use tether::socketio::SidTable;
use tether::sticky::{unix_now, KeyRing, Pin, Purpose};
use tether::target_group::{PinHints, SocketIoPinning, Target, TargetGroup};

fn group(n: u16) -> TargetGroup {
    let targets = (0..n)
        .map(|i| Arc::new(Target::new(SocketAddr::from(([10, 0, 1, 10], 3000 + i)))))
        .collect();
    TargetGroup::new(
        "socket",
        Algorithm::RoundRobin,
        Duration::from_secs(10),
        targets,
    )
    .with_stickiness(Some(Stickiness {
        kind: StickinessKind::LbCookie,
        duration: Duration::from_secs(86400),
        secure: false,
        http_only: false,
    }))
    .with_socketio(Some(SocketIoPinning {
        path: "/socket.io/".into(),
        sessions: Arc::new(SidTable::new(1 << 16)),
        shared: None,
    }))
}

fn bench(c: &mut Criterion) {
    let keys = KeyRing::new(&[vec![7u8; 32]]).expect("key");
    let g = group(8);
    let now = SystemTime::now();
    let pin = Pin {
        group: "socket".into(),
        target: Some(SocketAddr::from(([10, 0, 1, 10], 3005))),
        issued: unix_now(now),
    };
    let cookie = keys.seal(Purpose::LbCookie, &pin);

    let mut s = c.benchmark_group("sticky");
    s.bench_function("seal AWSALB", |b| {
        b.iter(|| black_box(keys.seal(Purpose::LbCookie, black_box(&pin))))
    });
    s.bench_function("open AWSALB + target lookup", |b| {
        b.iter(|| {
            let hints = PinHints {
                lb_cookie: Some(black_box(&cookie)),
                ..Default::default()
            };
            black_box(g.pinned(&hints, &keys, now))
        })
    });
    s.bench_function("pick: valid cookie", |b| {
        b.iter(|| {
            let hints = PinHints {
                lb_cookie: Some(black_box(&cookie)),
                ..Default::default()
            };
            black_box(g.pick(&hints, &keys, now, None))
        })
    });
    s.bench_function("pick: tampered cookie, algorithm", |b| {
        let mut bad = cookie.clone().into_bytes();
        bad[20] ^= 1;
        let bad = String::from_utf8(bad).expect("ascii");
        b.iter(|| {
            let hints = PinHints {
                lb_cookie: Some(black_box(&bad)),
                ..Default::default()
            };
            black_box(g.pick(&hints, &keys, now, None))
        })
    });
    if let Some(sio) = &g.socketio {
        for i in 0..10_000 {
            sio.sessions.insert(
                &format!("sid{i:05}xxxxxxxxxxx"),
                pin.target.expect("t"),
                Duration::from_secs(45),
                Instant::now(),
            );
        }
    }
    s.bench_function("pick: socket.io sid (10k sessions)", |b| {
        b.iter(|| {
            let hints = PinHints {
                sid: Some(black_box("sid04242xxxxxxxxxxx")),
                ..Default::default()
            };
            black_box(g.pick(&hints, &keys, now, None))
        })
    });
    s.bench_function("pick: no pin, round robin", |b| {
        b.iter(|| black_box(g.pick(&PinHints::default(), &keys, now, None)))
    });
    // With health: checks on, 3 of 8 targets unhealthy, one in slow start.
    let checked = group(8).with_lifecycle(
        Lifecycle {
            health_check: HealthCheck::default(),
            slow_start: Duration::from_secs(60),
            ..Lifecycle::default()
        },
        true,
    );
    for (i, t) in checked.targets().iter().enumerate() {
        t.set_state(
            if i % 3 == 1 {
                State::Unhealthy
            } else {
                State::Healthy
            },
            Reason::None,
        );
    }
    checked.refresh_view();
    s.bench_function("pick with health: valid cookie", |b| {
        b.iter(|| {
            let hints = PinHints {
                lb_cookie: Some(black_box(&cookie)),
                ..Default::default()
            };
            black_box(checked.pick(&hints, &keys, now, None))
        })
    });
    s.bench_function("pick with health: no pin, slow start ramp", |b| {
        b.iter(|| black_box(checked.pick(&PinHints::default(), &keys, now, None)))
    });
    s.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
