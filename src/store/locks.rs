//! Run locks: one run per thread at a time.
//!
//! Inside a process, a map of async mutexes orders the runs of a thread and
//! wakes waiters promptly. Across replicas on Postgres, the holder also takes a
//! session advisory lock on a connection of its own, so the lock dies with the
//! process (a `kill -9` frees the thread at once, with no lease to expire).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use sqlx::pool::PoolConnection;
use tokio::sync::OwnedMutexGuard;

use super::{StoreError, StoreResult};

/// In-process locks by thread id. Entries are removed when nobody holds or
/// waits for them, so the map stays as small as the set of active threads.
#[derive(Debug, Default, Clone)]
pub struct LocalLocks {
    // A std mutex: it guards only map operations, never held across an await.
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl LocalLocks {
    /// Waits for the thread's in-process lock, up to `timeout`.
    pub async fn acquire(&self, thread_id: &str, timeout: Duration) -> StoreResult<LocalGuard> {
        let entry = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(thread_id.to_owned()).or_default().clone()
        };
        let guard = match tokio::time::timeout(timeout, entry.lock_owned()).await {
            Ok(guard) => guard,
            Err(_) => {
                self.forget_if_unused(thread_id);
                return Err(StoreError::Busy(thread_id.to_owned()));
            }
        };
        Ok(LocalGuard {
            guard: Some(guard),
            thread_id: thread_id.to_owned(),
            locks: self.clone(),
        })
    }

    fn forget_if_unused(&self, thread_id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(thread_id)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            map.remove(thread_id);
        }
    }
}

/// Holds a thread's in-process lock.
#[derive(Debug)]
pub struct LocalGuard {
    guard: Option<OwnedMutexGuard<()>>,
    thread_id: String,
    locks: LocalLocks,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.forget_if_unused(&self.thread_id);
    }
}

/// A Postgres session advisory lock held on its own connection.
#[derive(Debug)]
pub struct AdvisoryGuard {
    conn: Option<PoolConnection<sqlx::Any>>,
    thread_id: String,
}

const TRY_LOCK: &str =
    "SELECT CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) THEN 1 ELSE 0 END";
const UNLOCK: &str =
    "SELECT CASE WHEN pg_advisory_unlock(hashtextextended($1, 0)) THEN 1 ELSE 0 END";

impl AdvisoryGuard {
    /// Takes the advisory lock of a thread, polling until `timeout`. Polling
    /// (rather than a blocking `pg_advisory_lock`) never leaves a backend
    /// waiting after we gave up; contention across replicas is rare, and
    /// waiters in this process queue on the local lock first.
    pub async fn acquire(pool: &AnyPool, thread_id: &str, timeout: Duration) -> StoreResult<Self> {
        let mut conn = pool.acquire().await?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            let got: i32 = sqlx::query_scalar(TRY_LOCK)
                .bind(thread_id)
                .fetch_one(&mut *conn)
                .await?;
            if got == 1 {
                return Ok(AdvisoryGuard {
                    conn: Some(conn),
                    thread_id: thread_id.to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy(thread_id.to_owned()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for AdvisoryGuard {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let thread_id = std::mem::take(&mut self.thread_id);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let unlocked: Result<i32, _> = sqlx::query_scalar(UNLOCK)
                        .bind(&thread_id)
                        .fetch_one(&mut *conn)
                        .await;
                    if !matches!(unlocked, Ok(1)) {
                        // Never return a connection that may still hold the lock.
                        tracing::warn!(%thread_id, "advisory unlock failed; closing the connection");
                        drop(conn.detach());
                    }
                });
            }
            // No runtime (process shutdown): closing the socket frees the lock.
            Err(_) => drop(conn.detach()),
        }
    }
}

/// Held for the whole of a run; dropping it lets the next run on the thread go.
#[derive(Debug)]
pub struct RunLock {
    // Field order is drop order: the advisory lock goes before the local one,
    // so a local waiter never finds the remote lock still taken by us.
    _remote: Option<AdvisoryGuard>,
    _local: LocalGuard,
}

impl RunLock {
    pub(super) fn new(local: LocalGuard, remote: Option<AdvisoryGuard>) -> Self {
        RunLock {
            _remote: remote,
            _local: local,
        }
    }
}
