//! `conflicts`: SKUs an operator should look at (several live Shopify variants carry them, or
//! the item is kept on an inventory item no live variant carrying the SKU has, or a variant
//! read failed), which variant each item points at, and why.

use item_ingest::operator::{ExplainedConflict, explain_basis, explain_conflicts};
use serde_json::json;

use crate::{cli::ConflictsArgs, context::Context, output::print_json};

pub async fn run(context: &Context, args: &ConflictsArgs) -> anyhow::Result<()> {
    let pool = context.database().await?;
    let shops: Vec<String> = match &args.shop {
        Some(shop) => vec![shop.clone()],
        None => {
            let mut shops: Vec<String> = context
                .settings
                .shops
                .iter()
                .map(|s| s.domain.clone())
                .collect();
            let mirrored = pool
                .get()
                .await?
                .query("SELECT DISTINCT shop_domain FROM shopify_variants", &[])
                .await?;
            for row in &mirrored {
                let shop: String = row.get(0);
                if !shops.contains(&shop) {
                    shops.push(shop);
                }
            }
            shops
        }
    };
    let mut all: Vec<(String, Vec<ExplainedConflict>)> = Vec::new();
    for shop in shops {
        let mapping = context
            .settings
            .shops
            .get(&shop)
            .map(|s| s.fields.mapping())
            .unwrap_or_default();
        let conflicts = explain_conflicts(&pool, &shop, mapping).await?;
        all.push((shop, conflicts));
    }
    if args.json {
        let rows: Vec<_> = all
            .iter()
            .flat_map(|(shop, conflicts)| conflicts.iter().map(move |c| conflict_json(shop, c)))
            .collect();
        return print_json(&rows);
    }
    let total: usize = all.iter().map(|(_, c)| c.len()).sum();
    if total == 0 {
        println!("no SKU conflicts");
        return Ok(());
    }
    for (shop, conflicts) in &all {
        for c in conflicts {
            let reasons: Vec<&str> = c.reasons.iter().map(|r| r.as_str()).collect();
            println!(
                "{shop} / {}: {} live variants carry it ({})",
                c.sku,
                c.variants.len(),
                reasons.join(", ")
            );
            for v in &c.variants {
                let item = v.inventory_item_id.map(|i| i.0);
                let points = item.is_some() && item == c.mapped_inventory_item_id.map(|i| i.0);
                println!(
                    "  {} variant {} (inventory item {}) of product {} {:?}, created {}",
                    if points { "->" } else { "  " },
                    v.variant_id.0,
                    item.map_or_else(|| "-".into(), |i| i.to_string()),
                    v.product_id.0,
                    v.product_title,
                    v.created_at
                        .map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                );
            }
            let mapped = c.mapped_inventory_item_id.map_or_else(
                || "no inventory item".to_owned(),
                |i| format!("inventory item {}", i.0),
            );
            let rule = c.decision.inventory_item_id.map(|i| i.0);
            let agrees = rule == c.mapped_inventory_item_id.map(|i| i.0);
            println!(
                "  the item points at {mapped}: {} ({}){}",
                explain_basis(c.decision.basis),
                c.decision.basis.as_str(),
                if agrees {
                    String::new()
                } else {
                    format!(
                        "; the rule would choose {} at the next product event of this SKU",
                        rule.map_or_else(|| "none".into(), |i| i.to_string())
                    )
                }
            );
        }
    }
    println!("{total} SKU conflict(s)");
    Ok(())
}

fn conflict_json(shop: &str, c: &ExplainedConflict) -> serde_json::Value {
    json!({
        "shop": shop,
        "sku": c.sku,
        "reasons": c.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "mapped_inventory_item_id": c.mapped_inventory_item_id.map(|i| i.0),
        "rule": {
            "inventory_item_id": c.decision.inventory_item_id.map(|i| i.0),
            "variant_id": c.decision.variant_id.map(|v| v.0),
            "basis": c.decision.basis.as_str(),
            "why": explain_basis(c.decision.basis),
        },
        "variants": c.variants.iter().map(|v| json!({
            "variant_id": v.variant_id.0,
            "inventory_item_id": v.inventory_item_id.map(|i| i.0),
            "product_id": v.product_id.0,
            "product_title": v.product_title,
            "variant_title": v.variant_title,
            "created_at": v.created_at,
        })).collect::<Vec<_>>(),
    })
}
