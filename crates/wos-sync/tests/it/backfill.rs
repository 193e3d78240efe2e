//! `backfill-mappings`: unambiguous SKUs filled, ambiguous ones reported, interrupted and
//! resumed without looking a SKU up twice.

use std::time::Duration;

use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, ProductSpec, VariantSpec};

use crate::harness::{SHOP, Setup, World};

#[tokio::test]
async fn a_backfill_fills_unambiguous_skus_reports_ambiguous_ones_and_resumes_after_an_interrupt() {
    // In Shopify: A, D, E once; B twice (a clone); C nowhere. In WOS: all five, unmapped.
    let world = World::new(Setup {
        skus: vec!["A", "B", "D", "E"],
        ..Setup::default()
    })
    .await;
    world
        .sandbox
        .create_product(
            SHOP,
            ProductSpec {
                title: "Tee (copy)".into(),
                variants: vec![VariantSpec::sku("B")],
                ..ProductSpec::default()
            },
        )
        .unwrap();
    for sku in ["A", "B", "C", "D", "E"] {
        world.map(sku, None).await;
    }
    // WOS's "no mapping" spelled as 0 counts as unmapped too.
    world.map("E", Some(0)).await;

    let dry = world
        .cli(&["backfill-mappings", "--shop", SHOP, "--dry-run", "--json"])
        .await;
    dry.assert_code(0);
    let dry = dry.json();
    assert_eq!(dry["filled"], 3, "{dry}");
    assert_eq!(dry["ambiguous"], 1, "{dry}");
    assert_eq!(dry["not_found"], 1, "{dry}");
    assert_eq!(
        world
            .count("SELECT count(*) FROM items WHERE inventory_item_id > 0")
            .await,
        0,
        "a dry run changes nothing"
    );

    // Two lookups go through, the third is held by "Shopify" until the test lets it go.
    world
        .sandbox
        .set_faults(FaultConfig {
            seed: 1,
            rules: vec![
                FaultRule::next(2, FaultAction::Delay { ms: 0 }).queries_only(),
                FaultRule::probability(1.0, FaultAction::Hold).queries_only(),
            ],
        })
        .unwrap();
    let first = world
        .command(&["backfill-mappings", "--shop", SHOP], &[])
        .spawn()
        .unwrap();
    world
        .wait("the third lookup held", || async {
            world.sandbox.held_requests() == 1
        })
        .await;
    assert_eq!(
        world
            .count("SELECT count(*) FROM mapping_backfill_results")
            .await,
        2
    );
    let pid = first.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), first.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    world.sandbox.set_faults(FaultConfig::none()).unwrap();
    world.sandbox.release_held();
    // Count the lookups of the resumed run: a no-op fault on every query is logged when fired.
    let fired_before = world.sandbox.fired_faults().len();
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, FaultAction::Delay { ms: 0 }).queries_only(),
        ))
        .unwrap();

    let resumed = world
        .cli(&["backfill-mappings", "--shop", SHOP, "--json"])
        .await;
    resumed.assert_code(0);
    let report = resumed.json();
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(
        world.sandbox.fired_faults().len() - fired_before,
        3,
        "only the three SKUs not looked up before"
    );
    assert_eq!(report["filled"], 3, "{report}");
    assert_eq!(report["ambiguous"], 1, "{report}");
    assert_eq!(report["not_found"], 1, "{report}");
    let outcome = |sku: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sku"] == sku)
            .map(|r| r["outcome"].as_str().unwrap().to_owned())
    };
    assert_eq!(outcome("B").as_deref(), Some("ambiguous"));
    assert_eq!(outcome("C").as_deref(), Some("not_found"));
    assert_eq!(
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sku"] == "B")
            .unwrap()["candidates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for sku in ["A", "D", "E"] {
        let mapped: Option<i64> = world
            .env
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
                &[&SHOP, &sku],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(mapped, Some(world.item(sku)), "{sku}");
    }
    assert_eq!(
        world
            .count("SELECT count(*) FROM items WHERE sku IN ('B', 'C') AND inventory_item_id > 0")
            .await,
        0
    );
    // Each fill is announced (outbox) so parked adjustments of the SKU are released at once.
    assert_eq!(
        world
            .count("SELECT count(*) FROM outbox WHERE routing_key = 'mapping.set'")
            .await,
        3
    );

    // A new run finds only what is still unmapped.
    let again = world
        .cli(&["backfill-mappings", "--shop", SHOP, "--json"])
        .await;
    again.assert_code(0);
    let again = again.json();
    assert_eq!(again["resumed"], false);
    assert_eq!(again["filled"], 0);
    assert_eq!(again["results"].as_array().unwrap().len(), 2);
}
