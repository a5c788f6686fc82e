//! Limits that keep one user from hurting the others, and a replica from
//! taking more than its operator allows: a request rate (a token bucket per
//! user) and caps on answers streaming at once, per user and in all.
//!
//! All are in-process: with several replicas each enforces its own share.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Requests per minute per user, with bursts.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    /// How long an empty bucket takes to fill: a bucket left alone this
    /// long is as full as a new one, so it can be forgotten.
    refill: Duration,
    // Only map and queue operations, never held across an await.
    buckets: Mutex<Buckets>,
}

/// The buckets of the users seen lately, and the order to look at them in
/// to forget the idle ones a few at a time: no request pays for a sweep over
/// every user.
#[derive(Debug, Default)]
struct Buckets {
    by_user: HashMap<String, Bucket>,
    /// Every user of `by_user` once, with when it was queued, oldest first
    /// (give or take the checks racing for the lock).
    /// A user at the front queued at least `refill` ago is forgotten if its
    /// bucket was not touched since then, or queued again if it was; so an
    /// idle user's bucket goes at most two refill times after its last
    /// request (given requests from anyone to do the looking).
    expiry: VecDeque<(Instant, String)>,
}

/// Users looked at for expiry per check: more than the one a check can add,
/// so the queue keeps up, and few enough that each check stays cheap.
const EXPIRED_PER_CHECK: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` requests a minute on average, `burst` at once; `None`
    /// when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimiter> {
        (per_minute > 0).then(|| {
            let per_second = f64::from(per_minute) / 60.0;
            let burst = f64::from(burst.max(1));
            RateLimiter {
                per_second,
                burst,
                refill: Duration::from_secs_f64(burst / per_second),
                buckets: Mutex::new(Buckets::default()),
            }
        })
    }

    /// Takes one request from `user`'s bucket, or says how long to wait.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        self.check_at(user, Instant::now())
    }

    /// [`RateLimiter::check`] at `now`.
    fn check_at(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        let Buckets { by_user, expiry } = &mut *buckets;
        forget_idle(by_user, expiry, now, self.refill);
        match by_user.get_mut(user) {
            Some(bucket) => self.take(bucket, now),
            None => {
                expiry.push_back((now, user.to_owned()));
                let bucket = by_user.entry(user.to_owned()).or_insert(Bucket {
                    tokens: self.burst,
                    at: now,
                });
                self.take(bucket, now)
            }
        }
    }

    /// Refills `bucket` up to `now` and takes one request from it, or says
    /// how long to wait.
    fn take(&self, bucket: &mut Bucket, now: Instant) -> Result<(), Duration> {
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

/// Forgets the users at the front of `expiry` whose buckets have refilled
/// (they are as new), at most [`EXPIRED_PER_CHECK`] of them.
fn forget_idle(
    by_user: &mut HashMap<String, Bucket>,
    expiry: &mut VecDeque<(Instant, String)>,
    now: Instant,
    refill: Duration,
) {
    for _ in 0..EXPIRED_PER_CHECK {
        match expiry.front() {
            Some((queued, _)) if now.saturating_duration_since(*queued) >= refill => {}
            _ => return,
        }
        let Some((_, user)) = expiry.pop_front() else {
            return;
        };
        match by_user.get(&user) {
            Some(bucket) if now.saturating_duration_since(bucket.at) >= refill => {
                by_user.remove(&user);
            }
            // Used since it was queued: look again one refill time on.
            Some(_) => expiry.push_back((now, user)),
            None => {}
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
        let mut running = self.running.lock();
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
        let mut running = self.running.lock();
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
    fn idle_users_are_forgotten_a_few_per_check() {
        let limiter = RateLimiter::new(60, 3).expect("limited");
        assert_eq!(limiter.refill, Duration::from_secs(3));
        let start = Instant::now();
        for user in 0..100 {
            assert!(limiter.check_at(&format!("user-{user}"), start).is_ok());
        }
        // A user seen again stays while the others' buckets refill.
        let later = start + Duration::from_secs(2);
        assert!(limiter.check_at("user-0", later).is_ok());
        assert_eq!(limiter.buckets.lock().by_user.len(), 100);
        // Refilled: each check forgets at most EXPIRED_PER_CHECK of them.
        let refilled = start + Duration::from_secs(3);
        assert!(limiter.check_at("again", refilled).is_ok());
        assert_eq!(
            limiter.buckets.lock().by_user.len(),
            100 + 1 - EXPIRED_PER_CHECK + 1,
            "user-0 is kept"
        );
        for _ in 0..20 {
            let _ = limiter.check_at("again", refilled);
        }
        {
            let buckets = limiter.buckets.lock();
            let mut users: Vec<&String> = buckets.by_user.keys().collect();
            users.sort();
            assert_eq!(users, ["again", "user-0"]);
            assert_eq!(buckets.expiry.len(), 2);
        }
        // A forgotten user comes back with a full bucket, as before.
        for _ in 0..3 {
            assert!(limiter.check_at("user-1", refilled).is_ok());
        }
        assert!(limiter.check_at("user-1", refilled).is_err());
        // user-0, looked at again when the others went, goes one refill
        // time after that: within two of its last request.
        let idle = refilled + Duration::from_secs(3);
        for _ in 0..3 {
            let _ = limiter.check_at("again", idle);
        }
        assert!(!limiter.buckets.lock().by_user.contains_key("user-0"));
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
