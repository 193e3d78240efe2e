//! The item tables as the operator CLI (`wos-sync`) reads and changes them: SKU conflicts with
//! the rule that decided each mapping, and the mapping backfill.
//!
//! **Conflicts** are the SKUs [`crate::store::list_conflicts`] lists (carried by several live
//! variants, kept on an inventory item the mirror never saw, pinned to a variant that no longer
//! carries them, or waiting for a variant read that failed), each explained by running the
//! mapping rule under the shop's policy (`model::catalog::resolve_mapping_under`) on what the
//! mirror holds now: the operator sees which variant the item points at and why (kept, oldest,
//! pinned, ...).
//!
//! **Backfill** gives items that have no `inventory_item_id` the Shopify inventory item of the
//! only variant carrying their SKU (the CLI asks Shopify). A run is recorded per shop, with one
//! result row per SKU written in the same transaction as the item it fills, so an interrupted
//! run resumes with the SKUs it has not looked up, and a SKU is never filled twice. A filled
//! mapping is announced on `wos-sync.item-mappings` through the outbox, exactly as item-ingest
//! announces its own, so the pusher releases the adjustments parked for it at once. Only an item
//! that still has no valid mapping is filled: one that item-ingest or WOS mapped meanwhile is
//! left alone.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use model::{
    announcement::{MappingAnnouncement, MappingChange},
    catalog::{
        Candidate, ConflictReason, CurrentMapping, MappingBasis, MappingDecision, MirroredVariant,
        resolve_mapping_under,
    },
    config::FieldPolicy,
    ids::{InventoryItemId, VariantId},
};
use platform::outbox::{OutboxMessage, enqueue};
use serde::{Deserialize, Serialize};

use crate::store::{IngestError, list_conflicts};

/// A SKU conflict and the mapping rule's decision for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedConflict {
    pub sku: String,
    /// Why it is listed.
    pub reasons: Vec<ConflictReason>,
    /// The inventory item the WOS item points at now (`None`: the item has none, or no item).
    pub mapped_inventory_item_id: Option<InventoryItemId>,
    /// Every live variant carrying the SKU, oldest first.
    pub variants: Vec<MirroredVariant>,
    /// What the rule decides from the mirror as it is: the variant it points at and why.
    pub decision: MappingDecision,
}

/// Every SKU conflict of `shop`, explained under the shop's policy for `inventory_item_id`
/// (`mapping`: [`FieldPolicy::Shopify`] unless the shop pins it).
pub async fn explain_conflicts(
    pool: &Pool,
    shop: &str,
    mapping: FieldPolicy,
) -> Result<Vec<ExplainedConflict>, IngestError> {
    let conflicts = list_conflicts(pool, shop).await?;
    let client = pool.get().await?;
    let mut explained = Vec::with_capacity(conflicts.len());
    for conflict in conflicts {
        let candidates: Vec<Candidate> = conflict
            .variants
            .iter()
            .filter_map(Candidate::from_variant)
            .collect();
        let current = match conflict.mapped_inventory_item_id {
            None => CurrentMapping::None,
            Some(item) => {
                let known = candidates.iter().any(|c| c.inventory_item_id == item)
                    || client
                        .query_opt(
                            "SELECT 1 FROM shopify_variants \
                             WHERE shop_domain = $1 AND inventory_item_id = $2 LIMIT 1",
                            &[&shop, &i64::try_from(item.0).unwrap_or(i64::MAX)],
                        )
                        .await?
                        .is_some();
                if known {
                    CurrentMapping::Known(item)
                } else {
                    CurrentMapping::Unverified(item)
                }
            }
        };
        let awaiting = conflict.variants.iter().any(|v| v.awaiting_refresh);
        explained.push(ExplainedConflict {
            decision: resolve_mapping_under(mapping, current, &candidates, awaiting),
            sku: conflict.sku,
            reasons: conflict.reasons,
            mapped_inventory_item_id: conflict.mapped_inventory_item_id,
            variants: conflict.variants,
        });
    }
    Ok(explained)
}

/// What a [`MappingBasis`] means, in words, for the conflicts listing.
pub fn explain_basis(basis: MappingBasis) -> &'static str {
    match basis {
        MappingBasis::Kept => {
            "the item already pointed at this variant, which still carries the SKU"
        }
        MappingBasis::KeptUnverified => {
            "the item points at an inventory item no mirrored variant has (set by WOS or a \
             backfill): kept rather than replaced by a variant that may be a clone"
        }
        MappingBasis::OnlyCandidate => "the only live variant carrying the SKU",
        MappingBasis::Oldest => "the oldest of the live variants carrying the SKU",
        MappingBasis::NoCandidate => "no live variant carries the SKU",
        MappingBasis::Pinned => {
            "the shop pins inventory_item_id: item-ingest keeps what the item has, though no live \
             variant carrying the SKU has it"
        }
        MappingBasis::AwaitingShopify => {
            "a variant that carried the SKU is being read from Shopify: no variant is chosen until \
             Shopify answers"
        }
    }
}

/// A Shopify variant found for a SKU by the backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundVariant {
    pub variant_id: u64,
    pub inventory_item_id: u64,
    pub product_id: Option<u64>,
    pub product_title: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// What a backfill recorded for one SKU (`mapping_backfill_results.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillOutcome {
    /// Exactly one variant carries the SKU: the item now points at its inventory item.
    Filled,
    /// Several do: reported, not filled.
    Ambiguous,
    /// None does.
    NotFound,
    /// The item got a valid mapping meanwhile: left alone.
    AlreadyMapped,
}

impl BackfillOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filled => "filled",
            Self::Ambiguous => "ambiguous",
            Self::NotFound => "not_found",
            Self::AlreadyMapped => "already_mapped",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "filled" => Self::Filled,
            "ambiguous" => Self::Ambiguous,
            "already_mapped" => Self::AlreadyMapped,
            _ => Self::NotFound,
        }
    }

    /// What Shopify's answer for a SKU means, before the item is looked at.
    pub fn of(found: &[FoundVariant]) -> Self {
        match found.len() {
            0 => Self::NotFound,
            1 => Self::Filled,
            _ => Self::Ambiguous,
        }
    }
}

/// A shop's backfill run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillRun {
    pub id: i64,
    /// An interrupted run picked up again.
    pub resumed: bool,
    /// SKUs it had already looked up.
    pub done: i64,
}

/// The shop's unfinished run (resumed), or a new one.
pub async fn open_backfill_run(pool: &Pool, shop: &str) -> Result<BackfillRun, IngestError> {
    let client = pool.get().await?;
    // The partial unique index allows one unfinished run per shop: if there is one, this
    // inserts nothing and that run is resumed.
    let created = client
        .query_opt(
            "INSERT INTO mapping_backfill_runs (shop_domain) VALUES ($1) \
             ON CONFLICT (shop_domain) WHERE finished_at IS NULL DO NOTHING RETURNING id",
            &[&shop],
        )
        .await?;
    if let Some(row) = created {
        return Ok(BackfillRun {
            id: row.get(0),
            resumed: false,
            done: 0,
        });
    }
    let row = client
        .query_one(
            "SELECT r.id, (SELECT count(*) FROM mapping_backfill_results x WHERE x.run_id = r.id) \
             FROM mapping_backfill_runs r WHERE r.shop_domain = $1 AND r.finished_at IS NULL",
            &[&shop],
        )
        .await?;
    Ok(BackfillRun {
        id: row.get(0),
        resumed: true,
        done: row.get(1),
    })
}

/// The SKUs of `shop` whose item has no valid mapping and that `run` has not looked up yet
/// (every such SKU when `run` is `None`: a dry run), in SKU order.
pub async fn skus_to_backfill(
    pool: &Pool,
    shop: &str,
    run: Option<i64>,
) -> Result<Vec<String>, IngestError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT i.sku FROM items i \
             WHERE i.shop_domain = $1 AND (i.inventory_item_id IS NULL OR i.inventory_item_id <= 0) \
               AND NOT EXISTS (SELECT 1 FROM mapping_backfill_results r \
                               WHERE r.run_id = $2 AND r.sku = i.sku) \
             ORDER BY i.sku",
            &[&shop, &run.unwrap_or(-1)],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Records what Shopify has for `sku` in `run`, filling the item (and announcing it) when
/// exactly one variant carries the SKU and the item still has no valid mapping. One
/// transaction: a SKU recorded in the run is never looked up again by it.
pub async fn record_backfill(
    pool: &Pool,
    run: i64,
    shop: &str,
    sku: &str,
    found: &[FoundVariant],
    announce_exchange: &str,
) -> Result<BackfillOutcome, IngestError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut outcome = BackfillOutcome::of(found);
    let mut filled_item = None;
    if let [only] = found {
        let item = i64::try_from(only.inventory_item_id).map_err(|_| {
            IngestError::Unstorable(format!(
                "inventory item id {} does not fit a bigint",
                only.inventory_item_id
            ))
        })?;
        let updated = tx
            .execute(
                "UPDATE items SET inventory_item_id = $3, updated_at = now() \
                 WHERE shop_domain = $1 AND sku = $2 \
                   AND (inventory_item_id IS NULL OR inventory_item_id <= 0)",
                &[&shop, &sku, &item],
            )
            .await?;
        if updated == 1 {
            filled_item = Some(item);
            let announcement = MappingAnnouncement {
                shop_domain: shop.to_owned(),
                sku: sku.to_owned(),
                change: MappingChange::Set,
                inventory_item_id: Some(InventoryItemId(only.inventory_item_id)),
                previous_inventory_item_id: None,
                variant_id: Some(VariantId(only.variant_id)),
                basis: MappingBasis::OnlyCandidate.as_str().to_owned(),
                changed_at: Utc::now(),
            };
            let body = serde_json::to_vec(&announcement)
                .map_err(|err| IngestError::Unstorable(format!("announcement: {err}")))?;
            let message_id = uuid::Uuid::new_v4().to_string();
            enqueue(
                &tx,
                &OutboxMessage::json(
                    announce_exchange,
                    &MappingChange::Set.routing_key(),
                    &message_id,
                    &body,
                ),
            )
            .await?;
        } else {
            outcome = BackfillOutcome::AlreadyMapped;
        }
    }
    let candidates = serde_json::to_value(found)
        .map_err(|err| IngestError::Unstorable(format!("candidates: {err}")))?;
    tx.execute(
        "INSERT INTO mapping_backfill_results (run_id, sku, outcome, inventory_item_id, candidates) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&run, &sku, &outcome.as_str(), &filled_item, &candidates],
    )
    .await?;
    tx.commit().await?;
    if filled_item.is_some() {
        tracing::info!(shop, sku, ?filled_item, "item mapping filled by backfill");
    }
    Ok(outcome)
}

/// Marks `run` finished: the next backfill of the shop starts a new run.
pub async fn finish_backfill_run(pool: &Pool, run: i64) -> Result<(), IngestError> {
    pool.get()
        .await?
        .execute(
            "UPDATE mapping_backfill_runs SET finished_at = now() WHERE id = $1",
            &[&run],
        )
        .await?;
    Ok(())
}

/// One SKU's result in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillResult {
    pub sku: String,
    pub outcome: BackfillOutcome,
    pub inventory_item_id: Option<i64>,
    pub candidates: Vec<FoundVariant>,
}

/// Everything `run` recorded, in SKU order (the report of a run, resumed parts included).
pub async fn backfill_results(pool: &Pool, run: i64) -> Result<Vec<BackfillResult>, IngestError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT sku, outcome, inventory_item_id, candidates FROM mapping_backfill_results \
             WHERE run_id = $1 ORDER BY sku",
            &[&run],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| BackfillResult {
            sku: row.get(0),
            outcome: BackfillOutcome::parse(row.get(1)),
            inventory_item_id: row.get(2),
            candidates: serde_json::from_value(row.get(3)).unwrap_or_default(),
        })
        .collect())
}
