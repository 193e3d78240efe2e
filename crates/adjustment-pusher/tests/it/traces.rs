//! One trace id followed through the services by their log lines, messages and rows (issue
//! 14.6): from a webhook's `traceparent` at the relay to item-ingest's item row and the mapping
//! announcement it published, and from a WOS transaction's `traceparent` to the push batch that
//! carried it to Shopify. Log lines are the JSON a deployment writes, captured in the test process
//! (`platform::telemetry::captured_log_lines`); every wait is on a condition.

use std::time::Duration;

use lapin::types::FieldTable;
use platform::{
    amqp::{
        headers::{header_str, set_str},
        topology::ITEM_MAPPINGS,
    },
    telemetry::captured_log_lines,
    trace::{self, TraceParent},
};
use serde_json::{Value, json};
use webhook_relay::client::{RelayClient, shopify_headers};

use crate::harness::{Harness, Options, tx, webhook_secret};

const SHOP: &str = "acme.myshopify.com";

/// The `trace_id`s of the spans a captured JSON line was written in.
fn trace_ids_of(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|span| span["trace_id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits for a captured line with `message` that names `needle` (a SKU, a trace id), and
/// returns it.
async fn wait_for_line(message: &str, needle: &str) -> Value {
    let mut found = None;
    testkit::wait_until(
        Duration::from_secs(20),
        &format!("a log line `{message}` naming {needle}"),
        || {
            found = captured_log_lines(needle)
                .into_iter()
                .find(|line| line["fields"]["message"] == message);
            std::future::ready(found.is_some())
        },
    )
    .await;
    found.unwrap_or_default()
}

fn traced(traceparent: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    set_str(&mut headers, trace::HEADER, traceparent);
    headers
}

/// A queue of the test's own that receives item-ingest's mapping announcements.
async fn bind_announcements(h: &Harness) -> String {
    h.env
        .tap("trace-announcements", ITEM_MAPPINGS, "mapping.*")
        .await
}

async fn publish(h: &mut Harness, id: &str, sku: &str, headers: FieldTable) {
    let body = tx(id, SHOP, "put", sku, "MAIN", json!({"quantity": 3}));
    h.publish_with_headers(body.to_string().as_bytes(), id, "put", headers)
        .await;
}

#[tokio::test]
async fn a_webhooks_trace_reaches_its_item_row_and_announcement_and_a_transactions_its_batch() {
    let mut h = Harness::with(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    let item = h.item_of(0, "SKU-0");
    h.map(SHOP, "SKU-0", None).await;

    // A transaction traced by WOS waits for its item's mapping.
    let transaction_trace = TraceParent::new_root();
    publish(
        &mut h,
        "traced-put",
        "SKU-0",
        traced(&transaction_trace.to_string()),
    )
    .await;
    h.wait_parked(1).await;
    let announcements = bind_announcements(&h).await;

    // The webhook that maps the item, through the relay, with a traceparent of its own (as a
    // tracing proxy in front of the relay would add).
    let webhook_trace = TraceParent::new_root();
    let body = json!({
        "id": 990_001,
        "title": "Traced tee",
        "created_at": "2026-11-27T10:00:00-05:00",
        "updated_at": "2026-11-27T10:00:01-05:00",
        "variants": [{
            "id": 990_002,
            "product_id": 990_001,
            "title": "M",
            "sku": "SKU-0",
            "inventory_item_id": item,
            "created_at": "2026-11-27T10:00:00-05:00",
            "updated_at": "2026-11-27T10:00:01-05:00",
        }],
    })
    .to_string();
    let mut headers = shopify_headers(
        webhook_secret(),
        "products/update",
        SHOP,
        "traced-webhook",
        body.as_bytes(),
    );
    headers.push((trace::HEADER.to_owned(), webhook_trace.to_string()));
    let relay = RelayClient::new(h.relay_addr.unwrap(), 1);
    let reply = relay.post_webhook(&headers, body).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    let webhook_id = webhook_trace.trace_id().to_string();
    // The relay's line, item-ingest's line for the item row, and the mapping announcement the
    // row caused: one trace id.
    let published = wait_for_line("webhook published", &webhook_id).await;
    assert_eq!(trace_ids_of(&published), std::slice::from_ref(&webhook_id));
    let row = wait_for_line("item row written", &webhook_id).await;
    assert_eq!(row["fields"]["sku"], "SKU-0");
    assert!(trace_ids_of(&row).contains(&webhook_id), "{row}");
    let announced = h
        .env
        .wait_and_drain(&announcements, 1, Duration::from_secs(20))
        .await;
    let header = header_str(
        announced[0].delivery.properties.headers().as_ref(),
        trace::HEADER,
    );
    let announced_trace = TraceParent::parse(header.unwrap_or_default()).unwrap();
    assert_eq!(announced_trace.trace_id(), webhook_trace.trace_id());

    // The transaction's trace: its batch is pushed under it (the batch holds no other trace)
    // and names it.
    h.wait_settled(Duration::from_secs(20)).await;
    let transaction_id = transaction_trace.trace_id().to_string();
    let client = h.env.pool.get().await.unwrap();
    let batch = client
        .query_one(
            "SELECT id, traceparent, source_trace_ids FROM push_batches",
            &[],
        )
        .await
        .unwrap();
    let (batch_id, batch_trace, sources): (i64, String, Vec<String>) =
        (batch.get(0), batch.get(1), batch.get(2));
    assert_eq!(sources, std::slice::from_ref(&transaction_id));
    let batch_trace = TraceParent::parse(&batch_trace).unwrap();
    assert_eq!(batch_trace.trace_id(), transaction_trace.trace_id());
    let applied = wait_for_line("batch applied", &transaction_id).await;
    assert_eq!(applied["fields"]["batch"], batch_id);
    assert!(
        trace_ids_of(&applied).contains(&transaction_id),
        "{applied}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_batch_of_several_traces_gets_its_own_and_names_each_of_them() {
    let mut h = Harness::start().await;
    for sku in ["SKU-0", "SKU-1", "SKU-2"] {
        h.map(SHOP, sku, None).await;
    }
    let (first, second) = (TraceParent::new_root(), TraceParent::new_root());
    publish(&mut h, "first", "SKU-0", traced(&first.to_string())).await;
    publish(&mut h, "second", "SKU-1", traced(&second.to_string())).await;
    // Uppercase hex is not W3C: the transaction is taken, under a new trace.
    let invalid = first.to_string().to_uppercase();
    publish(&mut h, "invalid", "SKU-2", traced(&invalid)).await;
    h.wait_parked(3).await;
    let items = [
        ("SKU-0", h.item_of(0, "SKU-0")),
        ("SKU-1", h.item_of(0, "SKU-1")),
        ("SKU-2", h.item_of(0, "SKU-2")),
    ];
    h.map_together(SHOP, &items).await;
    h.wait_settled(Duration::from_secs(20)).await;

    let client = h.env.pool.get().await.unwrap();
    let stored: String = client
        .query_one(
            "SELECT headers->>'traceparent' FROM wos_transactions WHERE transaction_id = 'invalid'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let renewed = TraceParent::parse(&stored).expect("a valid traceparent replaced the invalid");
    assert_ne!(stored, invalid);

    let batch = client
        .query_one(
            "SELECT id, traceparent, source_trace_ids FROM push_batches",
            &[],
        )
        .await
        .unwrap();
    let (batch_id, batch_trace, sources): (i64, String, Vec<String>) =
        (batch.get(0), batch.get(1), batch.get(2));
    let mut expected: Vec<String> = [first, second, renewed]
        .iter()
        .map(|t| t.trace_id().to_string())
        .collect();
    expected.sort();
    assert_eq!(sources, expected);
    let batch_trace = TraceParent::parse(&batch_trace).unwrap().trace_id();
    assert!(
        [first, second, renewed]
            .iter()
            .all(|t| t.trace_id() != batch_trace),
        "a batch of several traces starts its own"
    );
    // Its push names its own trace and every transaction's: an operator grepping any of them
    // finds the batch.
    let applied = wait_for_line("batch applied", &batch_trace.to_string()).await;
    assert_eq!(applied["fields"]["batch"], batch_id);
    let push = applied["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "push_batch"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(push["trace_ids"], expected.join(","));
    h.stop().await;
}
