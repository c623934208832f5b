//! Evaluator worker processes: the hard boundary around customer Jsonnet.
//!
//! The in-thread guard ([`super::guard`]) stops most runaway mappers cleanly, but jrsonnet's
//! native stdlib loops (`std.makeArray`, `std.foldl`, …) call Jsonnet functions without passing
//! through its depth check, so a mapper like `std.makeArray(1e9, function(i) i)` can neither be
//! interrupted nor kept from filling memory from inside the process. Kratos meets the same
//! problem with go-jsonnet by evaluating in a pool of re-exec'd subprocesses with a 1 s timeout
//! and an address-space limit (docs/kratos.md §2.4); so does kratos-jit:
//!
//! - a worker is this same executable run as `kratos-jit mapper-worker`; it limits its own address
//!   space (`RLIMIT_AS`), compiles every mapper once, then answers one JSON line per request;
//! - the parent waits for each answer with a deadline (on the async caller's reactor, or in
//!   `poll(2)` on a relay thread); a worker that misses it is killed and replaced, a worker
//!   that dies (out of memory, abort) is replaced and its request answered with
//!   [`MapperError::WorkerCrashed`];
//! - one worker serves one request at a time, so a runaway only ever holds its own worker.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Claims, Evaluator, Limits, MapperError, MapperKind, MapperSource};

/// The hidden subcommand that turns the executable into a worker.
pub const WORKER_SUBCOMMAND: &str = "mapper-worker";

/// How a worker process is started and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProgram {
    /// The kratos-jit executable (normally `std::env::current_exe()`).
    pub program: PathBuf,
    /// Address-space limit of each worker (Kratos uses 2 GiB).
    pub max_address_space: u64,
}

impl WorkerProgram {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerProgram {
            program: program.into(),
            max_address_space: 2 << 30,
        }
    }

    /// The running executable, when it is kratos-jit itself.
    pub fn current_exe() -> std::io::Result<Self> {
        std::env::current_exe().map(Self::new)
    }
}

#[derive(Serialize, Deserialize)]
struct Setup {
    limits: WireLimits,
    max_address_space: u64,
    sources: Vec<WireSource>,
}

#[derive(Serialize, Deserialize)]
struct WireLimits {
    timeout_ms: u64,
    max_output_bytes: usize,
    max_stack: usize,
    max_allocated_bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct WireSource {
    provider: String,
    kind: MapperKind,
    path: PathBuf,
    code: String,
}

/// One evaluation: `kind` says which of the provider's mappers runs, and which ext var
/// (`claims` or `scim`) `claims` is bound to.
#[derive(Serialize)]
struct Request<'a> {
    provider: &'a str,
    kind: MapperKind,
    claims: Claims<'a>,
    identity: &'a Value,
}

/// A request as the worker reads it: straight into Jsonnet values, no JSON tree in between.
#[derive(Deserialize)]
struct OwnedRequest {
    provider: String,
    kind: MapperKind,
    claims: jrsonnet_evaluator::Val,
    identity: jrsonnet_evaluator::Val,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    Ready,
    Ok(Value),
    Err(MapperError),
}

/// One line from a worker. `collecting`: the worker collects jrsonnet's garbage before it reads
/// again, and says `Ready` when it is done.
#[derive(Serialize, Deserialize)]
struct Reply {
    response: Response,
    #[serde(default)]
    collecting: bool,
}

/// The parent's handle on one worker process.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buffer: Vec<u8>,
    /// Where reads land before they join `buffer`; zeroed once, not at every read.
    scratch: Box<[u8]>,
    /// The worker announced a collection after its last answer and has not said `Ready` yet.
    collecting: bool,
}

impl Worker {
    /// Starts a worker and waits (up to `startup`) until it has compiled every mapper.
    pub fn spawn(
        program: &WorkerProgram,
        sources: &[MapperSource],
        limits: Limits,
        startup: Duration,
    ) -> Result<Worker, MapperError> {
        let crashed = |m: String| MapperError::WorkerCrashed(m);
        let mut child = Command::new(&program.program)
            .arg(WORKER_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                crashed(format!(
                    "could not start {}: {e}",
                    program.program.display()
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(crashed("worker pipes are missing".into()));
        };
        // Our ends of the pipes never block: the async path waits on the reactor, the blocking
        // path on poll(2), and both with a deadline.
        set_nonblocking(stdin.as_raw_fd()).map_err(|e| crashed(format!("worker pipe: {e}")))?;
        set_nonblocking(stdout.as_raw_fd()).map_err(|e| crashed(format!("worker pipe: {e}")))?;
        let mut worker = Worker {
            child,
            stdin,
            stdout,
            buffer: Vec::with_capacity(8192),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            collecting: false,
        };
        let setup = Setup {
            limits: WireLimits {
                timeout_ms: limits.timeout.as_millis() as u64,
                max_output_bytes: limits.max_output_bytes,
                max_stack: limits.max_stack,
                max_allocated_bytes: limits.max_allocated_bytes,
            },
            max_address_space: program.max_address_space,
            sources: sources
                .iter()
                .map(|s| WireSource {
                    provider: s.provider.clone(),
                    kind: s.kind,
                    path: s.path.clone(),
                    code: s.code.clone(),
                })
                .collect(),
        };
        let deadline = Instant::now() + startup;
        worker.send(&encode(&setup)?, deadline)?;
        match worker.receive(deadline)? {
            Response::Ready => Ok(worker),
            Response::Err(e) => Err(e),
            Response::Ok(_) => Err(crashed("worker answered before it was asked".into())),
        }
    }

    /// Writes one whole line, waiting (up to `deadline`) while the pipe is full.
    fn send(&mut self, line: &[u8], deadline: Instant) -> Result<(), MapperError> {
        let mut rest = line;
        while !rest.is_empty() {
            match self.stdin.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !ready_within(self.stdin.as_raw_fd(), libc::POLLOUT, left)
                    {
                        return Err(MapperError::Timeout(Duration::ZERO));
                    }
                }
                Err(e) => return Err(stopped_reading(e)),
            }
        }
        Ok(())
    }

    /// The next complete answer already buffered, if any.
    fn buffered_answer(&mut self) -> Option<Result<Response, MapperError>> {
        let end = self.buffer.iter().position(|&b| b == b'\n')?;
        let parsed = serde_json::from_slice::<Reply>(&self.buffer[..end]);
        self.buffer.drain(..=end);
        Some(match parsed {
            Ok(reply) => {
                self.collecting = reply.collecting;
                Ok(reply.response)
            }
            Err(e) => Err(MapperError::WorkerCrashed(format!(
                "unreadable answer: {e}"
            ))),
        })
    }

    /// Waits until a worker that announced a garbage collection has finished it.
    pub fn wait_until_idle(&mut self, deadline: Instant) -> Result<(), MapperError> {
        if !self.collecting {
            return Ok(());
        }
        expect_ready(self.receive(deadline)?)
    }

    /// [`Self::wait_until_idle`] for async callers; the caller bounds it in time.
    async fn wait_until_idle_async(&mut self) -> Result<(), MapperError> {
        if !self.collecting {
            return Ok(());
        }
        expect_ready(self.receive_async().await?)
    }

    /// Whether the worker can take a request at once: it is not collecting its garbage, or
    /// has just said `Ready`. Never waits.
    pub fn is_ready(&mut self) -> bool {
        if !self.collecting {
            return true;
        }
        if !self.buffer.contains(&b'\n') && !matches!(self.fill(), Ok(true)) {
            return false;
        }
        // A complete line is there; `wait_until_idle` reads it without waiting.
        self.buffer.contains(&b'\n')
    }

    /// Moves what the pipe holds into the buffer. `Ok(false)`: nothing there yet.
    fn fill(&mut self) -> Result<bool, MapperError> {
        loop {
            match self.stdout.read(&mut self.scratch) {
                Ok(0) => return Err(MapperError::WorkerCrashed(self.exit_description())),
                Ok(n) => {
                    self.buffer.extend_from_slice(&self.scratch[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(MapperError::WorkerCrashed(e.to_string())),
            }
        }
    }

    fn receive(&mut self, deadline: Instant) -> Result<Response, MapperError> {
        loop {
            if let Some(answer) = self.buffered_answer() {
                return answer;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !ready_within(self.stdout.as_raw_fd(), libc::POLLIN, left) {
                return Err(MapperError::Timeout(Duration::ZERO));
            }
            self.fill()?;
        }
    }

    /// [`Self::receive`] for async callers: waits on the caller's own reactor, so the answer
    /// wakes the task that asked, with no thread in between. The caller bounds it in time.
    async fn receive_async(&mut self) -> Result<Response, MapperError> {
        loop {
            if let Some(answer) = self.buffered_answer() {
                return answer;
            }
            if self.fill()? {
                continue;
            }
            // SAFETY: the descriptor belongs to `self.stdout`, which stays open (and the same
            // pipe) while this borrow of `self` lasts; the registration ends in this iteration.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    PipeFd(self.stdout.as_raw_fd()),
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| MapperError::WorkerCrashed(format!("cannot wait on the worker: {e}")))?;
            let mut ready = fd
                .readable()
                .await
                .map_err(|e| MapperError::WorkerCrashed(e.to_string()))?;
            ready.clear_ready();
        }
    }

    fn exit_description(&mut self) -> String {
        match self.child.wait() {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(libc::SIGABRT) => {
                        "the worker ran out of memory (address-space limit) and aborted".into()
                    }
                    Some(libc::SIGKILL) => "the worker was killed (out of memory?)".into(),
                    Some(signal) => format!("the worker died of signal {signal}"),
                    None => format!("the worker exited with {status}"),
                }
            }
            Err(e) => format!("the worker is gone: {e}"),
        }
    }

    /// Evaluates one request. An `Err(Timeout)` or `Err(WorkerCrashed)` means this worker must
    /// be discarded: the caller drops it (which kills it) and spawns another.
    pub fn evaluate(
        &mut self,
        provider: &str,
        claims: Claims<'_>,
        identity: &Value,
        deadline: Instant,
    ) -> Result<Result<Value, MapperError>, MapperError> {
        self.wait_until_idle(deadline)?;
        self.send(&request_line(provider, claims, identity)?, deadline)?;
        answer(self.receive(deadline)?)
    }

    /// [`Self::evaluate`] for async callers, with the same contract. The future must be run to
    /// its end: dropped mid-way, it leaves an answer nobody reads, and the worker must go too.
    pub async fn evaluate_async(
        &mut self,
        provider: &str,
        claims: Claims<'_>,
        identity: &Value,
        deadline: Instant,
    ) -> Result<Result<Value, MapperError>, MapperError> {
        let exchange = async {
            self.wait_until_idle_async().await?;
            // An idle worker is blocked reading its stdin, so the pipe (64 KiB) is empty and a
            // request fits at once; only a larger one waits, briefly, in `send`'s poll(2).
            self.send(&request_line(provider, claims, identity)?, deadline)?;
            answer(self.receive_async().await?)
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(MapperError::Timeout(Duration::ZERO)),
        }
    }
}

fn request_line(
    provider: &str,
    claims: Claims<'_>,
    identity: &Value,
) -> Result<Vec<u8>, MapperError> {
    encode(&Request {
        provider,
        kind: claims.kind(),
        claims,
        identity,
    })
}

fn expect_ready(response: Response) -> Result<(), MapperError> {
    match response {
        Response::Ready => Ok(()),
        _ => Err(MapperError::WorkerCrashed(
            "worker answered out of turn".into(),
        )),
    }
}

/// A pipe end borrowed for registration with the reactor; closing stays with its owner.
struct PipeFd(RawFd);

impl AsRawFd for PipeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn answer(response: Response) -> Result<Result<Value, MapperError>, MapperError> {
    match response {
        Response::Ok(value) => Ok(Ok(value)),
        Response::Err(e) => Ok(Err(e)),
        Response::Ready => Err(MapperError::WorkerCrashed(
            "worker answered out of turn".into(),
        )),
    }
}

/// One message as one line. Raw claims keep the layout they arrived with, line breaks included;
/// a line-break byte in JSON text can only be whitespace (inside strings it is escaped as `\n`),
/// so turning each into a space keeps the value and makes the message a single line.
fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, MapperError> {
    let mut line =
        serde_json::to_vec(message).map_err(|e| MapperError::WorkerCrashed(e.to_string()))?;
    for byte in line.iter_mut().filter(|b| **b == b'\n' || **b == b'\r') {
        *byte = b' ';
    }
    line.push(b'\n');
    Ok(line)
}

fn stopped_reading(e: std::io::Error) -> MapperError {
    MapperError::WorkerCrashed(format!("worker stopped reading: {e}"))
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_within(fd: RawFd, events: libc::c_short, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd for a descriptor we own for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, millis) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn limit_address_space(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: plain system call on a stack value.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        eprintln!(
            "kratos-jit mapper-worker: could not limit address space: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Entry point of `kratos-jit mapper-worker`: setup line, then one answer per request line.
pub fn worker_main() -> ExitCode {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    if input.read_line(&mut line).unwrap_or(0) == 0 {
        eprintln!(
            "kratos-jit mapper-worker: expected a setup line on stdin (this command is started by kratos-jit itself)"
        );
        return ExitCode::from(2);
    }
    let setup: Setup = match serde_json::from_str(&line) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("kratos-jit mapper-worker: bad setup line: {e}");
            return ExitCode::from(2);
        }
    };
    limit_address_space(setup.max_address_space);
    let limits = Limits {
        timeout: Duration::from_millis(setup.limits.timeout_ms),
        max_output_bytes: setup.limits.max_output_bytes,
        max_stack: setup.limits.max_stack,
        max_allocated_bytes: setup.limits.max_allocated_bytes,
    };
    let sources: Vec<MapperSource> = setup
        .sources
        .into_iter()
        .map(|s| MapperSource::of_kind(s.kind, s.provider, s.path, s.code))
        .collect();
    let reply = |out: &mut std::io::StdoutLock<'_>, response: Response, collecting: bool| -> bool {
        let Ok(mut bytes) = serde_json::to_vec(&Reply {
            response,
            collecting,
        }) else {
            return false;
        };
        bytes.push(b'\n');
        out.write_all(&bytes).and_then(|()| out.flush()).is_ok()
    };
    let evaluator = match Evaluator::new(&sources, limits) {
        Ok(evaluator) => evaluator,
        Err(errors) => {
            let first = errors
                .into_iter()
                .next()
                .unwrap_or(MapperError::EngineStopped);
            reply(&mut out, Response::Err(first), false);
            return ExitCode::from(1);
        }
    };
    if !reply(&mut out, Response::Ready, false) {
        return ExitCode::from(1);
    }
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(_) => return ExitCode::from(1),
        }
        let response = match serde_json::from_str::<OwnedRequest>(&line) {
            Ok(request) => {
                match evaluator.evaluate_val(
                    &request.provider,
                    request.kind,
                    request.claims,
                    request.identity,
                ) {
                    Ok(value) => Response::Ok(value),
                    Err(e) => Response::Err(e),
                }
            }
            Err(e) => Response::Err(MapperError::InvalidOutput(format!(
                "bad request to worker: {e}"
            ))),
        };
        // After the answer is sent, so the collection's pause is off the request's latency;
        // the parent holds back the next request until `Ready`.
        let collecting = evaluator.collection_due();
        if !reply(&mut out, response, collecting) {
            return ExitCode::from(1);
        }
        if collecting {
            evaluator.collect_garbage();
            if !reply(&mut out, Response::Ready, false) {
                return ExitCode::from(1);
            }
        }
    }
}
