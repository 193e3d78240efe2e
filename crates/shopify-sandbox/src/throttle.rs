//! Shopify's cost-based rate limit: a leaky bucket per shop and app.
//!
//! A request's *requested* cost is taken from the bucket before it runs; if the bucket holds
//! less, the request is refused (`THROTTLED`) and nothing is taken. After it runs, the
//! difference between requested and *actual* cost is given back. The bucket refills
//! continuously at the restore rate up to its size. The arithmetic is pure: every method takes
//! the current instant, so tests inject time instead of sleeping.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Bucket size and restore rate; Shopify Standard plan by default (2000 points, 100/s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// When false, nothing is refused and every response reports a full bucket (benchmarks).
    pub enabled: bool,
    /// Bucket size in points (`throttleStatus.maximumAvailable`).
    pub bucket_size: f64,
    /// Points restored per second (`throttleStatus.restoreRate`).
    pub restore_rate: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bucket_size: 2000.0,
            restore_rate: 100.0,
        }
    }
}

impl ThrottleConfig {
    /// Throttling off (benchmarks): the default sizes, but nothing is ever refused.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// `extensions.cost.throttleStatus` as Shopify reports it (whole points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    /// Bucket size.
    pub maximum_available: u64,
    /// Points in the bucket now (rounded down).
    pub currently_available: u64,
    /// Points restored per second.
    pub restore_rate: u64,
}

/// Why a request was refused, and when it would fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    /// The bucket as it was (nothing was taken).
    pub status: ThrottleStatus,
    /// How long until the bucket holds the requested cost.
    pub retry_after: Duration,
}

/// One app's bucket on one shop.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakyBucket {
    available: f64,
    last: Instant,
}

impl LeakyBucket {
    /// A full bucket.
    pub fn full(config: &ThrottleConfig, now: Instant) -> Self {
        Self {
            available: config.bucket_size,
            last: now,
        }
    }

    /// Refills for the time elapsed since the last call (never beyond the bucket size; a
    /// smaller bucket size configured at runtime caps what is there).
    fn restore(&mut self, config: &ThrottleConfig, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.available = (self.available + elapsed * config.restore_rate).min(config.bucket_size);
        self.last = now.max(self.last);
    }

    /// Points in the bucket at `now`.
    pub fn available(&mut self, config: &ThrottleConfig, now: Instant) -> f64 {
        self.restore(config, now);
        self.available
    }

    /// Takes `cost` if the bucket holds it; otherwise takes nothing and says when it would.
    /// With throttling disabled, takes nothing and always succeeds.
    pub fn try_take(
        &mut self,
        config: &ThrottleConfig,
        now: Instant,
        cost: f64,
    ) -> Result<ThrottleStatus, Throttled> {
        self.restore(config, now);
        if !config.enabled {
            return Ok(self.status(config));
        }
        if self.available >= cost {
            self.available -= cost;
            Ok(self.status(config))
        } else {
            let missing = cost - self.available;
            let seconds = if config.restore_rate > 0.0 {
                missing / config.restore_rate
            } else {
                f64::INFINITY
            };
            Err(Throttled {
                status: self.status(config),
                retry_after: Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX),
            })
        }
    }

    /// Gives back what a request did not use (requested minus actual cost).
    pub fn refund(&mut self, config: &ThrottleConfig, now: Instant, points: f64) {
        self.restore(config, now);
        if config.enabled && points > 0.0 {
            self.available = (self.available + points).min(config.bucket_size);
        }
    }

    /// Sets the bucket's level (tests and the admin API: "make this shop throttled now").
    pub fn set_available(&mut self, config: &ThrottleConfig, now: Instant, points: f64) {
        self.last = now;
        self.available = points.clamp(0.0, config.bucket_size);
    }

    /// The bucket as `throttleStatus` reports it; a disabled throttle reports a full bucket.
    pub fn status(&self, config: &ThrottleConfig) -> ThrottleStatus {
        let available = if config.enabled {
            self.available
        } else {
            config.bucket_size
        };
        ThrottleStatus {
            maximum_available: whole(config.bucket_size),
            currently_available: whole(available),
            restore_rate: whole(config.restore_rate),
        }
    }
}

/// Rounds down to whole points, as Shopify reports them.
fn whole(points: f64) -> u64 {
    if points.is_finite() && points > 0.0 {
        // Truncation is the intent: a bucket holding 1999.6 points reports 1999.
        points.floor() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ThrottleConfig {
        ThrottleConfig {
            enabled: true,
            bucket_size: 100.0,
            restore_rate: 10.0,
        }
    }

    #[test]
    fn a_full_bucket_serves_until_empty_then_refuses_without_taking() {
        let config = small();
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&config, t0);
        for expected in [90, 80, 70, 60, 50, 40, 30, 20, 10, 0] {
            let status = bucket.try_take(&config, t0, 10.0).expect("fits");
            assert_eq!(status.currently_available, expected);
        }
        let refused = bucket.try_take(&config, t0, 10.0).expect_err("empty");
        assert_eq!(refused.status.currently_available, 0);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // Nothing was taken by the refusal: one second later exactly one call fits again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            bucket
                .try_take(&config, t1, 10.0)
                .expect("restored")
                .currently_available,
            0
        );
        assert!(bucket.try_take(&config, t1, 1.0).is_err());
    }

    #[test]
    fn restore_is_continuous_and_capped_at_the_bucket_size() {
        let config = small();
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&config, t0);
        bucket.try_take(&config, t0, 100.0).expect("fits");
        assert_eq!(
            bucket.available(&config, t0 + Duration::from_millis(250)),
            2.5
        );
        assert_eq!(
            bucket.available(&config, t0 + Duration::from_secs(60)),
            100.0
        );
    }

    #[test]
    fn refund_returns_the_unused_part_of_the_requested_cost() {
        let config = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&config, t0);
        // Fixture arithmetic: requested 13, actual 10 -> 1990 left.
        bucket.try_take(&config, t0, 13.0).expect("fits");
        bucket.refund(&config, t0, 3.0);
        assert_eq!(bucket.status(&config).currently_available, 1990);
        bucket.refund(&config, t0, 500.0);
        assert_eq!(bucket.status(&config).currently_available, 2000);
    }

    #[test]
    fn retry_after_is_the_missing_points_over_the_restore_rate() {
        let config = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&config, t0);
        bucket.set_available(&config, t0, 50.0);
        let refused = bucket.try_take(&config, t0, 250.0).expect_err("short");
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert_eq!(refused.status.maximum_available, 2000);
        assert_eq!(refused.status.restore_rate, 100);
    }

    #[test]
    fn disabled_never_refuses_and_reports_a_full_bucket() {
        let config = ThrottleConfig::disabled();
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&config, t0);
        for _ in 0..1000 {
            let status = bucket.try_take(&config, t0, 1000.0).expect("never refused");
            assert_eq!(status.currently_available, 2000);
        }
    }

    #[test]
    fn shrinking_the_bucket_caps_what_is_there() {
        let t0 = Instant::now();
        let mut bucket = LeakyBucket::full(&ThrottleConfig::default(), t0);
        assert_eq!(bucket.available(&small(), t0), 100.0);
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let config = small();
        let t1 = Instant::now() + Duration::from_secs(5);
        let mut bucket = LeakyBucket::full(&config, t1);
        bucket.try_take(&config, t1, 50.0).expect("fits");
        assert_eq!(bucket.available(&config, t1 - Duration::from_secs(5)), 50.0);
    }
}
