//! Recording WOS transactions once, with their planned adjustments: `pending` when the item is
//! mapped, `parked` when it is not, and a reused transaction id told apart from a redelivery.
//!
//! A group of transactions (the consumer runtime's group, or one alone) is recorded in one
//! database transaction with a fixed number of statements, whatever its size: the transactions
//! in one `INSERT ... SELECT FROM unnest(...)`, the ones already recorded looked up in one
//! query, every item's mapping in one query, the adjustments in one insert.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use model::{delta::AdjustmentPlan, transaction::InventoryTransaction};
use platform::db::DbError;
use serde_json::Value;

use super::{DbResult, db, mapped};

/// What recording a transaction found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// New: its changes are `pending` (mapped item) or `parked` (no mapping yet).
    Accepted { pending: usize, parked: usize },
    /// The `(shop, transaction_id)` was recorded before with this content: a redelivery.
    Duplicate,
    /// WOS reused the id for a different transaction: the one recorded first is the
    /// transaction; this one is not applied.
    Reused(FirstUse),
}

/// The transaction an id was first recorded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstUse {
    pub kind: String,
    pub sku: String,
    pub received_at: DateTime<Utc>,
}

/// A parsed transaction to record, with what intake derived from it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub transaction: &'a InventoryTransaction,
    /// The content digest that tells a redelivery from a reused id.
    pub digest: &'a str,
    /// The message body and headers, kept for dead letters and replays.
    pub body: &'a [u8],
    pub headers: &'a Value,
    pub plan: &'a AdjustmentPlan,
}

/// Records each transaction once, and the planned changes of the new ones, in one database
/// transaction; says, in order, what became of each. Of two arrivals with the same id, the
/// first is the one recorded.
pub async fn record_transactions(pool: &Pool, arrivals: &[Arrival<'_>]) -> DbResult<Vec<Recorded>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let new = insert_transactions(&tx, arrivals).await?;

    let mut recorded: Vec<Option<Recorded>> = vec![None; arrivals.len()];
    let seen: Vec<usize> = (0..arrivals.len()).filter(|i| !new[*i]).collect();
    if !seen.is_empty() {
        let first_uses = first_uses(&tx, seen.iter().map(|i| &arrivals[*i])).await?;
        for i in seen {
            let arrival = &arrivals[i];
            let key = key_of(arrival.transaction);
            let (digest, first) = first_uses.get(&key).ok_or_else(|| {
                DbError::Config(format!(
                    "transaction `{}` of shop `{}` was neither inserted nor found",
                    key.1, key.0
                ))
            })?;
            recorded[i] = Some(if digest == arrival.digest {
                Recorded::Duplicate
            } else {
                Recorded::Reused(first.clone())
            });
        }
    }

    let accepted: Vec<&Arrival> = (0..arrivals.len())
        .filter(|i| new[*i])
        .map(|i| &arrivals[i])
        .collect();
    let mappings = current_mappings(&tx, &accepted).await?;
    let counts = insert_adjustments(&tx, &accepted, &mappings).await?;
    tx.commit().await.map_err(db)?;

    let mut counts = counts.into_iter();
    Ok(recorded
        .into_iter()
        .map(|found| found.unwrap_or_else(|| counts.next().unwrap_or(Recorded::Duplicate)))
        .collect())
}

type Key = (String, String);

fn key_of(transaction: &InventoryTransaction) -> Key {
    (
        transaction.shop_domain.clone(),
        transaction.transaction_id.clone(),
    )
}

/// Inserts the transactions not recorded yet; says for each arrival whether it was inserted
/// (the first of a repeated id with this content is; later ones are not).
async fn insert_transactions<C: GenericClient>(
    client: &C,
    arrivals: &[Arrival<'_>],
) -> DbResult<Vec<bool>> {
    let shops: Vec<&str> = arrivals
        .iter()
        .map(|a| a.transaction.shop_domain.as_str())
        .collect();
    let ids: Vec<&str> = arrivals
        .iter()
        .map(|a| a.transaction.transaction_id.as_str())
        .collect();
    let kinds: Vec<&str> = arrivals
        .iter()
        .map(|a| a.transaction.kind.type_name())
        .collect();
    let skus: Vec<&str> = arrivals
        .iter()
        .map(|a| a.transaction.sku.as_str())
        .collect();
    let occurred: Vec<DateTime<Utc>> = arrivals
        .iter()
        .map(|a| a.transaction.occurred_at.to_utc())
        .collect();
    let digests: Vec<&str> = arrivals.iter().map(|a| a.digest).collect();
    let bodies: Vec<&[u8]> = arrivals.iter().map(|a| a.body).collect();
    let headers: Vec<&Value> = arrivals.iter().map(|a| a.headers).collect();
    // `WITH ORDINALITY ... ORDER BY`: of two rows with one id, the first is inserted.
    let rows = client
        .query(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body, headers) \
             SELECT shop_domain, transaction_id, kind, sku, occurred_at, content_digest, body, \
                 headers \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                 $6::text[], $7::bytea[], $8::jsonb[]) WITH ORDINALITY \
                 AS t(shop_domain, transaction_id, kind, sku, occurred_at, content_digest, body, \
                     headers, n) \
             ORDER BY n \
             ON CONFLICT DO NOTHING \
             RETURNING shop_domain, transaction_id, content_digest",
            &[
                &shops, &ids, &kinds, &skus, &occurred, &digests, &bodies, &headers,
            ],
        )
        .await
        .map_err(db)?;
    let mut inserted: BTreeSet<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    Ok(arrivals
        .iter()
        .map(|a| {
            let (shop, id) = key_of(a.transaction);
            inserted.remove(&(shop, id, a.digest.to_owned()))
        })
        .collect())
}

/// The recorded content digest and first use of each of these transactions' ids.
async fn first_uses<'a, C: GenericClient>(
    client: &C,
    arrivals: impl Iterator<Item = &'a Arrival<'a>>,
) -> DbResult<BTreeMap<Key, (String, FirstUse)>> {
    let (shops, ids): (Vec<&str>, Vec<&str>) = arrivals
        .map(|a| {
            (
                a.transaction.shop_domain.as_str(),
                a.transaction.transaction_id.as_str(),
            )
        })
        .unzip();
    let rows = client
        .query(
            "SELECT w.shop_domain, w.transaction_id, w.content_digest, w.kind, w.sku, \
                 w.received_at \
             FROM wos_transactions w \
             JOIN unnest($1::text[], $2::text[]) AS k(shop_domain, transaction_id) \
                 USING (shop_domain, transaction_id)",
            &[&shops, &ids],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                (row.get(0), row.get(1)),
                (
                    row.get(2),
                    FirstUse {
                        kind: row.get(3),
                        sku: row.get(4),
                        received_at: row.get(5),
                    },
                ),
            )
        })
        .collect())
}

/// The current `inventory_item_id` of every item the transactions name that is mapped to a
/// Shopify inventory item, in one query.
async fn current_mappings<C: GenericClient>(
    client: &C,
    accepted: &[&Arrival<'_>],
) -> DbResult<BTreeMap<(String, String), i64>> {
    let wanted: BTreeSet<(&str, &str)> = accepted
        .iter()
        .map(|a| {
            (
                a.transaction.shop_domain.as_str(),
                a.transaction.sku.as_str(),
            )
        })
        .collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (shops, skus): (Vec<&str>, Vec<&str>) = wanted.into_iter().unzip();
    let rows = client
        .query(
            "SELECT i.shop_domain, i.sku, i.inventory_item_id FROM items i \
             JOIN unnest($1::text[], $2::text[]) AS k(shop_domain, sku) USING (shop_domain, sku)",
            &[&shops, &skus],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let (shop, sku): (String, String) = (row.get(0), row.get(1));
            let item = mapped(&shop, &sku, row.get(2))?;
            Some(((shop, sku), item))
        })
        .collect())
}

/// Inserts the planned changes of the accepted transactions, `pending` where the item is
/// mapped and `parked` where not; says, per transaction, how many of each.
async fn insert_adjustments<C: GenericClient>(
    client: &C,
    accepted: &[&Arrival<'_>],
    mappings: &BTreeMap<(String, String), i64>,
) -> DbResult<Vec<Recorded>> {
    let mut rows = AdjustmentRows::default();
    let mut counts = Vec::with_capacity(accepted.len());
    for arrival in accepted {
        let transaction = arrival.transaction;
        let item = mappings
            .get(&(transaction.shop_domain.clone(), transaction.sku.clone()))
            .copied();
        let state = if item.is_some() { "pending" } else { "parked" };
        for change in &arrival.plan.changes {
            rows.shops.push(&transaction.shop_domain);
            rows.ids.push(&transaction.transaction_id);
            rows.kinds.push(transaction.kind.type_name());
            rows.skus.push(&transaction.sku);
            rows.locations.push(id_param(change.location.0)?);
            rows.deltas.push(change.delta);
            rows.reasons.push(change.reason.as_str());
            rows.occurred.push(transaction.occurred_at.to_utc());
            rows.states.push(state);
            rows.items.push(item);
        }
        let changes = arrival.plan.changes.len();
        counts.push(match item {
            Some(_) => Recorded::Accepted {
                pending: changes,
                parked: 0,
            },
            None => Recorded::Accepted {
                pending: 0,
                parked: changes,
            },
        });
    }
    if !rows.shops.is_empty() {
        client
            .execute(
                "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, \
                     delta, reason, occurred_at, state, inventory_item_id) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::bigint[], $6::bigint[], $7::text[], $8::timestamptz[], $9::text[], \
                     $10::bigint[])",
                &[
                    &rows.shops,
                    &rows.ids,
                    &rows.kinds,
                    &rows.skus,
                    &rows.locations,
                    &rows.deltas,
                    &rows.reasons,
                    &rows.occurred,
                    &rows.states,
                    &rows.items,
                ],
            )
            .await
            .map_err(db)?;
    }
    Ok(counts)
}

/// The columns of the adjustments to insert, one array per column (for `unnest`).
#[derive(Default)]
struct AdjustmentRows<'a> {
    shops: Vec<&'a str>,
    ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    skus: Vec<&'a str>,
    locations: Vec<i64>,
    deltas: Vec<i64>,
    reasons: Vec<&'a str>,
    occurred: Vec<DateTime<Utc>>,
    states: Vec<&'a str>,
    items: Vec<Option<i64>>,
}

fn id_param(id: u64) -> DbResult<i64> {
    i64::try_from(id).map_err(|_| DbError::Config(format!("id {id} does not fit a bigint")))
}
