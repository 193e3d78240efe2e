//! Intake: one WOS transaction in, its Shopify changes recorded (pending or parked), acked.
//!
//! Parsing is strict (CONTRACT 3.2 and its JSON Schema, `model::transaction`); anything that
//! fails it, or names a shop that is not configured, is a `malformed` dead letter with the exact
//! problem. A transaction is recorded once per `(shop, transaction_id)`: a redelivery is acked
//! as a duplicate; WOS reusing the id for different content is a `rejected` dead letter (the
//! transaction recorded first is the one applied), never dropped silently.

use std::{collections::BTreeMap, sync::Arc};

use deadpool_postgres::Pool;
use model::{
    config::{ShopDirectory, ShopSettings},
    delta::plan_adjustments,
    transaction::{InventoryTransaction, parse_transaction},
};
use platform::{
    amqp::{
        consumer::{Disposition, ErrorKind, Handler, Incoming},
        headers::to_json,
    },
    metrics::Metrics,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::store::{Recorded, record_transaction};

/// The handler of `adjustment-pusher.wos-transactions`.
#[derive(Debug)]
pub struct Intake {
    pub pool: Pool,
    pub shops: ShopDirectory,
    pub metrics: Metrics,
    /// Each shop's push loop, woken when it has new pending work.
    pub wakers: Arc<BTreeMap<String, Arc<Notify>>>,
}

impl Handler for Intake {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let transaction = match parse_transaction(&message.body) {
            Ok(transaction) => transaction,
            Err(err) => return Disposition::malformed(err),
        };
        let Some(shop) = self.shops.get(&transaction.shop_domain) else {
            return Disposition::malformed(format!(
                "shop `{}` is not configured",
                transaction.shop_domain
            ));
        };
        let span = tracing::info_span!(
            "transaction",
            shop = %shop.domain,
            transaction_id = %transaction.transaction_id,
            kind = transaction.kind.type_name(),
        );
        self.take_in(message, &transaction, shop)
            .instrument(span)
            .await
    }
}

impl Intake {
    /// Records a parsed transaction of a configured shop and says what became of it (inside the
    /// `transaction` span, so its log lines name the shop and the transaction id).
    async fn take_in(
        &self,
        message: &Incoming,
        transaction: &InventoryTransaction,
        shop: &ShopSettings,
    ) -> Disposition {
        let plan = plan_adjustments(transaction, &shop.locations);
        let digest = content_digest(transaction);
        let headers = to_json(message.properties.headers().as_ref());
        let recorded = record_transaction(
            &self.pool,
            transaction,
            &digest,
            &message.body,
            &headers,
            &plan,
        )
        .await;
        let (shop, kind) = (shop.domain.as_str(), transaction.kind.type_name());
        let count = |outcome: &str, n: usize| {
            self.metrics
                .adjustments_total
                .with_label_values(&[shop, kind, outcome])
                .inc_by(n as u64);
        };
        match recorded {
            Err(err) => Disposition::retry(err),
            Ok(Recorded::Duplicate) => {
                count("duplicate", 1);
                Disposition::Duplicate
            }
            Ok(Recorded::Reused(first)) => {
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
            Ok(Recorded::Accepted { pending, parked }) => {
                for skip in &plan.skipped {
                    tracing::info!(skip = %skip, "nothing to push for this part");
                }
                count("skipped", plan.skipped.len());
                count("parked", parked);
                if pending > 0
                    && let Some(wake) = self.wakers.get(shop)
                {
                    wake.notify_one();
                }
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
