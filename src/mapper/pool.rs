//! The pool of worker processes ([`Isolation::Processes`](super::Isolation::Processes)) and the
//! leases through which async callers use a worker directly.
//!
//! The pool keeps the number of workers it was asked for: a worker that misses its deadline or
//! dies is killed and replaced, one that fails to start is retried only when a job needs it.
//! [`process`] owns the exchange with one worker; this module decides which
//! worker serves which job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::compile::MapperSource;
use super::engine::Job;
use super::error::MapperError;
use super::evaluator::Limits;
use super::input::Claims;
use super::process::{self, WorkerProgram};

/// Time a worker process gets to start and compile every mapper.
const WORKER_STARTUP: Duration = Duration::from_secs(30);
/// Grace beyond the evaluation timeout before a silent worker process is killed; the in-worker
/// guard normally answers with a precise error well before that.
const KILL_AFTER: Duration = Duration::from_millis(200);

/// Worker processes shared by every caller, reached two ways:
///
/// - **directly**, when a worker is idle and nothing is queued: an async caller takes the
///   worker, writes its request to the pipe and waits for the answer on its own reactor. No
///   thread relays the exchange, which would add three thread wake-ups to the evaluation;
/// - **through the queue** otherwise (and for blocking callers): relay threads, one per worker,
///   hand each queued job to the next free worker and wait for its answer in poll(2). Under
///   load a worker that finishes starts the next job at once, whether or not the thread of the
///   caller it answered is free to notice.
///
/// A worker that misses its deadline or dies is dropped (killed) and a relay starts another.
pub(super) struct ProcessPool {
    program: WorkerProgram,
    sources: Arc<Vec<MapperSource>>,
    limits: Limits,
    state: std::sync::Mutex<PoolState>,
    /// Relays wait here until [`PoolState::relay_has_work`].
    work: std::sync::Condvar,
    /// Jobs and direct exchanges that reached a worker, whatever became of them.
    evaluations: AtomicU64,
    /// The workers asked for, and the workers started so far: those beyond `size` replaced a
    /// worker that was lost ([`ProcessPool::restarts`]).
    size: usize,
    started: AtomicU64,
}

struct PoolState {
    idle: Vec<process::Worker>,
    /// Workers the pool should have but does not: not started yet, or dropped.
    missing: usize,
    /// Workers a relay is starting right now (no longer `missing`, not yet running).
    starting: usize,
    /// The last start of a worker failed: start more only when a job needs one (and answer
    /// that job with the failure), not in a loop.
    failing: bool,
    queue: std::collections::VecDeque<Job>,
    stopped: bool,
}

impl PoolState {
    /// A queued job and a worker for it (idle, or one to start), or a worker to replace.
    fn relay_has_work(&self) -> bool {
        (!self.queue.is_empty() && (!self.idle.is_empty() || self.missing > 0))
            || (self.missing > 0 && !self.failing)
    }
}

/// Owned by every [`MapperEngine`](super::MapperEngine) clone: when the last goes, the pool stops.
pub(super) struct PoolHandle(pub(super) Arc<ProcessPool>);

impl Drop for PoolHandle {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl ProcessPool {
    pub(super) fn start(
        program: WorkerProgram,
        sources: Arc<Vec<MapperSource>>,
        limits: Limits,
        size: usize,
    ) -> Arc<Self> {
        let pool = Arc::new(ProcessPool {
            program,
            sources,
            limits,
            state: std::sync::Mutex::new(PoolState {
                idle: Vec::with_capacity(size),
                missing: size,
                starting: 0,
                failing: false,
                queue: Default::default(),
                stopped: false,
            }),
            work: std::sync::Condvar::new(),
            evaluations: AtomicU64::new(0),
            size,
            started: AtomicU64::new(0),
        });
        for _ in 0..size {
            let relay = Arc::clone(&pool);
            let started = std::thread::Builder::new()
                .name("kratos-jit-mapper".into())
                .spawn(move || relay.relay());
            if let Err(error) = started {
                tracing::error!(message = "Could not start a mapper relay thread.", %error);
            }
        }
        pool
    }

    /// The workers running now (idle or evaluating), for readiness.
    pub(super) fn workers(&self) -> super::engine::Workers {
        let state = self.lock();
        super::engine::Workers {
            running: self.size.saturating_sub(state.missing + state.starting),
            wanted: self.size,
            failing: state.failing,
        }
    }

    /// Jobs and direct exchanges that reached a worker so far.
    pub(super) fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Workers started to replace one that was killed at its deadline, crashed, failed to come
    /// back from collecting its garbage, or was abandoned by its caller.
    pub(super) fn restarts(&self) -> u64 {
        self.started
            .load(Ordering::Relaxed)
            .saturating_sub(self.size as u64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panic elsewhere cannot leave the state inconsistent: every change is one step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<process::Worker, MapperError> {
        let worker =
            process::Worker::spawn(&self.program, &self.sources, self.limits, WORKER_STARTUP)
                .map_err(|error| {
                    tracing::error!(message = "Could not start a mapper worker process.", %error);
                    error
                })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(worker)
    }

    pub(super) fn submit(&self, job: Job) -> Result<(), MapperError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(MapperError::EngineStopped);
        }
        state.queue.push_back(job);
        if state.relay_has_work() {
            self.work.notify_one();
        }
        Ok(())
    }

    /// An idle worker for a direct exchange, if one is free and no job is waiting before it
    /// (a worker still collecting its garbage only when no other is free).
    pub(super) fn lease_idle(self: &Arc<Self>) -> Result<Option<Lease>, MapperError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(MapperError::EngineStopped);
        }
        if !state.queue.is_empty() || state.idle.is_empty() {
            return Ok(None);
        }
        let i = state
            .idle
            .iter_mut()
            .rposition(|w| w.is_ready())
            .unwrap_or(state.idle.len() - 1);
        Ok(Some(Lease {
            pool: Arc::clone(self),
            worker: Some(state.idle.swap_remove(i)),
        }))
    }

    /// Takes a worker back after a job: `None` when it was dropped and must be replaced.
    fn give_back(&self, worker: Option<process::Worker>) {
        let mut state = self.lock();
        let surplus = match worker {
            Some(worker) if state.stopped => Some(worker),
            Some(worker) => {
                state.idle.push(worker);
                None
            }
            None => {
                state.missing += 1;
                None
            }
        };
        if state.relay_has_work() {
            self.work.notify_one();
        }
        drop(state);
        // Killing a worker waits for it to exit: never under the lock.
        drop(surplus);
    }

    /// What a worker's answer means for the caller, and whether the worker can serve again.
    fn settle(
        &self,
        outcome: Result<Result<Value, MapperError>, MapperError>,
    ) -> (Result<Value, MapperError>, bool) {
        match outcome {
            Ok(result) => (result, true),
            Err(MapperError::Timeout(_)) => (Err(MapperError::Timeout(self.limits.timeout)), false),
            Err(e) => (Err(e), false),
        }
    }

    /// A relay thread: starts missing workers and runs queued jobs until the pool stops.
    fn relay(&self) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            if !state.relay_has_work() {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // With work to do, a queued job has a worker (idle or to start); without a job,
            // a worker is missing.
            let job = state.queue.pop_front();
            let worker = if job.is_some() {
                state.idle.pop()
            } else {
                None
            };
            if worker.is_none() {
                state.missing -= 1;
                state.starting += 1;
            }
            drop(state);

            let (worker, started) = match worker {
                Some(worker) => (Ok(worker), None),
                None => {
                    let spawned = self.spawn();
                    let ok = spawned.is_ok();
                    (spawned, Some(ok))
                }
            };
            let kept = match (worker, job) {
                (Ok(worker), Some(job)) => self.run(worker, job),
                (Ok(worker), None) => Some(worker),
                (Err(e), Some(job)) => {
                    (job.reply)(Err(e));
                    None
                }
                (Err(_), None) => None,
            };

            state = self.lock();
            if let Some(ok) = started {
                state.failing = !ok;
                state.starting -= 1;
            }
            match kept {
                Some(worker) if !state.stopped => state.idle.push(worker),
                Some(_) => {}
                None => state.missing += 1,
            }
        }
    }

    /// Runs one queued job on `worker`; the worker back when it can serve again.
    fn run(&self, mut worker: process::Worker, job: Job) -> Option<process::Worker> {
        // Counted before the reply: a caller that reads the count after its answer sees it.
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= job.expires {
            (job.reply)(Err(MapperError::Timeout(self.limits.timeout)));
            return Some(worker);
        }
        let deadline = Instant::now() + self.limits.timeout + KILL_AFTER;
        let outcome = worker.evaluate(&job.provider, job.claims.borrow(), &job.identity, deadline);
        let (result, healthy) = self.settle(outcome);
        (job.reply)(result);
        if !healthy {
            return None;
        }
        // A worker that collects its garbage after this answer is waited for here, off the
        // queue: the next job goes to a worker that can start on it at once.
        let collected = Instant::now() + self.limits.timeout + KILL_AFTER;
        match worker.wait_until_idle(collected) {
            Ok(()) => Some(worker),
            Err(error) => {
                tracing::error!(message = "A mapper worker did not come back from collecting its garbage; starting another.", %error);
                None
            }
        }
    }

    /// Stops the relays, the idle workers and every queued job.
    fn stop(&self) {
        let (idle, queue) = {
            let mut state = self.lock();
            state.stopped = true;
            (
                std::mem::take(&mut state.idle),
                std::mem::take(&mut state.queue),
            )
        };
        self.work.notify_all();
        drop(idle);
        for job in queue {
            (job.reply)(Err(MapperError::EngineStopped));
        }
    }
}

/// A worker taken for a direct exchange. Dropped before the exchange ended (its caller went
/// away), it kills the worker, whose answer nobody would read, and the pool replaces it.
pub(super) struct Lease {
    pool: Arc<ProcessPool>,
    worker: Option<process::Worker>,
}

impl Lease {
    pub(super) async fn evaluate(
        mut self,
        provider: &str,
        claims: Claims<'_>,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        let deadline = Instant::now() + self.pool.limits.timeout + KILL_AFTER;
        let Some(worker) = self.worker.as_mut() else {
            return Err(MapperError::EngineStopped);
        };
        self.pool.evaluations.fetch_add(1, Ordering::Relaxed);
        let outcome = worker
            .evaluate_async(provider, claims, identity, deadline)
            .await;
        let (result, healthy) = self.pool.settle(outcome);
        let worker = self.worker.take();
        self.pool.give_back(worker.filter(|_| healthy));
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            drop(worker);
            self.pool.give_back(None);
        }
    }
}
