//! The runtime in a real process (`consumer-probe`): crashes and signals.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use consumer_probe::{CRASH_HEADER, probe_queue};
use lapin::{BasicProperties, types::FieldTable};
use platform::amqp::headers::set_str;
use testkit::{TestEnv, wait_for_exit, wait_until};

/// Starts `consumer-probe` on the test's database and namespace; returns it and its
/// metrics URL.
fn spawn_probe(env: &TestEnv, extra: &[&str]) -> (Child, String) {
    // No pre-stop delay: these tests time the drain itself.
    spawn_probe_with(env, "[http]\npre_stop_delay_ms = 0\n", extra)
}

/// [`spawn_probe`] with more configuration (TOML appended to the test's file).
fn spawn_probe_with(env: &TestEnv, config_extra: &str, extra: &[&str]) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = std::env::temp_dir().join(format!("probe-{}.toml", env.id));
    let settings = env.settings();
    std::fs::write(
        &config,
        format!(
            "[amqp]\nname_prefix = \"{}\"\n[consumer]\nprefetch = 8\nconcurrency = 8\nshutdown_grace_ms = 3000\n\
             [retry]\nbase_delay_ms = 200\nmultiplier = 2\ntiers = 3\n{config_extra}",
            env.names.prefix()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_consumer-probe"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .env("AMQP_URL", &settings.amqp.url)
        .env("DATABASE_URL", &settings.database.url)
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

async fn get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

async fn wait_ready(base: &str) {
    wait_until(Duration::from_secs(30), "probe ready", || async {
        get(&format!("{base}/readyz"))
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
}

async fn effects(env: &TestEnv) -> Vec<String> {
    env.pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT message_id FROM probe_effects ORDER BY message_id",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_crash_between_commit_and_ack_is_recognised_as_a_duplicate_on_redelivery() {
    let env = TestEnv::new().await;
    env.track_queue(&probe_queue(&env.names));
    let (mut probe, base) = spawn_probe(&env, &["--crash-after-commit"]);
    wait_ready(&base).await;

    let mut headers = FieldTable::default();
    set_str(&mut headers, CRASH_HEADER, "yes");
    let properties = BasicProperties::default()
        .with_message_id("crash-1".into())
        .with_headers(headers);
    env.publish("", &probe_queue(&env.names).name, b"payload", properties)
        .await;

    let status = wait_for_exit(&mut probe, Duration::from_secs(20), "the probe to abort").await;
    assert!(!status.success(), "the probe aborted after its commit");
    assert_eq!(
        effects(&env).await,
        ["crash-1"],
        "the effect was committed before the crash"
    );

    // Restarted, the probe gets the message again (never acknowledged) and sees its inbox row.
    let (mut probe, base) = spawn_probe(&env, &["--crash-after-commit"]);
    wait_ready(&base).await;
    wait_until(
        Duration::from_secs(20),
        "redelivery counted as duplicate",
        || async {
            get(&format!("{base}/metrics"))
                .await
                .is_some_and(|m| m.contains("wos_sync_messages_total{outcome=\"duplicate\""))
        },
    )
    .await;
    assert_eq!(effects(&env).await, ["crash-1"], "applied once");
    assert_eq!(env.queue_depth(&probe_queue(&env.names).name).await, 0);
    let metrics = get(&format!("{base}/metrics")).await.unwrap();
    assert!(
        !metrics.contains("outcome=\"acked\""),
        "no second application:\n{metrics}"
    );
    probe.kill().unwrap();
    probe.wait().unwrap();
}

#[tokio::test]
async fn sigterm_with_messages_in_flight_exits_in_time_and_loses_nothing() {
    let env = TestEnv::new().await;
    let queue = probe_queue(&env.names);
    env.track_queue(&queue);
    let (mut probe, base) = spawn_probe(&env, &["--handler-delay-ms", "300"]);
    wait_ready(&base).await;
    let total = 200;
    for n in 0..total {
        let properties =
            BasicProperties::default().with_message_id(format!("sig-{n:03}").as_str().into());
        env.publish("", &queue.name, b"{}", properties).await;
    }
    wait_until(Duration::from_secs(20), "work under way", || async {
        effects(&env).await.len() >= 8
    })
    .await;

    let pid = probe.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let sent = Instant::now();
    let status = wait_for_exit(
        &mut probe,
        Duration::from_secs(10),
        "the probe to exit after SIGTERM",
    )
    .await;
    let took = sent.elapsed();
    assert!(status.success(), "clean exit, got {status:?}");
    assert!(
        took < Duration::from_secs(4),
        "exits within its 3 s grace period, took {took:?}"
    );

    let applied = effects(&env).await;
    let left: Vec<String> = env
        .drain(&queue.name)
        .await
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!left.is_empty(), "the test must stop the probe mid-stream");
    for id in &left {
        assert!(
            !applied.contains(id),
            "{id} was committed but not acknowledged"
        );
    }
    let mut all: Vec<String> = applied.into_iter().chain(left).collect();
    all.sort();
    let expected: Vec<String> = (0..total).map(|n| format!("sig-{n:03}")).collect();
    assert_eq!(
        all, expected,
        "every message is committed-and-acked or back in the queue, once"
    );
}

#[tokio::test]
async fn the_ops_server_answers_while_migrations_wait_for_their_lock() {
    let env = TestEnv::new().await;
    env.track_queue(&probe_queue(&env.names));
    // Another replica (here: the test) is migrating: the probe's migrations must wait.
    let (holder, driver) = platform::db::DatabaseTarget::parse(&env.database_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&platform::db::MIGRATION_LOCK_KEY],
        )
        .await
        .unwrap();
    let (mut probe, base) = spawn_probe(&env, &[]);

    wait_until(
        Duration::from_secs(30),
        "/healthz answers while the migrations wait",
        || async {
            get(&format!("{base}/healthz"))
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        },
    )
    .await;
    let readiness = get(&format!("{base}/readyz")).await.unwrap();
    assert!(
        readiness.starts_with("HTTP/1.1 503"),
        "not ready before its migrations ran: {readiness}"
    );

    drop(holder);
    let _ = driver.await;
    wait_ready(&base).await;
    probe.kill().unwrap();
    probe.wait().unwrap();
}

/// A pre-stop delay that outlasts any test: the second signal ends it.
const PRE_STOP: &str = "[http]\npre_stop_delay_ms = 600000\n";

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// The status line of a GET, or `None` when nothing answers (the listener is closed).
async fn status_of(url: &str) -> Option<String> {
    get(url)
        .await
        .and_then(|response| response.lines().next().map(str::to_owned))
        .filter(|line| !line.is_empty())
}

#[tokio::test]
async fn on_sigterm_readiness_fails_while_the_probe_still_serves_then_it_drains() {
    let env = TestEnv::new().await;
    let queue = probe_queue(&env.names);
    env.track_queue(&queue);
    // A pre-stop delay no test waits out: a second signal ends it.
    let (mut probe, base) = spawn_probe_with(&env, PRE_STOP, &[]);
    wait_ready(&base).await;

    signal(&probe, "TERM");
    wait_until(Duration::from_secs(20), "/readyz answers 503", || async {
        status_of(&format!("{base}/readyz"))
            .await
            .is_some_and(|s| s.starts_with("HTTP/1.1 503"))
    })
    .await;
    // Not ready, but still serving: the ops listener answers and messages are consumed.
    assert_eq!(
        status_of(&format!("{base}/healthz")).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "after /readyz went 503"
    );
    env.publish(
        "",
        &queue.name,
        b"{}",
        BasicProperties::default().with_message_id("during-pre-stop".into()),
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "consumed during the pre-stop delay",
        || async { effects(&env).await == ["during-pre-stop"] },
    )
    .await;

    // The second signal ends the delay: the probe drains, closes its listener and exits.
    signal(&probe, "TERM");
    let status = wait_for_exit(
        &mut probe,
        Duration::from_secs(20),
        "the probe to exit after draining",
    )
    .await;
    assert!(status.success());
    assert_eq!(
        status_of(&format!("{base}/healthz")).await,
        None,
        "listener closed"
    );
}
