//! When and how long to wait before trying a Kratos call again.
//!
//! Backoff is exponential with full jitter (a uniformly random wait between zero and
//! `min(cap, base · 2^(retry−1))`), so that many sidecar replicas hitting a recovering Kratos
//! spread out instead of retrying in lock step. A `Retry-After` given with 429 or 503 replaces
//! the computed wait.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// The ceiling of the first retry's random wait.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// No computed wait is longer than this; the operation deadline bounds the total anyway.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// An attempt is not started with less time than this left before the deadline: it would
/// almost surely time out, and the caller is better served by an answer now.
pub(super) const MIN_ATTEMPT_BUDGET: Duration = Duration::from_millis(100);

/// Whether a call may be sent again after a failure that left its effect unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Repeating the call yields the same state (GET, PUT, DELETE, PATCH of full values), or
    /// its repetition is detected by Kratos (POST create → 409).
    Safe,
    /// Only retried when the request certainly never reached Kratos (connection not established).
    OnlyIfUnsent,
}

/// The upper bound of the random wait before retry number `retry` (1 for the first retry).
pub(super) fn backoff_ceiling(retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(31);
    BACKOFF_BASE
        .checked_mul(1u32 << doublings)
        .map_or(BACKOFF_CAP, |ceiling| ceiling.min(BACKOFF_CAP))
}

/// A random wait in `0..=backoff_ceiling(retry)` ("full jitter").
pub(super) fn full_jitter(retry: u32) -> Duration {
    let ceiling_micros = u64::try_from(backoff_ceiling(retry).as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random_range(0..=ceiling_micros))
}

/// The wait Kratos (or the proxy in front of it) asks for with a 429 or 503. Only the
/// delta-seconds form is read; an HTTP-date falls back to the computed backoff.
pub(super) fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_backoff_ceiling_doubles_from_the_base_and_stops_at_the_cap() {
        assert_eq!(backoff_ceiling(1), BACKOFF_BASE);
        assert_eq!(backoff_ceiling(2), BACKOFF_BASE * 2);
        assert_eq!(backoff_ceiling(3), BACKOFF_BASE * 4);
        assert_eq!(backoff_ceiling(10), BACKOFF_CAP);
        assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn jittered_waits_stay_within_zero_and_the_ceiling_and_actually_vary() {
        for retry in 1..=12 {
            let waits: Vec<Duration> = (0..500).map(|_| full_jitter(retry)).collect();

            assert!(waits.iter().all(|wait| *wait <= backoff_ceiling(retry)));
            let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
            assert!(distinct.len() > 10, "retry {retry}: waits do not vary");
        }
    }

    #[test]
    fn retry_after_in_seconds_is_honoured_for_429_and_503_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 2 "));

        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &headers), None);
    }

    #[test]
    fn a_retry_after_date_or_garbage_falls_back_to_backoff() {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );

        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), None);
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None
        );
    }
}
