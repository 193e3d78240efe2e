//! Per-shop pacing from Shopify's cost-based rate limit, so that in steady state no call is
//! refused, however many calls of the shop are in flight at once.
//!
//! Shopify answers every call with `throttleStatus` (points available, bucket size, restore
//! rate). The pacer keeps that as a leaky-bucket estimate. A call first takes a
//! [`Reservation`] of its expected cost (the last requested cost seen): it is granted only when
//! the estimate, less every reservation still in flight, covers that cost plus a margin, so
//! calls sent concurrently never over-draw the bucket between them. The answer settles the
//! reservation: the estimate becomes what Shopify reported, less the cost of every call answered
//! while this one was in flight (Shopify may have run them after this one, so its status may
//! not include them; counting them twice errs on the safe side, and the next answer corrects
//! it). A call that gets no answer keeps its cost spent. Until Shopify has reported the bucket
//! once, the pacer assumes a full Standard bucket but lets only one call be in flight. `Retry-After` (429/503) and `THROTTLED`
//! block the shop until the time they name. One pacer per shop: a throttled shop never delays
//! another.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::answer::ThrottleStatus;

/// Points kept in reserve on top of a call's cost (other apps of the shop share the bucket).
const MARGIN: f64 = 5.0;
/// Cost assumed before Shopify told us (inventoryAdjustQuantities costs about 10).
const DEFAULT_COST: f64 = 10.0;
/// How soon a call waiting for the first answer of the shop asks again.
const UNKNOWN_BUCKET_POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct State {
    available: f64,
    maximum: f64,
    restore_rate: f64,
    observed: Instant,
    cost: f64,
    blocked_until: Option<Instant>,
    /// Points reserved by calls in flight.
    reserved: f64,
    /// The costs of every call settled so far, summed: what was settled while a call was in
    /// flight is the difference between this at its settlement and at its reservation.
    settled_total: f64,
    /// Shopify has reported the bucket at least once. Until then the bucket is a guess, and
    /// only one call is in flight at a time.
    known: bool,
}

/// One shop's pacing state.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

/// Points of the bucket held for one call in flight. Settle it with the call's answer
/// ([`Reservation::settle`]); dropping it unsettled means the call was never sent, and gives
/// the points back.
#[derive(Debug)]
#[must_use = "a reservation holds bucket points until it is settled or dropped"]
pub struct Reservation {
    pacer: Arc<Pacer>,
    points: f64,
    /// `settled_total` when it was taken.
    settled_before: f64,
    open: bool,
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
                reserved: 0.0,
                settled_total: 0.0,
                known: false,
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

    /// Points available now, by the estimate (before what calls in flight reserved).
    pub fn estimated_available(&self, now: Instant) -> f64 {
        self.with(|s| estimate(s, now))
    }

    /// Points reserved by calls in flight.
    pub fn reserved(&self) -> f64 {
        self.with(|s| s.reserved)
    }

    /// How long to wait before the next call may be sent (calls in flight included).
    pub fn delay_before_call(&self, now: Instant) -> Duration {
        self.with(|s| wait_for_call(s, now))
    }

    /// Reserves the next call's cost if the estimate, less the calls in flight, covers it plus
    /// the margin; otherwise says how long to wait before asking again.
    pub fn try_reserve(self: &Arc<Self>, now: Instant) -> Result<Reservation, Duration> {
        let taken = self.with(|s| {
            let wait = wait_for_call(s, now);
            if !wait.is_zero() {
                return Err(wait);
            }
            s.reserved += s.cost;
            Ok((s.cost, s.settled_total))
        })?;
        Ok(self.reservation(taken))
    }

    /// Waits until a call may be sent, and reserves its cost.
    pub async fn reserve(self: &Arc<Self>) -> Reservation {
        loop {
            match self.try_reserve(Instant::now()) {
                Ok(reservation) => return reservation,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Reserves the next call's cost at once, whatever the estimate (a caller that paced itself
    /// with [`Self::delay_before_call`], or one that must not wait).
    pub fn reserve_now(self: &Arc<Self>) -> Reservation {
        let taken = self.with(|s| {
            s.reserved += s.cost;
            (s.cost, s.settled_total)
        });
        self.reservation(taken)
    }

    fn reservation(self: &Arc<Self>, (points, settled_before): (f64, f64)) -> Reservation {
        Reservation {
            pacer: self.clone(),
            points,
            settled_before,
            open: true,
        }
    }

    /// Blocks the shop for `duration` (`Retry-After`, `THROTTLED`).
    pub fn block_for(&self, duration: Duration, now: Instant) {
        self.with(|s| {
            let until = now + duration;
            s.blocked_until = Some(s.blocked_until.map_or(until, |current| current.max(until)));
        });
    }
}

impl Reservation {
    /// The points it holds.
    pub fn points(&self) -> f64 {
        self.points
    }

    /// Settles the call with what its answer reported (`None` when no answer came or it carried
    /// no `throttleStatus`: the call may have been charged, so its cost stays spent).
    pub fn settle(
        mut self,
        status: Option<ThrottleStatus>,
        requested_cost: Option<f64>,
        now: Instant,
    ) {
        self.open = false;
        let requested_cost = requested_cost.filter(|c| c.is_finite() && *c > 0.0);
        let points = self.points;
        let settled_before = self.settled_before;
        self.pacer.with(|s| {
            s.reserved = (s.reserved - points).max(0.0);
            // What this call took: at least what it reserved (its real cost may be higher).
            let charged = requested_cost.map_or(points, |cost| cost.max(points));
            s.available = match status {
                Some(status) => {
                    s.maximum = status.maximum_available.max(1.0);
                    s.restore_rate = status.restore_rate.max(0.1);
                    // Calls answered while this one was in flight may have run after it, and
                    // then its status does not count them.
                    let answered_meanwhile = s.settled_total - settled_before;
                    s.known = true;
                    status.currently_available - answered_meanwhile
                }
                None => estimate(s, now) - charged,
            }
            .min(s.maximum);
            s.observed = now;
            s.settled_total += charged;
            if let Some(cost) = requested_cost {
                s.cost = cost;
            }
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            // Never sent: the points go back.
            let points = self.points;
            self.pacer
                .with(|s| s.reserved = (s.reserved - points).max(0.0));
        }
    }
}

/// How long until the estimate, less what calls in flight reserved, covers a call plus the margin.
fn wait_for_call(s: &State, now: Instant) -> Duration {
    if let Some(until) = s.blocked_until.filter(|until| *until > now) {
        return until - now;
    }
    if !s.known && s.reserved > 0.0 {
        // The bucket is a guess until the call in flight answers.
        return UNKNOWN_BUCKET_POLL;
    }
    let needed = (s.cost + MARGIN).min(s.maximum);
    let missing = needed - (estimate(s, now) - s.reserved);
    if missing <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(missing / s.restore_rate.max(0.1))
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

    /// A pacer that has seen `available` of a 100-point bucket restoring 10/s, calls costing 10.
    fn pacer_at(available: f64, now: Instant) -> Arc<Pacer> {
        let pacer = Arc::new(Pacer::new(now));
        pacer
            .reserve_now()
            .settle(Some(status(available)), Some(10.0), now);
        pacer
    }

    #[test]
    fn a_full_bucket_sends_at_once() {
        let now = Instant::now();
        assert_eq!(Pacer::new(now).delay_before_call(now), Duration::ZERO);
    }

    #[test]
    fn a_low_bucket_waits_for_cost_plus_margin_to_restore() {
        let now = Instant::now();
        let pacer = pacer_at(5.0, now);
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
        assert_eq!(
            pacer.try_reserve(now).map(|r| r.points()).unwrap_err(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_estimate_restores_up_to_the_bucket_size() {
        let now = Instant::now();
        let pacer = pacer_at(50.0, now);
        assert_eq!(
            pacer.estimated_available(now + Duration::from_secs(60)),
            100.0
        );
    }

    #[test]
    fn concurrent_calls_never_reserve_more_than_the_estimate_holds() {
        let now = Instant::now();
        let pacer = pacer_at(100.0, now);
        // Nobody has answered yet: every call in flight holds its cost. 100 points cover nine
        // calls of 10 with the margin of 5 left (the ninth sees 20 >= 15, a tenth 10 < 15).
        let in_flight: Vec<Reservation> = std::iter::from_fn(|| pacer.try_reserve(now).ok())
            .take(20)
            .collect();
        assert_eq!(in_flight.len(), 9);
        assert_eq!(pacer.reserved(), 90.0);
        assert_eq!(pacer.delay_before_call(now), Duration::from_millis(500));
        // A call that was never sent gives its points back.
        drop(in_flight);
        assert_eq!(pacer.reserved(), 0.0);
        assert!(pacer.try_reserve(now).is_ok());
    }

    #[test]
    fn an_answer_settles_its_reservation_with_shopifys_figure() {
        let now = Instant::now();
        let pacer = pacer_at(100.0, now);
        let first = pacer.try_reserve(now).unwrap();
        let second = pacer.try_reserve(now).unwrap();
        // Shopify ran the first alone and says 90: the second still holds its 10.
        first.settle(Some(status(90.0)), Some(10.0), now);
        assert_eq!(pacer.estimated_available(now), 90.0);
        assert_eq!(pacer.reserved(), 10.0);
        // The second's answer (80) counts the first already; the first, answered meanwhile,
        // is counted again (it might have run after the second): 70, on the safe side.
        second.settle(Some(status(80.0)), Some(10.0), now);
        assert_eq!(pacer.reserved(), 0.0);
        assert_eq!(pacer.estimated_available(now), 70.0);
    }

    #[test]
    fn an_answer_overtaken_by_a_later_calls_answer_does_not_raise_the_estimate() {
        let now = Instant::now();
        let pacer = pacer_at(100.0, now);
        let early = pacer.try_reserve(now).unwrap();
        let late = pacer.try_reserve(now).unwrap();
        // Shopify runs `late` first (90 left) and then `early` (80 left); `early`'s answer
        // arrives first.
        early.settle(Some(status(80.0)), Some(10.0), now);
        assert_eq!(pacer.estimated_available(now), 80.0);
        // `late`'s status is older than what we know: it must not give back `early`'s points.
        late.settle(Some(status(90.0)), Some(10.0), now);
        assert_eq!(pacer.estimated_available(now), 80.0);
    }

    #[test]
    fn a_call_without_an_answer_keeps_its_cost_spent() {
        let now = Instant::now();
        let pacer = pacer_at(100.0, now);
        pacer.try_reserve(now).unwrap().settle(None, None, now);
        assert_eq!(pacer.reserved(), 0.0);
        assert_eq!(pacer.estimated_available(now), 90.0);
    }

    #[test]
    fn the_requested_cost_of_an_answer_is_what_the_next_call_reserves() {
        let now = Instant::now();
        let pacer = pacer_at(100.0, now);
        pacer
            .try_reserve(now)
            .unwrap()
            .settle(Some(status(100.0)), Some(30.0), now);
        assert_eq!(pacer.try_reserve(now).unwrap().points(), 30.0);
    }

    #[test]
    fn before_the_first_answer_only_one_call_is_in_flight() {
        let now = Instant::now();
        let pacer = Arc::new(Pacer::new(now));
        let first = pacer.try_reserve(now).unwrap();
        assert!(pacer.try_reserve(now).is_err(), "the bucket is a guess yet");
        first.settle(Some(status(100.0)), Some(10.0), now);
        let _second = pacer.try_reserve(now).unwrap();
        assert!(
            pacer.try_reserve(now).is_ok(),
            "known now: several in flight"
        );
    }

    #[test]
    fn retry_after_blocks_until_it_passes() {
        let now = Instant::now();
        let pacer = Arc::new(Pacer::new(now));
        pacer.block_for(Duration::from_secs(2), now);
        pacer.block_for(Duration::from_secs(1), now); // a shorter block does not shorten it
        assert_eq!(pacer.delay_before_call(now), Duration::from_secs(2));
        assert!(pacer.try_reserve(now).is_err());
        assert_eq!(
            pacer.delay_before_call(now + Duration::from_secs(3)),
            Duration::ZERO
        );
    }
}
