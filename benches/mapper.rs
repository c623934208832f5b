//! Mapper engine benchmarks (issue targets: ≥ 100,000 evaluations/s on one core for a 20-group
//! user, claims in and JSON out included; 1,000 providers loaded and compiled in ≤ 1 s).
//!
//! Run with `cargo bench --bench mapper`; figures are recorded in the README.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kratos_jit::mapper::{Evaluator, Isolation, Limits, MapperEngine, MapperSource, WorkerProgram};
use kratos_jit::provider::Providers;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn okta_acme() -> MapperSource {
    let path = root().join("mappers/okta-acme/mapper.jsonnet");
    MapperSource::new("okta-acme", &path, std::fs::read_to_string(&path).unwrap())
}

/// The admin fixture with 20 groups (the user's own two plus 18 team groups), as JSON bytes.
fn claims_with_20_groups() -> Vec<u8> {
    let mut claims: Value = serde_json::from_slice(
        &std::fs::read(root().join("mappers/okta-acme/tests/admin.claims.json")).unwrap(),
    )
    .unwrap();
    let mut groups = vec![Value::from("Everyone"), Value::from("Acme-Users")];
    groups.extend((0..18).map(|i| Value::from(format!("Team-{i:03}"))));
    claims["raw_claims"]["groups"] = Value::Array(groups.clone());
    claims["raw_claims"]["raw"]["groups"] = Value::Array(groups);
    serde_json::to_vec(&claims).unwrap()
}

fn claims_with_201_groups() -> Vec<u8> {
    std::fs::read(root().join("mappers/okta-acme/tests/many-groups.claims.json")).unwrap()
}

/// One evaluation as the sidecar does it: claims bytes parsed, mapper run, output serialized.
fn map_once(ev: &Evaluator, identity: &Value, claims: &[u8]) -> Vec<u8> {
    let claims: Value = serde_json::from_slice(claims).unwrap();
    let out = ev.evaluate("okta-acme", &claims, identity).unwrap();
    let bytes = serde_json::to_vec(&out).unwrap();
    // The worker does this after answering; it belongs to the cost of an evaluation.
    ev.collect_garbage_now_and_then();
    bytes
}

fn evaluation(c: &mut Criterion) {
    let ev = Evaluator::new(&[okta_acme()], Limits::default()).unwrap();
    let identity = kratos_jit::mapper::empty_identity();
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(1));
    for (name, claims) in [
        ("okta-acme/20-groups", claims_with_20_groups()),
        ("okta-acme/201-groups", claims_with_201_groups()),
    ] {
        assert!(!map_once(&ev, &identity, &claims).is_empty());
        group.bench_function(name, |b| {
            b.iter(|| map_once(&ev, &identity, black_box(&claims)))
        });
    }
    group.finish();

    // The same evaluation through the engine with one worker process: adds the hand-off to the
    // worker thread and the round trip over the worker's pipes.
    let program = WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit"));
    let engine = MapperEngine::start(
        vec![okta_acme()],
        Limits::default(),
        1,
        Isolation::Processes(program),
    )
    .unwrap();
    let claims: Value = serde_json::from_slice(&claims_with_20_groups()).unwrap();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("worker-process/okta-acme/20-groups", |b| {
        b.iter(|| {
            engine
                .evaluate_blocking("okta-acme", black_box(claims.clone()), identity.clone())
                .unwrap()
        })
    });
    group.finish();
}

/// A mappers/ tree of `n` providers, each a copy of okta-acme with its own id and tenant.
fn generated_tree(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mapper = std::fs::read_to_string(root().join("mappers/okta-acme/mapper.jsonnet")).unwrap();
    // okta-acme has `[scim] enabled`, which needs its SCIM mapper beside the claims mapper.
    let scim = std::fs::read_to_string(root().join("mappers/okta-acme/scim.jsonnet")).unwrap();
    let settings = std::fs::read_to_string(root().join("mappers/okta-acme/provider.toml")).unwrap();
    let claims =
        std::fs::read_to_string(root().join("mappers/okta-acme/tests/admin.claims.json")).unwrap();
    let expect =
        std::fs::read_to_string(root().join("mappers/okta-acme/tests/admin.expect.json")).unwrap();
    for i in 0..n {
        let dir = tmp.path().join(format!("customer-{i:04}"));
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::write(
            dir.join("mapper.jsonnet"),
            format!("// customer {i}\n{mapper}"),
        )
        .unwrap();
        std::fs::write(dir.join("scim.jsonnet"), format!("// customer {i}\n{scim}")).unwrap();
        std::fs::write(
            dir.join("provider.toml"),
            settings.replace("tenant-acme", &format!("tenant-{i:04}")),
        )
        .unwrap();
        std::fs::write(dir.join("tests/admin.claims.json"), &claims).unwrap();
        std::fs::write(dir.join("tests/admin.expect.json"), &expect).unwrap();
    }
    tmp
}

fn loading(c: &mut Criterion) {
    let tree = generated_tree(1000);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("1000-providers", |b| {
        b.iter(|| {
            let (providers, _) = Providers::load(tree.path()).unwrap_or_else(|e| panic!("{e:?}"));
            let ev = Evaluator::new(&providers.mapper_sources(), Limits::default()).unwrap();
            black_box((providers.len(), ev));
        })
    });
    group.finish();
}

criterion_group!(benches, evaluation, loading);
criterion_main!(benches);
