//! The listener: accepting connections and serving the router on each with
//! hyper, within the limits of `[server]`, and a bounded shutdown.
//!
//! `axum::serve` runs hyper without a timer, so it has no header-read
//! timeout, no idle timeout and no cap on connections; this loop adds them:
//! - at most `max_connections` are open at once: beyond it the loop stops
//!   accepting and new connections wait in the kernel's accept queue
//!   (`listen_backlog` long, see [`listen_on`]), so a flood can never
//!   exhaust file descriptors;
//! - HTTP/1 headers must arrive within `header_read_timeout` (hyper's timer);
//! - a connection with no request in flight for `idle_timeout` is closed,
//!   including one that never sent a byte;
//! - a write the client does not take within `write_stall_timeout` fails
//!   the connection ([`StallGuard`]), so a client that stopped reading holds
//!   no connection slot once its run is over;
//! - a handler that learns its client stopped taking events closes the
//!   connection through the request's [`CloseConnection`]: an HTTP/2 client
//!   can withhold its flow-control window while reading the socket, which
//!   no socket-level guard sees.
//!
//! Shutdown: the loop stops accepting, every connection is asked to close
//! after its current request, the caller's drain runs (runs finish or are
//! cancelled), then connections get [`CLOSE_WAIT`] to send their last bytes
//! and are dropped, whatever their clients do.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::signal::Signal;
use tower::ServiceExt;

/// How long connections may take to send their last bytes once the runs
/// are over at shutdown, before they are dropped.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Put in every request's extensions: cancelling it drops the request's
/// connection at once (every stream on it, for HTTP/2).
#[derive(Debug, Clone)]
pub struct CloseConnection(CancellationToken);

impl CloseConnection {
    /// Drops the connection.
    pub fn close(&self) {
        self.0.cancel();
    }
}

/// The limits one connection is served under (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Time for a client to send a request's headers (HTTP/1).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time a client may leave a write untaken before the connection fails.
    pub write_stall_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled; then awaits
/// `drained` (the caller's runs ending) while the open connections go on,
/// gives them [`CLOSE_WAIT`] more, and drops those still open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    drained: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, _) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was
                    // taken: pause rather than spin, then go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Events are small writes: without TCP_NODELAY, Nagle's algorithm and
        // the client's delayed ACK hold each one back by up to 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = serve_connection(tcp, router.clone(), limits, stop.clone(), force.clone());
        connections.spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    drained.await;
    if tokio::time::timeout(CLOSE_WAIT, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            connections = connections.len(),
            "closing connections whose clients did not take their last bytes"
        );
        force.cancel();
        connections.wait().await;
    }
}

/// Serves one connection until it ends, is idle too long, or is forced shut.
async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let close = CancellationToken::new();
    let service = {
        let activity = activity.clone();
        let close = CloseConnection(close.clone());
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let router = router.clone();
            request.extensions_mut().insert(close.clone());
            async move {
                let response = router.oneshot(request.map(Body::new)).await?;
                // The request is in flight until its body is dropped: a
                // stream that is quiet while the model thinks is not idle.
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _busy = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let io = TokioIo::new(StallGuard::new(tcp, limits.write_stall_timeout));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let ends = Ends {
        stop: &stop,
        force: &force,
        close: &close,
        activity: &activity,
        idle_timeout: limits.idle_timeout,
    };
    // The connection is woken for every chunk it streams; the signals that
    // end it are polled only when one of them wakes it, not at every chunk.
    let mut signals = Signal::new(ends.next(false));
    loop {
        tokio::select! {
            biased;
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            end = &mut signals => match end {
                End::WindDown => {
                    connection.as_mut().graceful_shutdown();
                    signals = Signal::new(ends.next(true));
                }
                End::Force => return,
                End::Close => {
                    tracing::info!("closing the connection of a client that stopped reading");
                    return;
                }
            },
        }
    }
}

/// What ends a connection besides its client or its last response.
#[derive(Clone, Copy)]
struct Ends<'a> {
    /// The daemon stops: requests in flight finish, no new ones.
    stop: &'a CancellationToken,
    /// The shutdown's grace is over.
    force: &'a CancellationToken,
    /// Its client stopped taking events.
    close: &'a CancellationToken,
    activity: &'a Activity,
    idle_timeout: Duration,
}

/// Which of [`Ends`] came.
enum End {
    /// Stopping, or idle too long: finish what is in flight, then close.
    WindDown,
    Force,
    Close,
}

impl Ends<'_> {
    /// The next end to come; once `closing`, only a forced one.
    async fn next(self, closing: bool) -> End {
        tokio::select! {
            _ = self.stop.cancelled(), if !closing => End::WindDown,
            _ = self.activity.idle_for(self.idle_timeout), if !closing => End::WindDown,
            _ = self.force.cancelled() => End::Force,
            _ = self.close.cancelled() => End::Close,
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    state: watch::Sender<(usize, Instant)>,
}

/// One request in flight; dropping it ends the request.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            state: watch::Sender::new((0, Instant::now())),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.state.send_modify(|(active, _)| *active += 1);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let mut changes = self.state.subscribe();
        loop {
            let (active, since) = *changes.borrow_and_update();
            if active == 0 {
                let left = limit.saturating_sub(since.elapsed());
                if left.is_zero() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = changes.changed() => {}
                }
            } else if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.state.send_modify(|(active, since)| {
            *active = active.saturating_sub(1);
            if *active == 0 {
                *since = Instant::now();
            }
        });
    }
}

/// A socket whose writes fail once the client has taken nothing for
/// `limit`: hyper has no write timeout, and without one a client that stops
/// reading keeps its connection (and its slot) forever.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    /// Started when a write first found the socket full; reset by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> StallGuard {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// What a write that returned `polled` means, counting the stall.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let stall = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took no data within the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

/// A listener on `addr` whose kernel accept queue holds `backlog`
/// connections (Linux caps it at `net.core.somaxconn`). The standard
/// library's and tokio's `bind` ask for 128, which a burst of new clients
/// overflows: the kernel then drops their connection attempts, and each
/// client's kernel retries only a second later.
pub fn listen_on(addr: std::net::SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Raises the soft limit of open files to the hard limit, so connections,
/// tool servers and database connections share the most the system allows;
/// logs both. Returns the soft limit now in force (`None` if unknown).
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read the open files limit");
        return None;
    }
    let (soft, hard): (u64, u64) = (limit.rlim_cur, limit.rlim_max);
    if soft < hard {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(from = soft, to = hard, hard, "raised the open files limit");
            return Some(hard);
        }
        tracing::warn!(error = %io::Error::last_os_error(), soft, hard, "cannot raise the open files limit");
    } else {
        tracing::info!(soft, hard, "open files limit");
    }
    Some(soft)
}
