//! Database preparation against the real PostgreSQL.

use platform::db::{DatabaseSettings, admin_execute, ensure_database};

#[tokio::test]
async fn services_starting_together_all_get_the_database_created_once() {
    let name = format!(
        "wos_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let settings = DatabaseSettings {
        url: format!("{}/{name}", testkit::postgres_base_url()),
        ..DatabaseSettings::default()
    };
    // As item-ingest, adjustment-pusher and others starting at the same moment on a fresh server.
    let results = futures_util::future::join_all((0..4).map(|_| ensure_database(&settings))).await;
    let cleanup = admin_execute(
        &settings.url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    for result in results {
        result.expect("every starter sees the database");
    }
    cleanup.unwrap();
}
