//! Grouped commits: a handler given the deliveries that arrived together, one transaction for
//! the group, each message acknowledged after it; a bad message handled alone; a failed group
//! retried whole.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use platform::{
    amqp::consumer::{ConsumerSettings, Disposition, GroupOutcome, Handler, Incoming},
    db::PgPool,
    inbox::{InboxEntry, record_messages},
};
use testkit::{TestEnv, wait_until};
use tokio::sync::Semaphore;

use crate::runtime::{Running, consumer_config, message, start_config};

/// Records what it was given; commits one `effects` row per new message of a group in one
/// transaction. Bodies steer it: `poison` makes a group fail for that message (and the message
/// fail alone), `panic` makes a group panic, `outage` makes its group's first attempt fail as
/// if the database were down. Every call waits at a gate the test opens.
struct GroupRecorder {
    pool: PgPool,
    gate: Semaphore,
    entered: AtomicUsize,
    /// The message ids of every `handle_group` call, and of every `handle` call (as groups of
    /// one), in call order.
    groups: Mutex<Vec<Vec<String>>>,
    alone: Mutex<Vec<String>>,
}

impl GroupRecorder {
    async fn new(env: &TestEnv) -> Arc<Self> {
        env.pool
            .get()
            .await
            .unwrap()
            .batch_execute("CREATE TABLE effects (message_id text NOT NULL)")
            .await
            .unwrap();
        Arc::new(Self {
            pool: env.pool.clone(),
            gate: Semaphore::new(0),
            entered: AtomicUsize::new(0),
            groups: Mutex::new(Vec::new()),
            alone: Mutex::new(Vec::new()),
        })
    }

    async fn pass_gate(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _pass = self.gate.acquire().await.unwrap();
    }

    async fn commit(&self, messages: &[&Incoming]) -> Result<Vec<Disposition>, String> {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id().unwrap()).collect();
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let entries = record_messages(&tx, "test", &ids)
            .await
            .map_err(|e| e.to_string())?;
        let new: Vec<&str> = ids
            .iter()
            .zip(&entries)
            .filter(|(_, entry)| **entry == InboxEntry::New)
            .map(|(id, _)| *id)
            .collect();
        tx.execute("INSERT INTO effects SELECT unnest($1::text[])", &[&new])
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(entries
            .iter()
            .map(|entry| match entry {
                InboxEntry::New => Disposition::Ack,
                InboxEntry::AlreadyProcessed => Disposition::Duplicate,
            })
            .collect())
    }
}

struct Shared(Arc<GroupRecorder>);

impl Handler for Shared {
    const GROUPS: bool = true;

    async fn handle(&self, message: &Incoming) -> Disposition {
        let recorder = &self.0;
        recorder.pass_gate().await;
        let id = message.message_id().unwrap().to_owned();
        recorder.alone.lock().unwrap().push(id.clone());
        recorder.groups.lock().unwrap().push(vec![id]);
        if message.body == b"poison" {
            return Disposition::malformed("poison");
        }
        match recorder.commit(&[message]).await {
            Ok(mut dispositions) => dispositions.pop().unwrap(),
            Err(err) => Disposition::retry(err),
        }
    }

    async fn handle_group(&self, messages: &[Incoming]) -> GroupOutcome {
        let recorder = &self.0;
        recorder.pass_gate().await;
        recorder.groups.lock().unwrap().push(
            messages
                .iter()
                .map(|m| m.message_id().unwrap().to_owned())
                .collect(),
        );
        let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
        if bodies.contains(&b"poison".as_slice()) {
            return GroupOutcome::HandleAlone;
        }
        if bodies.contains(&b"panic".as_slice()) {
            panic!("a group with a message that makes it panic");
        }
        if messages
            .iter()
            .any(|m| m.body == b"outage" && m.attempt == 1)
        {
            return GroupOutcome::Handled(vec![
                Disposition::retry("database unavailable");
                messages.len()
            ]);
        }
        let all: Vec<&Incoming> = messages.iter().collect();
        match recorder.commit(&all).await {
            Ok(dispositions) => GroupOutcome::Handled(dispositions),
            Err(err) => GroupOutcome::Handled(vec![Disposition::retry(err); messages.len()]),
        }
    }
}

fn grouping() -> ConsumerSettings {
    ConsumerSettings {
        prefetch: 256,
        concurrency: 1,
        group_size: 256,
        group_linger_ms: 1000,
        ..ConsumerSettings::default()
    }
}

/// Starts the recorder's consumer with its gate shut, publishes a first message and waits for
/// its group to reach the gate, then publishes `bodies` (ids `m0`, `m1`, ...) and waits until
/// the broker has handed all of them to the consumer; then opens the gate. Those messages
/// arrive while the first group holds the only handler slot, so they can be gathered together.
async fn deliver_while_busy(
    env: &TestEnv,
    recorder: &Arc<GroupRecorder>,
    bodies: &[&[u8]],
) -> Running {
    let config = platform::amqp::consumer::ConsumerConfig {
        settings: grouping(),
        ..consumer_config(env)
    };
    let consumer = start_config(env, Shared(recorder.clone()), config).await;
    let exchange = env.names.name("shopify.events");
    env.publish(&exchange, "products.update", b"first", message("first"))
        .await;
    wait_until(
        Duration::from_secs(10),
        "the first group at the gate",
        || async { recorder.entered.load(Ordering::SeqCst) == 1 },
    )
    .await;
    for (n, body) in bodies.iter().enumerate() {
        env.publish(
            &exchange,
            "products.update",
            body,
            message(&format!("m{n}")),
        )
        .await;
    }
    wait_until(
        Duration::from_secs(10),
        "every message handed to the consumer",
        || async { env.queue_depth(&consumer.queue.name).await == 0 },
    )
    .await;
    recorder.gate.add_permits(10_000);
    consumer
}

async fn effects(env: &TestEnv) -> HashMap<String, i64> {
    env.pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT message_id, count(*) FROM effects GROUP BY message_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn messages_that_arrive_together_are_committed_as_groups_and_all_acknowledged() {
    let env = TestEnv::new().await;
    let recorder = GroupRecorder::new(&env).await;
    let bodies: Vec<&[u8]> = vec![b"ok"; 200];
    let consumer = deliver_while_busy(&env, &recorder, &bodies).await;
    wait_until(Duration::from_secs(20), "201 messages acked", || async {
        consumer.count("acked") == 201
    })
    .await;
    let effects = effects(&env).await;
    assert_eq!(effects.len(), 201, "every message committed");
    assert!(effects.values().all(|n| *n == 1), "each once: {effects:?}");
    let groups = recorder.groups.lock().unwrap().clone();
    assert!(
        groups.len() < 100,
        "200 messages waiting together were handled in {} calls",
        groups.len()
    );
    let handled: Vec<&String> = groups.iter().flatten().collect();
    assert_eq!(handled.len(), 201, "each message given to the handler once");
    let queue = consumer.queue.name.clone();
    consumer.stop().await;
    // Stopping returns every unacknowledged message to the queue: none is left there, so each
    // was acknowledged (the last ones by the ack watermark or at shutdown).
    assert_eq!(env.queue_depth(&queue).await, 0);
}

#[tokio::test]
async fn a_poison_message_is_handled_alone_and_its_neighbours_are_committed() {
    let env = TestEnv::new().await;
    let recorder = GroupRecorder::new(&env).await;
    let mut bodies: Vec<&[u8]> = vec![b"ok"; 20];
    bodies[7] = b"poison";
    let consumer = deliver_while_busy(&env, &recorder, &bodies).await;
    wait_until(Duration::from_secs(20), "every message settled", || async {
        consumer.count("acked") == 20 && consumer.count("dead_lettered") == 1
    })
    .await;
    let dead = env.drain(&consumer.queue.dead_letter_queue()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]
            .delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        "m7"
    );
    let effects = effects(&env).await;
    assert_eq!(
        effects.len(),
        20,
        "all but the poison committed: {effects:?}"
    );
    assert!(!effects.contains_key("m7"));
    assert_eq!(
        env.queue_depth(&consumer.queue.retry_queue(1)).await,
        0,
        "nothing retried"
    );
    assert!(
        recorder.alone.lock().unwrap().contains(&"m7".to_owned()),
        "the poison was handled by itself"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_group_that_panics_is_handled_message_by_message() {
    let env = TestEnv::new().await;
    let recorder = GroupRecorder::new(&env).await;
    let mut bodies: Vec<&[u8]> = vec![b"ok"; 10];
    bodies[3] = b"panic";
    let consumer = deliver_while_busy(&env, &recorder, &bodies).await;
    wait_until(Duration::from_secs(20), "every message acked", || async {
        consumer.count("acked") == 11
    })
    .await;
    let effects = effects(&env).await;
    assert_eq!(effects.len(), 11);
    assert!(effects.values().all(|n| *n == 1));
    assert!(recorder.alone.lock().unwrap().contains(&"m3".to_owned()));
    consumer.stop().await;
}

#[tokio::test]
async fn a_group_the_database_could_not_take_is_retried_whole_and_applied_once() {
    let env = TestEnv::new().await;
    let recorder = GroupRecorder::new(&env).await;
    let mut bodies: Vec<&[u8]> = vec![b"ok"; 10];
    bodies[0] = b"outage";
    let consumer = deliver_while_busy(&env, &recorder, &bodies).await;
    wait_until(Duration::from_secs(30), "every message acked", || async {
        consumer.count("acked") == 11
    })
    .await;
    let effects = effects(&env).await;
    assert_eq!(effects.len(), 11);
    assert!(effects.values().all(|n| *n == 1), "{effects:?}");
    let groups = recorder.groups.lock().unwrap().clone();
    // The group with the outage went to the retry tier as a whole: each of its messages was
    // given to the handler twice (once in the failed group, once after the retry).
    let failed = groups
        .iter()
        .find(|group| group.contains(&"m0".to_owned()))
        .unwrap()
        .clone();
    let retried = consumer.count("retried");
    assert_eq!(retried, failed.len() as u64, "the whole group was retried");
    for id in &failed {
        let given = groups.iter().flatten().filter(|g| *g == id).count();
        assert_eq!(given, 2, "{id} given twice");
    }
    consumer.stop().await;
}

#[tokio::test]
async fn redelivered_messages_are_handled_one_by_one() {
    // A group that crashed the process (or lost its connection) comes back redelivered; were it
    // grouped again, a message that crashes the process would take its neighbours' deliveries
    // with it until `delivery_limit` dead-lettered them all.
    let env = TestEnv::new().await;
    let recorder = GroupRecorder::new(&env).await;
    let config = platform::amqp::consumer::ConsumerConfig {
        settings: grouping(),
        ..consumer_config(&env)
    };
    let consumer = start_config(&env, Shared(recorder.clone()), config).await;
    let exchange = env.names.name("shopify.events");
    for n in 0..10 {
        env.publish(
            &exchange,
            "products.update",
            b"ok",
            message(&format!("m{n}")),
        )
        .await;
    }
    wait_until(
        Duration::from_secs(10),
        "every message handed to the consumer, a group at the gate",
        || async {
            recorder.entered.load(Ordering::SeqCst) >= 1
                && env.queue_depth(&consumer.queue.name).await == 0
        },
    )
    .await;
    // The consumer's connection is lost with every message unacknowledged: all ten come back
    // redelivered.
    let closed = tokio::task::spawn_blocking({
        let id = env.id.clone();
        move || testkit::close_connections_named(&format!("{}/t-{id}.", crate::runtime::SERVICE))
    })
    .await
    .unwrap();
    assert_eq!(closed, 1);
    wait_until(Duration::from_secs(5), "disconnect noticed", || async {
        !consumer.health.broker_connected()
    })
    .await;
    recorder.gate.add_permits(10_000);
    wait_until(Duration::from_secs(20), "ten messages acked", || async {
        consumer.count("acked") == 10
    })
    .await;
    let groups = recorder.groups.lock().unwrap().clone();
    assert!(
        groups.iter().all(|group| group.len() == 1),
        "redeliveries were grouped: {groups:?}"
    );
    assert_eq!(recorder.alone.lock().unwrap().len(), 10);
    assert!(effects(&env).await.values().all(|n| *n == 1));
    consumer.stop().await;
}
