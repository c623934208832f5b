//! Kratos-compatible Jsonnet claims mappers: compiled once, evaluated under hard limits.
//!
//! The contract is Kratos's own (RESEARCH.md §2), so one mapper file works in Kratos's
//! `mapper_url` and here:
//!
//! - `std.extVar('claims')` is the claims object Kratos builds (standard claims + `raw_claims`);
//! - `std.extVar('identity')` is `{traits, metadata_public, metadata_admin}` of the current
//!   identity, empty objects for a new one (as Kratos master does);
//! - the output is `{identity: {traits, metadata_public?, metadata_admin?, verified_addresses?}}`;
//! - `error "..."` is a denial carrying that message.
//!
//! Limits are at least as tight as Kratos's: no imports, 256 KiB of output, a bounded stack,
//! one second of evaluation, plus an allocation budget ([`guard`]). A runaway mapper ends in a
//! [`MapperError`] on its own thread; the process and the other evaluator threads carry on.
//!
//! jrsonnet's state is `!Send`, so evaluation happens where an [`Evaluator`] lives, with every
//! mapper compiled once: on dedicated threads, or (the default for `serve`, `check` and `map`)
//! in worker processes ([`process`]) that async callers reach directly while a worker is idle
//! and through relay threads when all are busy ([`MapperEngine`]). Callers hand over JSON and
//! get JSON back, from sync code or async code.

pub mod guard;
pub mod process;

mod compile;
mod convert;
mod error;
mod evaluator;
mod output;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jrsonnet_evaluator::Val;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

pub use compile::{MapperSource, compile};
pub use error::{Location, MapperError};
pub use evaluator::{Evaluator, Limits};
pub use output::{MappedIdentity, VerifiedAddress, empty_identity, identity_ext_var};
pub use process::WorkerProgram;

/// The claims handed to a mapper: a JSON value, or JSON text passed on without being parsed
/// here (a web hook's carried claims go to the worker process as they arrived).
#[derive(Debug, Clone, Copy)]
pub enum Claims<'a> {
    Json(&'a Value),
    Raw(&'a RawValue),
}

impl<'a> From<&'a Value> for Claims<'a> {
    fn from(value: &'a Value) -> Self {
        Claims::Json(value)
    }
}

impl<'a> From<&'a RawValue> for Claims<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Claims::Raw(raw)
    }
}

impl Serialize for Claims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Claims::Json(value) => value.serialize(serializer),
            Claims::Raw(raw) => raw.serialize(serializer),
        }
    }
}

/// [`Claims`] owned by a queued job.
enum OwnedClaims {
    Json(Value),
    Raw(Box<RawValue>),
}

impl OwnedClaims {
    fn borrow(&self) -> Claims<'_> {
        match self {
            OwnedClaims::Json(value) => Claims::Json(value),
            OwnedClaims::Raw(raw) => Claims::Raw(raw),
        }
    }
}

impl From<Claims<'_>> for OwnedClaims {
    fn from(claims: Claims<'_>) -> Self {
        match claims {
            Claims::Json(value) => OwnedClaims::Json(value.clone()),
            Claims::Raw(raw) => OwnedClaims::Raw(raw.to_owned()),
        }
    }
}

type Reply = Box<dyn FnOnce(Result<Value, MapperError>) + Send>;

struct Job {
    provider: String,
    claims: OwnedClaims,
    identity: Value,
    /// After this instant nobody waits for the answer any more.
    expires: Instant,
    reply: Reply,
}

/// Where evaluations run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// On threads of this process, bounded by the in-thread guard only. For trusted mappers,
    /// unit tests and benchmarks of the evaluator itself.
    Threads,
    /// In worker processes with a hard deadline and an address-space limit (the default for
    /// `serve`, `check` and `map`).
    Processes(WorkerProgram),
}

/// The evaluator threads of [`Isolation::Threads`] and their queue.
struct Shared {
    sources: Arc<Vec<MapperSource>>,
    limits: Limits,
    jobs: crossbeam_channel::Receiver<Job>,
    wanted: usize,
    alive: AtomicUsize,
}

/// A pool of evaluators. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct MapperEngine {
    pool: Pool,
    sources: Arc<Vec<MapperSource>>,
    limits: Limits,
}

#[derive(Clone)]
enum Pool {
    /// Evaluator threads fed through a queue.
    Threads {
        jobs: crossbeam_channel::Sender<Job>,
        shared: Arc<Shared>,
    },
    /// Worker processes; see [`ProcessPool`].
    Processes(Arc<PoolHandle>),
}

/// Extra time a caller waits beyond the evaluation timeout before giving up on a thread that
/// did not stop by itself (a native loop that neither calls nor allocates).
const ABANDON_AFTER: Duration = Duration::from_millis(500);

impl MapperEngine {
    /// Compiles every mapper (reporting every compile error) and starts `workers` evaluators
    /// (threads or processes, as `isolation` says).
    pub fn start(
        sources: Vec<MapperSource>,
        limits: Limits,
        workers: usize,
        isolation: Isolation,
    ) -> Result<Self, Vec<MapperError>> {
        // One state for all of them: far cheaper than a fresh state per mapper.
        Evaluator::new(&sources, limits)?;
        let sources = Arc::new(sources);
        let wanted = workers.max(1);
        let pool = match isolation {
            Isolation::Threads => {
                let (tx, rx) = crossbeam_channel::unbounded();
                let shared = Arc::new(Shared {
                    sources: Arc::clone(&sources),
                    limits,
                    jobs: rx,
                    wanted,
                    alive: AtomicUsize::new(0),
                });
                for _ in 0..wanted {
                    spawn_thread(&shared);
                }
                Pool::Threads { jobs: tx, shared }
            }
            Isolation::Processes(program) => Pool::Processes(Arc::new(PoolHandle(
                ProcessPool::start(program, Arc::clone(&sources), limits, wanted),
            ))),
        };
        Ok(MapperEngine {
            pool,
            sources,
            limits,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn sources(&self) -> &[MapperSource] {
        &self.sources
    }

    fn job(&self, provider: &str, claims: OwnedClaims, identity: Value, reply: Reply) -> Job {
        Job {
            provider: provider.to_owned(),
            claims,
            identity,
            expires: Instant::now() + self.limits.timeout + ABANDON_AFTER,
            reply,
        }
    }

    fn submit(&self, job: Job) -> Result<(), MapperError> {
        match &self.pool {
            Pool::Threads { jobs, .. } => jobs.send(job).map_err(|_| MapperError::EngineStopped),
            Pool::Processes(handle) => handle.0.submit(job),
        }
    }

    /// A caller waited in vain. An evaluator thread that did not answer is stuck in a loop the
    /// guard cannot see: start a replacement so the pool keeps its capacity; the stuck one
    /// exits when (if) it returns. Worker processes are killed at their deadline instead, so
    /// for them a late answer only means queueing.
    fn gave_up_waiting(&self) {
        if let Pool::Threads { shared, .. } = &self.pool {
            tracing::error!(
                message = "A mapper evaluation did not stop at its deadline; starting a replacement evaluator thread."
            );
            spawn_thread(shared);
        }
    }

    /// Evaluates from synchronous code.
    pub fn evaluate_blocking(
        &self,
        provider: &str,
        claims: Value,
        identity: Value,
    ) -> Result<Value, MapperError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(self.job(
            provider,
            OwnedClaims::Json(claims),
            identity,
            Box::new(move |r| drop(tx.send(r))),
        ))?;
        let wait = self.limits.timeout + ABANDON_AFTER;
        match rx.recv_timeout(wait) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.gave_up_waiting();
                Err(MapperError::Timeout(self.limits.timeout))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(MapperError::EngineStopped),
        }
    }

    /// Evaluates from async code (inside a Tokio runtime) without blocking the executor.
    pub async fn evaluate(
        &self,
        provider: &str,
        claims: Claims<'_>,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        if let Pool::Processes(handle) = &self.pool
            && let Some(lease) = handle.0.lease_idle()?
        {
            return lease.evaluate(provider, claims, identity).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(self.job(
            provider,
            claims.into(),
            identity.clone(),
            Box::new(move |r| drop(tx.send(r))),
        ))?;
        let wait = self.limits.timeout + ABANDON_AFTER;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MapperError::EngineStopped),
            Err(_) => {
                self.gave_up_waiting();
                Err(MapperError::Timeout(self.limits.timeout))
            }
        }
    }
}

fn spawn_thread(shared: &Arc<Shared>) {
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
struct ProcessPool {
    program: WorkerProgram,
    sources: Arc<Vec<MapperSource>>,
    limits: Limits,
    state: std::sync::Mutex<PoolState>,
    /// Relays wait here until [`PoolState::relay_has_work`].
    work: std::sync::Condvar,
}

struct PoolState {
    idle: Vec<process::Worker>,
    /// Workers the pool should have but does not: not started yet, or dropped.
    missing: usize,
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

/// Owned by every [`MapperEngine`] clone: when the last goes, the pool stops.
struct PoolHandle(Arc<ProcessPool>);

impl Drop for PoolHandle {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl ProcessPool {
    fn start(
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
                failing: false,
                queue: Default::default(),
                stopped: false,
            }),
            work: std::sync::Condvar::new(),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panic elsewhere cannot leave the state inconsistent: every change is one step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<process::Worker, MapperError> {
        process::Worker::spawn(&self.program, &self.sources, self.limits, WORKER_STARTUP).map_err(
            |error| {
                tracing::error!(message = "Could not start a mapper worker process.", %error);
                error
            },
        )
    }

    fn submit(&self, job: Job) -> Result<(), MapperError> {
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
    fn lease_idle(self: &Arc<Self>) -> Result<Option<Lease>, MapperError> {
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
struct Lease {
    pool: Arc<ProcessPool>,
    worker: Option<process::Worker>,
}

impl Lease {
    async fn evaluate(
        mut self,
        provider: &str,
        claims: Claims<'_>,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        let deadline = Instant::now() + self.pool.limits.timeout + KILL_AFTER;
        let Some(worker) = self.worker.as_mut() else {
            return Err(MapperError::EngineStopped);
        };
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

fn thread_worker(shared: &Shared) {
    // Compilation succeeded in `start`; a failure here would be a bug, answered per job.
    let evaluator = Evaluator::new(&shared.sources, shared.limits);
    for job in shared.jobs.iter() {
        let result = if Instant::now() >= job.expires {
            Err(MapperError::Timeout(shared.limits.timeout))
        } else {
            match &evaluator {
                Ok(ev) => match &job.claims {
                    OwnedClaims::Json(claims) => ev.evaluate(&job.provider, claims, &job.identity),
                    OwnedClaims::Raw(raw) => match serde_json::from_str::<Val>(raw.get()) {
                        Ok(claims) => {
                            ev.evaluate_val(&job.provider, claims, convert::to_val(&job.identity))
                        }
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

#[cfg(test)]
mod tests;
