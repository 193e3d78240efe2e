//! `sslmode` and `sslrootcert` of `DATABASE_URL`, against private PostgreSQL clusters: one with
//! TLS and a certificate made for the test, one without TLS. (The shared server's TLS set-up is
//! the machine's business, so the tests do not depend on it.)

use platform::db::{DatabaseSettings, DatabaseTarget, DbError, connect_pool};
use testkit::{certs::TestCertificates, private::PrivatePostgres};

/// Whether a connection made with `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, DbError> {
    let (client, driver) = DatabaseTarget::parse(url)?.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

#[tokio::test]
async fn every_sslmode_does_what_libpq_does() {
    // The certificate names `localhost` only: connecting to 127.0.0.1 is "another host name".
    let certs = TestCertificates::generate(&["localhost"]);
    let cluster = PrivatePostgres::start(Some(&certs), &["host all all 127.0.0.1/32 trust"]).await;
    let port = cluster.port();
    let by_name = format!("postgres://postgres@localhost:{port}/postgres");
    let by_ip = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let ca = certs.ca.display().to_string();
    let other_ca = certs.other_ca.display().to_string();

    // `prefer` (also the default) uses TLS when the server offers it.
    assert!(encrypted(&by_name).await.unwrap(), "no sslmode: prefer");
    assert!(
        encrypted(&format!("{by_name}?sslmode=prefer"))
            .await
            .unwrap()
    );
    assert!(
        encrypted(&format!("{by_name}?sslmode=require"))
            .await
            .unwrap()
    );
    assert!(
        !encrypted(&format!("{by_name}?sslmode=disable"))
            .await
            .unwrap()
    );

    // verify-full: the CA and the host name.
    let verify_full = format!("{by_name}?sslmode=verify-full&sslrootcert={ca}");
    assert!(encrypted(&verify_full).await.unwrap());
    let err = encrypted(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert={other_ca}"
    ))
    .await
    .expect_err("a certificate from an untrusted CA is refused");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    let err = encrypted(&format!("{by_ip}?sslmode=verify-full&sslrootcert={ca}"))
        .await
        .expect_err("a certificate for another name is refused");
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");

    // verify-ca: the CA, any name; `require` with a root certificate behaves the same (libpq).
    assert!(
        encrypted(&format!("{by_ip}?sslmode=verify-ca&sslrootcert={ca}"))
            .await
            .unwrap()
    );
    encrypted(&format!("{by_ip}?sslmode=verify-ca&sslrootcert={other_ca}"))
        .await
        .expect_err("verify-ca still checks the CA");
    encrypted(&format!("{by_ip}?sslmode=require&sslrootcert={other_ca}"))
        .await
        .expect_err("require with sslrootcert checks the CA");

    // The pool the services use honours it too.
    let pool = connect_pool(&DatabaseSettings {
        url: verify_full,
        ..DatabaseSettings::default()
    })
    .unwrap();
    let client = pool.get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "pooled connections are encrypted");
    drop(client);
    drop(pool);
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_and_says_so() {
    let cluster = PrivatePostgres::start(None, &["host all all 127.0.0.1/32 trust"]).await;
    let base = format!("{}/postgres", cluster.server_url());
    let err = encrypted(&format!("{base}?sslmode=require"))
        .await
        .expect_err("the server has no TLS");
    assert!(
        err.to_string().contains("server does not support TLS"),
        "{err}"
    );
    // `prefer` falls back to plaintext there, as in libpq.
    assert!(!encrypted(&format!("{base}?sslmode=prefer")).await.unwrap());
}
