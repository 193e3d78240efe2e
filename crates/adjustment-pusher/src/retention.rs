//! The pusher's retention job: settled work pruned in committed chunks
//! (`platform::retention`, windows in `[retention]`).
//!
//! - A WOS transaction whose every adjustment was pushed (or discarded by `wos-sync dlq
//!   purge`), or that had none, goes `transactions_days` after its last change: the
//!   `wos_transactions` row with its full body, its adjustments and its `dead_letter_replays`
//!   records, in one transaction per chunk. Until then a copy of it (WOS publishing again, a
//!   broker redelivery, a replayed dead letter) is recognised as a duplicate; afterwards it
//!   would be taken in as new, which is why the window is counted from the transaction's last
//!   change and outlasts every redelivery (`docs/architecture.md`, "Retention").
//! - A transaction with an adjustment still parked, pending, batched or dead is kept whatever
//!   its age: that is work, or a dead letter waiting for the operator.
//! - A settled push batch (applied or failed) goes once it is older than the window and no
//!   adjustment refers to it any more (a dead adjustment keeps the batch that refused it).
//! - The outbox rows the pusher writes are dead letters: never pruned.
//!
//! Transactions and batches are walked with a cursor, oldest first, so the rows that must stay
//! are looked at once per pass, not once per chunk.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use platform::{
    db::DbError,
    retention::{Pruned, RetentionJob, RetentionSettings},
    shutdown::CancellationToken,
};

/// The adjustment-pusher's [`RetentionJob`].
#[derive(Debug, Clone)]
pub struct PusherRetention {
    pub pool: Pool,
    pub settings: RetentionSettings,
}

impl RetentionJob for PusherRetention {
    async fn prune(&self, shutdown: &CancellationToken) -> Result<Pruned, DbError> {
        let mut pruned = Pruned::default();
        self.prune_settled_transactions(shutdown, &mut pruned)
            .await?;
        pruned.add("push_batches", self.prune_settled_batches(shutdown).await?);
        Ok(pruned)
    }
}

impl PusherRetention {
    async fn prune_settled_transactions(
        &self,
        shutdown: &CancellationToken,
        pruned: &mut Pruned,
    ) -> Result<(), DbError> {
        let window = self.settings.transactions().as_secs_f64();
        let chunk = self.settings.chunk();
        let mut cursor: Option<(DateTime<Utc>, String, String)> = None;
        while !shutdown.is_cancelled() {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let (after_at, after_shop, after_id) = match &cursor {
                Some((at, shop, id)) => (Some(*at), Some(shop.as_str()), Some(id.as_str())),
                None => (None, None, None),
            };
            let candidates = tx
                .query(
                    "SELECT received_at, shop_domain, transaction_id FROM wos_transactions \
                     WHERE received_at < now() - make_interval(secs => $1) \
                       AND ($2::timestamptz IS NULL \
                            OR (received_at, shop_domain, transaction_id) > ($2, $3, $4)) \
                     ORDER BY received_at, shop_domain, transaction_id LIMIT $5",
                    &[&window, &after_at, &after_shop, &after_id, &chunk],
                )
                .await?;
            let (shops, ids): (Vec<String>, Vec<String>) = candidates
                .iter()
                .map(|row| (row.get::<_, String>(1), row.get::<_, String>(2)))
                .unzip();
            // Settled and quiet for the whole window; a row another transaction holds (intake
            // taking a copy in, a replay) is left for the next pass.
            let doomed = tx
                .query(
                    "SELECT t.shop_domain, t.transaction_id FROM wos_transactions t \
                     JOIN unnest($1::text[], $2::text[]) AS c (shop_domain, transaction_id) \
                         ON t.shop_domain = c.shop_domain AND t.transaction_id = c.transaction_id \
                     WHERE t.received_at < now() - make_interval(secs => $3) \
                       AND NOT EXISTS ( \
                           SELECT 1 FROM adjustments a \
                           WHERE a.shop_domain = t.shop_domain \
                             AND a.transaction_id = t.transaction_id \
                             AND (a.state NOT IN ('pushed', 'discarded') \
                                  OR a.updated_at >= now() - make_interval(secs => $3))) \
                     FOR UPDATE OF t SKIP LOCKED",
                    &[&shops, &ids, &window],
                )
                .await?;
            let (shops, ids): (Vec<String>, Vec<String>) = doomed
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
                .unzip();
            for table in ["adjustments", "dead_letter_replays", "wos_transactions"] {
                let deleted = tx
                    .execute(
                        &format!(
                            "DELETE FROM {table} x \
                             USING unnest($1::text[], $2::text[]) AS d (shop_domain, transaction_id) \
                             WHERE x.shop_domain = d.shop_domain \
                               AND x.transaction_id = d.transaction_id"
                        ),
                        &[&shops, &ids],
                    )
                    .await?;
                pruned.add(table, deleted);
            }
            tx.commit().await?;
            match candidates.last() {
                Some(last) if candidates.len() as i64 == chunk => {
                    cursor = Some((last.get(0), last.get(1), last.get(2)));
                }
                _ => break,
            }
        }
        Ok(())
    }

    async fn prune_settled_batches(&self, shutdown: &CancellationToken) -> Result<u64, DbError> {
        let window = self.settings.transactions().as_secs_f64();
        let chunk = self.settings.chunk();
        let mut cursor: Option<(DateTime<Utc>, i64)> = None;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let client = self.pool.get().await?;
            let (after_at, after_id) = cursor.unzip();
            let candidates = client
                .query(
                    "SELECT completed_at, id FROM push_batches \
                     WHERE state <> 'open' AND completed_at < now() - make_interval(secs => $1) \
                       AND ($2::timestamptz IS NULL OR (completed_at, id) > ($2, $3)) \
                     ORDER BY completed_at, id LIMIT $4",
                    &[&window, &after_at, &after_id, &chunk],
                )
                .await?;
            let ids: Vec<i64> = candidates.iter().map(|row| row.get(1)).collect();
            total += client
                .execute(
                    "DELETE FROM push_batches b WHERE b.id = ANY($1) AND b.state <> 'open' \
                       AND NOT EXISTS (SELECT 1 FROM adjustments a WHERE a.batch_id = b.id)",
                    &[&ids],
                )
                .await?;
            match candidates.last() {
                Some(last) if candidates.len() as i64 == chunk => {
                    cursor = Some((last.get(0), last.get(1)));
                }
                _ => break,
            }
        }
        Ok(total)
    }
}
