//! `publish`: WOS inventory transactions onto `wos.transactions`, as WOS publishes them.
//!
//! Each transaction is validated with `model::transaction::parse_transaction` (the contract's
//! JSON Schema, field by field) before anything is published; one invalid transaction in a
//! file publishes none. Properties: persistent, `content_type=application/json`, `message_id` =
//! `transaction_id`; routing key `inventory.<type>`; every publish confirmed by the broker.

use std::{io::Read as _, time::Duration};

use anyhow::Context as _;
use lapin::BasicProperties;
use model::transaction::parse_transaction;
use platform::amqp::{
    publisher::{Confirmed, Publisher},
    topology::WOS_TRANSACTIONS,
};
use serde_json::{Map, Value, json};

use crate::{
    cli::{CommonTx, PublishArgs, TransactionCommand},
    context::Context,
    output::{UsageError, print_json, progress},
};

/// How long one publish may wait for the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(context: &Context, args: PublishArgs) -> anyhow::Result<()> {
    let (bodies, json_output) = match (&args.transaction, &args.file) {
        (Some(command), _) => {
            let (body, json) = from_flags(command)?;
            (vec![body], json || args.json)
        }
        (None, Some(path)) => (read_file(path)?, args.json),
        (None, None) => {
            return Err(UsageError(
                "give --file FILE.json or a transaction type (put, pull, cycle-count, move, pick)"
                    .into(),
            )
            .into());
        }
    };
    // Validate everything first: nothing is published from a file with an invalid transaction.
    let mut parsed = Vec::with_capacity(bodies.len());
    for (index, body) in bodies.iter().enumerate() {
        let transaction = parse_transaction(body).map_err(|err| {
            let which = if bodies.len() > 1 {
                format!("transaction #{} ", index + 1)
            } else {
                String::new()
            };
            UsageError(format!(
                "{which}does not satisfy the WOS transaction schema: {err}"
            ))
        })?;
        if !context.settings.shops.is_empty()
            && context
                .settings
                .shops
                .get(&transaction.shop_domain)
                .is_none()
        {
            eprintln!(
                "warning: shop {} is not in the configuration; the pusher will dead-letter it as malformed",
                transaction.shop_domain
            );
        }
        parsed.push(transaction);
    }

    let exchange = context.settings.names().name(WOS_TRANSACTIONS);
    let publisher = Publisher::new(
        context.settings.amqp.url.clone(),
        "wos-sync/publish".to_owned(),
    );
    let bar = progress(parsed.len() as u64, "publishing");
    let mut published = Vec::with_capacity(parsed.len());
    for (transaction, body) in parsed.iter().zip(&bodies) {
        let routing_key = format!("inventory.{}", transaction.type_name());
        let properties = BasicProperties::default()
            .with_message_id(transaction.transaction_id.as_str().into())
            .with_content_type("application/json".into());
        let confirmed = publisher
            .publish(&exchange, &routing_key, body, properties, PUBLISH_TIMEOUT)
            .await
            .with_context(|| format!("publishing {}", transaction.transaction_id))?;
        if confirmed == Confirmed::Unroutable {
            publisher.close().await;
            anyhow::bail!(
                "no queue is bound to {exchange} for {routing_key}: nothing consumes it yet (run `wos-sync topology`); transaction {} was not stored",
                transaction.transaction_id
            );
        }
        bar.inc(1);
        published.push(json!({
            "transaction_id": transaction.transaction_id,
            "shop_domain": transaction.shop_domain,
            "type": transaction.type_name(),
            "sku": transaction.sku,
            "warehouse": transaction.warehouse,
            "exchange": exchange,
            "routing_key": routing_key,
        }));
    }
    bar.finish_and_clear();
    publisher.close().await;
    if json_output {
        return print_json(&published);
    }
    for p in &published {
        println!(
            "published {} ({} {} at {} for {}) to {} {}",
            p["transaction_id"].as_str().unwrap_or(""),
            p["type"].as_str().unwrap_or(""),
            p["sku"].as_str().unwrap_or(""),
            p["warehouse"].as_str().unwrap_or(""),
            p["shop_domain"].as_str().unwrap_or(""),
            p["exchange"].as_str().unwrap_or(""),
            p["routing_key"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// The body of a transaction given by flags, and whether `--json` was among them.
fn from_flags(command: &TransactionCommand) -> anyhow::Result<(Vec<u8>, bool)> {
    let (kind, common, extra): (&str, &CommonTx, Vec<(&str, Value)>) = match command {
        TransactionCommand::Put(tx) => ("put", &tx.common, vec![("quantity", tx.quantity.into())]),
        TransactionCommand::Pull(tx) => {
            ("pull", &tx.common, vec![("quantity", tx.quantity.into())])
        }
        TransactionCommand::CycleCount(tx) => (
            "cycle_count",
            &tx.common,
            vec![
                ("previous_quantity", tx.previous_quantity.into()),
                ("counted_quantity", tx.counted_quantity.into()),
            ],
        ),
        TransactionCommand::Move(tx) => {
            let mut extra = vec![
                ("quantity", tx.quantity.into()),
                ("to_warehouse", tx.to_warehouse.clone().into()),
            ];
            if let Some(bin) = &tx.to_location {
                extra.push(("to_location", bin.clone().into()));
            }
            ("move", &tx.common, extra)
        }
        TransactionCommand::Pick(tx) => {
            let mut extra = vec![
                ("quantity", tx.quantity.into()),
                ("order_source", tx.order_source.clone().into()),
            ];
            if let Some(order) = &tx.order_id {
                extra.push(("order_id", order.clone().into()));
            }
            ("pick", &tx.common, extra)
        }
    };
    let mut body = Map::new();
    body.insert(
        "transaction_id".into(),
        common
            .transaction_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            .into(),
    );
    body.insert("shop_domain".into(), common.shop.clone().into());
    body.insert("type".into(), kind.into());
    body.insert("sku".into(), common.sku.clone().into());
    body.insert("warehouse".into(), common.warehouse.clone().into());
    if let Some(bin) = &common.location {
        body.insert("location".into(), bin.clone().into());
    }
    for (key, value) in extra {
        body.insert(key.into(), value);
    }
    body.insert(
        "occurred_at".into(),
        common
            .occurred_at
            .clone()
            .unwrap_or_else(|| {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
            .into(),
    );
    if let Some(user) = &common.user {
        body.insert("user".into(), user.clone().into());
    }
    Ok((serde_json::to_vec(&Value::Object(body))?, common.json))
}

/// The transactions of a file: one JSON object, or an array of them; `-` is standard input.
/// Each is published with its own bytes as written (an array element re-serialised).
fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut text = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading standard input")?;
    } else {
        text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let value: Value = serde_json::from_slice(&text)
        .map_err(|err| UsageError(format!("{}: not JSON: {err}", path.display())))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(UsageError(format!("{}: an empty array", path.display())).into());
            }
            items
                .iter()
                .map(|item| Ok(serde_json::to_vec(item)?))
                .collect()
        }
        Value::Object(_) => Ok(vec![text]),
        _ => Err(UsageError(format!(
            "{}: expected a transaction object or an array of them",
            path.display()
        ))
        .into()),
    }
}
