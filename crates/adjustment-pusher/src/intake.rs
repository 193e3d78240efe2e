//! Intake: WOS transactions in, their Shopify changes recorded (pending or parked), acked.
//!
//! Messages come in groups (the consumer runtime's `[consumer] group_size`): each is parsed and
//! validated alone, outside any database transaction; the valid ones are recorded together in
//! one (`store::record_transactions`); each shop with new pending work is woken once per group.
//! A group failing for something in one transaction's data is recorded message by message, so
//! only that message is retried; a database outage retries the whole group.
//!
//! Parsing is strict (CONTRACT 3.2 and its JSON Schema, `model::transaction`); anything that
//! fails it, or names a shop that is not configured, is a `malformed` dead letter with the exact
//! problem. A transaction is recorded once per `(shop, transaction_id)`: a redelivery is acked
//! as a duplicate; WOS reusing the id for different content is a `rejected` dead letter (the
//! transaction recorded first is the one applied), never dropped silently.

use std::{collections::BTreeSet, sync::Arc};

use deadpool_postgres::Pool;
use model::{
    config::{ShopDirectory, ShopSettings},
    delta::{AdjustmentPlan, plan_adjustments},
    transaction::{InventoryTransaction, parse_transaction},
};
use platform::{
    amqp::{
        consumer::{Disposition, ErrorKind, GroupOutcome, Handler, Incoming},
        headers::to_json,
    },
    db::DbError,
    metrics::Metrics,
};
use sha2::{Digest, Sha256};

use crate::{
    push::ReadyShops,
    store::{Arrival, Recorded, record_transactions},
};

/// The handler of `adjustment-pusher.wos-transactions`.
#[derive(Debug)]
pub struct Intake {
    pub pool: Pool,
    pub shops: ShopDirectory,
    pub metrics: Metrics,
    /// Each shop's push loop, woken when it has new pending work.
    /// Where each shop with new work is woken (`push::ready`).
    pub ready: Arc<ReadyShops>,
}

impl Handler for Intake {
    const GROUPS: bool = true;

    async fn handle(&self, message: &Incoming) -> Disposition {
        match self.take_in(std::slice::from_ref(message)).await {
            Ok(mut dispositions) => dispositions
                .pop()
                .unwrap_or_else(|| Disposition::retry("no disposition for the message")),
            Err(err) => Disposition::retry(err),
        }
    }

    async fn handle_group(&self, messages: &[Incoming]) -> GroupOutcome {
        match self.take_in(messages).await {
            Ok(dispositions) => GroupOutcome::Handled(dispositions),
            Err(err) if err.is_unavailable() => {
                GroupOutcome::Handled(vec![Disposition::retry(err); messages.len()])
            }
            // Something in one transaction's data: find it by recording each alone.
            Err(_) => GroupOutcome::HandleAlone,
        }
    }
}

/// A message that parsed, of a configured shop, with what intake derives from it.
struct Parsed<'a> {
    transaction: InventoryTransaction,
    shop: &'a ShopSettings,
    plan: AdjustmentPlan,
    digest: String,
    headers: serde_json::Value,
}

impl Intake {
    /// Parses and validates each message (outside any database transaction), records the ones
    /// that passed together, and says what became of each, in order. Each shop with new pending
    /// work is woken once.
    async fn take_in(&self, messages: &[Incoming]) -> Result<Vec<Disposition>, DbError> {
        let parsed: Vec<Result<Parsed, Disposition>> =
            messages.iter().map(|m| self.parse(m)).collect();
        let arrivals: Vec<Arrival> = messages
            .iter()
            .zip(&parsed)
            .filter_map(|(message, parsed)| {
                let parsed = parsed.as_ref().ok()?;
                Some(Arrival {
                    transaction: &parsed.transaction,
                    digest: &parsed.digest,
                    body: &message.body,
                    headers: &parsed.headers,
                    plan: &parsed.plan,
                })
            })
            .collect();
        let mut recorded = if arrivals.is_empty() {
            Vec::new()
        } else {
            record_transactions(&self.pool, &arrivals).await?
        }
        .into_iter();

        let mut to_wake = BTreeSet::new();
        let dispositions = parsed
            .into_iter()
            .map(|parsed| match parsed {
                Err(refused) => refused,
                Ok(parsed) => {
                    let recorded = recorded.next().unwrap_or(Recorded::Accepted {
                        pending: 0,
                        parked: 0,
                    });
                    if matches!(recorded, Recorded::Accepted { pending, .. } if pending > 0) {
                        to_wake.insert(parsed.shop.domain.as_str());
                    }
                    let span = tracing::info_span!(
                        "transaction",
                        shop = %parsed.shop.domain,
                        transaction_id = %parsed.transaction.transaction_id,
                        kind = parsed.transaction.kind.type_name(),
                    );
                    span.in_scope(|| self.settle(&parsed, recorded))
                }
            })
            .collect();
        for shop in to_wake {
            self.ready.wake(shop);
        }
        Ok(dispositions)
    }

    /// A message as a transaction of a configured shop, or the dead letter it is.
    fn parse<'a>(&'a self, message: &Incoming) -> Result<Parsed<'a>, Disposition> {
        let transaction = parse_transaction(&message.body).map_err(Disposition::malformed)?;
        let Some(shop) = self.shops.get(&transaction.shop_domain) else {
            return Err(Disposition::malformed(format!(
                "shop `{}` is not configured",
                transaction.shop_domain
            )));
        };
        Ok(Parsed {
            plan: plan_adjustments(&transaction, &shop.locations),
            digest: content_digest(&transaction),
            headers: to_json(message.properties.headers().as_ref()),
            transaction,
            shop,
        })
    }

    /// What became of a recorded transaction: counted, logged (in its `transaction` span),
    /// and the message's disposition.
    fn settle(&self, parsed: &Parsed, recorded: Recorded) -> Disposition {
        let (shop, transaction) = (parsed.shop.domain.as_str(), &parsed.transaction);
        let kind = transaction.kind.type_name();
        let count = |outcome: &str, n: usize| {
            self.metrics
                .adjustments_total
                .with_label_values(&[shop, kind, outcome])
                .inc_by(n as u64);
        };
        match recorded {
            Recorded::Duplicate => {
                count("duplicate", 1);
                Disposition::Duplicate
            }
            Recorded::Reused(first) => {
                count("dead_lettered", 1);
                let reason = format!(
                    "transaction id `{}` was already used by another transaction (a `{}` of SKU \
                     `{}`, received {}): the first one is the one applied; this one was not \
                     applied",
                    transaction.transaction_id,
                    first.kind,
                    first.sku,
                    first.received_at.to_rfc3339(),
                );
                tracing::warn!("{reason}");
                Disposition::dead_letter(ErrorKind::Rejected, reason)
            }
            Recorded::Accepted { parked, .. } => {
                for skip in &parsed.plan.skipped {
                    tracing::info!(skip = %skip, "nothing to push for this part");
                }
                count("skipped", parsed.plan.skipped.len());
                count("parked", parked);
                if parked > 0 {
                    self.metrics
                        .parked_adjustments
                        .with_label_values(&[shop])
                        .add(parked as i64);
                    tracing::info!(sku = %transaction.sku, "item has no Shopify mapping yet; parked");
                    Disposition::Parked
                } else {
                    Disposition::Ack
                }
            }
        }
    }
}

/// The transaction's content, independent of JSON formatting and key order.
fn content_digest(transaction: &InventoryTransaction) -> String {
    let canonical = serde_json::to_vec(transaction).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
