//! The mapper engine: the one entry point callers use to run a mapper.
//!
//! [`MapperEngine::start`] compiles every mapper (reporting every error at once) and starts the
//! evaluators that [`Isolation`] asks for: threads of this process ([`threads`](super::threads))
//! or worker processes ([`pool`](super::pool)). [`MapperEngine::evaluate`] (async) and
//! [`MapperEngine::evaluate_blocking`] (sync) hand JSON over and get JSON back; a caller never
//! waits longer than the evaluation timeout plus a short grace, whatever the mapper does. A
//! request travels to an evaluator as a [`Job`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::compile::MapperSource;
use super::error::MapperError;
use super::evaluator::{Evaluator, Limits};
use super::input::{Claims, OwnedClaims};
use super::pool::{PoolHandle, ProcessPool};
use super::process::WorkerProgram;
use super::threads::{Shared, spawn_thread};

pub(super) type Reply = Box<dyn FnOnce(Result<Value, MapperError>) + Send>;

/// One evaluation on its way to an evaluator thread or a worker process.
pub(super) struct Job {
    pub(super) provider: String,
    pub(super) claims: OwnedClaims,
    pub(super) identity: Value,
    /// After this instant nobody waits for the answer any more.
    pub(super) expires: Instant,
    pub(super) reply: Reply,
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
                let (jobs, shared) = Shared::start(Arc::clone(&sources), limits, wanted);
                Pool::Threads { jobs, shared }
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
