//! Replays of the captured Shopify requests in `shared/fixtures/shopify-admin/`: the same
//! documents and variables (ids translated to the sandbox's), compared with Shopify's
//! responses — data, user errors, top-level errors and costs.

use std::time::Duration;

use model::ids::{InventoryItemId, LocationId};
use serde_json::{Value, json};
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxConfig, SandboxHandle, VariantSpec,
    client::{HttpClient, HttpResponse},
};

use crate::{ADJUST, ADJUST_FULL, SHOP, TOKEN};

macro_rules! fixture {
    ($name:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!(
            "../../../../contract/fixtures/shopify-admin/",
            $name
        )))
        .unwrap()
    };
}

/// A sandbox holding the fixture's locations (same ids) and items (new ids, translated).
#[derive(Debug)]
struct Replay {
    sandbox: SandboxHandle,
    client: HttpClient,
    /// (fixture gid, sandbox gid)
    items: Vec<(String, String)>,
}

impl Replay {
    /// `items`: (fixture item gid, fixture location gid, initial available).
    async fn new(locations: &[(&str, &str)], items: &[(&str, &str, i64)]) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        sandbox.create_shop(SHOP, TOKEN).unwrap();
        for (gid, name) in locations {
            sandbox
                .create_location_with_id(SHOP, LocationId::parse_gid(gid).unwrap(), name)
                .unwrap();
        }
        let mut map = Vec::new();
        for (i, (item_gid, location_gid, available)) in items.iter().enumerate() {
            let created =
                sandbox
                    .create_product(
                        SHOP,
                        ProductSpec {
                            title: format!("Fixture {i}"),
                            variants: vec![VariantSpec::sku(format!("FX-{i}")).stocked_at(
                                LocationId::parse_gid(location_gid).unwrap(),
                                *available,
                            )],
                            ..ProductSpec::default()
                        },
                    )
                    .unwrap();
            map.push((
                (*item_gid).to_owned(),
                created.variants[0].inventory_item_id.gid(),
            ));
        }
        Self {
            sandbox,
            client: HttpClient::new(Duration::from_secs(10)),
            items: map,
        }
    }

    fn translate(&self, value: &Value, to_sandbox: bool) -> Value {
        let mut text = value.to_string();
        for (fixture, sandbox) in &self.items {
            let (from, to) = if to_sandbox {
                (fixture, sandbox)
            } else {
                (sandbox, fixture)
            };
            text = text.replace(&format!("\"{from}\""), &format!("\"{to}\""));
        }
        serde_json::from_str(&text).unwrap()
    }

    async fn send(&self, version: &str, query: &str, fixture_variables: &Value) -> HttpResponse {
        self.client
            .graphql(
                &self.sandbox.base_url(),
                version,
                TOKEN,
                query,
                &self.translate(fixture_variables, true),
            )
            .await
            .unwrap()
    }

    /// The response body with ids translated back to the fixture's and the group's id and
    /// creation time blanked (they are Shopify's, not reproducible).
    fn comparable(&self, response: &HttpResponse) -> Value {
        let mut body = self.translate(&response.json(), false);
        blank_volatile(&mut body);
        body
    }

    fn item(&self, i: usize) -> InventoryItemId {
        InventoryItemId::parse_gid(&self.items[i].1).unwrap()
    }
}

fn blank_volatile(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(group) = map
                .get_mut("inventoryAdjustmentGroup")
                .and_then(Value::as_object_mut)
            {
                for key in ["id", "createdAt"] {
                    if group.contains_key(key) {
                        group.insert(key.into(), json!("<volatile>"));
                    }
                }
            }
            for v in map.values_mut() {
                blank_volatile(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(blank_volatile),
        _ => {}
    }
}

fn expected(mut fixture_response: Value) -> Value {
    blank_volatile(&mut fixture_response);
    fixture_response
}

fn costs(body: &Value) -> (Value, Value) {
    let cost = &body["extensions"]["cost"];
    (
        cost["requestedQueryCost"].clone(),
        cost["actualQueryCost"].clone(),
    )
}

const SHOP_LOCATION: &str = "gid://shopify/Location/106318430514";

#[tokio::test]
async fn ledger_document_rules_replay_exactly() {
    let f = fixture!("inventory-adjust-ledger-document-validation.json");
    let replay = Replay::new(
        &[(SHOP_LOCATION, "Shop location")],
        &[
            (
                "gid://shopify/InventoryItem/53495895949618",
                SHOP_LOCATION,
                0,
            ),
            (
                "gid://shopify/InventoryItem/53495895982386",
                SHOP_LOCATION,
                0,
            ),
        ],
    )
    .await;
    for case in [
        "missingLedgerDocument",
        "availableLedgerDocument",
        "internalLedgerDocument",
        "maxOneLedgerDocument",
        "validNonAvailableLedgerDocument",
    ] {
        let response = replay.send("2026-04", ADJUST, &f[case]["variables"]).await;
        let body = replay.comparable(&response);
        let want = expected(f[case]["response"].clone());
        assert_eq!(body["data"], want["data"], "{case}");
        assert_eq!(costs(&body), costs(&want), "{case}: cost");
    }
    // Only the valid one applied: incoming +5, not mirrored into on_hand.
    let item = replay.item(0);
    let location = LocationId::parse_gid(SHOP_LOCATION).unwrap();
    assert_eq!(
        replay.sandbox.quantity(SHOP, item, location, "incoming"),
        Some(5)
    );
    assert_eq!(
        replay.sandbox.quantity(SHOP, item, location, "on_hand"),
        Some(0)
    );
    assert_eq!(replay.sandbox.adjustment_groups(SHOP).unwrap().len(), 1);
}

#[tokio::test]
async fn quantity_name_allowlist_replays_exactly() {
    let f = fixture!("inventory-adjust-name-allowlist.json");
    let replay = Replay::new(
        &[(SHOP_LOCATION, "Shop location")],
        &[(
            "gid://shopify/InventoryItem/53237602877746",
            SHOP_LOCATION,
            0,
        )],
    )
    .await;
    for case in ["adjustOnHand", "adjustCommitted"] {
        let c = &f["cases"][case];
        let response = replay
            .send("2026-04", c["query"].as_str().unwrap(), &c["variables"])
            .await;
        let body = replay.comparable(&response);
        let want = expected(c["response"].clone());
        assert_eq!(body["data"], want["data"], "{case}");
        assert_eq!(costs(&body), costs(&want), "{case}: cost");
    }
    assert!(replay.sandbox.adjustment_groups(SHOP).unwrap().is_empty());
}

#[tokio::test]
async fn reason_validation_replays_exactly_and_all_seventeen_reasons_apply() {
    let f = fixture!("inventory-reason-validation.json");
    let location = "gid://shopify/Location/112829759794";
    let replay = Replay::new(
        &[(location, "HAR-571 transfer destination")],
        &[("gid://shopify/InventoryItem/53237600747826", location, 1)],
    )
    .await;
    let cases = f["invalidReasonCases"].as_object().unwrap();
    let adjust_case = cases
        .values()
        .find(|c| {
            c["query"]
                .as_str()
                .unwrap()
                .contains("inventoryAdjustQuantities")
        })
        .unwrap();
    let response = replay
        .send(
            "2026-04",
            adjust_case["query"].as_str().unwrap(),
            &adjust_case["variables"],
        )
        .await;
    let body = replay.comparable(&response);
    let want = expected(adjust_case["response"].clone());
    assert_eq!(body["data"], want["data"]);
    assert_eq!(costs(&body), costs(&want));

    let reasons = f["candidateReasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 17);
    for (i, reason) in reasons.iter().enumerate() {
        let mut variables = adjust_case["variables"].clone();
        variables["input"]["reason"] = reason.clone();
        variables["input"]["changes"][0]["changeFromQuantity"] = json!(null);
        variables["idempotencyKey"] = json!(format!("reason-{i}"));
        let response = replay
            .send(
                "2026-04",
                adjust_case["query"].as_str().unwrap(),
                &variables,
            )
            .await;
        let body = response.json();
        let payload = &body["data"]["inventoryAdjustQuantities"];
        assert_eq!(payload["userErrors"], json!([]), "{reason}");
        assert_eq!(payload["inventoryAdjustmentGroup"]["reason"], *reason);
    }
    assert_eq!(replay.sandbox.adjustment_groups(SHOP).unwrap().len(), 17);
}

const MIRROR_DOC: &str =
    "mutation Mirror($input: InventoryAdjustQuantitiesInput!, $idempotencyKey: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup {
      reason
      changes { name delta quantityAfterChange ledgerDocumentUri item { id } location { id } }
    }
    userErrors { field message code }
  }
}";

#[tokio::test]
async fn every_name_but_incoming_is_mirrored_into_on_hand() {
    let f = fixture!("inventory-adjust-on-hand-name-mirrors.json");
    let replay = Replay::new(
        &[(SHOP_LOCATION, "Shop location")],
        &[(
            "gid://shopify/InventoryItem/53519404040498",
            SHOP_LOCATION,
            0,
        )],
    )
    .await;
    let location = LocationId::parse_gid(SHOP_LOCATION).unwrap();
    for case in [
        "damaged",
        "reserved",
        "qualityControl",
        "safetyStock",
        "incoming",
    ] {
        let c = &f["cases"][case];
        let response = replay.send("2026-04", MIRROR_DOC, &c["variables"]).await;
        let body = replay.comparable(&response);
        let want = expected(c["response"].clone());
        assert_eq!(body["data"], want["data"], "{case}");
        assert_eq!(costs(&body), costs(&want), "{case}: cost");
        // The quantities Shopify read back after this case.
        let level = &c["downstreamRead"]["data"]["inventoryItem"]["inventoryLevels"]["nodes"][0];
        for q in level["quantities"].as_array().unwrap() {
            let name = q["name"].as_str().unwrap();
            assert_eq!(
                replay
                    .sandbox
                    .quantity(SHOP, replay.item(0), location, name),
                q["quantity"].as_i64(),
                "{case}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn zero_deltas_are_no_ops_as_in_the_fixture() {
    let f = fixture!("inventory-adjust-zero-delta-noop.json");
    let replay = Replay::new(
        &[(SHOP_LOCATION, "Shop location")],
        &[
            (
                "gid://shopify/InventoryItem/53489877745970",
                SHOP_LOCATION,
                0,
            ),
            (
                "gid://shopify/InventoryItem/53489877778738",
                SHOP_LOCATION,
                0,
            ),
        ],
    )
    .await;
    let doc = "mutation Zero($input: InventoryAdjustQuantitiesInput!, $idempotencyKey: String!) {
      inventoryAdjustQuantities(input: $input) @idempotent(key: $idempotencyKey) {
        inventoryAdjustmentGroup { reason referenceDocumentUri changes { name delta quantityAfterChange item { id } location { id } } }
        userErrors { field message code }
      }
    }";
    for case in ["allZero", "mixedZeroAndNonzero"] {
        let response = replay.send("2026-04", doc, &f[case]["variables"]).await;
        let body = replay.comparable(&response);
        let want = expected(f[case]["response"].clone());
        assert_eq!(body["data"], want["data"], "{case}");
        assert_eq!(costs(&body), costs(&want), "{case}: cost");
    }
    assert_eq!(replay.sandbox.adjustment_groups(SHOP).unwrap().len(), 1);
}

#[tokio::test]
async fn the_2026_04_contracts_replay() {
    let f = fixture!("inventory-quantity-contracts-2026-04.json");
    let item = "gid://shopify/InventoryItem/53469430055218";
    let replay = Replay::new(
        &[(SHOP_LOCATION, "Shop location")],
        &[(item, SHOP_LOCATION, 5)],
    )
    .await;

    // The compare-and-swap adjustment (5 -> 7), full response shape.
    let case = &f["inventoryAdjustQuantities"];
    let response = replay
        .send("2026-04", ADJUST_FULL, &case["variables"])
        .await;
    let body = replay.comparable(&response);
    let want = expected(case["response"].clone());
    assert_eq!(body["data"], want["data"]);
    assert_eq!(costs(&body), costs(&want));

    // No @idempotent from 2026-04 on: BAD_REQUEST, data null, nothing applied.
    let case = &f["missingAdjustIdempotency"];
    let without_directive = ADJUST_FULL
        .replace(" @idempotent(key: $idempotencyKey)", "")
        .replace(", $idempotencyKey: String!", "");
    let mut variables = case["variables"].clone();
    variables.as_object_mut().unwrap().remove("idempotencyKey");
    let body = replay.comparable(&replay.send("2026-04", &without_directive, &variables).await);
    let want = &case["response"];
    assert_eq!(body["data"], want["data"]);
    assert_eq!(body["errors"][0]["message"], want["errors"][0]["message"]);
    assert_eq!(
        body["errors"][0]["extensions"],
        want["errors"][0]["extensions"]
    );
    assert_eq!(body["errors"][0]["path"], want["errors"][0]["path"]);
    assert_eq!(body["extensions"]["cost"]["actualQueryCost"], json!(10));

    // No changeFromQuantity from 2026-04 on: INVALID_FIELD_ARGUMENTS pointing at the field
    // and at the variable definition.
    let case = &f["missingAdjustChangeFromQuantity"];
    let mut variables = case["variables"].clone();
    variables["idempotencyKey"] = json!("missing-change-from");
    let body = replay.comparable(&replay.send("2026-04", ADJUST_FULL, &variables).await);
    let want = &case["response"];
    assert_eq!(body["data"], want["data"]);
    assert_eq!(body["errors"][0]["message"], want["errors"][0]["message"]);
    assert_eq!(
        body["errors"][0]["extensions"],
        want["errors"][0]["extensions"]
    );
    assert_eq!(body["errors"][0]["path"], want["errors"][0]["path"]);
    assert_eq!(body["errors"][0]["locations"].as_array().unwrap().len(), 2);

    // Unknown item and unknown location: user errors exactly as Shopify's.
    for case in ["adjustUnknownInventoryItem", "adjustUnknownLocation"] {
        let c = &f["unknownIdValidation"][case];
        let body = replay.comparable(&replay.send("2026-04", ADJUST_FULL, &c["variables"]).await);
        let want = expected(c["response"].clone());
        assert_eq!(body["data"], want["data"], "{case}");
        assert_eq!(
            body["extensions"]["cost"]["actualQueryCost"],
            json!(10),
            "{case}"
        );
    }
    let location = LocationId::parse_gid(SHOP_LOCATION).unwrap();
    assert_eq!(
        replay
            .sandbox
            .quantity(SHOP, replay.item(0), location, "available"),
        Some(7)
    );
    assert_eq!(replay.sandbox.adjustment_groups(SHOP).unwrap().len(), 1);
}

const PARITY_DOC: &str = "mutation Parity($input: InventoryAdjustQuantitiesInput!) {
  inventoryAdjustQuantities(input: $input) {
    inventoryAdjustmentGroup {
      id
      createdAt
      reason
      referenceDocumentUri
      app { id title apiKey handle }
      staffMember { id }
      changes { name delta quantityAfterChange ledgerDocumentUri item { id } location { id name } }
    }
    userErrors { field message }
  }
}";

#[tokio::test]
async fn the_2025_01_parity_probes_replay() {
    let f = fixture!("2025-01-inventory-adjust-quantities-parity.json");
    let location = "gid://shopify/Location/68509171945";
    let replay = Replay::new(
        &[(location, "103 ossington")],
        &[
            ("gid://shopify/InventoryItem/53044947747049", location, 3),
            ("gid://shopify/InventoryItem/53044947779817", location, 7),
        ],
    )
    .await;

    // 2025-01: no directive and no changeFromQuantity needed; staffMember is refused but the
    // change is applied and the rest of the payload returned.
    let case = &f["mutation"];
    let body = replay.comparable(&replay.send("2025-01", PARITY_DOC, &case["variables"]).await);
    let want = expected(case["response"].clone());
    let group = &body["data"]["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"];
    let want_group = &want["data"]["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"];
    for key in ["reason", "referenceDocumentUri", "changes", "staffMember"] {
        assert_eq!(group[key], want_group[key], "{key}");
    }
    assert_eq!(body["errors"][0]["message"], want["errors"][0]["message"]);
    assert_eq!(
        body["errors"][0]["extensions"],
        want["errors"][0]["extensions"]
    );
    assert_eq!(body["errors"][0]["path"], want["errors"][0]["path"]);
    assert_eq!(costs(&body), costs(&want));

    // The invalid name reports the name and the missing ledger document.
    let case = &f["invalidNameProbe"];
    let doc = "mutation Probe($input: InventoryAdjustQuantitiesInput!) {
      inventoryAdjustQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { field message } }
    }";
    let body = replay.comparable(&replay.send("2025-01", doc, &case["variables"]).await);
    assert_eq!(body["data"], case["response"]["data"]);

    // Missing required input fields: INVALID_VARIABLE before anything runs, without cost.
    for probe in [
        "missingInventoryItemId",
        "missingDelta",
        "missingLocationId",
    ] {
        let case = &f["missingRequiredFieldProbes"][probe];
        let body = replay.comparable(&replay.send("2025-01", doc, &case["variables"]).await);
        let want = &case["response"];
        assert_eq!(
            body["errors"][0]["message"], want["errors"][0]["message"],
            "{probe}"
        );
        assert_eq!(
            body["errors"][0]["extensions"], want["errors"][0]["extensions"],
            "{probe}"
        );
        assert!(body.get("data").is_none(), "{probe}");
        assert!(body.get("extensions").is_none(), "{probe}");
    }
    for probe in ["unknownInventoryItemId", "unknownLocationId"] {
        let case = &f["missingRequiredFieldProbes"][probe];
        let body = replay.comparable(&replay.send("2025-01", doc, &case["variables"]).await);
        assert_eq!(body["data"], case["response"]["data"], "{probe}");
    }
    let loc = LocationId::parse_gid(location).unwrap();
    assert_eq!(
        replay
            .sandbox
            .quantity(SHOP, replay.item(0), loc, "available"),
        Some(1)
    );
    assert_eq!(
        replay
            .sandbox
            .quantity(SHOP, replay.item(1), loc, "on_hand"),
        Some(11)
    );
}
