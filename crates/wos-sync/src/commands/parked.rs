//! `parked list | release`: adjustments waiting for their item's Shopify mapping.

use adjustment_pusher::operator::{parked_adjustments, release_parked_now};
use chrono::Utc;
use serde_json::json;

use crate::{
    cli::{ParkedCommand, ShopJsonArgs},
    context::Context,
    output::{Table, age, print_json},
};

pub async fn run(context: &Context, command: ParkedCommand) -> anyhow::Result<()> {
    match command {
        ParkedCommand::List(args) => list(context, &args).await,
        ParkedCommand::Release(args) => release(context, &args).await,
    }
}

async fn list(context: &Context, args: &ShopJsonArgs) -> anyhow::Result<()> {
    let pool = context.database().await?;
    let parked = parked_adjustments(&pool, args.shop.as_deref()).await?;
    let now = Utc::now();
    if args.json {
        let rows: Vec<_> = parked
            .iter()
            .map(|p| {
                json!({
                    "shop": p.shop,
                    "sku": p.sku,
                    "adjustments": p.adjustments,
                    "transactions": p.transactions,
                    "net_delta": p.net_delta,
                    "oldest": p.oldest,
                    "age_seconds": (now - p.oldest).num_seconds().max(0),
                    "item_exists": p.item_exists,
                    "mapped_now": p.mapped_now,
                })
            })
            .collect();
        return print_json(&rows);
    }
    if parked.is_empty() {
        println!("no parked adjustments");
        return Ok(());
    }
    let mut table = Table::new([
        "SHOP",
        "SKU",
        "ADJUSTMENTS",
        "TRANSACTIONS",
        "NET DELTA",
        "OLDEST",
        "ITEM",
    ]);
    for p in &parked {
        let item = match (p.item_exists, p.mapped_now) {
            (_, Some(id)) => format!("mapped to {id} now: `parked release` pushes it"),
            (true, None) => "no Shopify mapping".to_owned(),
            (false, None) => "not a WOS item yet".to_owned(),
        };
        table.row([
            p.shop.clone(),
            p.sku.clone(),
            p.adjustments.to_string(),
            p.transactions.to_string(),
            format!("{:+}", p.net_delta),
            age(p.oldest, now),
            item,
        ]);
    }
    table.print();
    let total: i64 = parked.iter().map(|p| p.adjustments).sum();
    println!("{total} parked adjustment(s) over {} SKU(s)", parked.len());
    Ok(())
}

async fn release(context: &Context, args: &ShopJsonArgs) -> anyhow::Result<()> {
    let pool = context.database().await?;
    let released = release_parked_now(&pool, args.shop.as_deref()).await?;
    let still = parked_adjustments(&pool, args.shop.as_deref()).await?;
    let still_parked: i64 = still.iter().map(|p| p.adjustments).sum();
    if args.json {
        let rows: Vec<_> = released
            .iter()
            .map(|r| {
                json!({
                    "shop": r.shop,
                    "sku": r.sku,
                    "adjustments": r.adjustments,
                    "inventory_item_id": r.inventory_item_id,
                })
            })
            .collect();
        return print_json(&json!({ "released": rows, "still_parked": still_parked }));
    }
    for r in &released {
        println!(
            "released {} adjustment(s) of {} / {} to inventory item {}",
            r.adjustments, r.shop, r.sku, r.inventory_item_id
        );
    }
    let total: u64 = released.iter().map(|r| r.adjustments).sum();
    println!(
        "{total} adjustment(s) released to pending; {still_parked} still parked (their items have no Shopify mapping)"
    );
    Ok(())
}
