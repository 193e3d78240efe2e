//! The `webhook-relay` binary: refusing to start without a secret, serving, stopping on SIGTERM.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use testkit::{TestEnv, wait_for_exit, wait_until};
use webhook_relay::client::RelayClient;

use crate::harness::message_id;

fn config_file(env: &TestEnv, shops: &[(&str, &str)]) -> std::path::PathBuf {
    // No pre-stop delay: the stop itself is what these tests look at.
    config_file_with(env, shops, "[http]\npre_stop_delay_ms = 0\n")
}

/// [`config_file`] with more platform sections (`extra`, TOML).
fn config_file_with(env: &TestEnv, shops: &[(&str, &str)], extra: &str) -> std::path::PathBuf {
    let mut text = format!("[amqp]\nname_prefix = \"{}\"\n{extra}", env.names.prefix());
    for (domain, secret_env) in shops {
        text.push_str(&format!(
            "[[shops]]\ndomain = \"{domain}\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"http://127.0.0.1:9\"\naccess_token_env = \"UNUSED_TOKEN\"\n\
             webhook_secret_env = \"{secret_env}\"\n"
        ));
    }
    let path = std::env::temp_dir().join(format!("webhook-relay-{}.toml", env.id));
    std::fs::write(&path, text).unwrap();
    path
}

fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn relay_command(
    config: &std::path::Path,
    listen: &str,
    ops_listen: &str,
    amqp_url: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-relay"));
    command
        .args(["--config", config.to_str().unwrap(), "--listen", listen])
        .env("OPS_LISTEN_ADDR", ops_listen)
        .env("AMQP_URL", amqp_url)
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null());
    command
}

#[tokio::test]
async fn refuses_to_start_without_a_shops_secret_naming_shop_and_variable_only() {
    let env = TestEnv::new().await;
    let set = format!("RELAY_TEST_SET_{}", env.id);
    let unset = format!("RELAY_TEST_UNSET_{}", env.id);
    let config = config_file(
        &env,
        &[
            ("first.myshopify.com", &set),
            ("second.myshopify.com", &unset),
        ],
    );
    let output = relay_command(&config, "127.0.0.1:0", "127.0.0.1:0", &env.amqp_url)
        .env("RUST_LOG", "debug")
        .env(&set, "value-that-must-never-be-printed")
        .env_remove(&unset)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started without a secret: {stderr}"
    );
    assert!(
        stderr.contains("second.myshopify.com") && stderr.contains(&unset),
        "names the shop and the variable: {stderr}"
    );
    assert!(
        !stderr.contains("value-that-must-never-be-printed"),
        "printed a secret: {stderr}"
    );
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn serves_webhooks_and_stops_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let secret_env = format!("RELAY_TEST_SECRET_{}", env.id);
    let config = config_file(&env, &[("process.myshopify.com", &secret_env)]);
    let listen = free_address();
    let ops_listen = free_address();
    // The relay declares the exchanges itself; the queue is item-ingest's to declare.
    let mut child = relay_command(&config, &listen, &ops_listen, &env.amqp_url)
        .env(&secret_env, "process-secret")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = RelayClient::new(listen.parse().unwrap(), 1);
    let ops = RelayClient::new(ops_listen.parse().unwrap(), 1);
    wait_until(Duration::from_secs(20), "relay process ready", || async {
        ops.get("/readyz")
            .await
            .is_ok_and(|reply| reply.status == 200)
    })
    .await;
    // The public listener serves the webhook route and nothing else.
    for path in ["/readyz", "/metrics", "/healthz"] {
        let reply = client.get(path).await.unwrap();
        assert_eq!(
            reply.status, 404,
            "{path} on the public listener: {reply:?}"
        );
    }
    assert_eq!(ops.get("/metrics").await.unwrap().status, 200);
    let queue = env.names.item_ingest_queue();
    platform::amqp::topology::declare_work_queue(env.channel(), &queue, &env.settings().retry)
        .await
        .unwrap();

    let body = br#"{"id":7}"#;
    let headers = webhook_relay::client::shopify_headers(
        b"process-secret",
        "products/delete",
        "process.myshopify.com",
        "process-1",
        body,
    );
    let reply = client.post_webhook(&headers, body.to_vec()).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    wait_until(Duration::from_secs(10), "message queued", || async {
        env.queue_depth(&queue.name).await == 1
    })
    .await;
    assert_eq!(
        env.drain(&queue.name)
            .await
            .iter()
            .map(message_id)
            .collect::<Vec<_>>(),
        ["process-1"]
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for_exit(
        &mut child,
        Duration::from_secs(10),
        "the relay to exit after SIGTERM",
    )
    .await;
    assert!(exit.success(), "exit status {exit:?}");
    let _ = std::fs::remove_file(config);
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// A pre-stop delay that outlasts any test: the second signal ends it.
const PRE_STOP: &str = "[http]\npre_stop_delay_ms = 600000\n";

#[tokio::test]
async fn on_sigterm_readiness_fails_first_and_requests_already_accepted_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = TestEnv::new().await;
    let secret_env = format!("RELAY_TEST_SECRET_{}", env.id);
    // A pre-stop delay no test waits out: the second signal ends it.
    let config = config_file_with(&env, &[("stop.myshopify.com", &secret_env)], PRE_STOP);
    let (listen, ops_listen) = (free_address(), free_address());
    let mut child = relay_command(&config, &listen, &ops_listen, &env.amqp_url)
        .env(&secret_env, "stop-secret")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = RelayClient::new(listen.parse().unwrap(), 0);
    let ops = RelayClient::new(ops_listen.parse().unwrap(), 0);
    wait_until(Duration::from_secs(20), "relay process ready", || async {
        ops.get("/readyz")
            .await
            .is_ok_and(|reply| reply.status == 200)
    })
    .await;
    // Product webhooks are answered 200 only once stored: item-ingest's queue must exist.
    let queue = env.names.item_ingest_queue();
    platform::amqp::topology::declare_work_queue(env.channel(), &queue, &env.settings().retry)
        .await
        .unwrap();
    let signed = |id: &str| {
        let body = format!(r#"{{"id":{}}}"#, id.len());
        let headers = webhook_relay::client::shopify_headers(
            b"stop-secret",
            "products/delete",
            "stop.myshopify.com",
            id,
            body.as_bytes(),
        );
        (headers, body)
    };

    signal(&child, "TERM");
    wait_until(Duration::from_secs(20), "/readyz answers 503", || async {
        ops.get("/readyz")
            .await
            .is_ok_and(|reply| reply.status == 503)
    })
    .await;
    // Out of the endpoints, still answering what the ingress sends meanwhile.
    let (headers, body) = signed("during-pre-stop");
    let reply = client.post_webhook(&headers, body).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");

    // A request the relay has accepted (head read, body on its way) when it stops accepting.
    let (headers, body) = signed("in-flight");
    let mut held = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let mut head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    held.write_all(head.as_bytes()).await.unwrap();
    held.write_all(first).await.unwrap();

    signal(&child, "TERM");
    wait_until(Duration::from_secs(20), "the listener closed", || async {
        tokio::net::TcpStream::connect(&listen).await.is_err()
    })
    .await;
    held.write_all(rest).await.unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the accepted request was answered: {answer}"
    );

    let exit = wait_for_exit(
        &mut child,
        Duration::from_secs(20),
        "the relay to exit after draining",
    )
    .await;
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(
        env.drain(&queue.name)
            .await
            .iter()
            .map(message_id)
            .collect::<Vec<_>>(),
        ["during-pre-stop", "in-flight"]
    );
    let _ = std::fs::remove_file(config);
}
