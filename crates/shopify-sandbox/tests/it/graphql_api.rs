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
async fn nodes_read_variants_as_item_ingest_reads_them_and_unknown_ids_are_null() {
    let world = World::new().await;
    let product = world
        .gql(
            V,
            "{ productVariants(first: 1, query: \"sku:SKU-0\") { nodes { id product { id } } } }",
            json!({}),
        )
        .await
        .json()["data"]["productVariants"]["nodes"][0]
        .clone();
    // item-ingest's refresh query (`refresh::VARIANTS_QUERY`).
    let query = "query VariantRefresh($ids: [ID!]!) { nodes(ids: $ids) { __typename ... on ProductVariant { id sku title barcode price createdAt updatedAt inventoryItem { id } product { id title vendor productType updatedAt } } } }";
    let r = world
        .gql(
            V,
            query,
            json!({"ids": [product["id"], "gid://shopify/ProductVariant/1"]}),
        )
        .await;
    let body = r.json();
    let node = &body["data"]["nodes"][0];
    assert_eq!(node["__typename"], "ProductVariant");
    assert_eq!(node["id"], product["id"]);
    assert_eq!(node["sku"], "SKU-0");
    assert_eq!(node["title"], "SKU-0");
    assert_eq!(node["barcode"], json!(null));
    assert_eq!(node["price"], "0.00");
    assert_eq!(node["inventoryItem"]["id"], world.items[0].gid());
    assert_eq!(node["product"]["id"], product["product"]["id"]);
    assert_eq!(node["product"]["title"], "Tee");
    assert_eq!(node["product"]["vendor"], "");
    assert!(node["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["data"]["nodes"][1],
        json!(null),
        "an unknown id is null"
    );
    // Requested: 2 ids × (the node, its item, its product); actual: the one found.
    let cost = &body["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 6);
    assert_eq!(cost["actualQueryCost"], 3);
}

#[tokio::test]
async fn variants_are_found_by_sku_and_pages_follow_cursors() {
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
        .gql(V, "{ productVariants(first: 5, query: \"sku:'SKU-2'\") { edges { cursor node { id sku } } } }", json!({}))
        .await;
    assert_eq!(
        r.json()["data"]["productVariants"]["edges"][0]["node"]["sku"],
        "SKU-2"
    );

    let page = "query($after: String) { productVariants(first: 2, after: $after) { nodes { sku } pageInfo { hasNextPage endCursor } } }";
    let first = world.gql(V, page, json!({})).await.json();
    assert_eq!(
        first["data"]["productVariants"]["nodes"],
        json!([{"sku": "SKU-0"}, {"sku": "SKU-1"}])
    );
    assert_eq!(
        first["data"]["productVariants"]["pageInfo"]["hasNextPage"],
        true
    );
    let cursor = first["data"]["productVariants"]["pageInfo"]["endCursor"].clone();
    let second = world.gql(V, page, json!({"after": cursor})).await.json();
    assert_eq!(
        second["data"]["productVariants"]["nodes"],
        json!([{"sku": "SKU-2"}])
    );
    assert_eq!(
        second["data"]["productVariants"]["pageInfo"]["hasNextPage"],
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
    let query = "query Q($ids: [ID!]!) { all: locations(first: 10) { nodes { ...Loc } } some: nodes(ids: $ids) { __typename ... on ProductVariant { sku } } }
      fragment Loc on Location { id name isActive __typename }";
    let variant = world
        .gql(
            V,
            "{ productVariants(first: 1, query: \"sku:SKU-2\") { nodes { id } } }",
            json!({}),
        )
        .await
        .json()["data"]["productVariants"]["nodes"][0]["id"]
        .clone();
    let r = world.gql(V, query, json!({"ids": [variant]})).await;
    let body = r.json();
    assert_eq!(
        body["data"]["all"]["nodes"],
        json!([{"id": world.location.gid(), "name": "Main", "isActive": true, "__typename": "Location"}])
    );
    assert_eq!(
        body["data"]["some"],
        json!([{"__typename": "ProductVariant", "sku": "SKU-2"}])
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
