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
//! runs the call. Calls that one request runs concurrently (the members of a group change are
//! re-mapped side by side) count once for the time at least one of them was outstanding: the
//! request's dependency time is the union of its calls' intervals, never more than its wall
//! time, and its own share is the time it waited on nobody.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// One request's account: its calls outstanding now, since when, and the time waited so far.
#[derive(Clone, Copy)]
struct Account {
    outstanding: u32,
    since: Option<Instant>,
    waited: Duration,
}

tokio::task_local! {
    static ACCOUNT: Cell<Account>;
}

/// Runs `work` and returns its output with the time its calls under [`waiting`] took.
pub async fn measured<F: Future>(work: F) -> (F::Output, Duration) {
    let fresh = Account {
        outstanding: 0,
        since: None,
        waited: Duration::ZERO,
    };
    ACCOUNT
        .scope(Cell::new(fresh), async {
            let output = work.await;
            (output, ACCOUNT.with(|account| account.get().waited))
        })
        .await
}

/// Runs one outgoing call, adding its wall time to the enclosing [`measured`] request (the
/// time not already counted for a concurrent call of the same request).
pub async fn waiting<F: Future>(call: F) -> F::Output {
    let _pending = Pending::start();
    call.await
}

/// One outstanding call; dropped when the call ends or is cancelled (a timeout).
struct Pending;

impl Pending {
    fn start() -> Pending {
        let _ = ACCOUNT.try_with(|cell| {
            let mut account = cell.get();
            if account.outstanding == 0 {
                account.since = Some(Instant::now());
            }
            account.outstanding += 1;
            cell.set(account);
        });
        Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = ACCOUNT.try_with(|cell| {
            let mut account = cell.get();
            account.outstanding = account.outstanding.saturating_sub(1);
            if account.outstanding == 0
                && let Some(since) = account.since.take()
            {
                account.waited += since.elapsed();
            }
            cell.set(account);
        });
    }
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

    #[tokio::test(start_paused = true)]
    async fn concurrent_calls_count_the_time_any_of_them_was_outstanding() {
        let sleep = |ms| tokio::time::sleep(Duration::from_millis(ms));
        let ((), waited) = measured(async {
            // 0–50 and 20–70 overlap: 70 ms waited; then 30 ms of own work; then 10 ms.
            futures_util::future::join(waiting(sleep(50)), async {
                sleep(20).await;
                waiting(sleep(50)).await;
            })
            .await;
            sleep(30).await;
            waiting(sleep(10)).await;
        })
        .await;
        assert_eq!(waited, Duration::from_millis(80));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_cancelled_by_a_timeout_counts_until_it_is_dropped() {
        let ((), waited) = measured(async {
            let call = waiting(tokio::time::sleep(Duration::from_secs(10)));
            let _ = tokio::time::timeout(Duration::from_millis(25), call).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        })
        .await;
        assert_eq!(waited, Duration::from_millis(25));
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
