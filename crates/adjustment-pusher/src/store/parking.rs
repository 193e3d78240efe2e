//! Parked adjustments: released (in committed chunks) when their item gets a mapping, expired to
//! the dead letters (as `unmapped`) after the shop's parking window, and counted per shop.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::{GenericClient, Pool};
use platform::amqp::copies::ErrorKind;

use super::{DbResult, MAPPED, db, dead_letter};

/// Releases the parked adjustments of `(shop, sku)` to the inventory item mapped now, in
/// chunks of `chunk` rows that each commit. Returns how many were released (0 while the item is
/// still unmapped).
pub async fn release_parked(pool: &Pool, shop: &str, sku: &str, chunk: i64) -> DbResult<u64> {
    let mut released = 0;
    loop {
        let rows = release_chunk(pool, Some((shop, sku)), chunk).await?;
        released += rows.len() as u64;
        if (rows.len() as i64) < chunk {
            return Ok(released);
        }
    }
}

/// Releases every parked adjustment whose item has a mapping now (announcements that were
/// missed: the pusher was down, or no queue was bound yet), in chunks of `chunk` rows that each
/// commit, so a backlog of any size goes through without one statement holding it all.
/// Returns the shops with released work.
pub async fn release_all_mapped(pool: &Pool, chunk: i64) -> DbResult<BTreeSet<String>> {
    let mut shops = BTreeSet::new();
    loop {
        let rows = release_chunk(pool, None, chunk).await?;
        let full = rows.len() as i64 >= chunk;
        shops.extend(rows);
        if !full {
            return Ok(shops);
        }
    }
}

/// One chunk of [`release_all_mapped`] (or of one SKU's release): up to `chunk` parked rows
/// whose item is mapped, skipping rows another transaction holds. Returns their shops.
async fn release_chunk(
    pool: &Pool,
    sku: Option<(&str, &str)>,
    chunk: i64,
) -> DbResult<Vec<String>> {
    let client = pool.get().await?;
    let (shop, sku) = sku.unzip();
    let rows = client
        .query(
            &format!(
                "WITH chunk AS ( \
                     SELECT a.id, i.inventory_item_id AS item FROM adjustments a \
                     JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
                     WHERE a.state = 'parked' AND {MAPPED} \
                       AND ($2::text IS NULL OR (a.shop_domain = $2 AND a.sku = $3)) \
                     LIMIT $1 FOR UPDATE OF a SKIP LOCKED) \
                 UPDATE adjustments a SET state = 'pending', inventory_item_id = chunk.item, \
                     updated_at = now() \
                 FROM chunk WHERE a.id = chunk.id RETURNING a.shop_domain"
            ),
            &[&chunk, &shop, &sku],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Dead-letters (as `unmapped`) every adjustment parked longer than `max_age`, a chunk of at
/// most `chunk` transactions per database transaction. Returns the dead-lettered transactions
/// as `(shop, type)`.
pub async fn expire_parked(
    pool: &Pool,
    max_age: std::time::Duration,
    dlq: &str,
    chunk: i64,
) -> DbResult<Vec<(String, String)>> {
    let mut dead = Vec::new();
    loop {
        let expired = expire_chunk(pool, max_age, dlq, chunk).await?;
        if expired.is_empty() {
            return Ok(dead);
        }
        dead.extend(expired);
    }
}

async fn expire_chunk(
    pool: &Pool,
    max_age: std::time::Duration,
    dlq: &str,
    chunk: i64,
) -> DbResult<Vec<(String, String)>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let seconds = max_age.as_secs_f64();
    // Whole transactions (a move parks two adjustments): each is dead-lettered once.
    let rows = tx
        .query(
            "WITH doomed AS ( \
                 SELECT DISTINCT shop_domain, transaction_id FROM ( \
                     SELECT shop_domain, transaction_id FROM adjustments \
                     WHERE state = 'parked' AND created_at < now() - make_interval(secs => $1) \
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) oldest) \
             UPDATE adjustments a SET state = 'dead', updated_at = now(), \
                 error = 'no Shopify inventory item mapped within the parking age' \
             FROM doomed d \
             WHERE a.shop_domain = d.shop_domain AND a.transaction_id = d.transaction_id \
               AND a.state = 'parked' \
             RETURNING a.shop_domain, a.transaction_id",
            &[&seconds, &chunk],
        )
        .await
        .map_err(db)?;
    let transactions: BTreeSet<(String, String)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let days = max_age.as_secs_f64() / 86_400.0;
    let mut dead = Vec::new();
    for (shop, transaction_id) in &transactions {
        let reason =
            format!("item has no Shopify inventory item mapping after {days:.2} days parked");
        let kind = dead_letter(
            &tx,
            shop,
            transaction_id,
            ErrorKind::Unmapped,
            &reason,
            1,
            dlq,
        )
        .await?;
        dead.push((shop.clone(), kind));
    }
    tx.commit().await.map_err(db)?;
    Ok(dead)
}

/// Parked adjustments per shop (`wos_sync_parked_adjustments`).
pub async fn parked_counts(pool: &Pool) -> DbResult<BTreeMap<String, i64>> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT shop_domain, count(*) FROM adjustments WHERE state = 'parked' GROUP BY shop_domain", &[])
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
