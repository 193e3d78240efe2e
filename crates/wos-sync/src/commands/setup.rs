//! `migrate` and `topology`: what every service does at start, on demand (both idempotent).

use anyhow::Context as _;
use platform::{db, settings::redact_url};
use serde_json::json;

use crate::{context::Context, output::print_json};

/// Applies pending migrations (creating the database when the role may).
pub async fn migrate(context: &Context, json: bool) -> anyhow::Result<()> {
    let settings = &context.settings.database;
    let url = redact_url(&settings.url);
    db::ensure_database(settings)
        .await
        .with_context(|| format!("database {url}"))?;
    let pool = db::connect_pool(settings)?;
    let applied = db::migrate(&pool)
        .await
        .with_context(|| format!("applying migrations to {url}"))?;
    if json {
        return print_json(&json!({ "database": url, "applied": applied }));
    }
    if applied.is_empty() {
        println!("{url}: up to date, no migration to apply");
    } else {
        for migration in &applied {
            println!("applied {migration}");
        }
        println!("{url}: {} migration(s) applied", applied.len());
    }
    Ok(())
}

/// Declares the exchanges and every work queue with its retry tiers and DLQ.
pub async fn topology(context: &Context, json: bool) -> anyhow::Result<()> {
    let queues = context.declare_topology().await?;
    let names = context.settings.names();
    let retry = &context.settings.retry;
    if json {
        let queues: Vec<_> = queues
            .iter()
            .map(|q| {
                json!({
                    "queue": q.name,
                    "dead_letter_queue": q.dead_letter_queue(),
                    "retry_queues": (1..=retry.tiers).map(|t| q.retry_queue(t)).collect::<Vec<_>>(),
                    "bindings": q.bindings.iter().map(|b| json!({"exchange": b.exchange, "routing_key": b.routing_key})).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&json!({ "exchanges": names.exchanges(), "queues": queues }));
    }
    for exchange in names.exchanges() {
        println!("exchange {exchange} (topic, durable)");
    }
    for queue in &queues {
        let bindings: Vec<String> = queue
            .bindings
            .iter()
            .map(|b| format!("{} {}", b.exchange, b.routing_key))
            .collect();
        println!(
            "queue {} <- {}; retry tiers {}..{}; dead letters {}",
            queue.name,
            bindings.join(", "),
            queue.retry_queue(1),
            retry.tiers,
            queue.dead_letter_queue()
        );
    }
    Ok(())
}
