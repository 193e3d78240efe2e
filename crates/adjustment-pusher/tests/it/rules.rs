//! Every delta rule, end to end, with exact Shopify totals.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn every_delta_rule_reaches_shopify_exactly() {
    let mut h = Harness::start().await;
    let cases = [
        // put: +q at the warehouse's location
        (
            tx(
                "t-put",
                SHOP,
                "put",
                "SKU-0",
                "MAIN",
                json!({"quantity": 24}),
            ),
            vec![("SKU-0", "MAIN", 24)],
        ),
        // pull: -q
        (
            tx(
                "t-pull",
                SHOP,
                "pull",
                "SKU-0",
                "EAST",
                json!({"quantity": 5}),
            ),
            vec![("SKU-0", "EAST", -5)],
        ),
        // cycle count: counted - previous
        (
            tx(
                "t-cc-down",
                SHOP,
                "cycle_count",
                "SKU-1",
                "MAIN",
                json!({"previous_quantity": 10, "counted_quantity": 8}),
            ),
            vec![("SKU-1", "MAIN", -2)],
        ),
        (
            tx(
                "t-cc-up",
                SHOP,
                "cycle_count",
                "SKU-1",
                "EAST",
                json!({"previous_quantity": 3, "counted_quantity": 7}),
            ),
            vec![("SKU-1", "EAST", 4)],
        ),
        // cycle count without difference: nothing
        (
            tx(
                "t-cc-zero",
                SHOP,
                "cycle_count",
                "SKU-1",
                "EAST",
                json!({"previous_quantity": 7, "counted_quantity": 7}),
            ),
            vec![],
        ),
        // move across Shopify locations: -q at source, +q at destination
        (
            tx(
                "t-move",
                SHOP,
                "move",
                "SKU-2",
                "MAIN",
                json!({"quantity": 6, "to_warehouse": "EAST"}),
            ),
            vec![("SKU-2", "MAIN", -6), ("SKU-2", "EAST", 6)],
        ),
        // move between two warehouses of one Shopify location, and bin to bin: nothing
        (
            tx(
                "t-move-same",
                SHOP,
                "move",
                "SKU-2",
                "MAIN",
                json!({"quantity": 9, "to_warehouse": "ANNEX"}),
            ),
            vec![],
        ),
        (
            tx(
                "t-move-bin",
                SHOP,
                "move",
                "SKU-2",
                "MAIN",
                json!({"quantity": 9, "to_warehouse": "MAIN", "location": "A-1", "to_location": "B-2"}),
            ),
            vec![],
        ),
        // move into a warehouse Shopify does not sell from: only the source side counts
        (
            tx(
                "t-move-out",
                SHOP,
                "move",
                "SKU-2",
                "EAST",
                json!({"quantity": 2, "to_warehouse": "UNMAPPED"}),
            ),
            vec![("SKU-2", "EAST", -2)],
        ),
        // pick of a Shopify order: Shopify already took it off
        (
            tx(
                "t-pick-shopify",
                SHOP,
                "pick",
                "SKU-3",
                "MAIN",
                json!({"quantity": 1, "order_source": "shopify", "order_id": "#1001"}),
            ),
            vec![],
        ),
        // pick of another channel's order: -q, reason other
        (
            tx(
                "t-pick-other",
                SHOP,
                "pick",
                "SKU-3",
                "MAIN",
                json!({"quantity": 3, "order_source": "amazon", "order_id": "A-1"}),
            ),
            vec![("SKU-3", "MAIN", -3)],
        ),
        // a warehouse without a Shopify location: skipped
        (
            tx(
                "t-put-unmapped",
                SHOP,
                "put",
                "SKU-3",
                "UNMAPPED",
                json!({"quantity": 50}),
            ),
            vec![],
        ),
    ];
    for (transaction, changes) in cases {
        h.publish(&transaction).await;
        for (sku, warehouse, delta) in changes {
            h.expect(SHOP, sku, warehouse, delta);
        }
    }
    h.assert_totals(Duration::from_secs(20)).await;

    assert_eq!(h.adjustments(SHOP, "put", "pushed"), 1);
    assert_eq!(h.adjustments(SHOP, "move", "pushed"), 3);
    assert_eq!(h.adjustments(SHOP, "pick", "pushed"), 1);
    assert_eq!(h.adjustments(SHOP, "cycle_count", "skipped"), 1);
    assert_eq!(h.adjustments(SHOP, "move", "skipped"), 3);
    assert_eq!(h.adjustments(SHOP, "pick", "skipped"), 1);
    assert_eq!(h.adjustments(SHOP, "put", "skipped"), 1);

    // Every group carries one reason, our batch reference and our idempotency key.
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    assert!(!groups.is_empty());
    let reasons: std::collections::BTreeSet<_> = groups.iter().map(|g| g.reason.clone()).collect();
    for reason in [
        "received",
        "correction",
        "cycle_count_available",
        "movement_updated",
        "other",
    ] {
        assert!(reasons.contains(reason), "reason {reason} in {reasons:?}");
    }
    for group in &groups {
        let reference = group.reference_document_uri.clone().unwrap_or_default();
        assert!(
            reference.starts_with("wos-sync://push-batch/acme.myshopify.com/"),
            "{reference}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn every_source_transaction_is_traceable_to_its_batch_and_adjustment_group() {
    let mut h = Harness::start().await;
    // Parked first and released together, so they coalesce whatever the timing.
    for n in 0..4 {
        h.map(SHOP, &format!("SKU-{n}"), None).await;
    }
    for n in 0..20 {
        h.publish(&tx(
            &format!("trace-{n}"),
            SHOP,
            "put",
            &format!("SKU-{}", n % 4),
            "MAIN",
            json!({"quantity": 1}),
        ))
        .await;
        h.expect(SHOP, &format!("SKU-{}", n % 4), "MAIN", 1);
    }
    h.wait_parked(20).await;
    let items: Vec<(String, i64)> = (0..4)
        .map(|n| (format!("SKU-{n}"), h.item_of(0, &format!("SKU-{n}"))))
        .collect();
    let mappings: Vec<(&str, i64)> = items.iter().map(|(s, i)| (s.as_str(), *i)).collect();
    h.map_together(SHOP, &mappings).await;
    h.assert_totals(Duration::from_secs(20)).await;
    let client = h.env.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT a.transaction_id, b.adjustment_group_id, b.variables->>'referenceDocumentUri', b.id \
             FROM adjustments a JOIN push_batches b ON b.id = a.batch_id ORDER BY a.transaction_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    for row in &rows {
        let group: Option<String> = row.get(1);
        let reference: String = row.get(2);
        let batch: i64 = row.get(3);
        assert!(reference.ends_with(&format!("/{batch}")));
        let group = group.expect("the batch records Shopify's adjustment group");
        assert!(
            groups.iter().any(
                |g| format!("gid://shopify/InventoryAdjustmentGroup/{}", g.id) == group
                    && g.reference_document_uri.as_deref() == Some(reference.as_str())
            ),
            "{group} in the sandbox log"
        );
    }
    // Coalescing: released together, the 20 transactions (4 items) went out in one call.
    assert_eq!(
        groups.len(),
        1,
        "{} calls for 20 transactions",
        groups.len()
    );
    h.stop().await;
}
