//! Retry cache benchmark: remembering the answer of a call with a new trigger id costs the same
//! whether the cache holds 1,000 answers or is full at its cap of 100,000, where every insertion
//! also evicts the least recently used answer (the earlier cache scanned every entry under its
//! lock at the cap).
//!
//! Run with `cargo bench --bench triggers`; figures are in the change that added it.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kratos_jit::http::hooks::triggers::{
    Call, DEFAULT_BUDGET_BYTES, Hook, MAX_ENTRIES, RETRY_WINDOW_TTL, Sent, TriggerCache,
};

/// A UUID-shaped trigger id, unique per `n`.
fn trigger(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A login hook's answer (204, no body), the smallest entry.
fn no_change() -> Sent {
    Sent {
        status: 204,
        body: None,
    }
}

/// A cache of at most `entries` answers, full.
fn full_cache(entries: u64) -> TriggerCache {
    let cache = TriggerCache::with_limits(RETRY_WINDOW_TTL, DEFAULT_BUDGET_BYTES, entries);
    for n in 0..entries {
        cache.put(Call::new(Hook::Login, &trigger(n), b"{}"), no_change());
    }
    settle(&cache);
    // Full: the share of the budget each entry weighs is rounded up, so a few may not fit.
    assert!((entries * 99 / 100..=entries).contains(&cache.entries()));
    cache
}

/// Applies every pending eviction (moka applies a bounded batch at a time).
fn settle(cache: &TriggerCache) {
    for _ in 0..100 {
        cache.settle();
    }
}

fn insertion(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert a new trigger id into a full cache");
    for entries in [1_000, 10_000, MAX_ENTRIES] {
        let cache = full_cache(entries);
        let mut next = entries;
        group.bench_function(BenchmarkId::from_parameter(entries), |b| {
            b.iter(|| {
                next += 1;
                cache.put(Call::new(Hook::Login, &trigger(next), b"{}"), no_change());
            })
        });
        settle(&cache);
        assert!(cache.entries() <= entries, "{} entries", cache.entries());
    }
    group.finish();
}

fn retry(c: &mut Criterion) {
    let cache = full_cache(MAX_ENTRIES);
    let mut n = 0;
    c.bench_function("answer a retry from a full cache", |b| {
        b.iter(|| {
            n = (n + 7_919) % MAX_ENTRIES;
            black_box(cache.get(&Call::new(Hook::Login, &trigger(n), b"{}")))
        })
    });
}

criterion_group!(benches, insertion, retry);
criterion_main!(benches);
