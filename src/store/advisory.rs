//! The replica's lock session (PostgreSQL): one connection holds the advisory
//! lock of every thread this replica is running, whatever their number.
//!
//! Session advisory locks belong to a connection and all drop with it, so a
//! replica that dies (even by SIGKILL) frees its threads at once, with no
//! lease to wait out; and since one session holds them all, a run costs no
//! connection of its own. A lock is taken and released by one short
//! statement each on that connection, which a task owns ([`LockSession`]
//! sends it commands); in-process waiters never reach it, as the local lock
//! (`locks.rs`) orders the runs of one thread first.
//!
//! A run waiting for a thread that another replica holds is woken by a
//! `NOTIFY` on [`CHANNEL`], which every release sends, read by a second
//! connection that only listens. A replica that dies sends none, so a waiter
//! also tries again every [`RETRY_EVERY`].
//!
//! Should the session's connection fail, every lock it held is gone with
//! it: the task reconnects at the next command and takes them back, and
//! says so at error level for any another replica took meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgListener};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{StoreError, StoreResult};

/// The channel releases are announced on; the payload is the thread id.
pub const CHANNEL: &str = "chatkitd_run_unlocked";

/// How often a waiter tries again without being notified.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
const UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtextextended($1, 0)), pg_notify('chatkitd_run_unlocked', $1)";

enum Command {
    TryLock {
        thread_id: String,
        reply: oneshot::Sender<StoreResult<bool>>,
    },
    Unlock {
        thread_id: String,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A handle on the replica's lock session; clones share it. The session
/// ends when [`LockSession::close`] is called or every handle and guard is
/// gone.
#[derive(Debug, Clone)]
pub struct LockSession {
    commands: mpsc::UnboundedSender<Command>,
    released: Arc<Notify>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::TryLock { .. } => "TryLock",
            Command::Unlock { .. } => "Unlock",
            Command::Close { .. } => "Close",
        })
    }
}

impl LockSession {
    /// Opens the session's two connections to the database at `url`.
    pub async fn start(url: &str) -> StoreResult<LockSession> {
        let connection = PgConnection::connect(url).await?;
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let released = Arc::new(Notify::new());
        let (commands, receiver) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(listen(listener, released.clone(), stop.clone()));
        tokio::spawn(serve(connection, url.to_owned(), receiver, stop));
        Ok(LockSession { commands, released })
    }

    /// Takes the advisory lock of a thread, waiting up to `timeout` while
    /// another replica holds it.
    pub async fn acquire(&self, thread_id: &str, timeout: Duration) -> StoreResult<AdvisoryGuard> {
        let deadline = Instant::now() + timeout;
        loop {
            // Listening before trying: a release between the two still wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::TryLock {
                    thread_id: thread_id.to_owned(),
                    reply,
                })
                .map_err(|_| session_closed())?;
            if answer.await.map_err(|_| session_closed())?? {
                return Ok(AdvisoryGuard {
                    commands: self.commands.clone(),
                    thread_id: thread_id.to_owned(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy(thread_id.to_owned()));
            }
            let _ = tokio::time::timeout(RETRY_EVERY.min(deadline - now), released).await;
        }
    }

    /// Releases every lock and closes the connections.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).is_ok() {
            let _ = closed.await;
        }
    }
}

fn session_closed() -> StoreError {
    StoreError::Unavailable("the run lock session is closed".to_owned())
}

/// A thread's advisory lock in the replica's session; dropping it releases
/// the lock (no runtime needed: it only queues the release).
#[derive(Debug)]
pub struct AdvisoryGuard {
    commands: mpsc::UnboundedSender<Command>,
    thread_id: String,
}

impl Drop for AdvisoryGuard {
    fn drop(&mut self) {
        let thread_id = std::mem::take(&mut self.thread_id);
        // A closed session holds no locks any more.
        let _ = self.commands.send(Command::Unlock { thread_id });
    }
}

/// Runs the session's commands in order on its connection.
async fn serve(
    connection: PgConnection,
    url: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let _stop_listening = stop.drop_guard();
    let mut connection = Some(connection);
    let mut held: HashSet<String> = HashSet::new();
    while let Some(command) = commands.recv().await {
        if connection.is_none() {
            connection = reconnect(&url, &held).await;
        }
        match command {
            Command::TryLock { thread_id, reply } => {
                let result = match connection.as_mut() {
                    Some(conn) => sqlx::query_scalar::<_, bool>(TRY_LOCK)
                        .bind(&thread_id)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(StoreError::from),
                    None => Err(StoreError::Unavailable(
                        "the run lock session cannot reach the database".to_owned(),
                    )),
                };
                if result.is_err() {
                    // Whatever broke, the locks may be gone with the session:
                    // start over, and take them back, at the next command.
                    connection = None;
                }
                let taken = matches!(result, Ok(true));
                if taken {
                    held.insert(thread_id.clone());
                }
                // The waiter gave up meanwhile: nobody will release it.
                if reply.send(result).is_err() && taken {
                    held.remove(&thread_id);
                    connection = unlock(connection, &thread_id).await;
                }
            }
            Command::Unlock { thread_id } => {
                if held.remove(&thread_id) {
                    connection = unlock(connection, &thread_id).await;
                }
            }
            Command::Close { done } => {
                if let Some(conn) = connection.take() {
                    let _ = conn.close().await;
                }
                let _ = done.send(());
                return;
            }
        }
    }
    if let Some(conn) = connection {
        let _ = conn.close().await;
    }
}

/// Releases one lock and announces it; `None` if the connection failed
/// (which released it anyway, unannounced: waiters retry on their own).
async fn unlock(connection: Option<PgConnection>, thread_id: &str) -> Option<PgConnection> {
    let mut conn = connection?;
    match sqlx::query(UNLOCK).bind(thread_id).execute(&mut conn).await {
        Ok(_) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, %thread_id, "run lock release failed; reconnecting the lock session");
            None
        }
    }
}

/// A new session that holds again the locks of `held`.
async fn reconnect(url: &str, held: &HashSet<String>) -> Option<PgConnection> {
    let mut conn = match PgConnection::connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "the run lock session cannot reconnect");
            return None;
        }
    };
    for thread_id in held {
        match sqlx::query_scalar::<_, bool>(TRY_LOCK)
            .bind(thread_id)
            .fetch_one(&mut conn)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                %thread_id,
                "the run lock session was lost and another replica took this thread's lock: two runs may overlap on it"
            ),
            Err(e) => {
                tracing::error!(error = %e, "the run lock session cannot take its locks back");
                return None;
            }
        }
    }
    tracing::warn!(locks = held.len(), "the run lock session reconnected");
    Some(conn)
}

/// Wakes waiters whenever any replica releases a lock.
async fn listen(mut listener: PgListener, released: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            notification = listener.recv() => match notification {
                Ok(_) => released.notify_waiters(),
                Err(e) => {
                    // The listener reconnects by itself; waiters poll meanwhile.
                    tracing::warn!(error = %e, "lost the run lock notifications; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
}
