//! `amqps://` means TLS with certificate verification, against a private RabbitMQ node with a
//! TLS listener and a certificate made for the test.

use std::time::Duration;

use lapin::{BasicProperties, options::QueueDeclareOptions, types::FieldTable};
use platform::{
    amqp::publisher::{Confirmed, Publisher, PublisherError, PublisherOptions},
    settings::Settings,
};
use testkit::{certs::TestCertificates, private::PrivateBroker};

fn publisher(url: String, name: &str) -> Publisher {
    Publisher::with_options(
        url,
        name.into(),
        PublisherOptions {
            connect_timeout: Duration::from_secs(5),
            ..PublisherOptions::default()
        },
        None,
    )
}

#[tokio::test]
async fn amqps_is_tls_with_verification_and_never_plaintext() {
    let certs = TestCertificates::generate(&["localhost", "127.0.0.1"]);
    let broker = PrivateBroker::start(Some(&certs)).await;
    let tls_port = broker.tls_port().unwrap();
    let ca = certs.ca.display().to_string();

    // 1. amqps:// pointed at the plaintext port: no connection, and the error says why.
    let at_plain_port = format!(
        "amqps://guest:guest@localhost:{}/%2f?cacertfile={ca}",
        broker.amqp_port()
    );
    let err = platform::amqp::connect(&at_plain_port, "test-amqps-plain-port")
        .await
        .expect_err("a TLS handshake with a plaintext AMQP port cannot succeed");
    let text = err.to_string();
    assert!(
        text.contains("TLS handshake with localhost") && text.contains("TLS listener"),
        "the reason is named: {text}"
    );
    // The same through the publisher every producer uses: unavailable, with that reason.
    let plain = publisher(at_plain_port, "test-amqps-plain-port-publisher");
    let err = plain
        .publish(
            "amq.topic",
            "x",
            b"{}",
            BasicProperties::default(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("never a working connection");
    assert!(
        matches!(&err, PublisherError::Unavailable(reason) if reason.contains("TLS handshake")),
        "{err}"
    );

    // 2. The broker's certificate signed by a CA we do not trust: refused.
    let untrusted = format!(
        "amqps://guest:guest@localhost:{tls_port}/%2f?cacertfile={}",
        certs.other_ca.display()
    );
    let err = platform::amqp::connect(&untrusted, "test-amqps-untrusted")
        .await
        .expect_err("an unknown issuer is refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // 3. The platform's roots do not include the test CA either.
    let platform_roots = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    platform::amqp::connect(&platform_roots, "test-amqps-platform-roots")
        .await
        .expect_err("a private CA is not trusted without cacertfile");

    // 4. A name the certificate does not carry: refused.
    let other_name = TestCertificates::generate(&["broker.internal"]);
    let wrong_name = format!(
        "amqps://guest:guest@localhost:{tls_port}/%2f?cacertfile={}",
        other_name.ca.display()
    );
    platform::amqp::connect(&wrong_name, "test-amqps-wrong-name")
        .await
        .expect_err("a certificate for another name (and CA) is refused");

    // 5. The right CA: a working, encrypted connection, through the settings a service loads.
    let url = format!("amqps://guest:guest@localhost:{tls_port}/%2f?cacertfile={ca}");
    let mut settings = Settings::default();
    settings.apply_env(|name| (name == "AMQP_URL").then(|| url.clone()));
    let connection = platform::amqp::connect(&settings.amqp.url, "test-amqps-ok")
        .await
        .expect("TLS connection with the test CA");
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            "tls-check".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let tls = publisher(url.clone(), "test-amqps-publisher");
    let confirmed = tls
        .publish(
            "",
            "tls-check",
            b"over TLS",
            BasicProperties::default(),
            Duration::from_secs(10),
        )
        .await
        .expect("published over TLS");
    assert_eq!(confirmed, Confirmed::Routed);
    // The broker agrees the connection is TLS.
    let listing = broker.rabbitmqctl(&["list_connections", "ssl", "client_properties", "-q"]);
    let line = listing
        .lines()
        .find(|line| line.contains("test-amqps-publisher"))
        .unwrap_or_else(|| panic!("the publisher's connection is listed: {listing}"));
    assert!(line.starts_with("true"), "ssl column: {line}");

    tls.close().await;
    let _ = connection.close(200, "done".into()).await;
}

#[test]
fn settings_refuse_tls_that_cannot_work_at_start() {
    let refused = |url: &str| {
        Settings::from_toml_str(&format!("[amqp]\nurl = {url:?}"), "test.toml")
            .expect_err(url)
            .to_string()
    };
    let err = refused("amqps://u:s3cret@h/%2f?cacertfile=/nonexistent/ca.pem");
    assert!(
        err.contains("`amqp.url`") && err.contains("/nonexistent/ca.pem: cannot read"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let err = refused("amqp://u:p@h/%2f?cacertfile=/ca.pem");
    assert!(err.contains("use amqps://"), "{err}");
}
