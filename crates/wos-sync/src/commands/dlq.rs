//! `dlq list | show | replay | purge`: the dead letters of every service.
//!
//! Replay decides per message:
//! - a push-loop dead letter of the adjustment-pusher (`rejected`, `exhausted`, `unmapped` of a
//!   transaction intake recorded): its adjustments go back to pending (or parked) through the
//!   database (`adjustment_pusher::operator::replay_dead_letter`), once per dead letter, and
//!   only then is the DLQ message removed. A copy on the work queue would be acked as a
//!   duplicate, since intake knows the transaction id.
//! - anything else (every `malformed`, item-ingest's and the mapping queue's dead letters, a
//!   transaction dead-lettered before intake recorded it): a copy with a fresh attempt count is
//!   published to the work queue, confirmed, and only then is the DLQ message removed. The
//!   consumers' inboxes make a second copy of the same message a duplicate.
//! - a push-loop dead letter whose transaction is no longer recorded (it settled and the
//!   pusher's retention job pruned it) is refused and left in the DLQ: a copy would be taken in
//!   as a new transaction and pushed again.
//!
//! Purge removes the selected messages; a push-loop dead letter's dead adjustments are
//! discarded first, so the pusher's retention job can prune its transaction in time.

use std::time::Duration;

use adjustment_pusher::operator::{ReplayOutcome, discard_dead_letter, replay_dead_letter};
use anyhow::Context as _;
use chrono::Utc;
use deadpool_postgres::Pool;
use platform::amqp::{
    publisher::{Confirmed, Publisher},
    topology::{ADJUSTMENT_PUSHER_QUEUE, WorkQueue},
};
use serde::Serialize;

use crate::{
    cli::{DlqCommand, DlqFilterArgs, DlqListArgs, DlqPurgeArgs, DlqSelectArgs, DlqShowArgs},
    context::Context,
    dead_letters::{DeadLetter, DeadLetterQueue, Summary},
    output::{Reported, Table, UsageError, age, clip, print_json, progress},
};

/// The push loop's own dead-letter kinds (the pusher's transactions that intake recorded).
const PUSH_LOOP_KINDS: [&str; 3] = ["rejected", "exhausted", "unmapped"];

/// The replay action of a dead letter that is not replayed and stays in the DLQ.
const REFUSED: &str = "refused";

/// How long a replay copy may wait for the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages held at most by one replay or purge.
const SELECT_LIMIT: usize = 100_000;

pub async fn run(context: &Context, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(args) => list(context, &args).await,
        DlqCommand::Show(args) => show(context, &args).await,
        DlqCommand::Replay(args) => replay(context, &args).await,
        DlqCommand::Purge(args) => purge(context, &args).await,
    }
}

async fn list(context: &Context, args: &DlqListArgs) -> anyhow::Result<()> {
    let queues = match &args.queue {
        Some(queue) => vec![context.work_queue(queue)?],
        None => context.work_queues(),
    };
    let now = Utc::now();
    let mut summaries: Vec<Summary> = Vec::new();
    for queue in &queues {
        let mut dlq =
            DeadLetterQueue::take(context, &queue.dead_letter_queue(), args.limit).await?;
        let held = std::mem::take(&mut dlq.held);
        summaries.extend(
            held.iter()
                .filter(|letter| letter.selected(&args.filter, &[], now))
                .map(|letter| letter.summary(&queue.name, now)),
        );
        dlq.give_back(held).await;
    }
    summaries.sort_by_key(|s| std::cmp::Reverse(s.age_seconds.unwrap_or(0)));
    if args.json {
        return print_json(&summaries);
    }
    if summaries.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    let mut table = Table::new([
        "QUEUE",
        "MESSAGE_ID",
        "KIND",
        "SHOP",
        "AGE",
        "ATTEMPTS",
        "ERROR",
    ]);
    for s in &summaries {
        table.row([
            s.queue.clone(),
            s.message_id.clone(),
            s.kind.clone().unwrap_or_else(|| "-".into()),
            s.shop.clone().unwrap_or_else(|| "-".into()),
            s.age_seconds.map_or_else(
                || "-".into(),
                |secs| crate::output::duration(Duration::from_secs(secs.unsigned_abs())),
            ),
            s.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
            clip(s.error.as_deref().unwrap_or("-"), 100),
        ]);
    }
    table.print();
    println!("{} dead letter(s)", summaries.len());
    Ok(())
}

async fn show(context: &Context, args: &DlqShowArgs) -> anyhow::Result<()> {
    let queue = context.work_queue(&args.queue)?;
    let mut dlq = DeadLetterQueue::take(context, &queue.dead_letter_queue(), SELECT_LIMIT).await?;
    let held = std::mem::take(&mut dlq.held);
    let found: Vec<serde_json::Value> = held
        .iter()
        .filter(|letter| args.ids.contains(&letter.id))
        .map(|letter| letter.details(&queue.name))
        .collect();
    let missing: Vec<&String> = args
        .ids
        .iter()
        .filter(|id| !held.iter().any(|letter| letter.id == **id))
        .collect();
    dlq.give_back(held).await;
    if args.json {
        print_json(&found)?;
    } else {
        for details in &found {
            println!(
                "message {} in {}",
                details["message_id"].as_str().unwrap_or(""),
                queue.dead_letter_queue()
            );
            println!("properties:");
            print_object(&details["properties"]);
            println!("headers:");
            print_object(&details["headers"]);
            println!("body:");
            match &details["body"] {
                serde_json::Value::String(text) => println!("{text}"),
                json => println!("{}", serde_json::to_string_pretty(json)?),
            }
            println!();
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        Err(anyhow::anyhow!(
            "not in {}: {}",
            queue.dead_letter_queue(),
            missing.join(", ")
        ))
    }
}

fn print_object(value: &serde_json::Value) {
    for (key, value) in value.as_object().into_iter().flatten() {
        if value.is_null() {
            continue;
        }
        match value {
            serde_json::Value::String(text) => println!("  {key}: {text}"),
            other => println!("  {key}: {other}"),
        }
    }
}

/// What replay did to one message.
#[derive(Debug, Clone, Serialize)]
struct Replayed {
    message_id: String,
    kind: Option<String>,
    shop: Option<String>,
    /// `database` (adjustments returned), `already_replayed`, `republished`, `refused` (left
    /// in the DLQ), `failed`.
    action: &'static str,
    detail: String,
}

async fn replay(context: &Context, args: &DlqSelectArgs) -> anyhow::Result<()> {
    let queue = context.work_queue(&args.queue)?;
    let is_pusher = queue.name == context.settings.names().name(ADJUSTMENT_PUSHER_QUEUE);
    let mut dlq = DeadLetterQueue::take(context, &queue.dead_letter_queue(), SELECT_LIMIT).await?;
    let (selected, rest) = select(std::mem::take(&mut dlq.held), &args.filter, &args.ids);
    let pool = if is_pusher && !selected.is_empty() {
        Some(context.database().await?)
    } else {
        None
    };
    let publisher = Publisher::new(
        context.settings.amqp.url.clone(),
        "wos-sync/dlq-replay".to_owned(),
    );
    let bar = progress(selected.len() as u64, "replaying");
    let mut results = Vec::with_capacity(selected.len());
    let mut kept = rest;
    let mut stopped: Option<anyhow::Error> = None;
    for letter in selected {
        if stopped.is_some() {
            kept.push(letter);
            continue;
        }
        let outcome = replay_one(&dlq, &queue, pool.as_ref(), &publisher, &letter).await;
        bar.inc(1);
        match outcome {
            Ok((action, detail)) => {
                results.push(replayed(&letter, action, detail));
                if action == REFUSED {
                    kept.push(letter);
                }
            }
            Err(err) => {
                results.push(replayed(&letter, "failed", format!("{err:#}")));
                kept.push(letter);
                // A broker or database failure: stop rather than fail every message the same way.
                stopped = Some(err);
            }
        }
    }
    bar.finish_and_clear();
    publisher.close().await;
    dlq.give_back(kept).await;
    report(&results, args.json, &args.ids, "replayed")?;
    let refused = results.iter().filter(|r| r.action == REFUSED).count();
    match stopped {
        Some(err) => Err(Reported(format!("replay stopped: {err:#}")).into()),
        None if refused > 0 => Err(Reported(format!(
            "{refused} dead letter(s) refused and left in {}",
            queue.dead_letter_queue()
        ))
        .into()),
        None => Ok(()),
    }
}

fn replayed(letter: &DeadLetter, action: &'static str, detail: String) -> Replayed {
    Replayed {
        message_id: letter.id.clone(),
        kind: letter.kind.clone(),
        shop: letter.shop.clone(),
        action,
        detail,
    }
}

/// Replays one held message and removes it from the DLQ once that is safe.
async fn replay_one(
    dlq: &DeadLetterQueue,
    queue: &WorkQueue,
    pool: Option<&Pool>,
    publisher: &Publisher,
    letter: &DeadLetter,
) -> anyhow::Result<(&'static str, String)> {
    if let Some(pool) = pool
        && let Some((shop, transaction_id, failed_at, kind)) = push_loop_identity(letter)
    {
        match replay_dead_letter(pool, &shop, &transaction_id, &failed_at, &kind).await? {
            ReplayOutcome::Replayed {
                pending,
                parked,
                inventory_item_id,
            } => {
                dlq.remove(letter).await?;
                let detail = match (pending, parked) {
                    (0, 0) => "no dead adjustment left (already pushed after an earlier replay)"
                        .to_owned(),
                    (n, 0) => format!(
                        "{n} adjustment(s) back to pending (inventory item {})",
                        inventory_item_id.unwrap_or_default()
                    ),
                    (_, n) => {
                        format!("{n} adjustment(s) parked: the item still has no Shopify mapping")
                    }
                };
                return Ok(("database", detail));
            }
            ReplayOutcome::AlreadyReplayed { replayed_at } => {
                dlq.remove(letter).await?;
                return Ok((
                    "already_replayed",
                    format!(
                        "replayed before, at {}; nothing applied again, removed from the DLQ",
                        replayed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                ));
            }
            // Written by the push loop, so intake had recorded the transaction: it is gone
            // because it settled (pushed, or discarded by a purge) and the retention window
            // passed. A copy on the work queue would be taken in as new and pushed again.
            ReplayOutcome::NotRecorded if letter.header("x-shop-domain").is_some() => {
                return Ok((
                    REFUSED,
                    "its transaction settled and was pruned after the retention window \
                     ([retention] transactions_days): replaying it would push it again; \
                     left in the DLQ, purge it"
                        .to_owned(),
                ));
            }
            // Dead-lettered before intake recorded it: the work queue takes it in once.
            ReplayOutcome::NotRecorded => {}
        }
    }
    let copy = letter.replay_copy(Utc::now());
    match publisher
        .publish("", &queue.name, &letter.body, copy, PUBLISH_TIMEOUT)
        .await
        .with_context(|| format!("publishing {} to {}", letter.id, queue.name))?
    {
        Confirmed::Routed => {}
        Confirmed::Unroutable => anyhow::bail!(
            "queue {} does not exist (run `wos-sync topology`); {} stays in the DLQ",
            queue.name,
            letter.id
        ),
    }
    dlq.remove(letter).await?;
    Ok((
        "republished",
        format!("republished to {} with a fresh attempt count", queue.name),
    ))
}

/// `(shop, transaction id, x-failed-at, kind)` of a push-loop dead letter of the pusher's
/// queue; `None` for every other message (republished instead).
fn push_loop_identity(letter: &DeadLetter) -> Option<(String, String, String, String)> {
    let kind = letter.kind.clone()?;
    if !PUSH_LOOP_KINDS.contains(&kind.as_str()) {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&letter.body).ok()?;
    let transaction_id = letter
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .or_else(|| body.get("transaction_id")?.as_str().map(str::to_owned))?;
    // Our dead letters always carry `x-failed-at`; one without it is still replayed once.
    let failed_at = letter
        .failed_at
        .clone()
        .unwrap_or_else(|| "no x-failed-at".to_owned());
    Some((letter.shop.clone()?, transaction_id, failed_at, kind))
}

async fn purge(context: &Context, args: &DlqPurgeArgs) -> anyhow::Result<()> {
    let select_args = &args.select;
    let queue = context.work_queue(&select_args.queue)?;
    let mut dlq = DeadLetterQueue::take(context, &queue.dead_letter_queue(), SELECT_LIMIT).await?;
    let (selected, rest) = select(
        std::mem::take(&mut dlq.held),
        &select_args.filter,
        &select_args.ids,
    );
    if !args.yes {
        let now = Utc::now();
        for letter in &selected {
            println!("would remove {}", describe(letter, now));
        }
        let count = selected.len();
        let mut kept = rest;
        kept.extend(selected);
        dlq.give_back(kept).await;
        return Err(UsageError(format!(
            "purge removes dead letters for good: {count} would be removed from {}; add --yes to remove them",
            queue.dead_letter_queue()
        ))
        .into());
    }
    let now = Utc::now();
    let is_pusher = queue.name == context.settings.names().name(ADJUSTMENT_PUSHER_QUEUE);
    let pool = if is_pusher && selected.iter().any(|l| push_loop_identity(l).is_some()) {
        Some(context.database().await?)
    } else {
        None
    };
    let mut results = Vec::with_capacity(selected.len());
    let mut kept = rest;
    let mut failure = None;
    for letter in selected {
        if failure.is_some() {
            kept.push(letter);
            continue;
        }
        match purge_one(&dlq, pool.as_ref(), &letter).await {
            Ok(detail) => {
                if !select_args.json {
                    println!("removed {}", describe(&letter, now));
                }
                results.push(replayed(&letter, "removed", detail));
            }
            Err(err) => {
                failure = Some(err);
                kept.push(letter);
            }
        }
    }
    dlq.give_back(kept).await;
    if select_args.json {
        print_json(&results)?;
    } else {
        println!(
            "{} dead letter(s) removed from {}",
            results.len(),
            queue.dead_letter_queue()
        );
    }
    missing_ids(&results, &select_args.ids)?;
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Removes one held message for good. A push-loop dead letter's dead adjustments are
/// discarded first (`adjustment_pusher::operator::discard_dead_letter`), so they are pruned in
/// time instead of being kept forever; a failure there keeps the message.
async fn purge_one(
    dlq: &DeadLetterQueue,
    pool: Option<&Pool>,
    letter: &DeadLetter,
) -> anyhow::Result<String> {
    let mut detail = String::new();
    if let Some(pool) = pool
        && let Some((shop, transaction_id, failed_at, _kind)) = push_loop_identity(letter)
    {
        let discarded = discard_dead_letter(pool, &shop, &transaction_id, &failed_at).await?;
        if discarded > 0 {
            detail = format!("{discarded} dead adjustment(s) discarded: they will never be pushed");
        }
    }
    dlq.remove(letter).await?;
    Ok(detail)
}

fn describe(letter: &DeadLetter, now: chrono::DateTime<Utc>) -> String {
    format!(
        "{} ({}, shop {}, {} old): {}",
        letter.id,
        letter.kind.as_deref().unwrap_or("no kind"),
        letter.shop.as_deref().unwrap_or("-"),
        letter
            .failed_at_time()
            .map_or_else(|| "?".to_owned(), |at| age(at, now)),
        clip(letter.error.as_deref().unwrap_or("-"), 120)
    )
}

/// Splits held messages into the selected ones and the rest.
fn select(
    held: Vec<DeadLetter>,
    filter: &DlqFilterArgs,
    ids: &[String],
) -> (Vec<DeadLetter>, Vec<DeadLetter>) {
    let now = Utc::now();
    held.into_iter()
        .partition(|letter| letter.selected(filter, ids, now))
}

/// Prints the per-message results; an id that matched nothing is a failure.
fn report(results: &[Replayed], json: bool, ids: &[String], verb: &str) -> anyhow::Result<()> {
    if json {
        print_json(&results)?;
    } else {
        for r in results {
            println!(
                "{} {} ({}, shop {}): {}",
                match r.action {
                    "failed" => "FAILED",
                    REFUSED => "REFUSED",
                    _ => verb,
                },
                r.message_id,
                r.kind.as_deref().unwrap_or("no kind"),
                r.shop.as_deref().unwrap_or("-"),
                r.detail
            );
        }
        let done = results
            .iter()
            .filter(|r| r.action != "failed" && r.action != REFUSED)
            .count();
        println!("{done} of {} dead letter(s) {verb}", results.len());
    }
    missing_ids(results, ids)
}

fn missing_ids(results: &[Replayed], ids: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| !results.iter().any(|r| r.message_id == **id))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "no dead letter with id {} (see `wos-sync dlq list`)",
            missing.join(", ")
        ))
    }
}
