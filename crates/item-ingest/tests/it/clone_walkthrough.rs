//! The seed's clone walkthrough ("Cloning Shopify Items (and duplicate SKU values)"), step by
//! step: product 20A642 with variant 20A642-XL is cloned; the clone's variant first carries the
//! copied SKU, then is renamed 20B611-XL. After every step we assert which Shopify inventory
//! item each WOS item points at. The seed's integration remapped 20A642-XL to the clone in
//! step 4 and only recovered when someone updated the original (step 8, "the workaround"); the
//! mapping rules must get every step right without it, and stay right with it.

use crate::harness::{Ingest, product, v};

const ORIGINAL: u64 = 7_001;
const CLONE: u64 = 7_002;
const ORIGINAL_VARIANT: u64 = 8_001;
const CLONE_VARIANT: u64 = 8_002;
const ORIGINAL_ITEM: u64 = 9_001;
const CLONE_ITEM: u64 = 9_002;

async fn walkthrough(workaround: bool) {
    let mut ingest = Ingest::start().await;

    // 1. Item 20A642-XL exists in Shopify and WOS, mapped to its own inventory item.
    let original = product(
        ORIGINAL,
        "20A642",
        1,
        &[v(ORIGINAL_VARIANT, "20A642-XL", ORIGINAL_ITEM)],
    );
    ingest.send("products/create", &original, "w-1").await;
    assert_eq!(
        ingest.mapping("20A642-XL").await,
        Some(Some(ORIGINAL_ITEM)),
        "step 1"
    );
    assert_eq!(ingest.mapping("20B611-XL").await, None, "step 1");

    // 2-4. The clone is created with the SKU copied: two live variants carry 20A642-XL. The
    // integration sees only the new product; the item must keep pointing at the original.
    let clone = product(
        CLONE,
        "20B611",
        2,
        &[v(CLONE_VARIANT, "20A642-XL", CLONE_ITEM)],
    );
    ingest.send("products/create", &clone, "w-2").await;
    assert_eq!(
        ingest.mapping("20A642-XL").await,
        Some(Some(ORIGINAL_ITEM)),
        "step 4: not remapped to the clone"
    );
    assert_eq!(ingest.mapping("20B611-XL").await, None, "step 4");
    assert_eq!(
        ingest.conflicts(),
        1,
        "the duplicated SKU is reported as a conflict"
    );

    // 5-6. The clone's SKU is updated to 20B611-XL: a new WOS item for it.
    let renamed = product(
        CLONE,
        "20B611",
        3,
        &[v(CLONE_VARIANT, "20B611-XL", CLONE_ITEM)],
    );
    ingest.send("products/update", &renamed, "w-3").await;
    assert_eq!(
        ingest.mapping("20A642-XL").await,
        Some(Some(ORIGINAL_ITEM)),
        "step 6"
    );
    assert_eq!(
        ingest.mapping("20B611-XL").await,
        Some(Some(CLONE_ITEM)),
        "step 6"
    );

    // 7. The two WOS items point at different inventory items (the seed's bug: the same one).
    assert_eq!(
        ingest.conflicts(),
        0,
        "step 7: no SKU is duplicated any more"
    );

    if workaround {
        // 8. Someone updates the original product afterwards: nothing changes, still right.
        let touched = product(
            ORIGINAL,
            "20A642 (touched)",
            4,
            &[v(ORIGINAL_VARIANT, "20A642-XL", ORIGINAL_ITEM)],
        );
        ingest.send("products/update", &touched, "w-4").await;
        assert_eq!(
            ingest.mapping("20A642-XL").await,
            Some(Some(ORIGINAL_ITEM)),
            "step 8"
        );
        assert_eq!(
            ingest.mapping("20B611-XL").await,
            Some(Some(CLONE_ITEM)),
            "step 8"
        );
    }
    assert_eq!(ingest.item_count().await, 2);
    assert_eq!(ingest.messages("dead_lettered"), 0);
    ingest.stop().await;
}

#[tokio::test]
async fn clone_walkthrough_without_the_workaround() {
    walkthrough(false).await;
}

#[tokio::test]
async fn clone_walkthrough_with_the_workaround() {
    walkthrough(true).await;
}

#[tokio::test]
async fn clone_walkthrough_with_the_clones_events_out_of_order() {
    // Shopify delivers unordered: the rename (step 5) arrives before the clone's create (step 2).
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(
                ORIGINAL,
                "20A642",
                1,
                &[v(ORIGINAL_VARIANT, "20A642-XL", ORIGINAL_ITEM)],
            ),
            "w-1",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(
                CLONE,
                "20B611",
                3,
                &[v(CLONE_VARIANT, "20B611-XL", CLONE_ITEM)],
            ),
            "w-3",
        )
        .await;
    ingest
        .send(
            "products/create",
            &product(
                CLONE,
                "20B611",
                2,
                &[v(CLONE_VARIANT, "20A642-XL", CLONE_ITEM)],
            ),
            "w-2",
        )
        .await;
    assert_eq!(ingest.mapping("20A642-XL").await, Some(Some(ORIGINAL_ITEM)));
    assert_eq!(ingest.mapping("20B611-XL").await, Some(Some(CLONE_ITEM)));
    assert_eq!(
        ingest.items_counter("stale"),
        1,
        "the late create is stale for the clone's variant"
    );
    assert_eq!(ingest.conflicts(), 0);
    ingest.stop().await;
}

#[tokio::test]
async fn clone_seen_before_the_original_keeps_the_first_mapping_until_the_rename() {
    // The integration never saw the original before the clone (a lost webhook): the clone is
    // the only candidate, so 20A642-XL maps to it; once the clone is renamed and the original
    // is seen, 20A642-XL moves back to the original by itself.
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(
                CLONE,
                "20B611",
                2,
                &[v(CLONE_VARIANT, "20A642-XL", CLONE_ITEM)],
            ),
            "w-2",
        )
        .await;
    assert_eq!(ingest.mapping("20A642-XL").await, Some(Some(CLONE_ITEM)));
    ingest
        .send(
            "products/update",
            &product(
                CLONE,
                "20B611",
                3,
                &[v(CLONE_VARIANT, "20B611-XL", CLONE_ITEM)],
            ),
            "w-3",
        )
        .await;
    assert_eq!(
        ingest.mapping("20A642-XL").await,
        Some(None),
        "no live variant carries it now"
    );
    ingest
        .send(
            "products/update",
            &product(
                ORIGINAL,
                "20A642",
                4,
                &[v(ORIGINAL_VARIANT, "20A642-XL", ORIGINAL_ITEM)],
            ),
            "w-4",
        )
        .await;
    assert_eq!(ingest.mapping("20A642-XL").await, Some(Some(ORIGINAL_ITEM)));
    assert_eq!(ingest.mapping("20B611-XL").await, Some(Some(CLONE_ITEM)));
    ingest.stop().await;
}

#[tokio::test]
async fn a_clone_renamed_within_the_same_second_keeps_its_new_sku_whatever_the_arrival_order() {
    // Create and rename share `updated_at` (Shopify's payloads have whole seconds); the relay's
    // X-Shopify-Triggered-At orders them. The rename arrives first.
    let mut ingest = Ingest::start().await;
    let original = product(
        ORIGINAL,
        "20A642",
        1,
        &[v(ORIGINAL_VARIANT, "20A642-XL", ORIGINAL_ITEM)],
    );
    ingest
        .send_triggered(
            "products/create",
            &original,
            "w-1",
            "2026-11-27T15:00:01.100Z",
        )
        .await;
    let renamed = product(
        CLONE,
        "20B611",
        2,
        &[v(CLONE_VARIANT, "20B611-XL", CLONE_ITEM)],
    );
    ingest
        .send_triggered(
            "products/update",
            &renamed,
            "w-3",
            "2026-11-27T15:00:02.900Z",
        )
        .await;
    let created = product(
        CLONE,
        "20B611",
        2,
        &[v(CLONE_VARIANT, "20A642-XL", CLONE_ITEM)],
    );
    ingest
        .send_triggered(
            "products/create",
            &created,
            "w-2",
            "2026-11-27T15:00:02.300Z",
        )
        .await;
    assert_eq!(ingest.mapping("20A642-XL").await, Some(Some(ORIGINAL_ITEM)));
    assert_eq!(
        ingest.mapping("20B611-XL").await,
        Some(Some(CLONE_ITEM)),
        "the late create did not undo the rename"
    );
    assert_eq!(ingest.items_counter("stale"), 1);
    ingest.stop().await;
}
