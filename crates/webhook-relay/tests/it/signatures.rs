//! Signatures: the shared test vector, and secret rotation.

use std::collections::BTreeSet;

use webhook_relay::webhook::{UNVERIFIED_TOPIC, header};

use crate::harness::{
    NEW_SECRET, OLD_SECRET, ROTATED_SHOP, ROTATING_SHOP, VECTOR_SHOP, connected_relay, hmac_vector,
    message_id,
};

#[tokio::test]
async fn the_shared_hmac_vector_is_accepted_and_a_one_byte_change_refused() {
    let relay = connected_relay("").await;
    let (_, body, signature) = hmac_vector();
    // The vector's own signature (not one we computed), with the headers of its test.
    let headers = |webhook_id: &str| -> Vec<(String, String)> {
        [
            (header::TOPIC, "products/create"),
            (header::HMAC, signature.as_str()),
            (header::SHOP_DOMAIN, VECTOR_SHOP),
            (header::WEBHOOK_ID, webhook_id),
            (header::API_VERSION, "2023-01"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    };

    let reply = relay.post(&headers("123456789"), body.as_bytes()).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let mut changed = body.clone().into_bytes();
    changed[9] ^= 0x01; // "bar" -> "bcr"
    let reply = relay.post(&headers("123456790"), &changed).await;
    assert_eq!(reply.status, 401, "{reply:?}");

    let messages = relay.take(1).await;
    assert_eq!(messages.len(), 1, "only the genuine webhook was published");
    assert_eq!(message_id(&messages[0]), "123456789");
    assert_eq!(messages[0].delivery.data, body.as_bytes());
    assert_eq!(relay.webhooks("products/create", "accepted"), 1);
    assert_eq!(relay.webhooks(UNVERIFIED_TOPIC, "bad_hmac"), 1);
    relay.stop().await;
}

#[tokio::test]
async fn the_previous_secret_is_accepted_only_while_it_is_configured() {
    let relay = connected_relay("").await;
    let body = br#"{"id":1}"#;
    let cases = [
        (ROTATING_SHOP, NEW_SECRET, "rotating-new", 200),
        (ROTATING_SHOP, OLD_SECRET, "rotating-old", 200),
        (ROTATING_SHOP, "neither-secret", "rotating-other", 401),
        (ROTATED_SHOP, NEW_SECRET, "rotated-new", 200),
        // Its previous-secret variable is configured but unset: the window is over.
        (ROTATED_SHOP, OLD_SECRET, "rotated-old", 401),
    ];
    for (shop, secret, id, status) in cases {
        let reply = relay
            .deliver(secret, shop, "products/update", id, body)
            .await;
        assert_eq!(reply.status, status, "{id}: {reply:?}");
    }
    let published: BTreeSet<_> = relay.take(3).await.iter().map(message_id).collect();
    let expected: BTreeSet<_> = ["rotating-new", "rotating-old", "rotated-new"]
        .map(String::from)
        .into();
    assert_eq!(published, expected);
    relay.stop().await;
}
