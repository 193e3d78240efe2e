//! Broker outages: 503 within the budget while the broker is away, 200 again once it is back,
//! without restarting the relay. The outage is a proxy cut, never the shared broker stopping.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    time::{Duration, Instant},
};

use testkit::{TestEnv, proxy::Proxy, wait_until};

use crate::harness::{Harness, NEW_SECRET, ROTATING_SHOP, message_id, start_relay};

/// Tight budgets so the test is quick: connect 0.5 s, publish 1.5 s, request 2 s.
const BUDGETS: &str = "[webhook_relay]\nconnect_timeout_ms = 500\npublish_timeout_ms = 1500\nrequest_timeout_ms = 2000\n";

async fn deliver(relay: &Harness, id: &str) -> (u16, Duration) {
    let started = Instant::now();
    let reply = relay
        .deliver(NEW_SECRET, ROTATING_SHOP, "products/update", id, b"{}")
        .await;
    (reply.status.as_u16(), started.elapsed())
}

async fn readyz(relay: &Harness) -> u16 {
    relay.ops.get("/readyz").await.unwrap().status.as_u16()
}

/// Delivers fresh webhooks until one is accepted; returns the accepted ids.
async fn deliver_until_accepted(relay: &Harness, tag: &str) -> Vec<String> {
    let accepted = RefCell::new(Vec::new());
    let mut attempt = 0;
    wait_until(Duration::from_secs(15), "a webhook accepted again", || {
        attempt += 1;
        let id = format!("{tag}-{attempt}");
        let accepted = &accepted;
        async move {
            let (status, _) = deliver(relay, &id).await;
            assert!(status == 200 || status == 503, "{id}: {status}");
            if status == 200 {
                accepted.borrow_mut().push(id);
            }
            status == 200
        }
    })
    .await;
    accepted.into_inner()
}

#[tokio::test]
async fn broker_away_is_503_and_back_is_200_without_a_restart() {
    let env = TestEnv::new().await;
    let (proxy, url) = Proxy::for_amqp_url(&env.amqp_url).await.unwrap();
    // The broker is unreachable from the start: the relay must start anyway.
    proxy.cut();
    let relay = start_relay(env, &url, BUDGETS).await;
    assert_eq!(relay.ops.get("/healthz").await.unwrap().status, 200);
    assert_eq!(readyz(&relay).await, 503);
    let (status, took) = deliver(&relay, "while-down-at-start").await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(3), "answered in {took:?}");

    proxy.restore();
    let mut accepted = deliver_until_accepted(&relay, "after-start").await;
    wait_until(Duration::from_secs(5), "ready", || async {
        readyz(&relay).await == 200
    })
    .await;

    // Lost while running.
    proxy.cut();
    let (status, took) = deliver(&relay, "while-down").await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    wait_until(Duration::from_secs(5), "not ready", || async {
        readyz(&relay).await == 503
    })
    .await;
    assert!(
        relay.webhooks("products/update", "unavailable") >= 2,
        "503s are counted as unavailable"
    );

    proxy.restore();
    accepted.extend(deliver_until_accepted(&relay, "after-outage").await);
    wait_until(Duration::from_secs(5), "ready again", || async {
        readyz(&relay).await == 200
    })
    .await;

    let published: BTreeSet<_> = relay
        .take(u32::try_from(accepted.len()).unwrap())
        .await
        .iter()
        .map(message_id)
        .collect();
    assert_eq!(published, accepted.into_iter().collect::<BTreeSet<_>>());
    relay.stop().await;
}

#[tokio::test]
async fn a_broker_that_never_answers_is_503_within_the_budget() {
    let env = TestEnv::new().await;
    // Accepts TCP connections and never speaks AMQP.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let relay = start_relay(env, &format!("amqp://guest:guest@{addr}/%2f"), BUDGETS).await;
    for id in ["silent-1", "silent-2"] {
        let (status, took) = deliver(&relay, id).await;
        assert_eq!(status, 503, "{id}");
        assert!(
            took < Duration::from_millis(2_500),
            "{id} answered in {took:?}"
        );
    }
    assert_eq!(readyz(&relay).await, 503);
    relay.stop().await;
    holder.abort();
}
