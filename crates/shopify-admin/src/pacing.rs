//! Per-shop pacing from Shopify's cost-based rate limit, so that in steady state no call is
//! refused.
//!
//! Shopify answers every call with `throttleStatus` (points available, bucket size, restore
//! rate). The pacer keeps that as a leaky-bucket estimate and, before each call, waits until the
//! estimate covers the call's cost (the last requested cost seen, plus a margin). `Retry-After`
//! (429/503) and `THROTTLED` block the shop until the time they name. One pacer per shop: a
//! throttled shop never delays another.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::answer::ThrottleStatus;

/// Points kept in reserve on top of a call's cost (other apps of the shop share the bucket).
const MARGIN: f64 = 5.0;
/// Cost assumed before Shopify told us (inventoryAdjustQuantities costs about 10).
const DEFAULT_COST: f64 = 10.0;

#[derive(Debug)]
struct State {
    available: f64,
    maximum: f64,
    restore_rate: f64,
    observed: Instant,
    cost: f64,
    blocked_until: Option<Instant>,
}

/// One shop's pacing state.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

impl Pacer {
    /// A pacer that assumes Shopify Standard (2000 points, 100/s) until the first answer.
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                available: 2000.0,
                maximum: 2000.0,
                restore_rate: 100.0,
                observed: now,
                cost: DEFAULT_COST,
                blocked_until: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// Points available now, by the estimate.
    pub fn estimated_available(&self, now: Instant) -> f64 {
        self.with(|s| estimate(s, now))
    }

    /// How long to wait before the next call may be sent.
    pub fn delay_before_call(&self, now: Instant) -> Duration {
        self.with(|s| {
            if let Some(until) = s.blocked_until.filter(|until| *until > now) {
                return until - now;
            }
            let needed = (s.cost + MARGIN).min(s.maximum);
            let missing = needed - estimate(s, now);
            if missing <= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(missing / s.restore_rate.max(0.1))
            }
        })
    }

    /// Takes a call's cost from the estimate as it is sent (the answer corrects it).
    pub fn spend(&self, now: Instant) {
        self.with(|s| {
            s.available = estimate(s, now) - s.cost;
            s.observed = now;
        });
    }

    /// Records what Shopify reported with an answer.
    pub fn observe(
        &self,
        status: Option<ThrottleStatus>,
        requested_cost: Option<f64>,
        now: Instant,
    ) {
        self.with(|s| {
            if let Some(status) = status {
                s.available = status.currently_available;
                s.maximum = status.maximum_available.max(1.0);
                s.restore_rate = status.restore_rate.max(0.1);
                s.observed = now;
            }
            if let Some(cost) = requested_cost.filter(|c| c.is_finite() && *c > 0.0) {
                s.cost = cost;
            }
        });
    }

    /// Blocks the shop for `duration` (`Retry-After`, `THROTTLED`).
    pub fn block_for(&self, duration: Duration, now: Instant) {
        self.with(|s| {
            let until = now + duration;
            s.blocked_until = Some(s.blocked_until.map_or(until, |current| current.max(until)));
        });
    }
}

fn estimate(state: &State, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(state.observed).as_secs_f64();
    (state.available + elapsed * state.restore_rate).min(state.maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(available: f64) -> ThrottleStatus {
        ThrottleStatus {
            maximum_available: 100.0,
            currently_available: available,
            restore_rate: 10.0,
        }
    }

    #[test]
    fn a_full_bucket_sends_at_once() {
        let now = Instant::now();
        assert_eq!(Pacer::new(now).delay_before_call(now), Duration::ZERO);
    }

    #[test]
    fn a_low_bucket_waits_for_cost_plus_margin_to_restore() {
        let now = Instant::now();
        let pacer = Pacer::new(now);
        pacer.observe(Some(status(5.0)), Some(10.0), now);
        // needs 15, has 5, restores 10/s: one second.
        assert_eq!(pacer.delay_before_call(now), Duration::from_secs(1));
        assert_eq!(
            pacer.delay_before_call(now + Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            pacer.delay_before_call(now + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_estimate_restores_up_to_the_bucket_size_and_spending_lowers_it() {
        let now = Instant::now();
        let pacer = Pacer::new(now);
        pacer.observe(Some(status(50.0)), Some(10.0), now);
        assert_eq!(
            pacer.estimated_available(now + Duration::from_secs(60)),
            100.0
        );
        pacer.spend(now);
        assert_eq!(pacer.estimated_available(now), 40.0);
    }

    #[test]
    fn retry_after_blocks_until_it_passes() {
        let now = Instant::now();
        let pacer = Pacer::new(now);
        pacer.block_for(Duration::from_secs(2), now);
        pacer.block_for(Duration::from_secs(1), now); // a shorter block does not shorten it
        assert_eq!(pacer.delay_before_call(now), Duration::from_secs(2));
        assert_eq!(
            pacer.delay_before_call(now + Duration::from_secs(3)),
            Duration::ZERO
        );
    }
}
