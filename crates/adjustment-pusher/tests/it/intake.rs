//! Intake on a group of messages, through the handler itself (as the consumer runtime's
//! grouped commits call it): each message parsed alone, the valid ones recorded together, one
//! disposition per message in order.

use std::{sync::Arc, time::Duration};

use adjustment_pusher::{intake::Intake, push::ReadyShops};
use lapin::{BasicProperties, types::FieldTable};
use model::{
    config::{ShopDirectory, ShopSettings},
    ids::LocationId,
};
use platform::{
    amqp::consumer::{Disposition, ErrorKind, GroupOutcome, Handler, Incoming},
    metrics::Metrics,
};
use serde_json::{Value, json};
use testkit::TestEnv;

use crate::harness::tx;

const SHOP: &str = "group.myshopify.com";

fn delivery(body: &Value) -> Incoming {
    Incoming {
        body: body.to_string().into_bytes(),
        properties: BasicProperties::default().with_headers(FieldTable::default()),
        exchange: String::new(),
        routing_key: String::new(),
        redelivered: false,
        attempt: 1,
    }
}

async fn intake(env: &TestEnv) -> (Intake, Arc<ReadyShops>) {
    platform::db::migrate(&env.pool).await.unwrap();
    env.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, 'MAPPED', 77)",
            &[&SHOP],
        )
        .await
        .unwrap();
    let shop = ShopSettings {
        domain: SHOP.into(),
        api_version: "2026-04".into(),
        admin_base_url: "http://127.0.0.1:1".into(),
        access_token_env: "UNUSED_IN_TESTS".into(),
        webhook_secret_env: None,
        previous_webhook_secret_env: None,
        locations: [("MAIN".to_owned(), LocationId(5))].into_iter().collect(),
        fields: Default::default(),
    };
    let ready = Arc::new(ReadyShops::new([SHOP], 1, Duration::ZERO));
    let intake = Intake {
        pool: env.pool.clone(),
        shops: ShopDirectory::new(vec![shop]).unwrap(),
        metrics: Metrics::new(),
        ready: ready.clone(),
    };
    (intake, ready)
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.pool
        .get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_group_gets_one_disposition_per_message_in_order() {
    let env = TestEnv::new().await;
    let (intake, ready) = intake(&env).await;
    assert!(!ready.is_scheduled(SHOP));
    let put =
        |id: &str, sku: &str, n: i64| tx(id, SHOP, "put", sku, "MAIN", json!({"quantity": n}));
    let first = put("t-1", "MAPPED", 3);
    let messages = [
        delivery(&first),
        delivery(&json!({"not": "a transaction"})),
        // The same transaction again: a redelivery.
        delivery(&first),
        // The same id, other content: WOS reused it.
        delivery(&put("t-1", "MAPPED", 9)),
        // An item without a mapping yet.
        delivery(&put("t-2", "UNMAPPED", 4)),
        delivery(&tx(
            "t-3",
            "other.myshopify.com",
            "put",
            "MAPPED",
            "MAIN",
            json!({"quantity": 1}),
        )),
        delivery(&put("t-4", "MAPPED", 2)),
    ];
    let GroupOutcome::Handled(dispositions) = intake.handle_group(&messages).await else {
        panic!("the group was not handled together");
    };
    let shapes: Vec<&str> = dispositions
        .iter()
        .map(|d| match d {
            Disposition::Ack => "ack",
            Disposition::Duplicate => "duplicate",
            Disposition::Parked => "parked",
            Disposition::DeadLetter {
                kind: ErrorKind::Malformed,
                ..
            } => "malformed",
            Disposition::DeadLetter {
                kind: ErrorKind::Rejected,
                ..
            } => "rejected",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        shapes,
        [
            "ack",
            "malformed",
            "duplicate",
            "rejected",
            "parked",
            "malformed",
            "ack"
        ]
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM wos_transactions").await,
        3
    );
    assert_eq!(
        count(&env, "SELECT coalesce(sum(delta), 0)::bigint FROM adjustments WHERE state = 'pending' AND inventory_item_id = 77").await,
        5,
        "the first use of t-1 (3) and t-4 (2), pending on the mapped item"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM adjustments WHERE state = 'parked' AND sku = 'UNMAPPED'"
        )
        .await,
        1
    );
    // The shop with new pending work was woken: a step of it is due.
    assert!(ready.is_scheduled(SHOP), "the shop was not woken");
}

#[tokio::test]
async fn the_same_group_delivered_again_is_all_duplicates() {
    let env = TestEnv::new().await;
    let (intake, _) = intake(&env).await;
    let messages: Vec<Incoming> = (0..50)
        .map(|n| {
            delivery(&tx(
                &format!("t-{n}"),
                SHOP,
                "put",
                "MAPPED",
                "MAIN",
                json!({"quantity": 1}),
            ))
        })
        .collect();
    let GroupOutcome::Handled(first) = intake.handle_group(&messages).await else {
        panic!("not handled together");
    };
    assert!(first.iter().all(|d| *d == Disposition::Ack));
    let GroupOutcome::Handled(again) = intake.handle_group(&messages).await else {
        panic!("not handled together");
    };
    assert!(again.iter().all(|d| *d == Disposition::Duplicate));
    assert_eq!(count(&env, "SELECT count(*) FROM adjustments").await, 50);
}
