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
//! it. The task notices at its next statement, or within [`HEARTBEAT`]
//! while it holds any lock (it pings an idle session), reconnects at once
//! and takes them back. A lock another replica took meanwhile is *lost*:
//! its guard's [`AdvisoryGuard::lost`] token is cancelled, and the run
//! holding it stops before it writes again, so two runs never go on
//! together on one thread. A statement the database refuses (not a broken
//! connection) fails only the requests it carried: a batch is retried one
//! by one, so one bad id cannot fail another user's request or drop the
//! session.
//!
//! Why this file stays whole past 500 lines: it is one concept, the
//! session's task, whose commands, batching and recovery share its state.
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

/// How long a session holding locks stays idle before it checks that its
/// connection is alive: the longest a lost session goes unnoticed.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// The session's `application_name`, so operators (and tests) can find it
/// in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "chatkitd run locks";

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
/// One answer per thread id of `$1`, in its order.
const TRY_LOCKS: &str = "SELECT pg_try_advisory_lock(hashtextextended(t, 0)) \
     FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i";
/// Releases the locks of `$1` with one notification for them all (Postgres
/// sends it at commit, after the releases).
const UNLOCKS: &str = "SELECT pg_notify('chatkitd_run_unlocked', ''), \
     (SELECT count(pg_advisory_unlock(hashtextextended(t, 0))) FROM unnest($1::text[]) AS u(t))";

/// A take's answer: the lock's lost signal when it was taken, `None` when
/// another replica holds it.
type Taken = StoreResult<Option<CancellationToken>>;

enum Command {
    TryLock {
        thread_id: String,
        reply: oneshot::Sender<Taken>,
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
        let connection = connect(url).await?;
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
        // Postgres text cannot hold NUL: such an id names no thread, and
        // never reaches the session's statements.
        if thread_id.contains('\0') {
            return Err(StoreError::NotFound(format!("thread {thread_id:?}")));
        }
        let deadline = Instant::now() + timeout;
        // A take that found the session's connection broken is tried once
        // more on the session that replaced it.
        let mut retried = false;
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
            let taken = match answer.await.map_err(|_| session_closed())? {
                Err(StoreError::Unavailable(_)) if !retried => {
                    retried = true;
                    continue;
                }
                taken => taken?,
            };
            if let Some(lost) = taken {
                return Ok(AdvisoryGuard {
                    commands: self.commands.clone(),
                    thread_id: thread_id.to_owned(),
                    lost,
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
    lost: CancellationToken,
}

impl AdvisoryGuard {
    /// Cancelled if the session lost this lock to another replica (its
    /// connection failed, and another replica took the thread before the
    /// session could take it back): the holder must stop writing.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
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

/// The locks the session holds, by thread id.
type Held = HashMap<String, HeldLock>;

/// One lock the session holds.
#[derive(Debug)]
struct HeldLock {
    /// How many times it is taken (session advisory locks count: each take
    /// needs its release).
    count: u32,
    /// Cancelled when the lock is lost to another replica.
    lost: CancellationToken,
}

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
    loop {
        // An idle session holding locks checks its connection now and then,
        // so a lost one is noticed, and its locks taken back, at once.
        let first = if held.is_empty() {
            commands.recv().await
        } else {
            match tokio::time::timeout(HEARTBEAT, commands.recv()).await {
                Ok(command) => command,
                Err(_) => {
                    connection = heartbeat(connection, &url, &mut held).await;
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
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
                connection = reconnect(&url, &mut held).await;
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
                    if connection.is_none() {
                        connection = reconnect(&url, &mut held).await;
                    }
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
                    if connection.is_none() {
                        connection = reconnect(&url, &mut held).await;
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
    }
    if let Some(conn) = connection {
        let _ = conn.close().await;
    }
}

/// Counts one release of a held lock; false if it was not held (the
/// session was lost meanwhile, or it was released already).
fn release(held: &mut Held, thread_id: &str) -> bool {
    match held.get_mut(thread_id) {
        Some(lock) if lock.count > 1 => {
            lock.count -= 1;
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
/// A statement the database refused (the connection being fine) is tried
/// again for each lock alone, so only the request that caused it fails.
async fn try_locks(
    connection: Option<PgConnection>,
    takes: Vec<(String, oneshot::Sender<Taken>)>,
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
    let mut outcome = sqlx::query_scalar::<_, bool>(TRY_LOCKS)
        .bind(&ids)
        .fetch_all(&mut conn)
        .await;
    // The server's last word before it closes a connection (an operator's
    // `pg_terminate_backend`, a shutdown) is a database error too: only a
    // connection that still answers has merely refused the statement.
    if let Err(sqlx::Error::Database(refused)) = &outcome
        && let Err(e) = conn.ping().await
    {
        let reason = format!("{refused} ({e})");
        outcome = Err(sqlx::Error::Protocol(reason));
    }
    let answers: Vec<Result<bool, String>> = match outcome {
        Ok(taken) if taken.len() == ids.len() => taken.into_iter().map(Ok).collect(),
        Err(sqlx::Error::Database(e)) if ids.len() > 1 => {
            tracing::warn!(error = %e, locks = ids.len(), "a batch of run lock takes was refused; taking them one by one");
            let mut answers = Vec::with_capacity(ids.len());
            for id in &ids {
                match sqlx::query_scalar::<_, bool>(TRY_LOCK)
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(taken) => answers.push(Ok(taken)),
                    Err(sqlx::Error::Database(e)) if conn.ping().await.is_ok() => {
                        answers.push(Err(e.to_string()));
                    }
                    Err(e) => return fail_all(takes, &e.to_string()),
                }
            }
            answers
        }
        Err(sqlx::Error::Database(e)) => vec![Err(e.to_string())],
        Err(e) => return fail_all(takes, &e.to_string()),
        Ok(_) => return fail_all(takes, "an answer per thread was expected"),
    };
    let mut abandoned = Vec::new();
    for ((thread_id, reply), answer) in takes.into_iter().zip(answers) {
        let answer = match answer {
            Ok(true) => {
                let lock = held.entry(thread_id.clone()).or_insert_with(|| HeldLock {
                    count: 0,
                    lost: CancellationToken::new(),
                });
                lock.count += 1;
                Ok(Some(lock.lost.clone()))
            }
            Ok(false) => Ok(None),
            Err(reason) => Err(StoreError::Unavailable(format!(
                "the run lock was refused: {reason}"
            ))),
        };
        let taken = matches!(answer, Ok(Some(_)));
        // The requester gave up meanwhile: nobody will release it.
        if reply.send(answer).is_err() && taken && release(held, &thread_id) {
            abandoned.push(thread_id);
        }
    }
    unlock(Some(conn), &abandoned).await
}

/// Answers every take with the session's failure; the session starts over.
fn fail_all(takes: Vec<(String, oneshot::Sender<Taken>)>, reason: &str) -> Option<PgConnection> {
    // Whatever broke, the locks may be gone with the session: they are
    // taken back by the reconnection that follows.
    for (_, reply) in takes {
        let _ = reply.send(Err(StoreError::Unavailable(format!(
            "the run lock session failed: {reason}"
        ))));
    }
    None
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

/// Checks an idle session's connection; a failed one is replaced at once.
async fn heartbeat(
    connection: Option<PgConnection>,
    url: &str,
    held: &mut Held,
) -> Option<PgConnection> {
    if let Some(mut conn) = connection {
        match conn.ping().await {
            Ok(()) => return Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, locks = held.len(), "the run lock session's connection failed")
            }
        }
    }
    reconnect(url, held).await
}

/// Opens the session's connection, named for `pg_stat_activity`.
async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .application_name(APPLICATION_NAME);
    PgConnection::connect_with(&options).await
}

/// A new session that holds again the locks of `held`. A lock another
/// replica took meanwhile is lost: it leaves `held`, and its holder is told
/// to stop. `None` (everything still held, to be taken back at the next
/// attempt) if the database cannot be reached.
async fn reconnect(url: &str, held: &mut Held) -> Option<PgConnection> {
    let mut conn = match connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "the run lock session cannot reconnect");
            return None;
        }
    };
    let mut lost = Vec::new();
    for (thread_id, lock) in held.iter() {
        let mut taken = true;
        // A reentrant take counts: take it back as many times as held.
        for _ in 0..lock.count {
            match sqlx::query_scalar::<_, bool>(TRY_LOCK)
                .bind(thread_id)
                .fetch_one(&mut conn)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    taken = false;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the run lock session cannot take its locks back");
                    return None;
                }
            }
        }
        if !taken {
            lost.push(thread_id.clone());
        }
    }
    for thread_id in &lost {
        if let Some(lock) = held.remove(thread_id) {
            tracing::warn!(
                %thread_id,
                "the run lock session was lost and another replica took this thread: its run here stops"
            );
            lock.lost.cancel();
        }
    }
    tracing::warn!(
        locks = held.len(),
        lost = lost.len(),
        "the run lock session reconnected"
    );
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
