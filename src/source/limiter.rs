//! The request rate of one source: a token bucket shared by every pipeline on the source,
//! which slows down when the server answers 429 and then recovers gradually.
//!
//! Requests are spaced `1 / rate` apart (a bucket of one token: no bursts, so "20 per
//! second" never means 40 in one second). Each caller reserves its turn under a short lock
//! and waits outside it, so callers are served in the order they arrived. A 429 halves the
//! rate in force (at most once a second, since the 429s of requests already in flight say
//! nothing new, and never below a sixteenth of the configured rate); the rate then climbs
//! back linearly to the configured one over [`RECOVERY`]. Time is tokio's, so tests can
//! pause it.
//!
//! A bucket of our own rather than `governor`: the rate has to change at run time after a
//! 429 (a `governor` quota is fixed when the limiter is built), and `governor` waits on its
//! own clock, which tokio's paused time does not drive.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// How long the rate takes to climb back to the configured one after a 429.
pub const RECOVERY: Duration = Duration::from_secs(30);

/// 429s within this long of a cut do not cut again.
const CUT_SPACING: Duration = Duration::from_secs(1);

/// The rate never drops below the configured one divided by this.
const FLOOR_DIVISOR: f64 = 16.0;

/// A token bucket with an adaptive rate.
#[derive(Debug)]
pub struct RateLimiter {
    source: String,
    configured: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// At most one; below zero when turns are reserved ahead.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// The last cut, while the rate is still recovering from it.
    cut: Option<Cut>,
}

/// A lowered rate and when it was set.
#[derive(Debug, Clone, Copy)]
struct Cut {
    rate: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter of `per_second` requests a second (positive and finite) for `source`.
    pub fn new(source: &str, per_second: f64) -> Self {
        Self {
            source: source.to_string(),
            configured: per_second,
            bucket: Mutex::new(Bucket { tokens: 1.0, updated: Instant::now(), cut: None }),
        }
    }

    /// The rate in force now, in requests a second.
    pub fn rate(&self) -> f64 {
        let bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        self.rate_at(bucket.cut, Instant::now())
    }

    /// Waits for the next request's turn.
    pub async fn acquire(&self) {
        let turn = self.reserve(Instant::now());
        tokio::time::sleep_until(turn).await;
    }

    /// Lowers the rate after the server answered 429.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        self.refill(&mut bucket, now);
        if bucket.cut.is_some_and(|c| now.duration_since(c.at) < CUT_SPACING) {
            return;
        }
        let from = self.rate_at(bucket.cut, now);
        let to = (from / 2.0).max(self.configured / FLOOR_DIVISOR);
        bucket.cut = Some(Cut { rate: to, at: now });
        warn!(
            source = %self.source,
            from_per_sec = from,
            to_per_sec = to,
            recovery_secs = RECOVERY.as_secs(),
            "Source answered 429; lowering its request rate."
        );
    }

    /// Takes the next turn: now if a token is there, else when the deficit is paid off.
    fn reserve(&self, now: Instant) -> Instant {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        self.refill(&mut bucket, now);
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            now
        } else {
            let rate = self.rate_at(bucket.cut, now);
            now + Duration::from_secs_f64(-bucket.tokens / rate)
        }
    }

    /// Adds the tokens earned since the last update (the rate may have been climbing).
    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let mean_rate =
            (self.rate_at(bucket.cut, bucket.updated) + self.rate_at(bucket.cut, now)) / 2.0;
        bucket.tokens = (bucket.tokens + elapsed * mean_rate).min(1.0);
        bucket.updated = now;
        if bucket.cut.is_some_and(|c| now.duration_since(c.at) >= RECOVERY) {
            bucket.cut = None;
            info!(
                source = %self.source,
                per_sec = self.configured,
                "Source request rate is back to the configured one."
            );
        }
    }

    fn rate_at(&self, cut: Option<Cut>, at: Instant) -> f64 {
        match cut {
            None => self.configured,
            Some(c) => {
                let progress =
                    at.saturating_duration_since(c.at).as_secs_f64() / RECOVERY.as_secs_f64();
                c.rate + (self.configured - c.rate) * progress.min(1.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Acquires `n` turns one after another and returns the (virtual) time they took.
    async fn sequential(limiter: &RateLimiter, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            limiter.acquire().await;
        }
        start.elapsed()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// At 10 a second, the first turn is free and each of the next 20 waits 100 ms.
    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new("oifde", 10.0);
        assert_eq!(sequential(&limiter, 21).await, Duration::from_secs(2));
        // Idle time does not pile up into a burst.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(sequential(&limiter, 3).await, Duration::from_millis(200));
    }

    /// Tasks sharing one limiter share its rate: 4 tasks of 10 turns at 20 a second take 2 s
    /// (less one free turn).
    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let limiter = Arc::new(RateLimiter::new("oifde", 20.0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        limiter.acquire().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1950));
    }

    /// A 429 halves the rate, a burst of 429s cuts once, and the rate climbs back linearly
    /// to the configured one over the recovery time.
    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_which_then_recovers() {
        let limiter = RateLimiter::new("oifde", 10.0);
        limiter.throttled();
        let cut_at = Instant::now();
        limiter.throttled();
        assert!(close(limiter.rate(), 5.0), "{}", limiter.rate());
        let three = sequential(&limiter, 3).await.as_millis();
        assert!((395..=400).contains(&three), "about 200 ms apart: {three} ms");

        tokio::time::advance(cut_at + RECOVERY / 2 - Instant::now()).await;
        assert!(close(limiter.rate(), 7.5), "{}", limiter.rate());
        limiter.throttled();
        assert!(close(limiter.rate(), 3.75), "a later 429 halves the rate in force");

        tokio::time::advance(RECOVERY).await;
        assert!(close(limiter.rate(), 10.0));
        assert_eq!(sequential(&limiter, 11).await, Duration::from_secs(1), "full rate again");
    }

    /// However many 429s, the rate stays at or above a sixteenth of the configured one.
    #[tokio::test(start_paused = true)]
    async fn cuts_stop_at_the_floor() {
        let limiter = RateLimiter::new("oifde", 32.0);
        for _ in 0..10 {
            tokio::time::advance(CUT_SPACING).await;
            limiter.throttled();
        }
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
    }
}
