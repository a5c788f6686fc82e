//! A pool of instances of one server definition (for one user, when the
//! server is `per_user`).
//!
//! A call leases an instance for its duration and gives it back. At most
//! `max_instances` are alive; a call beyond that waits for one to come back,
//! bounded by the call timeout. Broken instances (crashed, timed out) are
//! dropped, which kills their process group, and replaced on demand; when
//! starting keeps failing, attempts back off exponentially. Idle instances
//! beyond `min_idle` are stopped after `idle_timeout`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::McpError;
use super::instance::{Events, Instance};
use super::process::Launch;

/// Sizes and timeouts of a pool.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub min_idle: usize,
    pub max_instances: usize,
    pub startup_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Instances of one server for one scope.
pub struct Pool {
    launch: Arc<Launch>,
    limits: PoolLimits,
    user: Option<String>,
    events: Events,
    /// Started instances not serving a call, most recently used last. A std
    /// mutex: held only to push or pop, never across an await.
    idle: Mutex<Vec<Instance>>,
    /// One permit per instance serving a call; alive = idle + permits taken.
    busy: Arc<Semaphore>,
    backoff: Mutex<Backoff>,
    /// Instances that had to be replaced (crashed, hung) since start.
    replaced: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
}

/// An instance on loan for one call; it goes back to the pool when dropped,
/// or is killed if it broke.
pub struct Lease {
    instance: Option<Instance>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lease {
    type Target = Instance;

    fn deref(&self) -> &Instance {
        // Present from creation until drop.
        self.instance
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease without instance"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            if instance.is_usable() {
                instance.last_used = Instant::now();
                self.pool.lock_idle().push(instance);
            } else {
                self.pool
                    .replaced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(server = %self.pool.launch.server, "dropping a broken MCP server instance");
                // Dropping kills its process group.
                drop(instance);
            }
        }
    }
}

impl Pool {
    /// An empty pool; nothing starts until [`Pool::lease`] or [`Pool::warm`].
    pub fn new(
        launch: Arc<Launch>,
        limits: PoolLimits,
        user: Option<String>,
        events: Events,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            busy: Arc::new(Semaphore::new(limits.max_instances)),
            launch,
            limits,
            user,
            events,
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff::default()),
            replaced: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An instance for one call, waiting until `deadline` for capacity.
    pub async fn lease(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Result<Lease, McpError> {
        let permit =
            match tokio::time::timeout_at(deadline, self.busy.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(McpError::ShuttingDown),
                Err(_) => {
                    return Err(McpError::Busy {
                        server: self.launch.server.clone(),
                    });
                }
            };
        loop {
            let Some(instance) = self.lock_idle().pop() else {
                break;
            };
            if instance.is_usable() {
                return Ok(self.wrap(instance, permit));
            }
            self.replaced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let instance = self.start(deadline).await?;
        Ok(self.wrap(instance, permit))
    }

    fn wrap(self: &Arc<Self>, instance: Instance, permit: OwnedSemaphorePermit) -> Lease {
        Lease {
            instance: Some(instance),
            pool: self.clone(),
            _permit: permit,
        }
    }

    /// Starts one instance, after the back-off of earlier failures.
    async fn start(&self, deadline: tokio::time::Instant) -> Result<Instance, McpError> {
        let wait_until = self.lock_backoff().next_attempt;
        if let Some(at) = wait_until {
            let at = tokio::time::Instant::from_std(at);
            if at > deadline {
                return Err(McpError::Spawn {
                    server: self.launch.server.clone(),
                    message: "it keeps failing to start; the next attempt is later than this call can wait".into(),
                });
            }
            tokio::time::sleep_until(at).await;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout = self.limits.startup_timeout.min(remaining);
        match Instance::start(
            &self.launch,
            self.user.as_deref(),
            self.events.clone(),
            timeout,
        )
        .await
        {
            Ok(instance) => {
                *self.lock_backoff() = Backoff::default();
                Ok(instance)
            }
            Err(e) => {
                let mut backoff = self.lock_backoff();
                backoff.failures += 1;
                let delay = Duration::from_millis(100)
                    .saturating_mul(2u32.saturating_pow(backoff.failures.min(10)))
                    .min(Duration::from_secs(30));
                backoff.next_attempt = Some(Instant::now() + delay);
                tracing::error!(server = %self.launch.server, error = %e, retry_in_ms = delay.as_millis() as u64, "MCP server failed to start");
                Err(e)
            }
        }
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts instances until `min_idle` are idle (capacity permitting).
    pub async fn warm(&self) -> Result<(), McpError> {
        while self.lock_idle().len() < self.limits.min_idle {
            let Ok(permit) = self.busy.clone().try_acquire_owned() else {
                return Ok(());
            };
            let deadline = tokio::time::Instant::now() + self.limits.startup_timeout;
            let instance = self.start(deadline).await?;
            self.lock_idle().push(instance);
            drop(permit);
        }
        Ok(())
    }

    /// Stops idle instances beyond `min_idle` unused for `idle_timeout`.
    /// Returns true when the pool is entirely empty and unused.
    pub async fn reap(&self) -> bool {
        let expired: Vec<Instance> = {
            let mut idle = self.lock_idle();
            let keep_at_least = self.limits.min_idle;
            let mut expired = Vec::new();
            // Oldest first: they sit at the front.
            while idle.len() > keep_at_least
                && idle.first().is_some_and(|i| {
                    i.last_used.elapsed() >= self.limits.idle_timeout || !i.is_usable()
                })
            {
                expired.push(idle.remove(0));
            }
            expired
        };
        for instance in expired {
            tracing::info!(server = %self.launch.server, "stopping an idle MCP server instance");
            instance.stop().await;
        }
        self.lock_idle().is_empty() && self.busy.available_permits() == self.limits.max_instances
    }

    /// Stops every idle instance; instances on loan die with their lease.
    pub async fn shutdown(&self) {
        self.busy.close();
        let idle: Vec<Instance> = std::mem::take(&mut *self.lock_idle());
        futures::future::join_all(idle.into_iter().map(Instance::stop)).await;
    }

    /// Instances idle, instances serving calls, instances replaced so far.
    pub fn counts(&self) -> (usize, usize, u64) {
        (
            self.lock_idle().len(),
            self.limits.max_instances - self.busy.available_permits(),
            self.replaced.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}
