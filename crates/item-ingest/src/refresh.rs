//! Variants beyond the 100 a product webhook details, read from the shop's Admin API.
//!
//! A product webhook details at most 100 variants (the first 100 by position) and lists every
//! variant in `variant_gids` with its `updated_at`. The ingest transaction records a refresh
//! request (`variant_refreshes`) for each listed variant that is newer than the mirror or
//! unknown to it, and such a variant stops being a mapping candidate. This module, one task per
//! shop, reads them: it claims due requests (a lease, so replicas read disjoint ones), asks
//! Shopify with `nodes(ids:)` in pages of [`PAGE`] ids through the shared client (paced by the
//! shop's throttle, retried through `THROTTLED`, 429 and 5xx), and applies the answers in the
//! same kind of transaction as a webhook ([`store::apply_refreshes`]): the affected SKUs
//! settle from what Shopify says.
//!
//! A read that fails (Shopify unavailable, access refused, no token) is retried later with a
//! backoff; meanwhile the SKUs it holds stay unmapped and are listed as conflicts
//! (`awaiting_shopify`). A shop without an access token still ingests webhooks: only these
//! reads need the token, so its absence is logged at start and recorded on each request.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use model::{
    catalog::FetchedVariant,
    config::ShopSettings,
    ids::{InventoryItemId, ProductId, VariantId},
    webhook::{is_decimal, parse_shopify_timestamp, sku_or_none},
};
use platform::{metrics::Metrics, shutdown::CancellationToken};
use prometheus::IntCounterVec;
use serde_json::{Value, json};
use shopify_admin::{ReadPolicy, ShopClient};
use tokio::sync::Notify;

use crate::store::{self, ClaimedRefresh};

/// Variant ids per `nodes(ids:)` call (Shopify accepts at most 250; 100 keeps a call's cost
/// near 300 points, well inside a Standard bucket of 2000).
pub const PAGE: usize = 100;

/// How long a claim is ours: longer than a read can take under [`read_policy`].
const LEASE: Duration = Duration::from_secs(120);

/// How often due requests are looked for besides wake-ups (retries, leases left by a crash).
const POLL: Duration = Duration::from_secs(1);

/// The query: every field the mirror keeps, for the variants asked.
pub const VARIANTS_QUERY: &str = "query VariantRefresh($ids: [ID!]!) { nodes(ids: $ids) { \
    __typename ... on ProductVariant { id sku title barcode price createdAt updatedAt \
    inventoryItem { id } product { id title vendor productType updatedAt } } } }";

/// A read tries a few times within the lease; a read that still fails is retried later (the
/// request's own backoff), not by holding the claim.
fn read_policy() -> ReadPolicy {
    ReadPolicy {
        timeout: Duration::from_secs(10),
        attempts: 4,
        backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
    }
}

/// One shop's refresh task.
#[derive(Debug)]
pub struct ShopRefresher {
    pub pool: Pool,
    pub shop: ShopSettings,
    /// `None`: the shop has no access token (its environment variable is not set).
    pub client: Option<ShopClient>,
    pub metrics: Metrics,
    /// `wos_sync_variant_refreshes_total{shop,outcome}`.
    pub refreshes: IntCounterVec,
    pub announce_exchange: String,
    pub wake: Arc<Notify>,
    pub outbox_wake: Arc<Notify>,
    pub conflicts: Arc<crate::ConflictGauge>,
}

impl ShopRefresher {
    /// Reads due requests whenever woken (an ingest asked for some) and every second, until
    /// `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            if let Err(err) = self.drain(&shutdown).await {
                tracing::warn!(shop = %self.shop.domain, error = %err, "variant refresh: will retry");
            }
        }
    }

    async fn drain(&self, shutdown: &CancellationToken) -> Result<(), store::IngestError> {
        let shop = self.shop.domain.as_str();
        while !shutdown.is_cancelled() {
            let claimed = store::claim_refreshes(&self.pool, shop, PAGE as i64, LEASE).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            let outcome = match &self.client {
                None => Err(format!(
                    "no Admin API access token for shop {shop}: environment variable {} is \
                     not set (needed to read variants beyond the 100 a webhook details)",
                    self.shop.access_token_env
                )),
                Some(client) => read_variants(client, &claimed).await,
            };
            match outcome {
                Err(error) => {
                    tracing::warn!(
                        shop,
                        variants = claimed.len(),
                        %error,
                        "variant refresh failed: their SKUs stay unmapped until a read succeeds"
                    );
                    store::refresh_failed(&self.pool, shop, &claimed, &error).await?;
                    self.count("failed", claimed.len());
                    self.conflicts.recount(shop).await;
                    // Retried when due (the request's own backoff).
                    return Ok(());
                }
                Ok(answers) => {
                    let gone = answers.values().filter(|a| a.is_none()).count();
                    let report = store::apply_refreshes(
                        &self.pool,
                        &self.shop,
                        &claimed,
                        &answers,
                        &self.announce_exchange,
                    )
                    .await?;
                    self.count("read", answers.len() - gone);
                    self.count("gone", gone);
                    self.count("superseded", report.superseded);
                    for (_, outcome) in &report.items.items {
                        self.metrics
                            .items_total
                            .with_label_values(&[shop, outcome.as_str()])
                            .inc();
                    }
                    if report.items.announcements > 0 {
                        self.outbox_wake.notify_one();
                    }
                    self.conflicts.recount(shop).await;
                }
            }
        }
        Ok(())
    }

    fn count(&self, outcome: &str, n: usize) {
        if n > 0 {
            self.refreshes
                .with_label_values(&[&self.shop.domain, outcome])
                .inc_by(n as u64);
        }
    }
}

/// Reads the claimed variants with one `nodes(ids:)` call (a claim is at most [`PAGE`]).
/// `Ok(answers)`: every claimed variant with Shopify's answer, `None` for one Shopify no
/// longer has. A node that cannot be read fails the whole page (it is retried; nothing is
/// guessed).
async fn read_variants(
    client: &ShopClient,
    claimed: &[ClaimedRefresh],
) -> Result<BTreeMap<VariantId, Option<FetchedVariant>>, String> {
    let asked: Vec<VariantId> = claimed.iter().map(|c| c.request.variant_id).collect();
    let ids: Vec<String> = asked.iter().map(VariantId::gid).collect();
    let data = client
        .read(
            "VariantRefresh",
            VARIANTS_QUERY,
            json!({ "ids": ids }),
            &read_policy(),
        )
        .await
        .map_err(|err| err.to_string())?;
    parse_nodes(&asked, &data)
}

/// Pairs `data.nodes` (in the order of the ids asked, `null` for an id Shopify does not have)
/// with the variants `asked`.
pub fn parse_nodes(
    asked: &[VariantId],
    data: &Value,
) -> Result<BTreeMap<VariantId, Option<FetchedVariant>>, String> {
    let nodes = data
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("the answer has no `nodes` list")?;
    if nodes.len() != asked.len() {
        return Err(format!(
            "asked for {} variants, Shopify answered {} nodes",
            asked.len(),
            nodes.len()
        ));
    }
    asked
        .iter()
        .zip(nodes)
        .enumerate()
        .map(|(i, (&asked, node))| {
            let answer = match node {
                Value::Null => None,
                node => {
                    let variant = parse_variant_node(node)
                        .map_err(|problem| format!("nodes[{i}]: {problem}"))?;
                    if variant.variant_id != asked {
                        return Err(format!(
                            "nodes[{i}]: asked for variant {asked}, got {}",
                            variant.variant_id
                        ));
                    }
                    Some(variant)
                }
            };
            Ok((asked, answer))
        })
        .collect()
}

/// One `ProductVariant` node. Identity fields (ids, SKU, inventory item, timestamps) must
/// read; a descriptive one that does not is unknown (as in webhooks).
fn parse_variant_node(node: &Value) -> Result<FetchedVariant, String> {
    let typename = node.get("__typename").and_then(Value::as_str);
    if typename.is_some_and(|t| t != "ProductVariant") {
        return Err(format!("expected a ProductVariant, got {typename:?}"));
    }
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let gid = |path: &str| -> Result<&str, String> {
        node.pointer(path)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{path}: missing"))
    };
    let time = |path: &str| -> Result<Option<DateTime<Utc>>, String> {
        match node.pointer(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_shopify_timestamp(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .ok_or_else(|| format!("{path}: not a timestamp")),
            Some(_) => Err(format!("{path}: not a timestamp")),
        }
    };
    let sku = match node.get("sku") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => sku_or_none(Some(s.clone())),
        Some(_) => return Err("/sku: not a string".into()),
    };
    let inventory_item_id = match node.pointer("/inventoryItem/id") {
        None | Some(Value::Null) => None,
        Some(id) => Some(
            id.as_str()
                .and_then(|s| InventoryItemId::parse_gid(s).ok())
                .ok_or("/inventoryItem/id: not an InventoryItem gid")?,
        ),
    };
    let price = text(node.get("price")).filter(|p| is_decimal(p));
    Ok(FetchedVariant {
        variant_id: VariantId::parse_gid(gid("/id")?).map_err(|err| format!("/id: {err}"))?,
        product_id: ProductId::parse_gid(gid("/product/id")?)
            .map_err(|err| format!("/product/id: {err}"))?,
        sku,
        inventory_item_id,
        product_title: text(node.pointer("/product/title")),
        variant_title: text(node.get("title")),
        barcode: text(node.get("barcode")),
        price,
        vendor: text(node.pointer("/product/vendor")),
        product_type: text(node.pointer("/product/productType")),
        created_at: time("/createdAt")?,
        updated_at: time("/updatedAt")?.ok_or("/updatedAt: missing")?,
        product_updated_at: time("/product/updatedAt")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: u64, sku: serde_json::Value) -> Value {
        json!({
            "__typename": "ProductVariant",
            "id": format!("gid://shopify/ProductVariant/{id}"),
            "sku": sku, "title": "XL", "barcode": null, "price": "19.99",
            "createdAt": "2026-11-27T10:00:00Z", "updatedAt": "2026-11-27T10:00:05Z",
            "inventoryItem": {"id": format!("gid://shopify/InventoryItem/{}", id + 1000)},
            "product": {"id": "gid://shopify/Product/7", "title": "Big", "vendor": "Acme",
                        "productType": "Shirts", "updatedAt": "2026-11-27T10:00:06Z"},
        })
    }

    #[test]
    fn nodes_pair_with_the_ids_asked_and_null_means_gone() {
        let asked = [VariantId(1), VariantId(2)];
        let data = json!({"nodes": [node(1, json!("A")), null]});
        let answers = parse_nodes(&asked, &data).unwrap();
        let read = answers[&VariantId(1)].as_ref().unwrap();
        assert_eq!(read.sku.as_deref(), Some("A"));
        assert_eq!(read.inventory_item_id, Some(InventoryItemId(1001)));
        assert_eq!(read.product_id, ProductId(7));
        assert_eq!(read.product_title.as_deref(), Some("Big"));
        assert_eq!(
            read.product_updated_at.map(|t| t.to_rfc3339()),
            Some("2026-11-27T10:00:06+00:00".into())
        );
        assert_eq!(answers[&VariantId(2)], None);
    }

    #[test]
    fn a_whitespace_sku_is_none_and_an_unreadable_price_is_unknown() {
        let mut variant = node(1, json!("  "));
        variant["price"] = json!("example string");
        let answers = parse_nodes(&[VariantId(1)], &json!({"nodes": [variant]})).unwrap();
        let read = answers[&VariantId(1)].as_ref().unwrap();
        assert_eq!((read.sku.as_deref(), read.price.as_deref()), (None, None));
    }

    #[test]
    fn identity_fields_must_read() {
        let asked = [VariantId(1)];
        let mut bad = node(1, json!("A"));
        bad["updatedAt"] = json!("yesterday");
        assert_eq!(
            parse_nodes(&asked, &json!({"nodes": [bad]})).unwrap_err(),
            "nodes[0]: /updatedAt: not a timestamp"
        );
        let mut bad = node(1, json!("A"));
        bad["inventoryItem"]["id"] = json!("gid://shopify/Product/1");
        assert!(parse_nodes(&asked, &json!({"nodes": [bad]})).is_err());
        assert_eq!(
            parse_nodes(&asked, &json!({"nodes": [node(2, json!("A"))]})).unwrap_err(),
            "nodes[0]: asked for variant 1, got 2"
        );
        assert!(parse_nodes(&asked, &json!({"nodes": []})).is_err());
        assert!(parse_nodes(&asked, &json!({})).is_err());
    }
}
