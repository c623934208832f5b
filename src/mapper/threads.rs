//! Evaluator threads ([`Isolation::Threads`](super::Isolation::Threads)): each keeps its own
//! [`Evaluator`] and takes jobs from one shared queue.
//!
//! The in-thread guard stops most runaway mappers; one it cannot see keeps its thread, and the
//! engine starts a replacement when a caller gives up on it ([`spawn_thread`]). A stuck thread
//! that comes back leaves again, so the pool shrinks back to the size it was asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use jrsonnet_evaluator::Val;

use super::compile::MapperSource;
use super::convert;
use super::engine::Job;
use super::error::MapperError;
use super::evaluator::{Evaluator, Limits};
use super::input::{MapperKind, OwnedClaims};

/// The evaluator threads of [`Isolation::Threads`](super::Isolation::Threads) and their queue.
pub(super) struct Shared {
    sources: Arc<Vec<MapperSource>>,
    limits: Limits,
    jobs: crossbeam_channel::Receiver<Job>,
    wanted: usize,
    alive: AtomicUsize,
    /// Jobs the threads have taken from the queue, whatever became of them.
    evaluations: AtomicU64,
}

impl Shared {
    /// Starts `wanted` evaluator threads on one queue; jobs go in through the returned sender.
    pub(super) fn start(
        sources: Arc<Vec<MapperSource>>,
        limits: Limits,
        wanted: usize,
    ) -> (crossbeam_channel::Sender<Job>, Arc<Shared>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            sources,
            limits,
            jobs: rx,
            wanted,
            alive: AtomicUsize::new(0),
            evaluations: AtomicU64::new(0),
        });
        for _ in 0..wanted {
            spawn_thread(&shared);
        }
        (tx, shared)
    }

    /// How many evaluator threads the engine keeps.
    pub(super) fn size(&self) -> usize {
        self.wanted
    }

    /// Jobs that reached a thread so far.
    pub(super) fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }
}

/// Starts one more evaluator thread on the shared queue.
pub(super) fn spawn_thread(shared: &Arc<Shared>) {
    shared.alive.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("kratos-jit-mapper".into())
        .spawn({
            let shared = Arc::clone(shared);
            move || thread_worker(&shared)
        });
    if let Err(error) = spawned {
        shared.alive.fetch_sub(1, Ordering::SeqCst);
        tracing::error!(message = "Could not start a mapper evaluator thread.", %error);
    }
}

fn thread_worker(shared: &Shared) {
    // Compilation succeeded in `start`; a failure here would be a bug, answered per job.
    let evaluator = Evaluator::new(&shared.sources, shared.limits);
    for job in shared.jobs.iter() {
        // Counted before the reply: a caller that reads the count after its answer sees it.
        shared.evaluations.fetch_add(1, Ordering::Relaxed);
        let result = if Instant::now() >= job.expires {
            Err(MapperError::Timeout(shared.limits.timeout))
        } else {
            match &evaluator {
                Ok(ev) => match &job.claims {
                    OwnedClaims::Json(claims) => ev.evaluate(&job.provider, claims, &job.identity),
                    OwnedClaims::Scim(input) => ev.evaluate_kind(
                        &job.provider,
                        MapperKind::Scim,
                        input.as_value(),
                        &job.identity,
                    ),
                    OwnedClaims::Raw(raw) => match serde_json::from_str::<Val>(raw.get()) {
                        Ok(claims) => ev.evaluate_val(
                            &job.provider,
                            MapperKind::Claims,
                            claims,
                            convert::to_val(&job.identity),
                        ),
                        Err(e) => Err(MapperError::InvalidOutput(format!(
                            "the claims are not readable JSON: {e}"
                        ))),
                    },
                },
                Err(errors) => Err(errors
                    .first()
                    .cloned()
                    .unwrap_or(MapperError::EngineStopped)),
            }
        };
        (job.reply)(result);
        if let Ok(ev) = &evaluator {
            ev.collect_garbage_now_and_then();
        }
        // Shrink back after a stuck worker was replaced and has come back.
        let alive = shared.alive.load(Ordering::SeqCst);
        if alive > shared.wanted
            && shared
                .alive
                .compare_exchange(alive, alive - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return;
        }
    }
    shared.alive.fetch_sub(1, Ordering::SeqCst);
}
