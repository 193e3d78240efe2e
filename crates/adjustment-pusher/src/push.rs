//! One shop's push loop: batches pending adjustments and sends them to Shopify until each
//! batch has a definite answer.
//!
//! Every replica runs one loop per configured shop. A shop has at most one open batch at a time
//! (across replicas): while it is being retried (throttled, failing, outcome unknown), new
//! pending adjustments wait and coalesce, so the next batch carries their sums. The open batch is
//! resent unchanged, with the same idempotency key, until Shopify answers definitely; then its
//! adjustments are pushed, dead-lettered (rejected) or returned to pending (the rest of a batch
//! Shopify refused for some of its changes). A shop that is throttled or down only ever waits in
//! its own loop.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use platform::{db::DbError, metrics::Metrics, shutdown::CancellationToken};
use tokio::sync::Notify;

use shopify_admin::ShopClient;

use crate::{
    PusherSettings,
    ledger::{self, Batch, BatchRules},
    shopify::{self, CallOutcome},
};

/// Everything one shop's loop needs.
#[derive(Debug)]
pub struct ShopPusher {
    pub shop: String,
    /// The shop's Admin API client; it paces and records every call.
    pub client: ShopClient,
    pub pool: Pool,
    pub settings: PusherSettings,
    pub metrics: Metrics,
    /// Notified when the shop has new pending work.
    pub wake: Arc<Notify>,
    /// `adjustment-pusher.wos-transactions.dlq` (with the deployment's prefix).
    pub dead_letter_queue: String,
    /// Notified after dead letters were written to the outbox.
    pub outbox_wake: Arc<Notify>,
}

/// How often a loop looks for due work when nobody woke it (retries whose time came, work
/// released by another replica).
const POLL: Duration = Duration::from_millis(250);

impl ShopPusher {
    /// Runs until `shutdown`; an in-flight call is finished and recorded first.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let window = Duration::from_millis(self.settings.batch_window_ms);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {
                    // Let a burst arrive, so it goes out as one batch.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(window) => {}
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
            }
            while !shutdown.is_cancelled() {
                match self.step(&shutdown).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(err) => {
                        tracing::warn!(shop = %self.shop, error = %err, "push loop: database unavailable");
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        break;
                    }
                }
            }
        }
        tracing::info!(shop = %self.shop, "push loop stopped");
    }

    /// One unit of work: send the due open batch, or form a new one. `false` when idle.
    async fn step(&self, shutdown: &CancellationToken) -> Result<bool, DbError> {
        let pause = self.client.pacer().delay_before_call(Instant::now());
        if !pause.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(pause) => {}
            }
        }
        let lease =
            Duration::from_millis(self.settings.request_timeout_ms) * 2 + Duration::from_secs(5);
        if let Some(batch) = ledger::claim_open_batch(&self.pool, &self.shop, lease).await? {
            if self.past_key_retention(&batch) {
                // E.g. the pusher (or its database) was down longer than Shopify keeps keys.
                self.give_up(
                    &batch,
                    batch.uncertain_before,
                    "not sent again: key retention over",
                )
                .await?;
            } else {
                self.send(batch).await?;
            }
            return Ok(true);
        }
        if ledger::has_open_batch(&self.pool, &self.shop).await? {
            return Ok(false); // being sent by another replica, or waiting for its retry time
        }
        let rules = BatchRules {
            max_changes: self.settings.max_changes_per_call,
            coalesce_transactions: self.settings.batching,
        };
        match ledger::form_batch(&self.pool, &self.shop, rules).await? {
            Some(formed) => {
                self.metrics
                    .push_batch_changes
                    .with_label_values(&[&self.shop])
                    .observe(formed.changes as f64);
                tracing::debug!(shop = %self.shop, batch = formed.id, changes = formed.changes, adjustments = formed.adjustments, "batch formed");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sends a claimed batch and records Shopify's answer.
    async fn send(&self, batch: Batch) -> Result<(), DbError> {
        let timeout = Duration::from_millis(self.settings.request_timeout_ms);
        let result =
            shopify::adjust(&self.client, &batch.input, &batch.idempotency_key, timeout).await;
        let now = Instant::now();
        let shop = self.shop.as_str();

        match result.outcome {
            CallOutcome::Applied { group_id } => {
                let acknowledged =
                    ledger::mark_applied(&self.pool, &batch, group_id.as_deref()).await?;
                let now = chrono::Utc::now();
                for adjustment in &acknowledged {
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
                tracing::info!(
                    shop,
                    batch = batch.id,
                    group = group_id.as_deref().unwrap_or("none"),
                    adjustments = acknowledged.len(),
                    attempts = batch.attempts,
                    "batch applied"
                );
            }
            CallOutcome::Rejected { errors } => {
                let by_change: BTreeMap<usize, String> = errors
                    .iter()
                    .filter_map(|e| Some((shopify::change_index(e)?, e.describe())))
                    .collect();
                let unattributed: Vec<String> = errors
                    .iter()
                    .filter(|e| shopify::change_index(e).is_none())
                    .map(|e| e.describe())
                    .collect();
                let summary = errors
                    .iter()
                    .map(|e| e.describe())
                    .collect::<Vec<_>>()
                    .join("; ");
                // Errors that name no change condemn the whole batch (e.g. an invalid reason).
                let rejected = if unattributed.is_empty() {
                    Some(&by_change)
                } else {
                    None
                };
                let (dead, returned) = ledger::mark_rejected(
                    &self.pool,
                    &batch,
                    rejected,
                    &summary,
                    &self.dead_letter_queue,
                )
                .await?;
                self.count_dead_letters(&dead);
                tracing::warn!(shop, batch = batch.id, error = %summary, dead_lettered = dead.len(), returned_to_pending = returned, "Shopify refused the batch");
                self.outbox_wake.notify_one();
                if returned > 0 {
                    self.wake.notify_one();
                }
            }
            CallOutcome::PreviousAttemptFailed => {
                tracing::warn!(
                    shop,
                    batch = batch.id,
                    "previous attempt with this key failed; resending under a new key"
                );
                ledger::renew_key(&self.pool, &batch, "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")
                    .await?;
            }
            CallOutcome::Transient {
                reason,
                retry_after,
                maybe_applied,
            } => {
                let uncertain = batch.uncertain_before + i32::from(maybe_applied);
                if self.past_key_retention(&batch) {
                    self.give_up(&batch, uncertain, &reason).await?;
                    return Ok(());
                }
                // A shop-wide wait from Shopify holds every call of the shop; a backoff only
                // this batch.
                let delay = retry_after.unwrap_or_else(|| self.backoff(batch.attempts));
                if let Some(wait) = retry_after {
                    self.client.pacer().block_for(wait, now);
                }
                tracing::warn!(shop, batch = batch.id, attempt = batch.attempts, maybe_applied, error = %reason, retry_in_ms = delay.as_millis() as u64, "transient failure; resending the same batch with the same key");
                ledger::schedule_resend(&self.pool, &batch, delay, &reason, maybe_applied).await?;
            }
        }
        Ok(())
    }

    /// Whether resending would reach Shopify after it forgot the key (then a resend could be
    /// applied a second time).
    fn past_key_retention(&self, batch: &Batch) -> bool {
        let sent_for = (chrono::Utc::now() - batch.first_sent_at)
            .to_std()
            .unwrap_or_default();
        sent_for > Duration::from_secs(self.settings.give_up_after_secs)
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
        let reference = batch.input["referenceDocumentUri"].as_str().unwrap_or("");
        if uncertain == 0 {
            let why = format!(
                "never applied after {} attempts (last: {last_error}); re-batched",
                batch.attempts
            );
            let (_, returned) = ledger::mark_rejected(
                &self.pool,
                batch,
                Some(&BTreeMap::new()),
                &why,
                &self.dead_letter_queue,
            )
            .await?;
            tracing::warn!(
                shop,
                batch = batch.id,
                returned_to_pending = returned,
                "batch re-formed under a new key before its key expires"
            );
            self.wake.notify_one();
            return Ok(());
        }
        let why = format!(
            "no definite answer from Shopify after {} attempts (last: {last_error}); {uncertain} of \
             them may have been applied: check the shop's adjustment history for reference \
             {reference} before replaying",
            batch.attempts,
        );
        let dead = ledger::mark_exhausted(&self.pool, batch, &why, &self.dead_letter_queue).await?;
        self.count_dead_letters(&dead);
        self.outbox_wake.notify_one();
        tracing::error!(
            shop,
            batch = batch.id,
            dead_lettered = dead.len(),
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
