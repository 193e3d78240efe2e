//! item-ingest's retention job: what it writes that grows with traffic, pruned in committed
//! chunks (`platform::retention`, windows in `[retention]`).
//!
//! - `inbox` rows of its consumer, after `inbox_days`: a copy of a webhook arriving later is
//!   applied again, which the mirror's versions make harmless while the product's state is
//!   still mirrored.
//! - Deleted variants (`shopify_variants.deleted`), `deleted_catalog_days` after their last
//!   write, but only once nothing can need them: their product is deleted or a newer complete
//!   listing of it lacks them (so an older webhook naming them is recognised as stale without
//!   them), no WOS item points at their inventory item (an item's mapping stays `Known`, with
//!   the conflicts that follow from it), and no read from Shopify is pending for them.
//! - Deleted products (`shopify_products.deleted`, the tombstone that makes every later
//!   webhook of the product stale), once none of their variant rows is left and their version
//!   (at least the time of the `products/delete`) is older than `deleted_catalog_days`.
//! - Mapping announcements the outbox could not publish for `undelivered_announcements_days`
//!   (the pusher's sweep finds the mappings without them); the pusher's dead letters in the
//!   outbox are never pruned.
//! - Finished `wos-sync backfill-mappings` runs and their results, after `backfill_runs_days`.
//!
//! `variant_refreshes` and `sku_conflicts` are not pruned by age: a refresh row is work (it is
//! deleted when Shopify answered), and both hold at most one row per variant or SKU.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use platform::{
    db::DbError,
    inbox::prune_inbox_chunk,
    outbox::prune_undelivered_chunk,
    retention::{Pruned, RetentionJob, RetentionSettings, in_chunks},
    shutdown::CancellationToken,
};

use crate::store::CONSUMER;

/// item-ingest's [`RetentionJob`].
#[derive(Debug, Clone)]
pub struct IngestRetention {
    pub pool: Pool,
    pub settings: RetentionSettings,
    /// The exchange of its mapping announcements (the outbox rows it owns).
    pub announce_exchange: String,
}

impl RetentionJob for IngestRetention {
    async fn prune(&self, shutdown: &CancellationToken) -> Result<Pruned, DbError> {
        let settings = &self.settings;
        let chunk = settings.chunk();
        let mut pruned = Pruned::default();
        let inbox = in_chunks(chunk, shutdown, || {
            prune_inbox_chunk(&self.pool, CONSUMER, settings.inbox(), chunk)
        })
        .await?;
        pruned.add("inbox", inbox);
        pruned.add(
            "shopify_variants",
            self.prune_deleted_variants(shutdown).await?,
        );
        let products = in_chunks(chunk, shutdown, || self.prune_deleted_products_chunk()).await?;
        pruned.add("shopify_products", products);
        let announcements = in_chunks(chunk, shutdown, || {
            prune_undelivered_chunk(
                &self.pool,
                &self.announce_exchange,
                settings.undelivered_announcements(),
                chunk,
            )
        })
        .await?;
        pruned.add("outbox", announcements);
        let results = in_chunks(chunk, shutdown, || self.prune_backfill_results_chunk()).await?;
        pruned.add("mapping_backfill_results", results);
        let runs = in_chunks(chunk, shutdown, || self.prune_backfill_runs_chunk()).await?;
        pruned.add("mapping_backfill_runs", runs);
        Ok(pruned)
    }
}

impl IngestRetention {
    /// Deleted variants, oldest first, a chunk of candidates per transaction. The candidates are
    /// walked with a cursor, so variants that must stay (see the module header) are looked at
    /// once per pass, not once per chunk.
    async fn prune_deleted_variants(&self, shutdown: &CancellationToken) -> Result<u64, DbError> {
        let window = self.settings.deleted_catalog().as_secs_f64();
        let chunk = self.settings.chunk();
        let mut cursor: Option<(DateTime<Utc>, String, i64)> = None;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let (after_at, after_shop, after_id) = match &cursor {
                Some((at, shop, id)) => (Some(*at), Some(shop.as_str()), Some(*id)),
                None => (None, None, None),
            };
            let candidates = tx
                .query(
                    "SELECT mirrored_at, shop_domain, variant_id FROM shopify_variants \
                     WHERE deleted AND mirrored_at < now() - make_interval(secs => $1) \
                       AND ($2::timestamptz IS NULL \
                            OR (mirrored_at, shop_domain, variant_id) > ($2, $3, $4)) \
                     ORDER BY mirrored_at, shop_domain, variant_id LIMIT $5",
                    &[&window, &after_at, &after_shop, &after_id, &chunk],
                )
                .await?;
            let (shops, ids): (Vec<String>, Vec<i64>) = candidates
                .iter()
                .map(|row| (row.get::<_, String>(1), row.get::<_, i64>(2)))
                .unzip();
            let deleted = tx
                .execute(
                    "DELETE FROM shopify_variants v \
                     USING unnest($1::text[], $2::bigint[]) AS c (shop_domain, variant_id), \
                           shopify_products p \
                     WHERE v.shop_domain = c.shop_domain AND v.variant_id = c.variant_id \
                       AND v.deleted AND v.mirrored_at < now() - make_interval(secs => $3) \
                       AND p.shop_domain = v.shop_domain AND p.product_id = v.product_id \
                       AND (p.deleted \
                            OR NOT v.variant_id = ANY (coalesce(p.listed_variants, ARRAY[v.variant_id]))) \
                       AND NOT EXISTS (SELECT 1 FROM items i WHERE i.shop_domain = v.shop_domain \
                                       AND i.inventory_item_id = v.inventory_item_id) \
                       AND NOT EXISTS (SELECT 1 FROM variant_refreshes r \
                                       WHERE r.shop_domain = v.shop_domain \
                                         AND r.variant_id = v.variant_id)",
                    &[&shops, &ids, &window],
                )
                .await?;
            tx.commit().await?;
            total += deleted;
            match candidates.last() {
                Some(last) if candidates.len() as i64 == chunk => {
                    cursor = Some((last.get(0), last.get(1), last.get(2)));
                }
                _ => break,
            }
        }
        Ok(total)
    }

    /// One chunk of deleted products whose variant rows are all gone.
    async fn prune_deleted_products_chunk(&self) -> Result<u64, DbError> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "DELETE FROM shopify_products WHERE (shop_domain, product_id) IN ( \
                     SELECT q.shop_domain, q.product_id FROM shopify_products q \
                     WHERE q.deleted AND q.version < now() - make_interval(secs => $1) \
                       AND NOT EXISTS (SELECT 1 FROM shopify_variants v \
                                       WHERE v.shop_domain = q.shop_domain \
                                         AND v.product_id = q.product_id) \
                     ORDER BY q.version LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[
                    &self.settings.deleted_catalog().as_secs_f64(),
                    &self.settings.chunk(),
                ],
            )
            .await?)
    }

    /// One chunk of the results of runs finished longer ago than the window.
    async fn prune_backfill_results_chunk(&self) -> Result<u64, DbError> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "DELETE FROM mapping_backfill_results WHERE (run_id, sku) IN ( \
                     SELECT r.run_id, r.sku FROM mapping_backfill_results r \
                     JOIN mapping_backfill_runs u ON u.id = r.run_id \
                     WHERE u.finished_at < now() - make_interval(secs => $1) \
                     LIMIT $2 FOR UPDATE OF r SKIP LOCKED)",
                &[
                    &self.settings.backfill_runs().as_secs_f64(),
                    &self.settings.chunk(),
                ],
            )
            .await?)
    }

    /// One chunk of runs finished longer ago than the window whose results are gone.
    async fn prune_backfill_runs_chunk(&self) -> Result<u64, DbError> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "DELETE FROM mapping_backfill_runs WHERE id IN ( \
                     SELECT u.id FROM mapping_backfill_runs u \
                     WHERE u.finished_at < now() - make_interval(secs => $1) \
                       AND NOT EXISTS (SELECT 1 FROM mapping_backfill_results r \
                                       WHERE r.run_id = u.id) \
                     ORDER BY u.finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[
                    &self.settings.backfill_runs().as_secs_f64(),
                    &self.settings.chunk(),
                ],
            )
            .await?)
    }
}
