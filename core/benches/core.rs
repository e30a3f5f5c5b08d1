//! Core benchmarks: one input through the gate/session, and classifying a check body (with
//! `serde_json` on std as a reference point). Run: `cargo bench -p accessgate --bench core`.
use accessgate::{
    classify, parse_check_body, CheckOutcome, Duration, Gate, GateConfig, Instant, Session, SessionConfig,
    TokenHandle, TransientClass,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

const FAIL: CheckOutcome = CheckOutcome::transient(TransientClass::ServerError);

/// A gate in a retry loop with an attempt in flight, ready for a result.
fn gate_with_attempt() -> (Gate<8>, accessgate::CheckRequest) {
    let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, 1).unwrap();
    g.start_session(Instant::ZERO, TokenHandle(1));
    let r = g.poll_check().unwrap();
    while g.poll_event().is_some() {}
    (g, r)
}

fn inputs(c: &mut Criterion) {
    let mut grp = c.benchmark_group("input");
    grp.bench_function("check_result_grant", |b| {
        b.iter_batched(
            gate_with_attempt,
            |(mut g, r)| {
                g.handle_check_result(Instant::ZERO, r.generation, r.attempt, CheckOutcome::Granted);
                while g.poll_event().is_some() {}
                g
            },
            BatchSize::SmallInput,
        )
    });
    grp.bench_function("check_result_transient", |b| {
        b.iter_batched(
            gate_with_attempt,
            |(mut g, r)| {
                g.handle_check_result(Instant::ZERO, r.generation, r.attempt, FAIL);
                while g.poll_event().is_some() {}
                g
            },
            BatchSize::SmallInput,
        )
    });
    grp.bench_function("timeout_starts_retry", |b| {
        b.iter_batched(
            || {
                let (mut g, r) = gate_with_attempt();
                g.handle_check_result(Instant::ZERO, r.generation, r.attempt, FAIL);
                while g.poll_event().is_some() {}
                let at = g.poll_timeout().unwrap();
                (g, at)
            },
            |(mut g, at)| {
                g.handle_timeout(at);
                black_box(g.poll_check());
                while g.poll_event().is_some() {}
                g
            },
            BatchSize::SmallInput,
        )
    });
    grp.bench_function("early_timeout_noop", |b| {
        let (mut g, _) = gate_with_attempt();
        b.iter(|| g.handle_timeout(black_box(Instant::ZERO + Duration::from_millis(1))))
    });
    grp.bench_function("session_check_result_grant", |b| {
        b.iter_batched(
            || {
                let mut s: Session = Session::new(SessionConfig::DEFAULT, 1).unwrap();
                s.sign_in(
                    Instant::ZERO,
                    b"access-token",
                    b"refresh-token",
                    Duration::from_secs(3600),
                )
                .unwrap();
                let Some(accessgate::Action::Check(r)) = s.poll_action() else {
                    unreachable!()
                };
                while s.poll_event().is_some() {}
                (s, r)
            },
            |(mut s, r)| {
                s.handle_check_result(Instant::ZERO, r.generation, r.attempt, CheckOutcome::Granted);
                while s.poll_event().is_some() {}
                s
            },
            BatchSize::LargeInput,
        )
    });
    grp.finish();
}

fn classifying(c: &mut Criterion) {
    let small: &[u8] = br#"{"has_access": true}"#;
    let typical: &[u8] =
        br#"{"has_access": true, "plan": "pro", "seats": 12, "features": ["a", "b", {"c": null}]}"#;
    let html: &[u8] =
        b"<!DOCTYPE html><html><head><title>Hotel WiFi</title></head><body>Sign in</body></html>";
    let mut grp = c.benchmark_group("classify");
    for (name, body) in [("small", small), ("typical", typical), ("html", html)] {
        grp.bench_function(format!("accessgate/{name}"), |b| {
            b.iter(|| classify(black_box(200), None, black_box(body), 1024))
        });
        grp.bench_function(format!("serde_json_reference/{name}"), |b| {
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            struct Body {
                has_access: bool,
            }
            b.iter(|| {
                serde_json::from_slice::<Body>(black_box(body))
                    .map(|b| b.has_access)
                    .ok()
            })
        });
    }
    grp.bench_function("parse_check_body/small", |b| {
        b.iter(|| parse_check_body(black_box(small), 1024))
    });
    grp.finish();
}

fn sizes(_: &mut Criterion) {
    println!(
        "size_of: Gate<8> = {} B, Session<8,4,1024> = {} B",
        core::mem::size_of::<Gate<8>>(),
        core::mem::size_of::<Session>()
    );
}

criterion_group!(benches, inputs, classifying, sizes);
criterion_main!(benches);
