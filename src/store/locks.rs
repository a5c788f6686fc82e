//! Run locks: one run per thread at a time.
//!
//! Inside a process, a map of async mutexes orders the runs of a thread and
//! wakes waiters promptly. Across replicas on Postgres, the holder also takes
//! the thread's advisory lock in the replica's lock session (`advisory.rs`),
//! which dies with the process (a `kill -9` frees the thread at once, with
//! no lease to expire).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

use super::advisory::AdvisoryGuard;
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
            let mut map = self.map.lock();
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
        let mut map = self.map.lock();
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

    /// Cancelled if the lock is lost to another replica while held (the
    /// replica's lock session failed and another replica took the thread
    /// before it was taken back); the holder must stop writing. Never
    /// cancelled for an in-process lock alone.
    pub fn lost(&self) -> CancellationToken {
        self._remote
            .as_ref()
            .map_or_else(CancellationToken::new, AdvisoryGuard::lost)
    }
}
