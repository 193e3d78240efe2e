//! A persisted batch and its claim: the shop's oldest open batch, leased to one sender, and the
//! check right before the call that the claim and the idempotency key still hold.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use model::batch::Change;
use platform::trace::TraceParent;
use serde_json::Value;

use super::{DbResult, db};

/// A batch as persisted, ready to (re)send.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: i64,
    /// The key this claim sends with; outcome writes are fenced on it (a replica acting on a
    /// stale claim changes nothing).
    pub idempotency_key: String,
    /// The mutation's `input`, exactly as first sent.
    pub input: Value,
    /// The adjustments behind each change of `input.changes`, by index.
    pub changes: Vec<Change>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When the batch was first sent under its key (this claim's time for a fresh batch).
    pub first_sent_at: DateTime<Utc>,
    /// Earlier attempts that may have been applied (sent without a definite answer).
    pub uncertain_before: i32,
    /// The key was first sent longer ago than the pusher may resend it (Shopify keeps keys
    /// 24 h), by PostgreSQL's clock, the one that stamped `first_sent_at`.
    pub key_expired: bool,
    /// The trace the batch is pushed under (the same on every resend).
    pub trace: TraceParent,
    /// The trace ids of the transactions whose adjustments it carries.
    pub source_trace_ids: Vec<String>,
}

impl Batch {
    /// `wos-sync://push-batch/<shop>/<id>`, what its adjustment group is found by in Shopify.
    pub fn reference(&self) -> &str {
        self.input["referenceDocumentUri"].as_str().unwrap_or("")
    }
}

/// Claims the shop's oldest open batch that is due and not leased by another sender. `give_up`
/// is how long after its first send a key may still be sent.
pub async fn claim_open_batch(
    pool: &Pool,
    shop: &str,
    lease: std::time::Duration,
    give_up: std::time::Duration,
) -> DbResult<Option<Batch>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            // Counted as uncertain before it is sent: a crash after sending must not let the
            // batch pass for never sent. A definite "not applied" answer takes it back.
            "UPDATE push_batches SET lease_until = now() + make_interval(secs => $2), \
                 attempts = attempts + 1, uncertain_attempts = uncertain_attempts + 1, \
                 first_sent_at = coalesce(first_sent_at, now()) \
             WHERE id = (SELECT id FROM push_batches \
                         WHERE shop_domain = $1 AND state = 'open' AND not_before <= now() \
                           AND (lease_until IS NULL OR lease_until < now()) \
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, idempotency_key, variables, changes, attempts, created_at, \
                 first_sent_at, uncertain_attempts - 1, \
                 first_sent_at < now() - make_interval(secs => $3), traceparent, \
                 source_trace_ids",
            &[&shop, &lease.as_secs_f64(), &give_up.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|row| {
        let id: i64 = row.get(0);
        let changes: Value = row.get(3);
        Batch {
            id,
            idempotency_key: row.get(1),
            input: row.get(2),
            changes: serde_json::from_value(changes).unwrap_or_else(|err| {
                // Then no error Shopify gives can be attributed: a refusal condemns the batch.
                tracing::error!(batch = id, error = %err, "unreadable push_batches.changes");
                Vec::new()
            }),
            attempts: row.get(4),
            created_at: row.get(5),
            first_sent_at: row.get(6),
            uncertain_before: row.get(7),
            key_expired: row.get(8),
            // Batches formed before traces were recorded have none: they get one now.
            trace: row
                .get::<_, Option<&str>>(9)
                .and_then(|value| TraceParent::parse(value).ok())
                .unwrap_or_else(TraceParent::new_root),
            source_trace_ids: row.get(10),
        }
    }))
}

/// Whether a claimed batch may go out now, checked right before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sendable {
    Yes,
    /// Its key was first sent too long ago by now (the process was paused since the claim).
    KeyExpired,
    /// The claim is no longer ours (the lease ran out and another sender took it, or it was
    /// settled meanwhile): do nothing with it.
    NotOurs,
}

/// Checks, by PostgreSQL's clock, that the claim still holds and the key is still young
/// enough to send: a process paused between its claim and its call must not send a key Shopify
/// may have forgotten, nor a batch another replica is sending.
pub async fn sendable(
    pool: &Pool,
    batch: &Batch,
    give_up: std::time::Duration,
) -> DbResult<Sendable> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT lease_until > now(), first_sent_at < now() - make_interval(secs => $3) \
             FROM push_batches WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[&batch.id, &batch.idempotency_key, &give_up.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    Ok(match row {
        None => Sendable::NotOurs,
        Some(row) if !row.get::<_, Option<bool>>(0).unwrap_or(false) => Sendable::NotOurs,
        Some(row) if row.get::<_, Option<bool>>(1).unwrap_or(true) => Sendable::KeyExpired,
        Some(_) => Sendable::Yes,
    })
}

/// Which of `shops` have work a step could do now: an open batch due and not leased, or pending
/// adjustments and a free slot (fewer than `slots` open batches). One query for all of them
/// (index probes per shop), so resting shops cost one statement per poll together.
///
/// The pending probe is written like `read_window`'s scan: the shop a range, ordered by
/// `(shop, id)`, an order only `adjustments_pending` gives. With statistics taken while a backlog
/// was all pending, a plain `EXISTS` is planned as a sequential scan of `adjustments` per shop,
/// and `shop = s ... ORDER BY id` as a walk of the primary key per shop (37 s and 25 s for 1,000
/// shops next to a 100,000-row backlog, past the statement timeout; 41 ms this way).
pub async fn shops_with_due_work(
    pool: &Pool,
    shops: &[String],
    slots: u16,
) -> DbResult<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT s FROM unnest($1::text[]) AS s \
             WHERE EXISTS (SELECT 1 FROM push_batches b \
                           WHERE b.shop_domain = s AND b.state = 'open' AND b.not_before <= now() \
                             AND (b.lease_until IS NULL OR b.lease_until < now())) \
                OR ((SELECT a.id FROM adjustments a \
                     WHERE a.shop_domain >= s AND a.shop_domain <= s AND a.state = 'pending' \
                     ORDER BY a.shop_domain, a.id LIMIT 1) IS NOT NULL \
                    AND (SELECT count(*) FROM push_batches b \
                         WHERE b.shop_domain = s AND b.state = 'open') < $2)",
            &[&shops, &i64::from(slots)],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
