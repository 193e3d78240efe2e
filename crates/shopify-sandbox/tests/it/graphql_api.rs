//! The GraphQL endpoint: authentication, versions, bodies, documents and the reads.

use serde_json::json;

use crate::{SHOP, TOKEN, V, World, top_codes};

#[tokio::test]
async fn wrong_or_missing_tokens_are_401_like_shopify() {
    let world = World::new().await;
    let url = world.sandbox.graphql_url(V);
    let body = json!({"query": "{ shop { id } }"});
    for headers in [vec![], vec![("x-shopify-access-token", "nope")]] {
        let r = world.client.post_json(&url, &headers, &body).await.unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json()["errors"],
            "[API] Invalid API key or access token (unrecognized login or wrong password)"
        );
    }
}

#[tokio::test]
async fn versions_bodies_and_documents_are_checked_in_shopifys_order() {
    let world = World::new().await;
    for version in ["2026-05", "2099-01", "latest"] {
        let r = world.gql(version, "{ shop { id } }", json!({})).await;
        assert_eq!(r.status, 404, "{version}");
    }
    let r = world.gql("2024-04", "{ shop { id } }", json!({})).await;
    assert_eq!(
        (r.status, r.header("x-shopify-api-version")),
        (200, Some("2025-01"))
    );
    let r = world.gql(V, "{ shop { id } }", json!({})).await;
    assert_eq!(r.header("x-shopify-api-version"), Some(V));
    assert!(r.header("x-request-id").is_some());

    let url = world.sandbox.graphql_url(V);
    let r = world
        .client
        .send(
            "POST",
            &url,
            &[("x-shopify-access-token", TOKEN)],
            b"{not json".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"]["query"],
        "Required parameter missing or invalid"
    );

    let r = world.gql(V, "{ shop { id }", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(top_codes(&r), ["syntaxError"]);
    let r = world.gql(V, "{ shop { nope } }", json!({})).await;
    assert_eq!(top_codes(&r), ["undefinedField"]);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "Field 'nope' doesn't exist on type 'Shop'"
    );
    assert!(
        r.json().get("extensions").is_none(),
        "validation errors carry no cost"
    );
    let r = world
        .gql(
            V,
            "mutation { inventorySetQuantities(input: {}) { userErrors { message } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        top_codes(&r),
        ["undefinedField"],
        "only inventoryAdjustQuantities is modelled"
    );
    // The raw application/graphql body works too.
    let r = world
        .client
        .send(
            "POST",
            &url,
            &[
                ("x-shopify-access-token", TOKEN),
                ("content-type", "application/graphql"),
            ],
            b"{ shop { myshopifyDomain } }".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.json()["data"]["shop"]["myshopifyDomain"], SHOP);
}

#[tokio::test]
async fn an_item_level_reads_its_named_quantities() {
    let world = World::new().await;
    world
        .sandbox
        .set_quantity(SHOP, world.items[0], world.location, "committed", 2)
        .unwrap();
    let query = "query Level($id: ID!, $loc: ID!) {
      inventoryItem(id: $id) {
        id sku tracked
        inventoryLevel(locationId: $loc) {
          id
          location { id name }
          quantities(names: [\"available\", \"on_hand\", \"committed\", \"incoming\"]) { name quantity }
        }
      }
    }";
    let r = world
        .gql(
            V,
            query,
            json!({"id": world.items[0].gid(), "loc": world.location.gid()}),
        )
        .await;
    let body = r.json();
    let item = &body["data"]["inventoryItem"];
    assert_eq!(item["sku"], "SKU-0");
    assert_eq!(
        item["inventoryLevel"]["quantities"],
        json!([
            {"name": "available", "quantity": 10},
            {"name": "on_hand", "quantity": 12},
            {"name": "committed", "quantity": 2},
            {"name": "incoming", "quantity": 0},
        ])
    );
    assert!(
        item["inventoryLevel"]["id"]
            .as_str()
            .unwrap()
            .contains("?inventory_item_id=")
    );
    let cost = &body["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 3);
    assert_eq!(cost["actualQueryCost"], 3);
    let missing = world
        .gql(
            V,
            query,
            json!({"id": "gid://shopify/InventoryItem/1", "loc": world.location.gid()}),
        )
        .await;
    assert_eq!(missing.json()["data"]["inventoryItem"], json!(null));
}

#[tokio::test]
async fn variants_and_items_are_found_by_sku_and_pages_follow_cursors() {
    let world = World::new().await;
    let r = world
        .gql(
            V,
            "{ productVariants(first: 5, query: \"sku:SKU-1\") { nodes { id sku inventoryItem { id } product { title } } } }",
            json!({}),
        )
        .await;
    let nodes = r.json()["data"]["productVariants"]["nodes"].clone();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["inventoryItem"]["id"], world.items[1].gid());
    assert_eq!(nodes[0]["product"]["title"], "Tee");

    let r = world
        .gql(V, "{ inventoryItems(first: 5, query: \"sku:'SKU-2'\") { edges { cursor node { id sku } } } }", json!({}))
        .await;
    assert_eq!(
        r.json()["data"]["inventoryItems"]["edges"][0]["node"]["sku"],
        "SKU-2"
    );

    let page = "query($after: String) { inventoryItems(first: 2, after: $after) { nodes { sku } pageInfo { hasNextPage endCursor } } }";
    let first = world.gql(V, page, json!({})).await.json();
    assert_eq!(
        first["data"]["inventoryItems"]["nodes"],
        json!([{"sku": "SKU-0"}, {"sku": "SKU-1"}])
    );
    assert_eq!(
        first["data"]["inventoryItems"]["pageInfo"]["hasNextPage"],
        true
    );
    let cursor = first["data"]["inventoryItems"]["pageInfo"]["endCursor"].clone();
    let second = world.gql(V, page, json!({"after": cursor})).await.json();
    assert_eq!(
        second["data"]["inventoryItems"]["nodes"],
        json!([{"sku": "SKU-2"}])
    );
    assert_eq!(
        second["data"]["inventoryItems"]["pageInfo"]["hasNextPage"],
        false
    );

    let r = world
        .gql(
            V,
            "{ productVariants(query: \"sku:X\") { nodes { id } } }",
            json!({}),
        )
        .await;
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first or last")
    );
}

#[tokio::test]
async fn locations_aliases_fragments_and_typename() {
    let world = World::new().await;
    let query = "query { all: locations(first: 10) { nodes { ...Loc } } one: node(id: $id) { __typename ... on InventoryItem { sku } } }
      fragment Loc on Location { id name isActive __typename }";
    let query = query.replace("query {", "query Q($id: ID!) {");
    let r = world
        .gql(V, &query, json!({"id": world.items[2].gid()}))
        .await;
    let body = r.json();
    assert_eq!(
        body["data"]["all"]["nodes"],
        json!([{"id": world.location.gid(), "name": "Main", "isActive": true, "__typename": "Location"}])
    );
    assert_eq!(
        body["data"]["one"],
        json!({"__typename": "InventoryItem", "sku": "SKU-2"})
    );
    // Fields come back in selection order.
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.find("\"id\"").unwrap() < text.find("\"isActive\"").unwrap());
}

#[tokio::test]
async fn the_current_app_installation_lists_the_granted_scopes() {
    let world = World::new().await;
    let query =
        "{ currentAppInstallation { id app { title } accessScopes { handle description } } }";
    let r = world.gql(V, query, json!({})).await;
    assert_eq!(r.status, 200);
    let installation = &r.json()["data"]["currentAppInstallation"];
    let handles: Vec<&str> = installation["accessScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(
        handles,
        [
            "write_inventory",
            "read_inventory",
            "read_products",
            "read_locations"
        ]
    );
    assert_eq!(
        installation["accessScopes"][0]["description"],
        "Modify inventory"
    );
    assert!(
        installation["id"]
            .as_str()
            .unwrap()
            .starts_with("gid://shopify/AppInstallation/")
    );

    world
        .sandbox
        .set_app_scopes(TOKEN, &["read_products"])
        .unwrap();
    let r = world.gql(V, query, json!({})).await;
    assert_eq!(
        r.json()["data"]["currentAppInstallation"]["accessScopes"],
        json!([{"handle": "read_products", "description": "Read products, variants, and collections"}])
    );
}
