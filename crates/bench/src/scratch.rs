//! Scratch environments for benchmark commands: a fresh database and a unique exchange/queue
//! prefix on the configured servers, removed afterwards.
//!
//! A benchmark must not touch a deployment's data and must leave nothing behind, even when it
//! fails half-way: [`Scratch::teardown`] deletes the queues it was told about, the exchanges of
//! the prefix and the database, and is safe to call after any error.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

use platform::{
    amqp::topology::{Names, WorkQueue},
    db,
    settings::Settings,
};

/// A benchmark's private namespace and database.
#[derive(Clone)]
pub struct Scratch {
    /// Settings pointing at the scratch prefix and database (everything else as configured).
    pub settings: Settings,
    database: String,
    admin_url: String,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("settings", &self.settings)
            .field("database", &self.database)
            .field(
                "admin_url",
                &platform::settings::redact_url(&self.admin_url),
            )
            .finish()
    }
}

impl Scratch {
    /// Creates the database `wos_bench_<id>` and the prefix `bench-<id>.`.
    pub async fn create(settings: &Settings) -> Result<Self, db::DbError> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let database = format!("wos_bench_{id}");
        db::admin_execute(
            &settings.database.url,
            &format!("CREATE DATABASE {database}"),
        )
        .await?;
        let mut scratch = settings.clone();
        scratch.amqp.name_prefix = format!("bench-{id}.");
        scratch.database.url = db::with_database(&settings.database.url, &database);
        Ok(Self {
            settings: scratch,
            database,
            admin_url: settings.database.url.clone(),
        })
    }

    /// The scratch names.
    pub fn names(&self) -> Names {
        self.settings.names()
    }

    /// Deletes `queues` (each with its retry tiers and dead-letter queue), the prefix's
    /// exchanges, and the database. Errors are logged, not returned: teardown is best effort.
    pub async fn teardown(&self, queues: &[WorkQueue]) {
        match platform::amqp::connect(&self.settings.amqp.url, "bench-teardown").await {
            Ok(connection) => {
                if let Ok(channel) = connection.create_channel().await {
                    for queue in queues {
                        let mut doomed = vec![queue.name.clone(), queue.dead_letter_queue()];
                        doomed
                            .extend((1..=self.settings.retry.tiers).map(|t| queue.retry_queue(t)));
                        for name in doomed {
                            let _ = channel
                                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                    }
                    for exchange in self.names().exchanges() {
                        let _ = channel
                            .exchange_delete(
                                exchange.as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                    // Channels first: closing a connection under an open channel makes lapin
                    // log an error.
                    let _ = channel.close(200, "teardown".into()).await;
                }
                let _ = connection.close(200, "teardown".into()).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reach the broker to remove bench queues")
            }
        }
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        if let Err(err) = db::admin_execute(&self.admin_url, &drop).await {
            tracing::warn!(error = %err, database = %self.database, "cannot drop the bench database");
        }
    }
}
