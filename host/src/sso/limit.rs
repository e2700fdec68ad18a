//! In-memory token buckets for the token endpoint's rate limits (per source address, per link
//! credential).
//!
//! A limit of `n` requests a minute is a bucket of `n` tokens refilled continuously at `n/60` a
//! second: a full minute's worth may come at once, then the sustained rate applies. Buckets live
//! in one map per limit; a bucket that has refilled completely holds no information, so those are
//! dropped whenever the map has grown past a threshold (which then doubles), keeping memory
//! bounded by the keys active within about a minute. Per process: with several nodes, each
//! enforces its own share.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PRUNE_AT_LEAST: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    prune_at: usize,
}

/// One rate limit.
#[derive(Debug)]
pub struct RateLimiter<K> {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limit of `per_minute` requests a minute per key; 0: no limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute),
            per_second: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
            }),
        }
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.capacity > 0.0
    }

    /// Take one request from `key`'s bucket: `Err(wait)` when it is empty, with how long until
    /// the next request would be allowed.
    pub fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, Instant::now())
    }

    fn check_at<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (capacity, per_second) = (self.capacity, self.per_second);
        let refill = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + elapsed * per_second).min(capacity)
        };
        if buckets.map.len() >= buckets.prune_at {
            buckets.map.retain(|_, b| refill(b) < capacity);
            buckets.prune_at = (buckets.map.len() * 2).max(PRUNE_AT_LEAST);
        }
        let tokens = match buckets.map.get(key) {
            Some(bucket) => refill(bucket),
            None => capacity,
        };
        if tokens >= 1.0 {
            let bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            match buckets.map.get_mut(key) {
                Some(slot) => *slot = bucket,
                None => {
                    buckets.map.insert(key.to_owned(), bucket);
                }
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / per_second))
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_capacity_then_the_refill_rate() {
        let limiter = RateLimiter::<String>::new(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(limiter.check_at("b", t0).is_ok(), "keys are independent");
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(999))
                .is_err()
        );
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(1001))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(1002))
                .is_err()
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::<String>::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        assert_eq!(limiter.len(), 0);
    }

    #[test]
    fn full_buckets_are_pruned() {
        let limiter = RateLimiter::<u32>::new(60);
        let t0 = Instant::now();
        for key in 0..PRUNE_AT_LEAST as u32 {
            limiter.check_at(&key, t0).unwrap();
        }
        assert_eq!(limiter.len(), PRUNE_AT_LEAST);
        // A second later every bucket has refilled its one token: all are dropped.
        limiter
            .check_at(&u32::MAX, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(limiter.len(), 1);
    }
}
