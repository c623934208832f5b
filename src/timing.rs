//! How long a request waited on the services it calls (the Kratos admin API, an upstream IdP).
//!
//! An HTTP adapter runs a request's work under [`measured`]; every outgoing call made by that
//! work, on the same task, is wrapped in [`waiting`], which adds the call's wall time to the
//! request's account. What is left of the request's time is kratos-jit's own share: its CPU,
//! and its queueing for a CPU. The hop reports both in a `Server-Timing` header when
//! `hop.server_timing` is on (`docs/hop.md`), which is how the hop benchmark separates the
//! sidecar's share of a login from its dependencies'.
//!
//! Outside [`measured`] (a background task, a test), [`waiting`] measures nothing and only
//! runs the call. Calls run concurrently by one request would be counted each: none are.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static WAITED: Cell<Duration>;
}

/// Runs `work` and returns its output with the time its calls under [`waiting`] took.
pub async fn measured<F: Future>(work: F) -> (F::Output, Duration) {
    WAITED
        .scope(Cell::new(Duration::ZERO), async {
            let output = work.await;
            (output, WAITED.with(Cell::get))
        })
        .await
}

/// Runs one outgoing call, adding its wall time to the enclosing [`measured`] request.
pub async fn waiting<F: Future>(call: F) -> F::Output {
    let started = Instant::now();
    let output = call.await;
    let _ = WAITED.try_with(|waited| waited.set(waited.get() + started.elapsed()));
    output
}

/// The `Server-Timing` value (W3C Server Timing) of a request: `dep` is the time spent in
/// calls to dependencies, `app` the rest of `total`, both in milliseconds.
pub fn server_timing(total: Duration, waited: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "dep;dur={:.3}, app;dur={:.3}",
        ms(waited),
        ms(total.saturating_sub(waited))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_calls_made_under_waiting_are_counted() {
        let ((), waited) = measured(async {
            waiting(tokio::time::sleep(Duration::from_millis(30))).await;
            tokio::time::sleep(Duration::from_millis(80)).await;
            waiting(tokio::time::sleep(Duration::from_millis(12))).await;
        })
        .await;
        // The two waited calls (42 ms, plus timer slack), never the 80 ms between them.
        assert!(waited >= Duration::from_millis(42), "{waited:?}");
        assert!(waited < Duration::from_millis(122), "{waited:?}");
    }

    #[tokio::test]
    async fn a_call_outside_a_measured_request_runs_and_counts_nowhere() {
        assert_eq!(waiting(async { 7 }).await, 7);
        let ((), waited) = measured(async {}).await;
        assert_eq!(waited, Duration::ZERO);
    }

    #[test]
    fn the_header_splits_the_total_into_dependencies_and_the_rest() {
        assert_eq!(
            server_timing(Duration::from_micros(2500), Duration::from_micros(1250)),
            "dep;dur=1.250, app;dur=1.250"
        );
        assert_eq!(
            server_timing(Duration::from_millis(1), Duration::from_millis(3)),
            "dep;dur=3.000, app;dur=0.000"
        );
    }
}
