//! `status [--json] [--watch]`: the whole system on one screen.
//!
//! - per work queue: ready messages and consumers (passive declares: no management plugin
//!   needed), messages waiting in its retry tiers, and its DLQ's depth;
//! - per shop (configured, or with work in the database): pending and parked adjustments, the
//!   open batch and its age, attempts and last transient answer, the last batch Shopify
//!   answered definitely (`push_batches`), and the shop's rate-limit bucket, read live from
//!   Shopify's `throttleStatus` with a one-point query (the pusher does not persist it; the
//!   bucket is the app's, so it shows what the pusher leaves), and SKU conflicts.

use std::{collections::BTreeMap, time::Duration};

use adjustment_pusher::operator::{ShopPushStatus, shop_status};
use chrono::{DateTime, Utc};
use item_ingest::store::count_conflicts;
use platform::settings::redact_url;
use serde::Serialize;
use serde_json::json;

use crate::{
    cli::StatusArgs,
    context::Context,
    dead_letters::DeadLetterQueue,
    output::{Table, age, clip, print_json},
};

#[derive(Debug, Serialize)]
struct QueueStatus {
    queue: String,
    ready: Option<u32>,
    consumers: Option<u32>,
    retrying: Option<u32>,
    dead_letters: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Throttle {
    currently_available: f64,
    maximum_available: f64,
    restore_rate: f64,
}

#[derive(Debug, Serialize)]
struct ShopStatus {
    shop: String,
    pending: i64,
    parked: i64,
    open_batch: Option<serde_json::Value>,
    last_answer: Option<serde_json::Value>,
    throttle: Option<Throttle>,
    /// Why there is no throttle level.
    throttle_unknown: Option<String>,
    sku_conflicts: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Snapshot {
    at: DateTime<Utc>,
    broker: String,
    database: String,
    broker_error: Option<String>,
    database_error: Option<String>,
    queues: Vec<QueueStatus>,
    shops: Vec<ShopStatus>,
}

pub async fn run(context: &Context, args: &StatusArgs) -> anyhow::Result<()> {
    // One pool for every refresh; a database that was down is tried again at the next one.
    let mut pool = None;
    if !args.watch {
        let snapshot = snapshot(context, &mut pool).await;
        return if args.json {
            print_json(&snapshot)
        } else {
            print!("{}", render(&snapshot));
            Ok(())
        };
    }
    let stop = platform::shutdown::on_termination_signal();
    loop {
        let screen = render(&snapshot(context, &mut pool).await);
        // Clear the screen and go home, then draw: one screen, refreshed in place.
        println!(
            "\x1b[2J\x1b[H{screen}(refreshing every {}s; Ctrl-C to stop)",
            args.interval
        );
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
        }
    }
}

async fn snapshot(context: &Context, pool: &mut Option<deadpool_postgres::Pool>) -> Snapshot {
    let settings = &context.settings;
    let mut snapshot = Snapshot {
        at: Utc::now(),
        broker: redact_url(&settings.amqp.url),
        database: redact_url(&settings.database.url),
        broker_error: None,
        database_error: None,
        queues: Vec::new(),
        shops: Vec::new(),
    };
    match queues(context).await {
        Ok(queues) => snapshot.queues = queues,
        Err(err) => snapshot.broker_error = Some(format!("{err:#}")),
    }
    let configured: Vec<String> = settings.shops.iter().map(|s| s.domain.clone()).collect();
    if pool.is_none() {
        match context.database().await {
            Ok(connected) => *pool = Some(connected),
            Err(err) => snapshot.database_error = Some(format!("{err:#}")),
        }
    }
    let pushed = match pool.as_ref() {
        Some(pool) => match shop_status(pool, &configured).await {
            Ok(status) => {
                let mut conflicts = BTreeMap::new();
                if let Ok(client) = pool.get().await {
                    for shop in status.keys() {
                        if let Ok(count) = count_conflicts(&client, shop).await {
                            conflicts.insert(shop.clone(), count);
                        }
                    }
                }
                Some((status, conflicts))
            }
            Err(err) => {
                snapshot.database_error = Some(err.to_string());
                None
            }
        },
        None => None,
    };
    let (status, conflicts) = pushed.unwrap_or_else(|| {
        (
            configured
                .iter()
                .map(|s| (s.clone(), ShopPushStatus::default()))
                .collect(),
            BTreeMap::new(),
        )
    });
    for (shop, push) in status {
        let (throttle, throttle_unknown) = match throttle(context, &shop).await {
            Ok(throttle) => (Some(throttle), None),
            Err(why) => (None, Some(why)),
        };
        snapshot.shops.push(ShopStatus {
            pending: push.pending,
            parked: push.parked,
            open_batch: push.open_batch.map(|b| {
                json!({
                    "id": b.id,
                    "created_at": b.created_at,
                    "age_seconds": (snapshot.at - b.created_at).num_seconds().max(0),
                    "changes": b.change_count,
                    "attempts": b.attempts,
                    "last_error": b.last_error,
                    "next_attempt_at": b.not_before,
                })
            }),
            last_answer: push.last_settled.map(|b| {
                json!({
                    "batch": b.id,
                    "outcome": b.state,
                    "at": b.completed_at,
                    "adjustment_group_id": b.adjustment_group_id,
                    "error": b.last_error,
                })
            }),
            throttle,
            throttle_unknown,
            sku_conflicts: conflicts.get(&shop).copied(),
            shop,
        });
    }
    snapshot
}

async fn queues(context: &Context) -> anyhow::Result<Vec<QueueStatus>> {
    let connection = context.broker("status").await?;
    let mut out = Vec::new();
    for queue in context.work_queues() {
        // A passive declare of a missing queue closes its channel: a channel per look.
        let look = |name: String| {
            let connection = &connection;
            async move {
                let channel = connection.create_channel().await.ok()?;
                let found = DeadLetterQueue::depth(&channel, &name).await;
                if found.is_some() {
                    let _ = channel.close(200, "status".into()).await;
                }
                found
            }
        };
        let main = look(queue.name.clone()).await;
        let mut retrying = Some(0u32);
        for tier in 1..=context.settings.retry.tiers {
            let depth = look(queue.retry_queue(tier)).await.map(|(ready, _)| ready);
            retrying = retrying.zip(depth).map(|(a, b)| a + b);
        }
        let dlq = look(queue.dead_letter_queue())
            .await
            .map(|(ready, _)| ready);
        out.push(QueueStatus {
            queue: queue.name.clone(),
            ready: main.map(|(ready, _)| ready),
            consumers: main.map(|(_, consumers)| consumers),
            retrying,
            dead_letters: dlq,
        });
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        connection.close(200, "status".into()),
    )
    .await;
    Ok(out)
}

/// The shop's bucket, from the `throttleStatus` of a one-point query.
async fn throttle(context: &Context, shop: &str) -> Result<Throttle, String> {
    let Some(config) = context.settings.shops.get(shop) else {
        return Err("not configured here".into());
    };
    let client = context
        .shop_client(config)
        .map_err(|err| format!("{err:#}"))?;
    let answer = client
        .send(
            "StatusThrottle",
            &json!({ "query": "query StatusThrottle { shop { id } }" }),
            Duration::from_secs(5),
        )
        .await;
    match answer.reply {
        Ok(reply) => reply
            .throttle
            .map(|t| Throttle {
                currently_available: t.currently_available,
                maximum_available: t.maximum_available,
                restore_rate: t.restore_rate,
            })
            .ok_or_else(|| format!("HTTP {} without throttleStatus", reply.status)),
        Err(failure) => Err(failure.reason),
    }
}

fn render(s: &Snapshot) -> String {
    let mut out = format!(
        "wos-sync status at {} (broker {}, database {})\n\n",
        s.at.format("%Y-%m-%d %H:%M:%S UTC"),
        s.broker,
        s.database
    );
    match &s.broker_error {
        Some(err) => out.push_str(&format!("queues: unknown, {err}\n")),
        None => {
            let mut table = Table::new(["QUEUE", "READY", "CONSUMERS", "RETRYING", "DLQ"]);
            let n = |v: Option<u32>| v.map_or_else(|| "missing".to_owned(), |v| v.to_string());
            for q in &s.queues {
                table.row([
                    q.queue.clone(),
                    n(q.ready),
                    n(q.consumers),
                    n(q.retrying),
                    n(q.dead_letters),
                ]);
            }
            out.push_str(&table.render());
        }
    }
    out.push('\n');
    if let Some(err) = &s.database_error {
        out.push_str(&format!("shops: database unavailable, {err}\n"));
    }
    if s.shops.is_empty() {
        out.push_str("no shops configured and none with work in the database\n");
        return out;
    }
    let mut table = Table::new([
        "SHOP",
        "PENDING",
        "PARKED",
        "OPEN BATCH",
        "LAST SHOPIFY ANSWER",
        "THROTTLE",
        "CONFLICTS",
    ]);
    for shop in &s.shops {
        let open = shop.open_batch.as_ref().map_or_else(
            || "-".to_owned(),
            |b| {
                let created = b["created_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                let mut text = format!(
                    "#{} {} change(s), {} old, {} attempt(s)",
                    b["id"],
                    b["changes"],
                    created.map_or_else(|| "?".into(), |t| age(t.with_timezone(&Utc), s.at)),
                    b["attempts"]
                );
                if let Some(err) = b["last_error"].as_str() {
                    text.push_str(&format!(", last: {}", clip(err, 60)));
                }
                text
            },
        );
        let last = shop.last_answer.as_ref().map_or_else(
            || "none yet".to_owned(),
            |b| {
                let at = b["at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or_else(
                        || "?".into(),
                        |t| format!("{} ago", age(t.with_timezone(&Utc), s.at)),
                    );
                match b["outcome"].as_str() {
                    Some("applied") => format!("applied {at} (batch #{})", b["batch"]),
                    _ => format!(
                        "refused {at}: {}",
                        clip(b["error"].as_str().unwrap_or("-"), 60)
                    ),
                }
            },
        );
        let throttle = match (&shop.throttle, &shop.throttle_unknown) {
            (Some(t), _) => format!(
                "{:.0}/{:.0} (+{:.0}/s)",
                t.currently_available, t.maximum_available, t.restore_rate
            ),
            (None, Some(why)) => format!("unknown: {}", clip(why, 40)),
            (None, None) => "unknown".to_owned(),
        };
        table.row([
            shop.shop.clone(),
            shop.pending.to_string(),
            shop.parked.to_string(),
            open,
            last,
            throttle,
            shop.sku_conflicts
                .map_or_else(|| "?".into(), |c| c.to_string()),
        ]);
    }
    out.push_str(&table.render());
    out
}
