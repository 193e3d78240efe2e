//! What Shopify's answer does to a batch and its adjustments: applied, refused (each error to the
//! adjustments behind its change), exhausted (outcome unknown, given up), resent under the same
//! key later, or a fresh key after a failed earlier attempt. Each settles the batch only while
//! it is still open under the key it was claimed with.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::batch::Refusal;
use platform::amqp::copies::ErrorKind;

use super::{Batch, DbResult, MAPPED, db, dead_letter};

/// Closes the batch row (applied or failed) if it is still open under the key `batch` was
/// claimed with; `false` when another replica (or a later claim) has already moved on: the
/// caller then does nothing.
async fn close_batch(
    tx: &Transaction<'_>,
    batch: &Batch,
    state: &str,
    group_id: Option<&str>,
    error: Option<&str>,
) -> DbResult<bool> {
    let updated = tx
        .execute(
            "UPDATE push_batches SET state = $3, adjustment_group_id = $4, \
                 last_error = coalesce($5, last_error), completed_at = now(), lease_until = NULL \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[&batch.id, &batch.idempotency_key, &state, &group_id, &error],
        )
        .await
        .map_err(db)?;
    Ok(updated == 1)
}

/// An adjustment Shopify acknowledged, for metrics.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
}

/// Shopify applied the batch: it and its adjustments are done. Empty when the batch was
/// already settled by someone else (nothing is written then).
pub async fn mark_applied(
    pool: &Pool,
    batch: &Batch,
    group_id: &str,
) -> DbResult<Vec<Acknowledged>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !close_batch(&tx, batch, "applied", Some(group_id), None).await? {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "UPDATE adjustments SET state = 'pushed', updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched' RETURNING kind, occurred_at",
            &[&batch.id],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(rows
        .iter()
        .map(|row| Acknowledged {
            kind: row.get(0),
            occurred_at: row.get(1),
        })
        .collect())
}

/// What a refusal did to a batch's adjustments.
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// Types of the dead-lettered transactions.
    pub dead: Vec<String>,
    /// Adjustments back to pending (a new batch, a new key).
    pub returned: usize,
    /// Of those, adjustments to be sent alone.
    pub isolated: usize,
}

/// Shopify refused the batch (nothing applied): each error goes to the adjustments behind the
/// change it names (`model::batch::settle_refusal`, on the list stored with the batch). Those
/// are dead-lettered as `rejected` with Shopify's reason, or sent alone when Shopify refused a
/// sum, or sent to their item's new inventory item when its mapping moved since the batch was
/// formed; the others go back to pending, to be sent in a new batch under a new key. With no
/// errors at all (a batch given up before its key expires, never applied) everything goes back.
pub async fn mark_refused(
    pool: &Pool,
    batch: &Batch,
    errors: &[Refusal],
    summary: &str,
    dlq: &str,
) -> DbResult<Refused> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !close_batch(&tx, batch, "failed", None, Some(summary)).await? {
        return Ok(Refused::default());
    }
    // Adjustments whose item is mapped elsewhere (or nowhere) now than when the batch formed.
    let moved: BTreeSet<i64> = tx
        .query(
            &format!(
                "SELECT a.id FROM adjustments a \
                 LEFT JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
                 WHERE a.batch_id = $1 AND a.state = 'batched' \
                   AND (NOT coalesce({MAPPED}, false) \
                        OR i.inventory_item_id IS DISTINCT FROM a.inventory_item_id)"
            ),
            &[&batch.id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut outcome = model::batch::settle_refusal(&batch.changes, errors, &moved);
    if let Some(reason) = outcome.condemned.take() {
        // Every adjustment of the batch, listed or not.
        let all: Vec<i64> = tx
            .query(
                "SELECT id FROM adjustments WHERE batch_id = $1 AND state = 'batched'",
                &[&batch.id],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        outcome.dead = all.into_iter().map(|id| (id, reason.clone())).collect();
    }
    let (dead_ids, reasons): (Vec<i64>, Vec<String>) = outcome.dead.iter().cloned().unzip();
    let dead_rows = tx
        .query(
            "UPDATE adjustments a SET state = 'dead', error = u.reason, updated_at = now() \
             FROM unnest($2::bigint[], $3::text[]) AS u(id, reason) \
             WHERE a.id = u.id AND a.batch_id = $1 AND a.state = 'batched' \
             RETURNING a.shop_domain, a.transaction_id, u.reason",
            &[&batch.id, &dead_ids, &reasons],
        )
        .await
        .map_err(db)?;
    let isolated = tx
        .execute(
            "UPDATE adjustments SET state = 'pending', batch_id = NULL, solo = true, \
                 updated_at = now() \
             WHERE id = ANY($2) AND batch_id = $1 AND state = 'batched'",
            &[&batch.id, &outcome.isolate],
        )
        .await
        .map_err(db)?;
    // The rest of the batch, including adjustments no change lists (batches formed before
    // the lists were stored, sums that cancelled out there), goes back.
    let returned = tx
        .execute(
            "UPDATE adjustments SET state = 'pending', batch_id = NULL, updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched'",
            &[&batch.id],
        )
        .await
        .map_err(db)?;
    let mut dead: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in &dead_rows {
        dead.entry((row.get(0), row.get(1))).or_insert(row.get(2));
    }
    let attempts = u32::try_from(batch.attempts).unwrap_or(1);
    let mut kinds = Vec::new();
    for ((shop, transaction), reason) in &dead {
        kinds.push(
            dead_letter(
                &tx,
                shop,
                transaction,
                ErrorKind::Rejected,
                reason,
                attempts,
                dlq,
            )
            .await?,
        );
    }
    tx.commit().await.map_err(db)?;
    Ok(Refused {
        dead: kinds,
        returned: (returned + isolated) as usize,
        isolated: isolated as usize,
    })
}

/// The batch's outcome is unknown and it will not be retried any more: its adjustments are
/// dead-lettered as `exhausted`.
/// Returns the types of the dead-lettered transactions.
pub async fn mark_exhausted(
    pool: &Pool,
    batch: &Batch,
    reason: &str,
    dlq: &str,
) -> DbResult<Vec<String>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !close_batch(&tx, batch, "failed", None, Some(reason)).await? {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "UPDATE adjustments SET state = 'dead', error = $2, updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched' RETURNING shop_domain, transaction_id",
            &[&batch.id, &reason],
        )
        .await
        .map_err(db)?;
    let transactions: BTreeSet<(String, String)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let attempts = u32::try_from(batch.attempts).unwrap_or(1);
    let mut kinds = Vec::new();
    for (shop, transaction) in &transactions {
        kinds.push(
            dead_letter(
                &tx,
                shop,
                transaction,
                ErrorKind::Exhausted,
                reason,
                attempts,
                dlq,
            )
            .await?,
        );
    }
    tx.commit().await.map_err(db)?;
    Ok(kinds)
}

/// The batch will be resent unchanged (same key) no earlier than `delay` from now.
/// `applied_maybe` false: Shopify refused this attempt before running it, so it no longer
/// counts as uncertain.
pub async fn schedule_resend(
    pool: &Pool,
    batch: &Batch,
    delay: std::time::Duration,
    error: &str,
    applied_maybe: bool,
) -> DbResult<()> {
    let client = pool.get().await?;
    let settled = i32::from(!applied_maybe);
    client
        .execute(
            "UPDATE push_batches SET not_before = now() + make_interval(secs => $3), \
                 lease_until = NULL, last_error = $4, uncertain_attempts = uncertain_attempts - $5 \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[
                &batch.id,
                &batch.idempotency_key,
                &delay.as_secs_f64(),
                &error,
                &settled,
            ],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Shopify said an earlier attempt under this key failed without applying anything: the same
/// variables go again under a new key. Fenced on the failed key, so replicas acting on the same
/// answer renew once; nothing sent under the old key counts as uncertain any more.
pub async fn renew_key(pool: &Pool, batch: &Batch, error: &str) -> DbResult<()> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE push_batches SET idempotency_key = $3, lease_until = NULL, last_error = $4, \
                 uncertain_attempts = 0, first_sent_at = NULL \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[
                &batch.id,
                &batch.idempotency_key,
                &uuid::Uuid::new_v4().to_string(),
                &error,
            ],
        )
        .await
        .map_err(db)?;
    Ok(())
}
