//! Property-based fuzzing of everything kratos-jit parses from outside, on the stable toolchain
//! (proptest): the provisioning body and the web hook bodies through the real server, the carried
//! claims through the hooks' use case, claims → Kratos claims, ID tokens, and provider folders.
//!
//! Inputs are structure-aware mutations of the repository's own valid inputs (the mappers'
//! fixtures, the Kratos web hook contexts, tokens signed by the test keys): flipped types,
//! deleted and repeated keys, huge strings, deep nesting, odd numbers, bytes that are not UTF-8,
//! and random bytes. Each property names what must hold for *any* input, so that it holds for
//! every version of the parsers, not just today's error texts.
//!
//! - `KRATOS_JIT_FUZZ_CASES` sets the cases per property (default 256; CI runs the default);
//! - a failing case is shrunk and its seed kept in `tests/fuzz/regressions/<property>.txt`,
//!   replayed first by every later run (commit the file with the fix);
//! - `tests/fuzz/corpus/` holds inputs worth replaying every time (see its README);
//! - three findings of the first runs are asserted by every run: a request whose
//!   `Content-Length` promises more than it sends is answered (408 within `body_timeout`), a
//!   call reusing an `Ory-Webhook-Trigger-ID` with another body is answered as that call, and a
//!   mapper nested 1,000 and 5,000 levels deep is refused with its file and line.

#[path = "../common/issuer.rs"]
mod issuer;
#[path = "../common/tree.rs"]
mod tree;

mod carried;
mod claims;
mod corpus;
mod hooks;
mod json;
mod providers;
mod provision;
mod server;
mod tokens;
mod valid;

use proptest::test_runner::{Config, FailurePersistence, FileFailurePersistence, TestRunner};

/// Cases per property: `KRATOS_JIT_FUZZ_CASES`, 256 by default.
pub fn cases() -> u32 {
    std::env::var("KRATOS_JIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A runner of `cases()` cases whose failures are kept in `regressions` (a path under
/// `tests/fuzz/regressions/`, see [`regressions!`]).
pub fn runner(regressions: &'static str) -> TestRunner {
    let persistence =
        Some(Box::new(FileFailurePersistence::Direct(regressions)) as Box<dyn FailurePersistence>);
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: persistence,
        // A shrink of a server property sends a request per step: keep it bounded.
        max_shrink_iters: 512,
        max_shrink_time: 60_000,
        ..Config::default()
    })
}

/// `tests/fuzz/regressions/<name>.txt`, as a `'static` absolute path.
#[macro_export]
macro_rules! regressions {
    ($name:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz/regressions/",
            $name,
            ".txt"
        )
    };
}

/// Runs `test` over `strategy` and fails with proptest's report (the minimal input) if a case
/// fails.
pub fn check<S: proptest::strategy::Strategy>(
    regressions: &'static str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    if let Err(failure) = runner(regressions).run(&strategy, test) {
        panic!("{failure}");
    }
}

/// What a property's cases came to, so that a run can show it reached the paths it is about: a
/// property that only ever sees its inputs refused at the door would pass without testing them.
#[derive(Default)]
pub struct Tally(std::sync::Mutex<std::collections::BTreeMap<&'static str, u32>>);

impl Tally {
    pub fn add(&self, outcome: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// Fails unless each outcome came up at least once, in a run of 100 cases or more.
    pub fn require(&self, outcomes: &[&str]) {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cases() < 100 {
            return;
        }
        for outcome in outcomes {
            assert!(
                seen.get(outcome).is_some_and(|n| *n > 0),
                "no case came to {outcome:?}: {seen:?}"
            );
        }
    }
}
