//! What the metrics cost a login: counting one login (its counter, its denial's, its duration),
//! one mapper evaluation and two Kratos attempts, as `Logins::run` and the Kratos client do for
//! a login that reads and writes once, on the sample providers' registry.
//!
//! Run with `cargo bench --bench metrics`; the figure is in docs/metrics.md ("Cost").

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kratos_jit::domain::Denial;
use kratos_jit::login::{Action, EntryPoint, LoginError, Outcome};
use kratos_jit::mapper::MapperKind;
use kratos_jit::metrics::Metrics;
use kratos_jit::provider::Providers;
use serde_json::json;

fn outcome(action: Action, denial: Option<Denial>) -> Result<Outcome, LoginError> {
    Ok(Outcome {
        action,
        identity_id: None,
        changed: vec![],
        denial,
        to_create: None,
        output: None,
        mapped: None,
        sessions_revoked: false,
        found_inactive: false,
    })
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers");
    let (providers, _) = Providers::load(&dir).expect("the sample providers load");
    let metrics = Metrics::new(&providers, || 0);
    let unchanged = outcome(Action::Unchanged, None);
    let denied = outcome(Action::Denied, Some(Denial::NoEmail));
    let mapped = Ok(json!({}));
    c.bench_function("metrics/one-login", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let result = if n.is_multiple_of(8) {
                &denied
            } else {
                &unchanged
            };
            let login = metrics.login(EntryPoint::LoginHook, black_box("okta-acme"));
            metrics.mapper_evaluated(
                "okta-acme",
                MapperKind::Claims,
                &mapped,
                Duration::from_micros(40),
            );
            metrics
                .kratos_attempt("find_by_credential_identifier")
                .finish(Some(200));
            metrics.kratos_attempt("patch").finish(Some(200));
            login.finish(black_box(result));
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
