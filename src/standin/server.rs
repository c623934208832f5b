//! The server loop: serves a [`StandInState`] on a listener, stops listening while the state asks
//! to refuse connections, and binds the same address again when it no longer does.

use super::http::dispatch;
use super::state::{LoopStatus, Mode, StandInState};
use actix_web::{App, HttpServer, web};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Request bodies larger than this are refused by actix before they reach the stand-in.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Worker threads per stand-in; handlers never block, so two are plenty even for load tests.
const WORKERS: usize = 2;
/// How long to keep retrying to bind the old address after a refusal period.
const REBIND_ATTEMPTS: u32 = 100;
const REBIND_PAUSE: Duration = Duration::from_millis(20);
/// How long to wait for stopped workers to drop their keep-alive connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DRAIN_PAUSE: Duration = Duration::from_millis(2);

/// Serves `state` on `listener` until [`StandInState::shutdown`] is called (or the server fails).
///
/// This is what `kratos-jit serve --dev` embeds: bind a loopback listener, create a
/// [`StandInState`], keep a clone to seed or inspect it, and await this. It runs on any tokio
/// runtime or actix `System` and spawns its own actix worker threads. It installs no signal
/// handlers: on Ctrl-C the caller calls `state.shutdown()` and keeps awaiting this future, which
/// then stops the server and returns `Ok(())`. While the state's fault is
/// [`super::Fault::RefuseConnections`] the listener is closed, and the same address is bound again
/// when the fault is cleared. Serve one state with one loop at a time.
///
/// ```no_run
/// # async fn serve_dev() -> std::io::Result<()> {
/// use kratos_jit::standin::{StandInState, run_until_stopped};
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:4434")?;
/// let state = StandInState::new();
/// let stop = state.clone();
/// let server = tokio::spawn(run_until_stopped(listener, state));
/// tokio::signal::ctrl_c().await?;
/// stop.shutdown();
/// server.await.map_err(std::io::Error::other)??;
/// # Ok(())
/// # }
/// ```
pub async fn run_until_stopped(listener: TcpListener, state: StandInState) -> io::Result<()> {
    let result = serve(listener, &state).await;
    state.report(LoopStatus::Stopped(
        result.as_ref().err().map(ToString::to_string),
    ));
    result
}

async fn serve(listener: TcpListener, state: &StandInState) -> io::Result<()> {
    let addr = listener.local_addr()?;
    state.set_base_url(format!("http://{addr}"));
    let mut desired = state.subscribe();
    let mut listener = Some(listener);
    loop {
        let mode = *desired.borrow_and_update();
        match mode {
            Mode::Shutdown => return Ok(()),
            Mode::Refuse => {
                drop(listener.take());
                state.report(LoopStatus::Refusing);
                if desired.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            Mode::Listen => {}
        }
        let current = match listener.take() {
            Some(listener) => listener,
            None => rebind(addr).await?,
        };
        let open = OpenConnections::default();
        let server = build_server(current, state.clone(), open.clone())?;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        state.report(LoopStatus::Listening);
        tokio::select! {
            stopped = &mut server => return stopped,
            changed = desired.changed() => {
                // The stop command is sent eagerly; the server future completes once the accept
                // thread has exited and dropped the listening socket. The workers drop their
                // keep-alive connections a moment later: wait for that too, so that no request
                // is served once the owner has been told connections are refused.
                drop(handle.stop(false));
                server.await?;
                open.drained().await;
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn build_server(
    listener: TcpListener,
    state: StandInState,
    open: OpenConnections,
) -> io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .default_service(web::to(dispatch))
    })
    .on_connect(move |_, extensions| {
        extensions.insert(open.opened());
    })
    .workers(WORKERS)
    .disable_signals()
    .shutdown_timeout(0)
    .tcp_nodelay(true)
    .listen(listener)?
    .run())
}

/// Binds `addr` again; the old socket may take a moment to be released.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(error) if attempt < REBIND_ATTEMPTS && error.kind() == io::ErrorKind::AddrInUse => {
                attempt += 1;
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The number of live HTTP connections of one server: each connection carries a guard in its
/// extensions, dropped together with the connection.
#[derive(Clone, Default)]
struct OpenConnections(Arc<AtomicUsize>);

struct ConnectionGuard(Arc<AtomicUsize>);

impl OpenConnections {
    fn opened(&self) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(Arc::clone(&self.0))
    }

    /// Waits until every connection is gone (bounded by [`DRAIN_TIMEOUT`]).
    async fn drained(&self) {
        let started = Instant::now();
        while self.0.load(Ordering::SeqCst) > 0 {
            if started.elapsed() > DRAIN_TIMEOUT {
                tracing::warn!(
                    open = self.0.load(Ordering::SeqCst),
                    "Kratos stand-in: connections still open after the server stopped."
                );
                return;
            }
            tokio::time::sleep(DRAIN_PAUSE).await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
