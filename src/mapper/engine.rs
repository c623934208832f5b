//! The mapper engine: the one entry point callers use to run a mapper.
//!
//! [`MapperEngine::start`] compiles every mapper (reporting every error at once) and starts the
//! evaluators that [`Isolation`] asks for: threads of this process ([`threads`](super::threads))
//! or worker processes ([`pool`](super::pool)). [`MapperEngine::evaluate`] (async) and
//! [`MapperEngine::evaluate_blocking`] (sync) hand JSON over and get JSON back; a caller never
//! waits longer than the evaluation timeout plus a short grace, whatever the mapper does. A
//! request travels to an evaluator as a [`Job`].
//!
//! [`MapperEngine::evaluations`] counts the evaluations that reached an evaluator, so that a test
//! can check how many a use case asked for.

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

/// The evaluators of an engine, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Started and not dead: idle or evaluating.
    pub running: usize,
    /// How many the engine keeps (`mapper.workers`).
    pub wanted: usize,
    /// The last attempt to start a worker process failed.
    pub failing: bool,
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

    /// How many evaluators are running, for readiness: evaluator threads always are; worker
    /// processes once started (not while they start or after they died).
    pub fn workers(&self) -> Workers {
        match &self.pool {
            Pool::Threads { shared, .. } => Workers {
                running: shared.size(),
                wanted: shared.size(),
                failing: false,
            },
            Pool::Processes(handle) => handle.0.workers(),
        }
    }

    pub fn sources(&self) -> &[MapperSource] {
        &self.sources
    }

    /// How many evaluations this engine (shared by its clones) has run since it started: every
    /// [`Self::evaluate`] and [`Self::evaluate_blocking`] that reached an evaluator thread or a
    /// worker process, whatever the result: output, denial, failure, or a timeout of a request
    /// that waited too long in the queue. Requests refused before that (the engine stopped, no
    /// worker could be started) are not counted. An answered call is counted by the time its
    /// caller has the answer.
    pub fn evaluations(&self) -> u64 {
        match &self.pool {
            Pool::Threads { shared, .. } => shared.evaluations(),
            Pool::Processes(handle) => handle.0.evaluations(),
        }
    }

    /// How many worker processes were started to replace one that was lost (killed at its
    /// deadline, crashed, or abandoned mid-evaluation), since the engine started; 0 for
    /// [`Isolation::Threads`]. For the metrics (`kratos_jit_mapper_worker_restarts_total`).
    pub fn worker_restarts(&self) -> u64 {
        match &self.pool {
            Pool::Threads { .. } => 0,
            Pool::Processes(handle) => handle.0.restarts(),
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::*;
    use crate::mapper::empty_identity;

    const EMAIL: &str =
        "local c = std.extVar('claims'); { identity: { traits: { email: c.email } } }";

    fn sources() -> Vec<MapperSource> {
        vec![MapperSource::new("p", "mappers/p/mapper.jsonnet", EMAIL)]
    }

    /// Speaks the worker protocol without running any mapper: ready after the setup line, then
    /// one fixed output per request.
    const FAKE_WORKER: &str = r#"#!/bin/sh
read -r setup
echo '{"response":"ready"}'
while read -r request; do
  echo '{"response":{"ok":{"identity":{"traits":{}}}}}'
done
"#;

    /// Ready after the setup line, then dies on the first request.
    const CRASHING_WORKER: &str = r#"#!/bin/sh
read -r setup
echo '{"response":"ready"}'
read -r request
exit 3
"#;

    #[tokio::test]
    async fn a_worker_started_to_replace_a_crashed_one_is_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("crashing-worker");
        std::fs::write(&program, CRASHING_WORKER).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let isolation = Isolation::Processes(WorkerProgram::new(&program));
        let engine = MapperEngine::start(sources(), Limits::default(), 1, isolation).unwrap();
        let blocking = engine.clone();
        let result = tokio::task::spawn_blocking(move || {
            blocking.evaluate_blocking("p", json!({}), empty_identity())
        })
        .await
        .unwrap();
        assert!(
            matches!(result, Err(MapperError::WorkerCrashed(_))),
            "{result:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while engine.worker_restarts() == 0 {
            assert!(
                Instant::now() < deadline,
                "the crashed worker was not replaced"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            engine.worker_restarts(),
            1,
            "the first start is not a restart"
        );
    }

    #[tokio::test]
    async fn the_engine_counts_every_evaluation_its_threads_run_whatever_the_result() {
        let engine =
            MapperEngine::start(sources(), Limits::default(), 1, Isolation::Threads).unwrap();
        assert_eq!(engine.evaluations(), 0);

        let blocking = engine.clone();
        tokio::task::spawn_blocking(move || {
            blocking.evaluate_blocking("p", json!({"email": "a@b"}), empty_identity())
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(engine.evaluations(), 1);

        engine
            .evaluate("p", (&json!({"email": "a@b"})).into(), &empty_identity())
            .await
            .unwrap();
        // A failing mapper and an unknown provider were evaluations asked for all the same.
        engine
            .evaluate("p", (&json!({})).into(), &empty_identity())
            .await
            .unwrap_err();
        engine
            .evaluate("nope", (&json!({})).into(), &empty_identity())
            .await
            .unwrap_err();
        assert_eq!(engine.evaluations(), 4);
        assert_eq!(engine.clone().evaluations(), 4, "clones share one count");
    }

    #[tokio::test]
    async fn the_engine_counts_evaluations_that_worker_processes_run_queued_or_directly() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("fake-worker");
        std::fs::write(&program, FAKE_WORKER).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let isolation = Isolation::Processes(WorkerProgram::new(&program));
        let engine = MapperEngine::start(sources(), Limits::default(), 1, isolation).unwrap();
        assert_eq!(engine.evaluations(), 0);

        // Through the queue and a relay thread.
        let blocking = engine.clone();
        tokio::task::spawn_blocking(move || {
            blocking.evaluate_blocking("p", json!({}), empty_identity())
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(engine.evaluations(), 1);

        // Directly on an idle worker, the way `evaluate` uses one when it is free.
        let Pool::Processes(handle) = &engine.pool else {
            panic!("the engine was started with worker processes");
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let lease = loop {
            if let Some(lease) = handle.0.lease_idle().unwrap() {
                break lease;
            }
            assert!(Instant::now() < deadline, "no worker became idle");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        lease
            .evaluate("p", (&json!({})).into(), &empty_identity())
            .await
            .unwrap();
        assert_eq!(engine.evaluations(), 2);
    }
}
