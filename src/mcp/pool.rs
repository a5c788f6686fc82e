//! A pool of instances of one server definition (for one user, when the
//! server is `per_user`).
//!
//! A call leases an instance for its duration and gives it back. At most
//! `max_instances` are alive; a call beyond that waits for one to come back,
//! bounded by the call timeout. Broken instances (crashed, timed out) are
//! dropped, which kills their process group, and replaced on demand.
//!
//! When a server keeps failing, attempts to start it back off exponentially.
//! A failure is a start that failed, or an instance that broke before it had
//! proved healthy (served a call, or stayed up for [`STABLE_AFTER`]); so a
//! server that starts fine and crashes on every call backs off too, instead
//! of being respawned for every call. Nothing ever waits on a back-off: a
//! lease that would have to start an instance before the next attempt is due
//! fails at once, and the caller goes on without the server.
//!
//! A per-user server's pools share one count of live instances across users
//! (`max_total_instances`): a start beyond it waits, bounded by the call's
//! deadline, for an instance to stop, and never spawns (before the wait,
//! the call path stops another user's idle instance if there is one). Idle instances beyond
//! `min_idle` are stopped after `idle_timeout`; dead idle ones are dropped
//! (and their process reaped) by upkeep and by the next lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::McpError;
use super::endpoint::Endpoint;
use super::instance::{Events, Instance};

/// Sizes and timeouts of a pool.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub min_idle: usize,
    pub max_instances: usize,
    pub startup_timeout: Duration,
    pub idle_timeout: Duration,
    /// The cap of live instances shared by the per-user pools of one server;
    /// `None` for a shared pool.
    pub total: Option<TotalCap>,
}

/// Live instances allowed across several pools (the per-user pools of one
/// server): one permit per live instance, released when it stops.
#[derive(Debug, Clone)]
pub struct TotalCap {
    pub slots: Arc<Semaphore>,
    pub max: usize,
}

impl TotalCap {
    /// A cap of `max` live instances.
    pub fn new(max: usize) -> TotalCap {
        TotalCap {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// An instance up this long has proved healthy even if it never served a
/// call, so its crash does not count towards the back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Longest wait between two attempts to start a failing server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Instances of one server for one scope.
pub struct Pool {
    endpoint: Arc<Endpoint>,
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
    /// Shut down (the daemon stops, or a reload removed or replaced its
    /// server): an instance coming back from a call is stopped, not kept.
    retired: std::sync::atomic::AtomicBool,
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
            if self.pool.retired.load(std::sync::atomic::Ordering::Relaxed) {
                // Gracefully when a runtime is at hand; else dropping it
                // kills its process group.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(instance.stop());
                }
            } else if instance.is_usable() {
                if instance.has_served() {
                    self.pool.healthy();
                }
                instance.last_used = Instant::now();
                self.pool.lock_idle().push(instance);
            } else {
                self.pool.broke(instance);
            }
        }
    }
}

impl Pool {
    /// An empty pool; nothing starts until [`Pool::lease`] or [`Pool::warm`].
    pub fn new(
        endpoint: Arc<Endpoint>,
        limits: PoolLimits,
        user: Option<String>,
        events: Events,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            busy: Arc::new(Semaphore::new(limits.max_instances)),
            endpoint,
            limits,
            user,
            events,
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff::default()),
            replaced: std::sync::atomic::AtomicU64::new(0),
            retired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock_idle(&self) -> parking_lot::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock()
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
                        server: self.endpoint.server().to_owned(),
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
            self.broke(instance);
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

    /// Starts one instance, unless the back-off of earlier failures says
    /// not yet: then it fails at once rather than wait.
    async fn start(&self, deadline: tokio::time::Instant) -> Result<Instance, McpError> {
        let (failures, next_attempt) = {
            let backoff = self.lock_backoff();
            (backoff.failures, backoff.next_attempt)
        };
        if let Some(at) = next_attempt {
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                return Err(McpError::Spawn {
                    server: self.endpoint.server().to_owned(),
                    message: format!(
                        "it keeps failing ({failures} failures in a row); the next attempt is in {:.1}s",
                        wait.as_secs_f64()
                    ),
                });
            }
        }
        let slot = match &self.limits.total {
            Some(total) => {
                match tokio::time::timeout_at(deadline, total.slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => Some(slot),
                    Ok(Err(_)) => return Err(McpError::ShuttingDown),
                    Err(_) => {
                        return Err(McpError::AtCapacity {
                            server: self.endpoint.server().to_owned(),
                            max: total.max,
                        });
                    }
                }
            }
            None => None,
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout = self.limits.startup_timeout.min(remaining);
        match Instance::start(
            &self.endpoint,
            self.user.as_deref(),
            self.events.clone(),
            timeout,
        )
        .await
        {
            // A successful start does not clear the back-off: only an
            // instance that proves healthy does (see `healthy`).
            Ok(instance) => Ok(instance.holding(slot)),
            Err(e) => {
                let delay = self.failed();
                tracing::error!(server = %self.endpoint.server(), error = %e, retry_in_ms = delay.as_millis() as u64, "MCP server failed to start");
                Err(e)
            }
        }
    }

    /// Counts one more failure in a row; returns the wait before the next
    /// attempt.
    fn failed(&self) -> Duration {
        let mut backoff = self.lock_backoff();
        backoff.failures = backoff.failures.saturating_add(1);
        let delay = Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow(backoff.failures.min(10)))
            .min(MAX_BACKOFF);
        backoff.next_attempt = Some(Instant::now() + delay);
        delay
    }

    /// An instance proved the server healthy: the next start is immediate.
    fn healthy(&self) {
        *self.lock_backoff() = Backoff::default();
    }

    /// Drops a broken instance (which kills its process group and reaps the
    /// child), counting it as a failure unless it had proved healthy first.
    fn broke(&self, instance: Instance) {
        self.replaced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if instance.has_served() || instance.started.elapsed() >= STABLE_AFTER {
            self.healthy();
            tracing::warn!(server = %self.endpoint.server(), "dropping a broken MCP server instance");
        } else {
            let delay = self.failed();
            tracing::warn!(server = %self.endpoint.server(), retry_in_ms = delay.as_millis() as u64, "an MCP server instance broke before serving a call; backing off");
        }
        drop(instance);
    }

    fn lock_backoff(&self) -> parking_lot::MutexGuard<'_, Backoff> {
        self.backoff.lock()
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

    /// Drops dead idle instances (reaping their processes), then stops idle
    /// instances beyond `min_idle` unused for `idle_timeout`. Returns true
    /// when the pool is entirely empty and unused.
    pub async fn reap(&self) -> bool {
        let (dead, expired) = {
            let mut idle = self.lock_idle();
            let (alive, dead): (Vec<Instance>, Vec<Instance>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(Instance::is_usable);
            *idle = alive;
            let keep_at_least = self.limits.min_idle;
            let mut expired = Vec::new();
            // Oldest first: they sit at the front.
            while idle.len() > keep_at_least
                && idle
                    .first()
                    .is_some_and(|i| i.last_used.elapsed() >= self.limits.idle_timeout)
            {
                expired.push(idle.remove(0));
            }
            (dead, expired)
        };
        for instance in dead {
            self.broke(instance);
        }
        for instance in expired {
            tracing::info!(server = %self.endpoint.server(), "stopping an idle MCP server instance");
            instance.stop().await;
        }
        self.lock_idle().is_empty() && self.busy.available_permits() == self.limits.max_instances
    }

    /// When the idle instance unused the longest was last used, if any.
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.lock_idle().first().map(|i| i.last_used)
    }

    /// Takes the idle instance unused the longest out of the pool.
    pub fn take_oldest_idle(&self) -> Option<Instance> {
        let mut idle = self.lock_idle();
        (!idle.is_empty()).then(|| idle.remove(0))
    }

    /// Stops every idle instance; instances on loan stop when their call
    /// ends, and no call can lease one any more.
    pub async fn shutdown(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
