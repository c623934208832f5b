//! Runaway mappers are contained by worker processes: each is refused within the time bound,
//! the process survives, and other providers' evaluations keep being served meanwhile.

use std::time::{Duration, Instant};

use kratos_jit::mapper::{
    Isolation, Limits, MapperEngine, MapperError, MapperSource, WorkerProgram, empty_identity,
};
use serde_json::json;

const GOOD: &str = "local c = std.extVar('claims'); { identity: { traits: { email: c.email } } }";

fn engine(runaway: &str, workers: usize) -> MapperEngine {
    let sources = vec![
        MapperSource::new("runaway", "mappers/runaway/mapper.jsonnet", runaway),
        MapperSource::new("good", "mappers/good/mapper.jsonnet", GOOD),
    ];
    let isolation = Isolation::Processes(WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")));
    MapperEngine::start(sources, Limits::default(), workers, isolation)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// Runs the runaway mapper on one thread and, while it runs, the good one on the test thread.
fn refused_while_others_are_served(runaway: &str) -> MapperError {
    let engine = engine(runaway, 2);
    let started = Instant::now();
    let handle = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.evaluate_blocking("runaway", json!({}), empty_identity()))
    };
    std::thread::sleep(Duration::from_millis(100));
    let good_started = Instant::now();
    let good = engine.evaluate_blocking(
        "good",
        json!({"email": "ada@acme.example"}),
        empty_identity(),
    );
    assert_eq!(
        good.unwrap()["identity"]["traits"]["email"],
        "ada@acme.example"
    );
    assert!(
        good_started.elapsed() < Duration::from_millis(500),
        "good mapper waited {:?}",
        good_started.elapsed()
    );

    let error = handle
        .join()
        .unwrap()
        .expect_err("the runaway mapper produced output");
    let bound = Limits::default().timeout + Duration::from_millis(600);
    assert!(
        started.elapsed() < bound,
        "refused after {:?}",
        started.elapsed()
    );

    // The engine is still whole: the same provider and the good one evaluate again.
    assert!(
        engine
            .evaluate_blocking("good", json!({"email": "b@acme.example"}), empty_identity())
            .is_ok()
    );
    error
}

#[test]
fn infinite_recursion_is_refused_while_another_provider_is_served() {
    let error = refused_while_others_are_served(
        "local f(x) = f(x + 1); { identity: { traits: { x: f(0) } } }",
    );
    assert_eq!(error, MapperError::StackOverflow(500));
}

#[test]
fn a_billion_element_array_is_refused_while_another_provider_is_served() {
    let error = refused_while_others_are_served(
        "{ identity: { traits: { x: std.makeArray(1e9, function(i) i) } } }",
    );
    assert_stopped_as_a_runaway(&error);
}

/// How a native loop the in-worker guard cannot see ends: killed at the deadline, dead of its
/// address-space limit, or stopped by the output limit if it got that far.
fn assert_stopped_as_a_runaway(error: &MapperError) {
    assert!(
        matches!(
            error,
            MapperError::Timeout(_)
                | MapperError::WorkerCrashed(_)
                | MapperError::OutputTooLarge(_)
        ),
        "{error:?}"
    );
}

#[test]
fn an_array_too_large_to_reserve_crashes_only_its_worker() {
    let error = refused_while_others_are_served(
        "{ identity: { traits: { x: std.makeArray(4e9, function(i) i) } } }",
    );
    assert!(
        matches!(
            error,
            MapperError::WorkerCrashed(_) | MapperError::Timeout(_)
        ),
        "{error:?}"
    );
}

#[test]
fn an_oversized_output_is_refused_while_another_provider_is_served() {
    let error = refused_while_others_are_served(
        "{ identity: { traits: { x: std.makeArray(100000, function(i) 'item') } } }",
    );
    assert_eq!(error, MapperError::OutputTooLarge(256 * 1024));
}

#[test]
fn exponential_work_is_refused_at_the_deadline() {
    let error = refused_while_others_are_served(
        "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); { identity: { traits: { x: f(60) } } }",
    );
    // Whichever budget runs out first: an optimised build allocates the 512 MiB budget (counted
    // cumulatively) in less than the second, a debug build does not.
    assert!(
        matches!(
            error,
            MapperError::Timeout(_) | MapperError::TooMuchMemory(_)
        ),
        "{error:?}"
    );
}

/// Claims handed over as JSON text reach a worker process exactly, line breaks and all: the
/// request protocol is one line per request, so the text's own layout must not break it.
#[tokio::test]
async fn raw_claims_with_line_breaks_reach_the_worker_intact() {
    let engine = engine("{ identity: { traits: {} } }", 1);
    let text = "{\n  \"email\": \"ada@acme.example\",\r\n  \"note\": \"two\\nlines\"\n}\n";
    let raw = serde_json::from_str::<Box<serde_json::value::RawValue>>(text).unwrap();
    assert!(
        raw.get().contains('\n'),
        "the claims keep their line breaks"
    );
    let output = engine
        .evaluate("good", (&*raw).into(), &empty_identity())
        .await
        .unwrap();
    assert_eq!(output["identity"]["traits"]["email"], "ada@acme.example");
    // And the worker is still in step: the next request gets its own answer.
    let again = engine
        .evaluate(
            "good",
            (&json!({"email": "b@acme.example"})).into(),
            &empty_identity(),
        )
        .await
        .unwrap();
    assert_eq!(again["identity"]["traits"]["email"], "b@acme.example");
}

/// A worker collects its garbage after every few answers and says so; the engine waits for it
/// instead of sending the next request into the collection. Across many requests every answer
/// still belongs to its own request.
#[test]
fn answers_stay_in_step_across_garbage_collections() {
    let engine = engine("{ identity: { traits: {} } }", 1);
    for i in 0..40 {
        let email = format!("user{i}@acme.example");
        let output = engine
            .evaluate_blocking("good", json!({ "email": email }), empty_identity())
            .unwrap();
        assert_eq!(output["identity"]["traits"]["email"], email.as_str());
    }
}

/// Async callers that find a worker idle talk to it directly; those that find every worker busy
/// wait in the queue for the next free one. Either way every answer belongs to its own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_callers_each_get_their_own_answer() {
    let engine = engine("{ identity: { traits: {} } }", 2);
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let email = format!("user{i}@acme.example");
                let claims = json!({ "email": email });
                let output = engine
                    .evaluate("good", (&claims).into(), &empty_identity())
                    .await;
                (email, output)
            })
        })
        .collect();
    for call in calls {
        let (email, output) = call.await.unwrap();
        assert_eq!(
            output.unwrap()["identity"]["traits"]["email"],
            email.as_str()
        );
    }
}

/// A mapper that neither calls nor allocates in a way the in-worker guard sees, run by an async
/// caller straight on an idle worker: the caller gets its error at the deadline, the worker is
/// killed, and a new one takes its place.
#[tokio::test]
async fn a_runaway_on_the_direct_path_is_killed_and_replaced() {
    let engine = engine(
        "{ identity: { traits: { x: std.makeArray(1e9, function(i) i) } } }",
        1,
    );
    let good = |i: usize| json!({ "email": format!("user{i}@acme.example") });
    // The first call waits for the worker to start; after it the worker is idle.
    engine
        .evaluate("good", (&good(0)).into(), &empty_identity())
        .await
        .unwrap();
    for round in 1..=2 {
        let started = Instant::now();
        let error = engine
            .evaluate("runaway", (&json!({})).into(), &empty_identity())
            .await
            .expect_err("the runaway mapper produced output");
        assert_stopped_as_a_runaway(&error);
        let bound = Limits::default().timeout + Duration::from_millis(600);
        assert!(
            started.elapsed() < bound,
            "refused after {:?}",
            started.elapsed()
        );
        let output = engine
            .evaluate("good", (&good(round)).into(), &empty_identity())
            .await
            .unwrap();
        assert_eq!(
            output["identity"]["traits"]["email"],
            format!("user{round}@acme.example")
        );
    }
}

/// A caller that goes away mid-evaluation (its client hung up) leaves an answer nobody will
/// read. The worker holding it is killed rather than handed the next request, whose answer
/// would then be the abandoned one's; the pool starts a replacement.
#[tokio::test]
async fn a_caller_that_goes_away_costs_only_its_worker() {
    let engine = engine(
        "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); { identity: { traits: { email: 'runaway@acme.example', x: f(22) } } }",
        1,
    );
    engine
        .evaluate(
            "good",
            (&json!({"email": "first@acme.example"})).into(),
            &empty_identity(),
        )
        .await
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(20),
        engine.evaluate("runaway", (&json!({})).into(), &empty_identity()),
    )
    .await;
    assert!(abandoned.is_err(), "the slow mapper answered within 20 ms");
    for i in 0..3 {
        let email = format!("next{i}@acme.example");
        let output = engine
            .evaluate(
                "good",
                (&json!({ "email": email })).into(),
                &empty_identity(),
            )
            .await
            .unwrap();
        assert_eq!(output["identity"]["traits"]["email"], email.as_str());
    }
}
