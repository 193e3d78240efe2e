//! Variant reads: the variants an event could not detail (beyond the 100 a webhook carries),
//! queued, claimed by `crate::refresh`, and Shopify's answers applied like an event.

use std::collections::BTreeMap;

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    catalog::{CatalogChange, FetchedVariant, RefreshRequest, apply_fetched},
    config::ShopSettings,
    ids::{ProductId, VariantId},
};

use super::{
    IngestError, IngestReport, apply_change, db_id, from_db, load_product_variants, lock,
    lock_conflicts,
};

/// The product's refreshes not done yet.
pub(super) async fn load_pending_refreshes(
    tx: &Transaction<'_>,
    shop: &str,
    product: i64,
) -> Result<Vec<RefreshRequest>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT variant_id, listed_at FROM variant_refreshes \
             WHERE shop_domain = $1 AND product_id = $2",
            &[&shop, &product],
        )
        .await?
        .iter()
        .map(|row| RefreshRequest {
            variant_id: VariantId(from_db(row.get(0))),
            product_id: ProductId(from_db(product)),
            listed_at: row.get(1),
        })
        .collect())
}

/// Records the refreshes `change` asks for (a newer listing asks again: a new generation) and
/// removes the ones it completes.
pub(super) async fn write_refreshes(
    tx: &Transaction<'_>,
    shop: &str,
    change: &CatalogChange,
) -> Result<(), IngestError> {
    if !change.refreshed.is_empty() {
        let done = change
            .refreshed
            .iter()
            .map(|id| db_id(id.0, "variant id"))
            .collect::<Result<Vec<_>, _>>()?;
        tx.execute(
            "DELETE FROM variant_refreshes WHERE shop_domain = $1 AND variant_id = ANY($2)",
            &[&shop, &done],
        )
        .await?;
    }
    for request in &change.refresh {
        tx.execute(
            "INSERT INTO variant_refreshes (shop_domain, variant_id, product_id, listed_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (shop_domain, variant_id) DO UPDATE SET \
                 listed_at = GREATEST(variant_refreshes.listed_at, EXCLUDED.listed_at), \
                 generation = EXCLUDED.generation, requested_at = now(), \
                 next_attempt_at = now()",
            &[
                &shop,
                &db_id(request.variant_id.0, "variant id")?,
                &db_id(request.product_id.0, "product id")?,
                &request.listed_at,
            ],
        )
        .await?;
    }
    Ok(())
}

/// A refresh claimed by this process (leased until it is done or fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedRefresh {
    pub request: RefreshRequest,
    generation: i64,
}

/// Claims up to `limit` due refreshes of `shop` for `lease` (replicas claim disjoint rows; a
/// claim left by a crash is taken again once its lease ends).
pub async fn claim_refreshes(
    pool: &Pool,
    shop: &str,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedRefresh>, IngestError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE variant_refreshes r SET leased_until = now() + make_interval(secs => $3) \
             WHERE (r.shop_domain, r.variant_id) IN ( \
                 SELECT shop_domain, variant_id FROM variant_refreshes \
                 WHERE shop_domain = $1 AND next_attempt_at <= now() \
                     AND (leased_until IS NULL OR leased_until < now()) \
                 ORDER BY next_attempt_at, variant_id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING r.variant_id, r.product_id, r.listed_at, r.generation",
            &[&shop, &limit, &lease.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ClaimedRefresh {
            request: RefreshRequest {
                variant_id: VariantId(from_db(row.get(0))),
                product_id: ProductId(from_db(row.get(1))),
                listed_at: row.get(2),
            },
            generation: row.get(3),
        })
        .collect())
}

/// Records a failed read of `claimed`: retried later, with a backoff doubling per attempt up to
/// five minutes; the SKUs they hold are listed as conflicts meanwhile.
pub async fn refresh_failed(
    pool: &Pool,
    shop: &str,
    claimed: &[ClaimedRefresh],
    error: &str,
) -> Result<(), IngestError> {
    let ids = claimed_ids(claimed)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE variant_refreshes SET attempts = attempts + 1, last_error = $3, \
             leased_until = NULL, \
             next_attempt_at = now() + make_interval(secs => least(300, 2 ^ least(attempts, 9))) \
         WHERE shop_domain = $1 AND variant_id = ANY($2)",
        &[&shop, &ids, &error],
    )
    .await?;
    lock_conflicts(&tx, shop, false).await?;
    tx.execute(
        "INSERT INTO sku_conflicts (shop_domain, sku, reason) \
         SELECT v.shop_domain, v.sku, 'awaiting_shopify' FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.variant_id = ANY($2) AND NOT v.deleted \
             AND v.sku IS NOT NULL \
         ON CONFLICT DO NOTHING",
        &[&shop, &ids],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn claimed_ids(claimed: &[ClaimedRefresh]) -> Result<Vec<i64>, IngestError> {
    claimed
        .iter()
        .map(|c| db_id(c.request.variant_id.0, "variant id"))
        .collect()
}

/// What applying Shopify's answers did.
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// Requests completed (read, found gone, or covered by newer state meanwhile).
    pub done: usize,
    /// Requests asked again by a newer listing while they were read: read again.
    pub superseded: usize,
    pub items: IngestReport,
}

/// Applies Shopify's answers for `claimed` (`answers[id]`: `None` when Shopify has no such
/// variant), one transaction per product under the same locks as a webhook: the mirror, the
/// SKUs the variants carried and carry, the items, the announcements. A request asked again
/// since it was claimed (a newer generation) is left for the next read.
pub async fn apply_refreshes(
    pool: &Pool,
    shop: &ShopSettings,
    claimed: &[ClaimedRefresh],
    answers: &BTreeMap<VariantId, Option<FetchedVariant>>,
    announce_exchange: &str,
) -> Result<RefreshReport, IngestError> {
    let domain = shop.domain.as_str();
    let mut by_product: BTreeMap<ProductId, Vec<ClaimedRefresh>> = BTreeMap::new();
    for claim in claimed {
        by_product
            .entry(claim.request.product_id)
            .or_default()
            .push(*claim);
    }
    let mut report = RefreshReport::default();
    for (product_id, claims) in by_product {
        let product_key = db_id(product_id.0, "product id")?;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx, &format!("product:{domain}/{product_key}")).await?;
        let generations: BTreeMap<VariantId, i64> = tx
            .query(
                "SELECT variant_id, generation FROM variant_refreshes \
                 WHERE shop_domain = $1 AND product_id = $2",
                &[&domain, &product_key],
            )
            .await?
            .iter()
            .map(|row| (VariantId(from_db(row.get(0))), row.get(1)))
            .collect();
        let (current, superseded): (Vec<ClaimedRefresh>, Vec<ClaimedRefresh>) =
            claims.into_iter().partition(|claim| {
                generations
                    .get(&claim.request.variant_id)
                    .is_none_or(|generation| *generation == claim.generation)
            });
        if !superseded.is_empty() {
            tx.execute(
                "UPDATE variant_refreshes SET leased_until = NULL \
                 WHERE shop_domain = $1 AND variant_id = ANY($2)",
                &[&domain, &claimed_ids(&superseded)?],
            )
            .await?;
        }
        // A request whose row is gone was completed by a webhook's details meanwhile.
        let requests: Vec<RefreshRequest> = current
            .iter()
            .filter(|claim| generations.contains_key(&claim.request.variant_id))
            .map(|claim| claim.request)
            .collect();
        let known = load_product_variants(&tx, domain, product_key).await?;
        let change = apply_fetched(&requests, answers, &known, Utc::now());
        report.done += current.len();
        report.superseded += superseded.len();
        report
            .items
            .without_sku
            .extend(change.without_sku.iter().copied());
        apply_change(&tx, shop, &change, announce_exchange, &mut report.items).await?;
        tx.commit().await?;
    }
    Ok(report)
}
