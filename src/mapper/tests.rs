use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use serde_json::value::RawValue;

use super::evaluator::COLLECT_EVERY;
use super::*;

fn source(provider: &str, code: &str) -> MapperSource {
    MapperSource::new(provider, format!("mappers/{provider}/mapper.jsonnet"), code)
}

fn evaluator(code: &str) -> Evaluator {
    Evaluator::new(&[source("p", code)], Limits::default()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Default limits but no allocation budget to speak of, so that work which allocates quickly
/// (an optimised build) meets the time limit first.
fn time_only_limits() -> Limits {
    Limits {
        max_allocated_bytes: u64::MAX,
        ..Limits::default()
    }
}

const PASSTHROUGH: &str = r#"
local claims = std.extVar('claims');
local identity = std.extVar('identity');
{ identity: { traits: { email: claims.email, previous: std.get(identity.traits, 'role', 'none') } } }
"#;

#[test]
fn claims_and_identity_ext_vars_reach_the_mapper() {
    let ev = evaluator(PASSTHROUGH);
    let out = ev
        .evaluate(
            "p",
            &json!({"email": "a@b.example"}),
            &json!({"traits": {"role": "admin"}}),
        )
        .unwrap();
    assert_eq!(
        out,
        json!({"identity": {"traits": {"email": "a@b.example", "previous": "admin"}}})
    );
}

#[test]
fn claims_of_one_evaluation_do_not_leak_into_the_next() {
    let ev = evaluator(PASSTHROUGH);
    ev.evaluate("p", &json!({"email": "first@b.example"}), &empty_identity())
        .unwrap();
    let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
    assert!(
        matches!(err, MapperError::MissingField { ref field, .. } if field == "email"),
        "{err:?}"
    );
}

#[test]
fn error_expression_becomes_a_denial_with_its_message() {
    let ev = evaluator("error 'acme: the IdP sent no e-mail address'");
    let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
    assert!(err.is_denial());
    assert_eq!(err.to_string(), "acme: the IdP sent no e-mail address");
}

#[test]
fn a_missing_claim_names_the_claim_and_the_output_field() {
    let ev = evaluator(
        "local c = std.extVar('claims');\n{ identity: { traits: { name: c.given_name } } }",
    );
    let err = ev
        .evaluate("p", &json!({"sub": "x"}), &empty_identity())
        .unwrap_err();
    match &err {
        MapperError::MissingField {
            field,
            output_field,
            ..
        } => {
            assert_eq!(field, "given_name");
            assert_eq!(
                output_field.as_deref(),
                Some("identity.traits.name"),
                "{err}"
            );
        }
        other => panic!("expected MissingField, got {other:?}"),
    }
    assert!(err.to_string().contains("`given_name`"), "{err}");
}

#[test]
fn a_syntax_error_is_reported_with_file_and_line() {
    let err = compile(&source("p", "{\n  identity: {\n    traits: { a: 1 \n}")).unwrap_err();
    match &err {
        MapperError::Compile { location, .. } => {
            assert_eq!(location.path, PathBuf::from("mappers/p/mapper.jsonnet"));
            assert!(location.line >= 3, "{err}");
        }
        other => panic!("expected Compile, got {other:?}"),
    }
}

#[test]
fn imports_are_refused() {
    let ev = evaluator("{ identity: { traits: { x: importstr '/etc/hostname' } } }");
    let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
    assert!(
        err.to_string().contains("imports are not supported"),
        "{err}"
    );
}

#[test]
fn infinite_recursion_is_a_stack_overflow_not_a_crash() {
    let ev = evaluator("local f(x) = f(x + 1); { identity: { traits: { x: f(0) } } }");
    let started = Instant::now();
    let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
    assert_eq!(err, MapperError::StackOverflow(500));
    assert!(started.elapsed() < Duration::from_secs(1));
    // The evaluator is still usable afterwards, with its depth limit restored.
    let ok = evaluator(PASSTHROUGH);
    assert!(
        ok.evaluate("p", &json!({"email": "x@y"}), &empty_identity())
            .is_ok()
    );
}

#[test]
fn exponential_work_is_stopped_by_the_time_limit() {
    let code = "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); { identity: { traits: { x: f(40) } } }";
    let ev = Evaluator::new(&[source("p", code)], time_only_limits()).unwrap();
    let started = Instant::now();
    let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
    assert_eq!(err, MapperError::Timeout(Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_huge_output_is_refused_without_exhausting_memory() {
    // The in-thread guard sees these; `std.makeArray(1e9, ...)` is contained by worker
    // processes instead (tests/mapper_isolation.rs).
    for code in [
        "{ identity: { traits: { x: std.repeat('x', 300000) } } }",
        "{ identity: { traits: { x: [std.toString(i) for i in std.range(1, 200000)] } } }",
    ] {
        let ev = evaluator(code);
        let started = Instant::now();
        let err = ev.evaluate("p", &json!({}), &empty_identity()).unwrap_err();
        assert!(
            matches!(
                err,
                MapperError::OutputTooLarge(_)
                    | MapperError::Timeout(_)
                    | MapperError::TooMuchMemory(_)
            ),
            "{code}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{code}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_runaway_mapper_does_not_stall_other_providers() {
    let engine = MapperEngine::start(
        vec![
            source("runaway", "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); { identity: { traits: { x: f(60) } } }"),
            source("good", PASSTHROUGH),
        ],
        time_only_limits(),
        2,
        Isolation::Threads,
    )
    .unwrap();
    let runaway = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.evaluate_blocking("runaway", json!({}), empty_identity()))
    };
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let good = engine
        .evaluate_blocking("good", json!({"email": "a@b"}), empty_identity())
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(good["identity"]["traits"]["email"], "a@b");
    assert_eq!(
        runaway.join().unwrap().unwrap_err(),
        MapperError::Timeout(Duration::from_secs(1))
    );
}

#[test]
fn the_engine_reports_every_compile_error_at_start() {
    let errors = match MapperEngine::start(
        vec![
            source("a", "{"),
            source("b", "{ identity: { traits: {} } }"),
            source("c", "local x = ; x"),
        ],
        Limits::default(),
        1,
        Isolation::Threads,
    ) {
        Err(errors) => errors,
        Ok(_) => panic!("broken mappers were accepted"),
    };
    assert_eq!(errors.len(), 2);
}

#[tokio::test]
async fn the_engine_serves_async_callers() {
    let engine = MapperEngine::start(
        vec![source("good", PASSTHROUGH)],
        Limits::default(),
        1,
        Isolation::Threads,
    )
    .unwrap();
    let out = engine
        .evaluate("good", (&json!({"email": "a@b"})).into(), &empty_identity())
        .await
        .unwrap();
    assert_eq!(out["identity"]["traits"]["previous"], "none");
    let err = engine
        .evaluate("nope", (&json!({})).into(), &empty_identity())
        .await
        .unwrap_err();
    assert_eq!(err, MapperError::UnknownProvider("nope".into()));
}

#[test]
fn a_long_lived_evaluator_does_not_keep_the_garbage_of_past_evaluations() {
    // The okta-acme sample's closures and objects leave reference cycles behind each evaluation.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers/okta-acme");
    let ev = evaluator(&std::fs::read_to_string(dir.join("mapper.jsonnet")).unwrap());
    let claims: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("tests/admin.claims.json")).unwrap(),
    )
    .unwrap();
    for _ in 0..COLLECT_EVERY * 200 {
        ev.evaluate("p", &claims, &empty_identity()).unwrap();
        ev.collect_garbage_now_and_then();
    }
    let settled = jrsonnet_gcmodule::count_thread_tracked();
    for _ in 0..COLLECT_EVERY * 2000 {
        ev.evaluate("p", &claims, &empty_identity()).unwrap();
        ev.collect_garbage_now_and_then();
    }
    let after = jrsonnet_gcmodule::count_thread_tracked();
    // Bounded by what one collection period can accumulate, not by the number of evaluations.
    assert!(
        after <= settled + 2_000,
        "tracked objects grew from {settled} to {after}"
    );
}

#[tokio::test]
async fn threads_read_claims_given_as_json_text() {
    let engine = MapperEngine::start(
        vec![source("good", PASSTHROUGH)],
        Limits::default(),
        1,
        Isolation::Threads,
    )
    .unwrap();
    let raw: Box<RawValue> = serde_json::from_str("{\n \"email\": \"a@b\"\n}").unwrap();
    let out = engine
        .evaluate("good", (&*raw).into(), &empty_identity())
        .await
        .unwrap();
    assert_eq!(out["identity"]["traits"]["email"], "a@b");
}

const SCIM: &str = r#"
local scim = std.extVar('scim');
local identity = std.extVar('identity');
{ identity: { traits: {
  email: scim.userName,
  groups: [g.displayName for g in scim.groups],
  previous: std.get(identity.traits, 'role', 'none'),
} } }
"#;

fn scim_input() -> crate::domain::ScimInput {
    crate::domain::ScimInput::from_value(json!({
        "userName": "ada@acme.example",
        "groups": [{"value": "g1", "displayName": "Acme-Admins"}],
    }))
    .unwrap()
}

/// A provider with both kinds of mapper, the SCIM one reading `scim`.
fn both_kinds() -> Vec<MapperSource> {
    vec![
        source("p", PASSTHROUGH),
        MapperSource::scim("p", "mappers/p/scim.jsonnet", SCIM),
    ]
}

#[test]
fn a_scim_mapper_is_given_the_scim_input_and_the_identity() {
    let ev = Evaluator::new(&both_kinds(), Limits::default()).unwrap();

    let out = ev
        .evaluate_kind(
            "p",
            MapperKind::Scim,
            scim_input().as_value(),
            &json!({"traits": {"role": "admin"}}),
        )
        .unwrap();

    assert_eq!(
        out,
        json!({"identity": {"traits": {"email": "ada@acme.example", "groups": ["Acme-Admins"], "previous": "admin"}}})
    );
    // The claims mapper of the same provider still runs on claims.
    let claims = ev
        .evaluate("p", &json!({"email": "c@d.example"}), &empty_identity())
        .unwrap();
    assert_eq!(claims["identity"]["traits"]["email"], "c@d.example");
}

#[test]
fn a_scim_mapper_asking_for_claims_fails_naming_the_ext_vars_it_is_given() {
    let reads_claims = "{ identity: { traits: { email: std.extVar('claims').email } } }";
    let ev = Evaluator::new(
        &[
            source("p", PASSTHROUGH),
            MapperSource::scim("p", "mappers/p/scim.jsonnet", reads_claims),
        ],
        Limits::default(),
    )
    .unwrap();
    // A claims evaluation first, so that a `claims` left bound from it would show.
    ev.evaluate("p", &json!({"email": "c@d.example"}), &empty_identity())
        .unwrap();

    let error = ev
        .evaluate_kind(
            "p",
            MapperKind::Scim,
            scim_input().as_value(),
            &empty_identity(),
        )
        .unwrap_err();

    let text = error.to_string();
    assert!(
        text.contains("std.extVar('claims') is not given to a SCIM mapper"),
        "{text}"
    );
    assert!(text.contains("scim.jsonnet:1:"), "{text}");
}

#[test]
fn a_claims_mapper_never_sees_the_scim_input() {
    let reads_scim = "{ identity: { traits: { email: std.extVar('scim').userName } } }";
    let ev = Evaluator::new(
        &[
            source("p", reads_scim),
            MapperSource::scim("p", "mappers/p/scim.jsonnet", SCIM),
        ],
        Limits::default(),
    )
    .unwrap();
    ev.evaluate_kind(
        "p",
        MapperKind::Scim,
        scim_input().as_value(),
        &empty_identity(),
    )
    .unwrap();

    let error = ev
        .evaluate("p", &json!({"email": "c@d.example"}), &empty_identity())
        .unwrap_err();

    assert!(
        error
            .to_string()
            .contains("std.extVar('scim') is given only to a provider's SCIM mapper"),
        "{error}"
    );
}

#[test]
fn a_scim_input_for_a_provider_without_a_scim_mapper_is_an_engine_error() {
    let ev = evaluator(PASSTHROUGH);

    let error = ev
        .evaluate_kind(
            "p",
            MapperKind::Scim,
            scim_input().as_value(),
            &empty_identity(),
        )
        .unwrap_err();

    assert_eq!(error, MapperError::NoScimMapper("p".into()));
}

/// Worker processes carry the kind in their protocol; `check` runs the sample SCIM fixtures
/// through them (tests/cli.rs).
#[tokio::test]
async fn the_engine_runs_a_scim_mapper_for_a_scim_input() {
    let engine =
        MapperEngine::start(both_kinds(), Limits::default(), 1, Isolation::Threads).unwrap();
    let input = scim_input();

    let out = engine
        .evaluate("p", (&input).into(), &empty_identity())
        .await
        .unwrap();

    assert_eq!(out["identity"]["traits"]["groups"], json!(["Acme-Admins"]));
}
