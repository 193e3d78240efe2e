//! `backfill-mappings --shop S [--dry-run]`: items without an `inventory_item_id` get the one
//! of the only Shopify variant carrying their SKU.
//!
//! Each SKU is one `productVariants(query: "sku:\"…\"")` read through the shop's client, paced
//! by the shop's rate limit and retried through throttling (`ShopClient::read`). Shopify's
//! search matches loosely (case, tokens), so only variants whose SKU equals the item's exactly
//! count. One variant: the item is filled (`item_ingest::operator::record_backfill`, which
//! also announces the mapping so parked adjustments are pushed); several: reported as
//! ambiguous, not filled (the item-ingest rule decides once the products' webhooks arrive, and
//! `wos-sync conflicts` shows them); none: reported. Every SKU's result is committed before the
//! next is looked up, so SIGINT/SIGTERM (or a crash) loses nothing: running the command again
//! resumes the run with the SKUs not looked up yet.

use item_ingest::operator::{
    BackfillOutcome, BackfillResult, FoundVariant, backfill_results, finish_backfill_run,
    open_backfill_run, record_backfill, skus_to_backfill,
};
use model::ids::{InventoryItemId, ProductId, VariantId};
use platform::{amqp::topology::ITEM_MAPPINGS, shutdown::on_termination_signal};
use serde_json::{Value, json};
use shopify_admin::{ReadPolicy, ShopClient};

use crate::{
    cli::BackfillArgs,
    context::Context,
    output::{Table, print_json, progress},
};

const LOOKUP_QUERY: &str = "query BackfillSku($query: String!) {
  productVariants(first: 10, query: $query) {
    nodes { id sku createdAt inventoryItem { id } product { id title } }
  }
}";

pub async fn run(context: &Context, args: &BackfillArgs) -> anyhow::Result<()> {
    let shop = context.shop(&args.shop)?;
    let client = context.shop_client(shop)?;
    let pool = context.database().await?;
    let interrupted = on_termination_signal();
    let policy = ReadPolicy::default();

    if args.dry_run {
        let skus = skus_to_backfill(&pool, &shop.domain, None).await?;
        let bar = progress(skus.len() as u64, "looking up SKUs");
        let mut results = Vec::with_capacity(skus.len());
        for sku in &skus {
            let found = tokio::select! {
                () = interrupted.cancelled() => {
                    bar.abandon();
                    anyhow::bail!("interrupted after {} of {} SKUs (dry run: nothing was changed)", results.len(), skus.len());
                }
                found = lookup(&client, sku, &policy) => found?,
            };
            results.push(BackfillResult {
                sku: sku.clone(),
                outcome: BackfillOutcome::of(&found),
                inventory_item_id: None,
                candidates: found,
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        return print_results(&shop.domain, None, &results, args.json, true);
    }

    if args.restart
        && let Ok(run) = open_backfill_run(&pool, &shop.domain).await
    {
        finish_backfill_run(&pool, run.id).await?;
    }
    let run = open_backfill_run(&pool, &shop.domain).await?;
    let skus = skus_to_backfill(&pool, &shop.domain, Some(run.id)).await?;
    if run.resumed && !args.json {
        eprintln!(
            "resuming backfill run {} of {}: {} SKU(s) looked up before the interruption, {} to go",
            run.id,
            shop.domain,
            run.done,
            skus.len()
        );
    }
    let exchange = context.settings.names().name(ITEM_MAPPINGS);
    let bar = progress(skus.len() as u64, "looking up SKUs");
    for (done, sku) in skus.iter().enumerate() {
        let found = tokio::select! {
            () = interrupted.cancelled() => {
                bar.abandon();
                anyhow::bail!(
                    "interrupted after {done} of {} SKU(s) of this session; run the same command again to resume run {}",
                    skus.len(), run.id
                );
            }
            found = lookup(&client, sku, &policy) => found?,
        };
        record_backfill(&pool, run.id, &shop.domain, sku, &found, &exchange).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    finish_backfill_run(&pool, run.id).await?;
    let results = backfill_results(&pool, run.id).await?;
    print_results(
        &shop.domain,
        Some((run.id, run.resumed, run.done)),
        &results,
        args.json,
        false,
    )
}

/// The live variants whose SKU is exactly `sku`.
async fn lookup(
    client: &ShopClient,
    sku: &str,
    policy: &ReadPolicy,
) -> anyhow::Result<Vec<FoundVariant>> {
    let query = format!("sku:\"{}\"", sku.replace('\\', "\\\\").replace('"', "\\\""));
    let data = client
        .read(
            "BackfillSku",
            LOOKUP_QUERY,
            json!({ "query": query }),
            policy,
        )
        .await
        .map_err(|err| anyhow::anyhow!("looking up SKU {sku:?} in {}: {err}", client.shop()))?;
    let nodes = data["productVariants"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(nodes
        .iter()
        .filter(|node| node["sku"].as_str() == Some(sku))
        .filter_map(found_variant)
        .collect())
}

fn found_variant(node: &Value) -> Option<FoundVariant> {
    Some(FoundVariant {
        variant_id: VariantId::parse_gid(node["id"].as_str()?).ok()?.0,
        inventory_item_id: InventoryItemId::parse_gid(node["inventoryItem"]["id"].as_str()?)
            .ok()?
            .0,
        product_id: node["product"]["id"]
            .as_str()
            .and_then(|gid| ProductId::parse_gid(gid).ok())
            .map(|p| p.0),
        product_title: node["product"]["title"].as_str().map(str::to_owned),
        created_at: node["createdAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
    })
}

fn print_results(
    shop: &str,
    run: Option<(i64, bool, i64)>,
    results: &[BackfillResult],
    json: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let count = |outcome| results.iter().filter(|r| r.outcome == outcome).count();
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "sku": r.sku,
                    "outcome": r.outcome.as_str(),
                    "inventory_item_id": r.inventory_item_id.or_else(|| (r.outcome == BackfillOutcome::Filled).then(|| r.candidates.first().map(|c| c.inventory_item_id as i64)).flatten()),
                    "candidates": r.candidates,
                })
            })
            .collect();
        return print_json(&json!({
            "shop": shop,
            "dry_run": dry_run,
            "run": run.map(|(id, _, _)| id),
            "resumed": run.is_some_and(|(_, resumed, _)| resumed),
            "results": rows,
            "filled": count(BackfillOutcome::Filled),
            "ambiguous": count(BackfillOutcome::Ambiguous),
            "not_found": count(BackfillOutcome::NotFound),
            "already_mapped": count(BackfillOutcome::AlreadyMapped),
        }));
    }
    let mut table = Table::new(["SKU", "OUTCOME", "SHOPIFY VARIANTS"]);
    for r in results
        .iter()
        .filter(|r| r.outcome != BackfillOutcome::Filled || dry_run)
    {
        let variants: Vec<String> = r
            .candidates
            .iter()
            .map(|c| {
                format!(
                    "variant {} / item {} ({})",
                    c.variant_id,
                    c.inventory_item_id,
                    c.product_title.as_deref().unwrap_or("?")
                )
            })
            .collect();
        let outcome = match (r.outcome, dry_run) {
            (BackfillOutcome::Filled, true) => "would fill",
            (outcome, _) => outcome.as_str(),
        };
        table.row([r.sku.clone(), outcome.to_owned(), variants.join("; ")]);
    }
    if !table.is_empty() {
        table.print();
    }
    let verb = if dry_run { "would be filled" } else { "filled" };
    println!(
        "{shop}: {} SKU(s) looked up; {} {verb}, {} ambiguous (not filled: several variants carry the SKU), {} not in Shopify, {} mapped meanwhile",
        results.len(),
        count(BackfillOutcome::Filled),
        count(BackfillOutcome::Ambiguous),
        count(BackfillOutcome::NotFound),
        count(BackfillOutcome::AlreadyMapped),
    );
    Ok(())
}
