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
//! `NOTIFY` on [`CHANNEL`], which every release statement sends (one for all
//! the locks it releases: each notification costs Postgres a signal to every
//! listening session), read by a second connection that only listens. A
//! replica that dies sends none, so a waiter also tries again every
//! [`RETRY_EVERY`].
//!
//! Should the session's connection fail, every lock it held is gone with
//! it: the task reconnects at the next command and takes them back, and
//! says so at error level for any another replica took meanwhile.
//!
//! Commands that queue up while a statement runs are sent together (one
//! statement over an array of ids), so a burst of a thousand new
//! conversations costs a few round trips on the session, not a thousand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgListener};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{StoreError, StoreResult};

/// The channel releases are announced on, with no payload: every waiter
/// woken tries its own lock again.
pub const CHANNEL: &str = "chatkitd_run_unlocked";

/// How often a waiter tries again without being notified.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
/// One answer per thread id of `$1`, in its order.
const TRY_LOCKS: &str = "SELECT pg_try_advisory_lock(hashtextextended(t, 0)) \
     FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i";
/// Releases the locks of `$1` with one notification for them all (Postgres
/// sends it at commit, after the releases).
const UNLOCKS: &str = "SELECT pg_notify('chatkitd_run_unlocked', ''), \
     (SELECT count(pg_advisory_unlock(hashtextextended(t, 0))) FROM unnest($1::text[]) AS u(t))";

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

/// Most commands taken from the queue at once.
const BATCH: usize = 256;

/// The locks the session holds, with how many times each is taken (session
/// advisory locks count: each take needs its release).
type Held = HashMap<String, u32>;

/// Runs the session's commands in order on its connection. Commands that
/// queued up meanwhile go together: a run of takes (or of releases) is one
/// statement over an array of thread ids, so a burst of new conversations
/// costs a few round trips, not one each.
async fn serve(
    connection: PgConnection,
    url: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let _stop_listening = stop.drop_guard();
    let mut connection = Some(connection);
    let mut held = Held::new();
    while let Some(first) = commands.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let mut batch = batch.into_iter().peekable();
        while let Some(command) = batch.next() {
            if connection.is_none() {
                connection = reconnect(&url, &held).await;
            }
            match command {
                Command::TryLock { thread_id, reply } => {
                    let mut takes = vec![(thread_id, reply)];
                    while matches!(batch.peek(), Some(Command::TryLock { .. })) {
                        if let Some(Command::TryLock { thread_id, reply }) = batch.next() {
                            takes.push((thread_id, reply));
                        }
                    }
                    connection = try_locks(connection, takes, &mut held).await;
                }
                Command::Unlock { thread_id } => {
                    let mut releases = vec![thread_id];
                    while matches!(batch.peek(), Some(Command::Unlock { .. })) {
                        if let Some(Command::Unlock { thread_id }) = batch.next() {
                            releases.push(thread_id);
                        }
                    }
                    releases.retain(|thread_id| release(&mut held, thread_id));
                    connection = unlock(connection, &releases).await;
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
    }
    if let Some(conn) = connection {
        let _ = conn.close().await;
    }
}

/// Counts one release of a held lock; false if it was not held (the
/// session was lost meanwhile, or it was released already).
fn release(held: &mut Held, thread_id: &str) -> bool {
    match held.get_mut(thread_id) {
        Some(count) if *count > 1 => {
            *count -= 1;
            true
        }
        Some(_) => {
            held.remove(thread_id);
            true
        }
        None => false,
    }
}

/// Tries to take each lock, answers each requester, and releases at once
/// the locks whose requester gave up meanwhile. `None` if the connection
/// failed: every requester then gets the error, and the session starts over.
async fn try_locks(
    connection: Option<PgConnection>,
    takes: Vec<(String, oneshot::Sender<StoreResult<bool>>)>,
    held: &mut Held,
) -> Option<PgConnection> {
    let Some(mut conn) = connection else {
        for (_, reply) in takes {
            let _ = reply.send(Err(StoreError::Unavailable(
                "the run lock session cannot reach the database".to_owned(),
            )));
        }
        return None;
    };
    let ids: Vec<String> = takes.iter().map(|(id, _)| id.clone()).collect();
    let taken = match sqlx::query_scalar::<_, bool>(TRY_LOCKS)
        .bind(&ids)
        .fetch_all(&mut conn)
        .await
    {
        Ok(taken) if taken.len() == ids.len() => taken,
        outcome => {
            let reason = match outcome {
                Err(e) => e.to_string(),
                Ok(_) => "an answer per thread was expected".to_owned(),
            };
            // Whatever broke, the locks may be gone with the session: start
            // over, and take them back, at the next command.
            for (_, reply) in takes {
                let _ = reply.send(Err(StoreError::Unavailable(format!(
                    "the run lock session failed: {reason}"
                ))));
            }
            return None;
        }
    };
    let mut abandoned = Vec::new();
    for ((thread_id, reply), taken) in takes.into_iter().zip(taken) {
        if taken {
            *held.entry(thread_id.clone()).or_insert(0) += 1;
        }
        // The requester gave up meanwhile: nobody will release it.
        if reply.send(Ok(taken)).is_err() && taken && release(held, &thread_id) {
            abandoned.push(thread_id);
        }
    }
    unlock(Some(conn), &abandoned).await
}

/// Releases these locks and announces each; `None` if the connection failed
/// (which released them anyway, unannounced: waiters retry on their own).
async fn unlock(connection: Option<PgConnection>, thread_ids: &[String]) -> Option<PgConnection> {
    let mut conn = connection?;
    if thread_ids.is_empty() {
        return Some(conn);
    }
    match sqlx::query(UNLOCKS)
        .bind(thread_ids)
        .execute(&mut conn)
        .await
    {
        Ok(_) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, locks = thread_ids.len(), "run lock release failed; reconnecting the lock session");
            None
        }
    }
}

/// A new session that holds again the locks of `held`.
async fn reconnect(url: &str, held: &Held) -> Option<PgConnection> {
    let mut conn = match PgConnection::connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "the run lock session cannot reconnect");
            return None;
        }
    };
    for thread_id in held.keys() {
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
