//! Limits that keep one user from hurting the others, and a replica from
//! taking more than its operator allows: a request rate (a token bucket per
//! user) and caps on answers streaming at once, per user and in all.
//!
//! All are in-process: with several replicas each enforces its own share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests per minute per user, with bursts.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    // A std mutex: only map operations, never held across an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` requests a minute on average, `burst` at once; `None`
    /// when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimiter> {
        (per_minute > 0).then(|| RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request from `user`'s bucket, or says how long to wait.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            // Forget users whose buckets have refilled: they are as new.
            let full = self.burst / self.per_second;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full);
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled =
            bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = refilled.min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// Answers streaming at once, per user and in all.
#[derive(Debug, Clone)]
pub struct RunSlots {
    per_user: u32,
    total: u32,
    running: Arc<Mutex<Running>>,
}

#[derive(Debug, Default)]
struct Running {
    by_user: HashMap<String, u32>,
    total: u32,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// The user has `per_user` answers going.
    User,
    /// The replica has `total` answers going.
    Replica,
}

/// One answer in progress; frees its slot when dropped.
#[derive(Debug)]
pub struct RunSlot {
    user: String,
    running: Arc<Mutex<Running>>,
}

impl RunSlots {
    /// At most `per_user` per user and `total` in all; 0 means no limit.
    pub fn new(per_user: u32, total: u32) -> RunSlots {
        RunSlots {
            per_user,
            total,
            running: Arc::new(Mutex::new(Running::default())),
        }
    }

    /// A slot for `user`, or which cap is reached.
    pub fn try_acquire(&self, user: &str) -> Result<RunSlot, SlotRefused> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if self.total > 0 && running.total >= self.total {
            return Err(SlotRefused::Replica);
        }
        let count = running.by_user.entry(user.to_owned()).or_insert(0);
        if self.per_user > 0 && *count >= self.per_user {
            return Err(SlotRefused::User);
        }
        *count += 1;
        running.total += 1;
        Ok(RunSlot {
            user: user.to_owned(),
            running: self.running.clone(),
        })
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.total = running.total.saturating_sub(1);
        if let Some(count) = running.by_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_bursts_then_the_rate() {
        let limiter = RateLimiter::new(60, 3).expect("limited");
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").expect_err("burst used up");
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok(), "users are independent");
        assert!(RateLimiter::new(0, 5).is_none());
    }

    #[test]
    fn run_slots_cap_per_user_and_free_on_drop() {
        let slots = RunSlots::new(2, 0);
        let first = slots.try_acquire("a").expect("1");
        let _second = slots.try_acquire("a").expect("2");
        assert_eq!(slots.try_acquire("a").err(), Some(SlotRefused::User));
        assert!(slots.try_acquire("b").is_ok());
        drop(first);
        assert!(slots.try_acquire("a").is_ok());
        assert!(RunSlots::new(0, 0).try_acquire("x").is_ok());
    }

    #[test]
    fn run_slots_cap_the_replica_across_users() {
        let slots = RunSlots::new(0, 2);
        let first = slots.try_acquire("a").expect("1");
        let _second = slots.try_acquire("b").expect("2");
        assert_eq!(slots.try_acquire("c").err(), Some(SlotRefused::Replica));
        drop(first);
        let _third = slots.try_acquire("c").expect("a slot freed");
        assert_eq!(slots.try_acquire("a").err(), Some(SlotRefused::Replica));
        // The per-user cap is checked after the replica's, and both count.
        let slots = RunSlots::new(1, 3);
        let _a = slots.try_acquire("a").expect("a");
        assert_eq!(slots.try_acquire("a").err(), Some(SlotRefused::User));
        assert!(slots.try_acquire("b").is_ok());
    }
}
