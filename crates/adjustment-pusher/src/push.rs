//! Pushing: every shop's pending adjustments batched and sent to Shopify until each batch has a
//! definite answer.
//!
//! A replica runs a fixed set of workers (`push_workers`) over all its shops, scheduled by
//! [`ready::ReadyShops`]: a worker takes the next shop with work and runs the database part of
//! one step of it ([`ShopPusher::prepare`]: claim a due open batch, or form batches in every free
//! slot and claim one), hands the call to a task of its own, and the shop goes back to the end of
//! the queue once the answer is recorded, if it has more. A shop has at most `batches_in_flight`
//! steps running and open batches (across replicas, enforced by the database: one per slot),
//! which never share an `(item, location)` pair (`store::forming`). While they are being retried
//! (throttled, failing, outcome unknown), new pending adjustments wait and coalesce, so the next
//! batches carry their sums. An open batch is resent unchanged, with the same idempotency key,
//! until Shopify answers definitely; then its adjustments are pushed, dead-lettered (rejected)
//! or returned to pending (the rest of a batch Shopify refused for some of its changes). Before
//! every call a step reserves its cost from the shop's pacer, so the calls in flight together
//! never over-draw the bucket. A shop that is throttled or down holds no worker: its steps end
//! and come back after the wait, and the workers serve the other shops meanwhile.
//!
//! Quiet shops cost nothing: one poll every 250 ms asks the database which resting shops (no
//! step running or coming) have due work (a retry whose time came, work released by another
//! replica, rows that waited for a pair in flight), in one query for all.
//! The workers and the poll use the push pool, so Shopify's answer is recorded even when intake
//! holds every connection of the service's pool; a failed step is counted on its shop's
//! [`LoopMonitor`] and the shop stepped again after a backoff; a step that panics is counted the
//! same way and its worker carries on. At shutdown no new step starts, and every call in flight
//! is answered and recorded before the workers return.

pub mod ready;

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use futures_util::FutureExt as _;
use platform::{
    db::DbError,
    metrics::Metrics,
    shutdown::CancellationToken,
    supervise::{LoopMonitor, panic_message},
};
use tokio::sync::Notify;

use shopify_admin::{Reservation, ShopClient};

use crate::{
    PusherSettings,
    shopify::{self, CallOutcome},
    store::{self, Acknowledged, Batch, BatchRules, Sendable},
};

pub use ready::{ReadyShops, Stepped};

/// Everything one shop's steps need.
#[derive(Debug)]
pub struct ShopPusher {
    pub shop: String,
    /// The shop's Admin API client; it paces and records every call.
    pub client: ShopClient,
    /// The push pool (not intake's).
    pub pool: Pool,
    pub settings: PusherSettings,
    pub metrics: Metrics,
    /// Where the shop is woken when its work comes back to pending.
    pub ready: Arc<ReadyShops>,
    /// `adjustment-pusher.wos-transactions.dlq` (with the deployment's prefix).
    pub dead_letter_queue: String,
    /// Notified after dead letters were written to the outbox.
    pub outbox_wake: Arc<Notify>,
    /// Counts the shop's failed steps (`wos_sync_loop_*{loop="push",shop}`).
    pub monitor: LoopMonitor,
}

/// How often the poll looks for due work of resting shops (retries whose time came, work
/// released by another replica).
const POLL: Duration = Duration::from_millis(250);

/// The `loop` label of the push steps' metrics (per shop) and of the poll's (shop "").
pub const LOOP: &str = "push";

/// Every shop's pusher and the workers that step them.
#[derive(Debug)]
pub struct Pushers {
    pub shops: HashMap<String, Arc<ShopPusher>>,
    pub ready: Arc<ReadyShops>,
    /// The push pool, for the poll.
    pub pool: Pool,
    /// Workers stepping shops at once (`push_workers`).
    pub workers: usize,
    /// Each shop's `batches_in_flight`.
    pub slots: u16,
    /// Counts the poll's failures (`wos_sync_loop_*{loop="push",shop=""}`).
    pub monitor: LoopMonitor,
}

impl Pushers {
    /// Runs the workers, the poll and the timers until `shutdown`; every step running then is
    /// finished (its call answered and recorded) first.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let workers = (0..self.workers.max(1)).map(|_| self.work(&shutdown));
        tokio::join!(
            futures_util::future::join_all(workers),
            self.poll(&shutdown),
            self.ready.run_timers(&shutdown),
        );
        tracing::info!(shops = self.shops.len(), "push workers stopped");
    }

    /// One worker: runs the database part of a step of the shop at the front of the queue, and
    /// hands a batch to send to a task of its own, so no worker waits for Shopify (nor for a
    /// shop's bucket: a step that must wait for points ends, and its shop comes back then).
    /// The shop's turn lasts until the call is answered and recorded.
    async fn work(&self, shutdown: &CancellationToken) {
        let mut sends = tokio::task::JoinSet::new();
        loop {
            let turn = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = sends.join_next(), if !sends.is_empty() => continue,
                turn = self.ready.next() => turn,
            };
            if shutdown.is_cancelled() {
                // Nothing new starts once shutdown began.
                turn.stepped(Stepped::Idle);
                break;
            }
            let Some(pusher) = self.shops.get(turn.shop()).cloned() else {
                turn.stepped(Stepped::Idle);
                continue;
            };
            match pusher.unwound(pusher.prepare()).await {
                Ok(Prepared::Done(stepped)) => {
                    pusher.monitor.succeeded();
                    turn.stepped(stepped);
                }
                Ok(Prepared::Send {
                    batch,
                    reservation,
                    wider,
                    then,
                }) => {
                    if wider {
                        turn.widen();
                    }
                    sends.spawn(async move {
                        let sent = pusher
                            .unwound(pusher.send_claimed(*batch, reservation))
                            .await;
                        // A round succeeded once its call's answer is recorded.
                        turn.stepped(match sent {
                            Ok(true) => {
                                pusher.monitor.succeeded();
                                then
                            }
                            // Resent later, under a new key, or by another sender: the shop
                            // may have the batch due again at once.
                            Ok(false) => {
                                pusher.monitor.succeeded();
                                Stepped::Busy
                            }
                            Err(wait) => wait,
                        });
                    });
                }
                Err(wait) => turn.stepped(wait),
            }
        }
        // Every call in flight is answered and recorded before the service stops.
        while sends.join_next().await.is_some() {}
    }

    /// Every [`POLL`], one query for the resting shops that have due work; they get a ticket.
    async fn poll(&self, shutdown: &CancellationToken) {
        loop {
            let resting = self.ready.resting();
            let wait = if resting.is_empty() {
                POLL
            } else {
                match store::shops_with_due_work(&self.pool, &resting, self.slots).await {
                    Ok(due) => {
                        self.monitor.succeeded();
                        self.ready.due(due);
                        POLL
                    }
                    Err(err) => self.monitor.failed(&err),
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// What the database part of a step decided.
#[derive(Debug)]
pub enum Prepared {
    /// The step is over.
    Done(Stepped),
    /// A batch to send under the reservation; `wider` when the shop has more open than this, so
    /// another step of it may start while this call runs; `then`, how the step ends once the
    /// call is answered and recorded: [`Stepped::Busy`] when the shop may have more to do,
    /// [`Stepped::Idle`] when this turn formed everything pending (a trickle shop's one
    /// transaction), so no step is spent finding nothing.
    Send {
        batch: Box<Batch>,
        reservation: Reservation,
        wider: bool,
        then: Stepped,
    },
}

impl ShopPusher {
    /// How long a key may still be sent after its first send.
    fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.settings.give_up_after_secs)
    }

    /// Runs part of a step, counting a failure on the shop's monitor: `Err` is the
    /// [`Stepped::Wait`] of a failure (the database unavailable) or a panic, after the
    /// monitor's backoff. The caller counts the round a success once the whole step went
    /// through (a call's answer recorded), so a step that keeps failing half-way shows.
    async fn unwound<T>(
        &self,
        part: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, Stepped> {
        // A panicking step must not take its worker (and every shop's share of it) along.
        match AssertUnwindSafe(part).catch_unwind().await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(Stepped::Wait(self.monitor.failed(&err))),
            Err(panic) => {
                let why = format!("panicked: {}", panic_message(panic.as_ref()));
                Err(Stepped::Wait(self.monitor.failed(&why)))
            }
        }
    }

    /// The database part of one step: claim a due open batch, or form batches in every free
    /// slot and claim one of the open batches then due. The call's cost is reserved from the
    /// pacer before the claim, and given back if there is nothing to send; when the bucket
    /// cannot cover it yet, the step ends at once with the pacer's wait.
    #[tracing::instrument(name = "push_step", skip_all, fields(shop = %self.shop))]
    pub async fn prepare(&self) -> Result<Prepared, DbError> {
        let reservation = match self.client.pacer().try_reserve(std::time::Instant::now()) {
            Ok(reservation) => reservation,
            Err(wait) => return Ok(Prepared::Done(Stepped::Wait(wait))),
        };
        let lease =
            Duration::from_millis(self.settings.request_timeout_ms) * 2 + Duration::from_secs(5);
        let claimed =
            store::claim_open_batch(&self.pool, &self.shop, lease, self.give_up_after()).await?;
        if let Some(batch) = claimed {
            // Open batches were waiting: the shop may have more, for its other slots.
            return Ok(Prepared::Send {
                batch: Box::new(batch),
                reservation,
                wider: true,
                then: Stepped::Busy,
            });
        }
        let rules = BatchRules {
            max_changes: self.settings.max_changes_per_call,
            coalesce_transactions: self.settings.batching,
        };
        // Empty: every slot holds an open batch (being sent, or waiting for its retry time), or
        // nothing pending is free to go. A turn fills every free slot; the batches it formed are
        // claimed by this step right away and by the shop's next steps as they come.
        let formed = store::form_batches(
            &self.pool,
            &self.shop,
            rules,
            self.settings.batches_in_flight,
            &self.dead_letter_queue,
        )
        .await?;
        for formed in &formed {
            self.record_formed(formed);
        }
        let wider = formed.len() > 1;
        // Whatever is left (pending rows this turn did not take, batches formed for other
        // steps) brings the shop back; what arrives meanwhile wakes it, and the poll finds the
        // rest (rows that waited for a pair in flight, a retry's time).
        // Formed by this step or by another one (another replica's turn), or a retry that
        // came due meanwhile: the oldest due batch.
        let claimed =
            store::claim_open_batch(&self.pool, &self.shop, lease, self.give_up_after()).await?;
        // Idle after the call only when this turn formed one batch, took everything pending,
        // and this step sends that very batch: nothing else is open for a free place.
        let alone = matches!(formed.as_slice(), [only] if !only.rest
            && only.id.is_some()
            && only.id == claimed.as_ref().map(|batch| batch.id));
        let then = if alone { Stepped::Idle } else { Stepped::Busy };
        Ok(match claimed {
            Some(batch) => Prepared::Send {
                batch: Box::new(batch),
                reservation,
                wider,
                then,
            },
            // Nothing to send now: the reservation is dropped, its points go back.
            None if formed.is_empty() => Prepared::Done(Stepped::Idle),
            None => Prepared::Done(Stepped::Busy),
        })
    }

    /// Sends a claimed batch under its reservation, or gives it up if its key is too old.
    /// `true` when the batch is settled (applied, refused, given up); `false` when it stays
    /// open (to be resent, under a new key, or by the sender that holds it now).
    async fn send_claimed(&self, batch: Batch, reservation: Reservation) -> Result<bool, DbError> {
        if batch.key_expired {
            // E.g. the pusher (or its database) was down longer than Shopify keeps keys.
            self.give_up(
                &batch,
                batch.uncertain_before,
                "not sent again: key retention over",
            )
            .await?;
            Ok(true)
        } else {
            self.send_reserved(batch, reservation).await
        }
    }

    /// Counts and logs what one formed batch did.
    fn record_formed(&self, formed: &store::Formed) {
        let shop = self.shop.as_str();
        if formed.changes > 0 {
            self.metrics
                .push_batch_changes
                .with_label_values(&[shop])
                .observe(formed.changes as f64);
        }
        // Sums that cancelled out need no call: they are done, counted as pushed.
        self.acknowledge(&formed.cancelled);
        if formed.parked > 0 {
            self.metrics
                .parked_adjustments
                .with_label_values(&[shop])
                .add(formed.parked as i64);
        }
        if !formed.dead.is_empty() {
            self.count_dead_letters(&formed.dead);
            self.outbox_wake.notify_one();
        }
        tracing::info!(shop, batch = ?formed.id, changes = formed.changes, adjustments = formed.adjustments, cancelled = formed.cancelled.len(), parked = formed.parked, trace_ids = %formed.source_trace_ids.join(","), "batch formed");
    }

    /// Sends a claimed batch and records Shopify's answer, once the pacer grants the call's cost;
    /// whether the batch is settled ([`Self::send_claimed`]).
    pub async fn send(&self, batch: Batch) -> Result<bool, DbError> {
        let reservation = self.client.pacer().reserve().await;
        self.send_reserved(batch, reservation).await
    }

    /// Sends a claimed batch whose call's cost is reserved and records Shopify's answer, in the
    /// batch's trace: a span `push_batch` with its `trace_id` and the `trace_ids` of its
    /// transactions on every log line, and the trace on the Shopify call (`traceparent`).
    async fn send_reserved(&self, batch: Batch, reservation: Reservation) -> Result<bool, DbError> {
        let span = tracing::info_span!(
            "push_batch",
            shop = %self.shop,
            batch = batch.id,
            attempt = batch.attempts,
            trace_id = %batch.trace.trace_id(),
            trace_ids = %batch.source_trace_ids.join(","),
        );
        platform::trace::scope(batch.trace, span, self.send_traced(batch, reservation)).await
    }

    /// [`Self::send`]'s work. Checks first, by the database's clock, that the claim still holds
    /// and the key is still young enough: a process paused between its claim and this call
    /// sends nothing Shopify may have forgotten.
    async fn send_traced(&self, batch: Batch, reservation: Reservation) -> Result<bool, DbError> {
        match store::sendable(&self.pool, &batch, self.give_up_after()).await? {
            Sendable::Yes => {}
            Sendable::NotOurs => {
                tracing::warn!(shop = %self.shop, batch = batch.id, "claim lost before sending (lease over): left to its new sender");
                return Ok(false);
            }
            Sendable::KeyExpired => {
                self.give_up(
                    &batch,
                    batch.uncertain_before,
                    "not sent: key retention over by the time of sending",
                )
                .await?;
                return Ok(true);
            }
        }
        let timeout = Duration::from_millis(self.settings.request_timeout_ms);
        let result = shopify::adjust(
            &self.client,
            reservation,
            &batch.input,
            &batch.idempotency_key,
            timeout,
        )
        .await;
        let now = Instant::now();
        let shop = self.shop.as_str();

        let settled = matches!(
            result.outcome,
            CallOutcome::Applied { .. }
                | CallOutcome::Rejected { .. }
                | CallOutcome::KeyAlreadyUsed { .. }
        );
        match result.outcome {
            CallOutcome::Applied { group_id } => {
                let acknowledged = store::mark_applied(&self.pool, &batch, &group_id).await?;
                self.acknowledge(&acknowledged);
                tracing::info!(
                    shop,
                    batch = batch.id,
                    group = %group_id,
                    adjustments = acknowledged.len(),
                    attempts = batch.attempts,
                    "batch applied"
                );
            }
            CallOutcome::Rejected { errors } => {
                let refusals: Vec<_> = errors.iter().map(shopify::refusal).collect();
                let summary = errors
                    .iter()
                    .map(|e| e.describe())
                    .collect::<Vec<_>>()
                    .join("; ");
                let refused = store::mark_refused(
                    &self.pool,
                    &batch,
                    &refusals,
                    &summary,
                    &self.dead_letter_queue,
                )
                .await?;
                self.count_dead_letters(&refused.dead);
                tracing::warn!(shop, batch = batch.id, error = %summary, dead_lettered = refused.dead.len(), returned_to_pending = refused.returned, sent_alone = refused.isolated, "Shopify refused the batch");
                self.outbox_wake.notify_one();
                if refused.returned > 0 {
                    self.ready.wake(&self.shop);
                }
            }
            CallOutcome::PreviousAttemptFailed => {
                tracing::warn!(
                    shop,
                    batch = batch.id,
                    "previous attempt with this key failed; resending under a new key"
                );
                store::renew_key(&self.pool, &batch, "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED").await?;
            }
            CallOutcome::KeyAlreadyUsed { reason } => {
                // The key ran before, with what Shopify sees as other parameters: that run may
                // have applied. Sending the changes under a new key could apply them twice.
                let why = format!(
                    "{reason}: Shopify says idempotency key {} already ran, so this batch may \
                     have been applied ({} attempts): check the shop's adjustment history for \
                     reference {} before replaying",
                    batch.idempotency_key,
                    batch.attempts,
                    batch.reference(),
                );
                self.exhaust(&batch, &why).await?;
            }
            CallOutcome::Transient {
                reason,
                retry_after,
                shop_wide,
                maybe_applied,
            } => {
                // Shopify's own waits hold every call of the shop; our backoff, and a wait for
                // a request still running under this key, only this batch.
                let delay = retry_after.unwrap_or_else(|| self.backoff(batch.attempts));
                if shop_wide && let Some(wait) = retry_after {
                    self.client.pacer().block_for(wait, now);
                }
                tracing::warn!(shop, batch = batch.id, attempt = batch.attempts, maybe_applied, error = %reason, retry_in_ms = delay.as_millis() as u64, "transient failure; resending the same batch with the same key");
                // Whether the key is still young enough is decided at the next claim.
                store::schedule_resend(&self.pool, &batch, delay, &reason, maybe_applied).await?;
            }
        }
        Ok(settled)
    }

    /// Counts adjustments as pushed, with their lag.
    fn acknowledge(&self, acknowledged: &[Acknowledged]) {
        let shop = self.shop.as_str();
        let now = chrono::Utc::now();
        for adjustment in acknowledged {
            self.metrics
                .adjustments_total
                .with_label_values(&[shop, &adjustment.kind, "pushed"])
                .inc();
            let lag = (now - adjustment.occurred_at).to_std().unwrap_or_default();
            self.metrics
                .adjustment_lag_seconds
                .with_label_values(&[shop])
                .observe(lag.as_secs_f64());
        }
    }

    /// Stops resending a batch whose key is about to expire. If no attempt can have been applied,
    /// its adjustments simply go back to pending (a new batch, a new key); otherwise the outcome
    /// is unknown and they are dead-lettered as `exhausted`, for an operator to check.
    async fn give_up(
        &self,
        batch: &Batch,
        uncertain: i32,
        last_error: &str,
    ) -> Result<(), DbError> {
        let shop = self.shop.as_str();
        if uncertain == 0 {
            let why = format!(
                "never applied after {} attempts (last: {last_error}); re-batched",
                batch.attempts
            );
            let refused =
                store::mark_refused(&self.pool, batch, &[], &why, &self.dead_letter_queue).await?;
            tracing::warn!(
                shop,
                batch = batch.id,
                returned_to_pending = refused.returned,
                "batch re-formed under a new key before its key expires"
            );
            self.ready.wake(&self.shop);
            return Ok(());
        }
        let why = format!(
            "no definite answer from Shopify after {} attempts (last: {last_error}); {uncertain} of \
             them may have been applied: check the shop's adjustment history for reference \
             {} before replaying",
            batch.attempts,
            batch.reference(),
        );
        self.exhaust(batch, &why).await
    }

    /// Dead-letters a batch whose outcome cannot be known as `exhausted`.
    async fn exhaust(&self, batch: &Batch, why: &str) -> Result<(), DbError> {
        let dead = store::mark_exhausted(&self.pool, batch, why, &self.dead_letter_queue).await?;
        self.count_dead_letters(&dead);
        self.outbox_wake.notify_one();
        tracing::error!(
            shop = %self.shop,
            batch = batch.id,
            dead_lettered = dead.len(),
            error = why,
            "giving up on a batch"
        );
        Ok(())
    }

    fn count_dead_letters(&self, kinds: &[String]) {
        for kind in kinds {
            self.metrics
                .adjustments_total
                .with_label_values(&[&self.shop, kind, "dead_lettered"])
                .inc();
        }
    }

    /// Exponential backoff with full jitter between `retry_base_ms` and `retry_max_ms`.
    fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(16);
        let ceiling = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.settings.retry_max_ms);
        let jittered = (ceiling as f64 * (0.5 + 0.5 * rand::random::<f64>())) as u64;
        Duration::from_millis(jittered.max(1))
    }
}
