//! Database preparation against the real PostgreSQL: creation only where allowed, servers that
//! only let the service into its own database (PgBouncer, hardened roles), migrations that give
//! up on a locked table.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use platform::db::{
    DatabaseSettings, admin_execute, connect_pool, ensure_database, migrate_with_lock_timeout,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn scratch_name() -> String {
    format!(
        "wos_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn database_exists(name: &str) -> bool {
    let env_url = testkit::postgres_base_url();
    let (client, driver) = platform::db::DatabaseTarget::parse(&env_url)
        .unwrap()
        .with_database("postgres")
        .connect()
        .await
        .unwrap();
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    drop(client);
    let _ = driver.await;
    exists
}

#[tokio::test]
async fn services_starting_together_all_get_the_database_created_once() {
    let name = scratch_name();
    let settings = DatabaseSettings {
        url: format!("{}/{name}", testkit::postgres_base_url()),
        create_if_missing: true,
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

#[tokio::test]
async fn a_missing_database_is_created_only_when_allowed() {
    let name = scratch_name();
    let settings = DatabaseSettings {
        url: format!("{}/{name}", testkit::postgres_base_url()),
        ..DatabaseSettings::default()
    };
    let err = ensure_database(&settings)
        .await
        .expect_err("creation is opt-in");
    let created_anyway = database_exists(&name).await;
    if created_anyway {
        admin_execute(&settings.url, &format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
    assert!(
        !created_anyway,
        "the database was created without create_if_missing"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("database `{name}` does not exist"))
            && text.contains("create_if_missing"),
        "{text}"
    );
}

/// A stand-in for PgBouncer in front of the shared server: it serves only the databases it was
/// configured with (PgBouncer's `[databases]`), refuses the `options` startup parameter as
/// PgBouncer does, and records which databases were asked for.
struct PoolerFront {
    url: String,
    requested: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolerFront {
    async fn start(serves: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = testkit::postgres_base_url()
            .rsplit_once('@')
            .map(|(_, host)| host.trim_end_matches('/').to_owned())
            .unwrap();
        let requested = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requested);
        let serves = serves.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let serves = serves.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = front_one(client, &upstream, &serves, &seen).await;
                });
            }
        });
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}"),
            requested,
            task,
        }
    }

    fn requested(&self) -> Vec<String> {
        self.requested.lock().unwrap().clone()
    }
}

impl Drop for PoolerFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn front_one(
    mut client: TcpStream,
    upstream: &str,
    serves: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    // SSLRequest / GSSENCRequest: "not here" ('N'), then the real startup message follows.
    let startup = loop {
        let length = client.read_i32().await?;
        let mut body = vec![0; usize::try_from(length).unwrap_or(8).saturating_sub(4)];
        client.read_exact(&mut body).await?;
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == 80_877_103 || code == 80_877_104 {
            client.write_all(b"N").await?;
            continue;
        }
        let mut message = length.to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        break message;
    };
    let fields: Vec<String> = startup[8..]
        .split(|b| *b == 0)
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    let parameters: Vec<(String, String)> = fields
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let database = parameters
        .iter()
        .find(|(key, _)| key == "database")
        .map_or_else(String::new, |(_, value)| value.clone());
    seen.lock().unwrap().push(database.clone());
    let refusal = if parameters.iter().any(|(key, _)| key == "options") {
        Some("unsupported startup parameter: options".to_owned())
    } else if database != serves {
        Some(format!("no such database: {database}"))
    } else {
        None
    };
    if let Some(message) = refusal {
        let mut fields = Vec::new();
        for (code, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "08P01")] {
            fields.push(code);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(b'M');
        fields.extend_from_slice(message.as_bytes());
        fields.extend_from_slice(&[0, 0]);
        let mut response = vec![b'E'];
        response.extend_from_slice(&(i32::try_from(fields.len()).unwrap() + 4).to_be_bytes());
        response.extend_from_slice(&fields);
        client.write_all(&response).await?;
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&startup).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[tokio::test]
async fn behind_pgbouncer_only_the_target_database_is_used_and_no_startup_options_are_sent() {
    let env = testkit::TestEnv::new().await;
    let front = PoolerFront::start(&env.database_name).await;
    let settings = DatabaseSettings {
        url: format!("{}/{}", front.url, env.database_name),
        statement_timeout_ms: 1_234,
        ..DatabaseSettings::default()
    };

    ensure_database(&settings)
        .await
        .expect("the target database is reached directly");
    let pool = connect_pool(&settings).unwrap();
    let client = pool
        .get()
        .await
        .expect("a pooled connection through the pooler");
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "1234ms", "set after connecting");
    assert!(
        front.requested().iter().all(|db| *db == env.database_name),
        "only the service's own database was asked for: {:?}",
        front.requested()
    );
}

#[tokio::test]
async fn migrations_give_up_on_a_table_someone_holds_locked() {
    let env = testkit::TestEnv::new().await;
    // WOS (here: the test) holds a lock on a table the migration runner reads.
    let (holder, driver) = platform::db::DatabaseTarget::parse(&env.database_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE refinery_schema_history IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        migrate_with_lock_timeout(&env.pool, 300),
    )
    .await;
    drop(holder);
    let _ = driver.await;
    let err = outcome
        .expect("the migration gave up instead of waiting for the lock")
        .expect_err("it cannot get the lock");
    assert!(err.to_string().contains("lock timeout"), "{err}");
}
