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

mod convert;
mod error;
mod output;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{PreparedSnippet, State, Val, trace::PathResolver};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use error::{Location, MapperError};
pub use output::{MappedIdentity, VerifiedAddress, empty_identity, identity_ext_var};
pub use process::WorkerProgram;

/// Limits applied to every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time for one evaluation, including forcing the output (Kratos: 1 s).
    pub timeout: Duration,
    /// Size of the minified JSON output (Kratos: 256 KiB).
    pub max_output_bytes: usize,
    /// Jsonnet call depth (go-jsonnet's default is 500).
    pub max_stack: usize,
    /// Bytes one evaluation may allocate in total.
    pub max_allocated_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            max_output_bytes: 256 * 1024,
            max_stack: 500,
            max_allocated_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A mapper file as loaded from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperSource {
    /// The provider the mapper belongs to.
    pub provider: String,
    /// Where it was read from; used in every diagnostic.
    pub path: PathBuf,
    pub code: String,
    /// Hex SHA-256 of the code: recorded as provenance on identities it produced.
    pub sha256: String,
}

impl MapperSource {
    pub fn new(
        provider: impl Into<String>,
        path: impl Into<PathBuf>,
        code: impl Into<String>,
    ) -> Self {
        let code = code.into();
        let sha256 = hex::encode(Sha256::digest(code.as_bytes()));
        MapperSource {
            provider: provider.into(),
            path: path.into(),
            code,
            sha256,
        }
    }
}

fn new_state() -> (State, jrsonnet_stdlib::ContextInitializer) {
    let std_ctx = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    let mut builder = State::builder();
    builder.context_initializer(std_ctx.clone());
    // No import resolver: the default one refuses every import, as Kratos's ErrorImporter does.
    (builder.build(), std_ctx)
}

fn locate(span: &jrsonnet_evaluator::Span, path: &Path) -> Location {
    let [loc] = span.0.map_source_locations(&[span.1]);
    Location {
        path: path.to_owned(),
        line: loc.line,
        column: loc.column,
    }
}

/// The innermost location of an evaluation error that lies in the mapper file.
fn error_location(e: &jrsonnet_evaluator::Error, path: &Path) -> Option<Location> {
    e.trace()
        .0
        .iter()
        .find_map(|el| el.location.as_ref())
        .map(|span| locate(span, path))
}

/// Parses and analyses a mapper without evaluating it.
pub fn compile(source: &MapperSource) -> Result<(), MapperError> {
    let (state, _) = new_state();
    prepare(&state, source).map(|_| ())
}

fn prepare(state: &State, source: &MapperSource) -> Result<PreparedSnippet, MapperError> {
    let name = source.path.display().to_string();
    state
        .prepare_snippet(name, source.code.as_str())
        .map_err(|e| {
            let (message, location) = match e.error() {
                ErrorKind::ImportSyntaxError { path, error } => {
                    let offset = error.location.1.min(path.code().len() as u32);
                    let [loc] = path.map_source_locations(&[offset]);
                    let location = Location {
                        path: source.path.clone(),
                        line: loc.line,
                        column: loc.column,
                    };
                    (format!("syntax error: {}", error.message), location)
                }
                ErrorKind::StaticAnalysisError(diagnostics) => {
                    let first = diagnostics.first();
                    let location = first
                        .and_then(|d| d.span.as_ref())
                        .map(|s| locate(s, &source.path))
                        .unwrap_or(Location {
                            path: source.path.clone(),
                            line: 1,
                            column: 1,
                        });
                    let message = diagnostics
                        .iter()
                        .map(|d| d.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    (message, location)
                }
                other => (
                    other.to_string(),
                    Location {
                        path: source.path.clone(),
                        line: 1,
                        column: 1,
                    },
                ),
            };
            MapperError::Compile { location, message }
        })
}

struct Compiled {
    snippet: PreparedSnippet,
    path: PathBuf,
}

/// One thread's evaluator: a jrsonnet state with every mapper compiled. `!Send` by design.
pub struct Evaluator {
    /// Evaluations since the last cycle collection.
    since_collection: std::cell::Cell<u32>,
    state: State,
    std_ctx: jrsonnet_stdlib::ContextInitializer,
    mappers: HashMap<String, Compiled>,
    limits: Limits,
}

impl Evaluator {
    pub fn new(sources: &[MapperSource], limits: Limits) -> Result<Self, Vec<MapperError>> {
        let (state, std_ctx) = new_state();
        let mut mappers = HashMap::with_capacity(sources.len());
        let mut errors = Vec::new();
        for source in sources {
            match prepare(&state, source) {
                Ok(snippet) => {
                    mappers.insert(
                        source.provider.clone(),
                        Compiled {
                            snippet,
                            path: source.path.clone(),
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Evaluator {
                since_collection: std::cell::Cell::new(0),
                state,
                std_ctx,
                mappers,
                limits,
            })
        } else {
            Err(errors)
        }
    }

    /// Runs `provider`'s mapper over `claims` and `identity`; returns the raw output value.
    pub fn evaluate(
        &self,
        provider: &str,
        claims: &Value,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        self.evaluate_val(provider, convert::to_val(claims), convert::to_val(identity))
    }

    /// [`Self::evaluate`] over values already in Jsonnet form (the worker parses its requests
    /// straight into them).
    pub fn evaluate_val(
        &self,
        provider: &str,
        claims: Val,
        identity: Val,
    ) -> Result<Value, MapperError> {
        let compiled = self
            .mappers
            .get(provider)
            .ok_or_else(|| MapperError::UnknownProvider(provider.to_owned()))?;
        // Ext vars live in settings shared by every evaluation of this state: always rebind both.
        self.std_ctx.add_ext_var("claims".into(), claims);
        self.std_ctx.add_ext_var("identity".into(), identity);
        let limits = self.limits;

        guard::arm(limits.timeout, limits.max_allocated_bytes, limits.max_stack);
        let result = self
            .state
            .evaluate_prepared_snippet(&compiled.snippet)
            .map_err(convert::ConvertError::from)
            .and_then(|val| convert::to_json(val, limits.max_output_bytes));
        let tripped = guard::disarm(limits.max_stack);

        // Drop the request's data from the shared settings before anything else runs.
        self.std_ctx.add_ext_var("claims".into(), Val::Null);
        self.std_ctx.add_ext_var("identity".into(), Val::Null);

        match (result, tripped) {
            (_, Some(guard::Trip::Time)) => Err(MapperError::Timeout(limits.timeout)),
            (_, Some(guard::Trip::Memory)) => {
                Err(MapperError::TooMuchMemory(limits.max_allocated_bytes))
            }
            (Ok(value), None) => Ok(value),
            (Err(convert::ConvertError::TooLarge), None) => {
                Err(MapperError::OutputTooLarge(limits.max_output_bytes))
            }
            (Err(convert::ConvertError::TooDeep), None) => Err(MapperError::InvalidOutput(
                "the output is nested more than 128 levels deep".into(),
            )),
            (Err(convert::ConvertError::Function), None) => Err(MapperError::InvalidOutput(
                "the output contains a function, which has no JSON form".into(),
            )),
            (Err(convert::ConvertError::Eval(e, path)), None) => Err(classify(
                &e,
                &compiled.path,
                limits,
                convert::ConvertError::field_path(&path),
            )),
        }
    }
}

/// Evaluations between two collections of jrsonnet's reference cycles. A collection costs a
/// fixed ~30k instructions (it walks every tracked object, the standard library's included)
/// plus ~22k per evaluation's garbage (callgrind, okta-acme). Every 4th evaluation spends a
/// third of the collection work of collecting after each one, and its pause (~0.1 ms, after the
/// answer is sent) stays far below the 1–3 ms that every 128th cost (bench/README.md).
const COLLECT_EVERY: u32 = 4;

impl Evaluator {
    /// jrsonnet frees values by reference counting; objects that refer to themselves (every
    /// object with `self`, every closure over its own scope) form cycles that only its cycle
    /// collector frees, and nothing calls it on its own. A long-lived evaluator would keep every
    /// evaluation's cycles — about 50 KiB each for the sample mappers — until its worker hits
    /// the address-space limit. Collecting every few evaluations keeps memory flat at a small
    /// cost.
    ///
    /// Call it after the answer is on its way: a collection scans every tracked object, and
    /// inside an evaluation it would land on that request's latency.
    pub fn collect_garbage_now_and_then(&self) {
        if self.collection_due() {
            self.collect_garbage();
        }
    }

    /// Counts an evaluation; true when the cycles should be collected after this one.
    pub fn collection_due(&self) -> bool {
        let n = self.since_collection.get() + 1;
        let due = n >= COLLECT_EVERY;
        self.since_collection.set(if due { 0 } else { n });
        due
    }

    /// Collects jrsonnet's reference cycles now.
    pub fn collect_garbage(&self) {
        jrsonnet_gcmodule::collect_thread_cycles();
    }
}

fn classify(
    e: &jrsonnet_evaluator::Error,
    path: &Path,
    limits: Limits,
    output_field: Option<String>,
) -> MapperError {
    let location = error_location(e, path);
    match e.error() {
        _ if convert::is_stack_overflow(e) => MapperError::StackOverflow(limits.max_stack),
        ErrorKind::RuntimeError(message) => MapperError::Denied {
            message: message.to_string(),
            location,
        },
        ErrorKind::NoSuchField(field, _) => MapperError::MissingField {
            field: field.to_string(),
            location,
            output_field,
        },
        other => MapperError::Runtime {
            message: other.to_string(),
            location,
            output_field,
        },
    }
}

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
