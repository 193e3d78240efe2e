//! The consumer runtime every service runs its queue in.
//!
//! A service supplies a [`Handler`]: given a message, it does its work (committing its database
//! transaction, inbox row included) and returns a [`Disposition`]. The runtime owns everything
//! else:
//!
//! - **Ack after commit.** The message is acknowledged only after the handler returned, i.e.
//!   after its transaction committed. A crash in between causes a redelivery, which the handler's
//!   inbox recognises as a duplicate.
//! - **Retries without loops.** A transient failure is republished (confirmed) to
//!   `Q.retry.<tier>` with a jittered, per-tier growing expiration, and only then acknowledged;
//!   the broker dead-letters it back to `Q` when it expires. After `max_attempts` it goes to
//!   `Q.dlq` as `exhausted`. Nothing is ever `nack(requeue=true)`-ed in a tight loop.
//! - **Dead letters** keep the original body, properties and headers and add the contract's
//!   `x-error-kind`, `x-error`, `x-attempts`, `x-failed-at`, `x-service`.
//! - **Bounded concurrency:** `prefetch` messages in flight from the broker, at most
//!   `concurrency` handlers running.
//! - **Reconnects:** a supervisor reconnects with backoff after any broker failure (restart,
//!   closed connection, network) and redeclares the topology.
//! - **Graceful shutdown:** on cancellation it stops consuming, lets running handlers finish
//!   (up to a grace period), and closes the channel so every message not acknowledged goes back
//!   to the queue.
//! - **Metrics:** `wos_sync_messages_total{service,queue,outcome}` and
//!   `wos_sync_message_processing_seconds{service,queue}`.

use std::{
    fmt::Display,
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{FutureExt, StreamExt};
use lapin::{
    BasicProperties, Channel, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
};
use serde::Deserialize;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    headers::{from_json, header_str, header_u64, set_i64, set_str},
    publisher::{Confirmed, Publisher},
    topology::{Names, RetryPolicy, WorkQueue, declare_exchanges, declare_work_queue},
};
use crate::{
    http::Health,
    metrics::{MessageOutcome, Metrics},
};

/// Header counting the handler attempts a message has already failed (CONTRACT `x-attempts`).
pub const ATTEMPTS_HEADER: &str = "x-attempts";

/// Why a message was dead-lettered (`x-error-kind`, CONTRACT 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The message cannot be understood: not JSON, wrong shape, unknown shop. Never retried.
    Malformed,
    /// Shopify refused it for good (unknown item or location, ...).
    Rejected,
    /// Transient failures went on for `max_attempts` attempts.
    Exhausted,
    /// Its item never got a Shopify mapping within the configured age.
    Unmapped,
}

impl ErrorKind {
    /// The `x-error-kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::Exhausted => "exhausted",
            Self::Unmapped => "unmapped",
        }
    }
}

/// What the handler decided; the runtime carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The effect is committed: acknowledge.
    Ack,
    /// The message was applied before (inbox hit): acknowledge, count as duplicate.
    Duplicate,
    /// The handler stored the message for later (e.g. an adjustment waiting for its mapping):
    /// acknowledge, count as parked.
    Parked,
    /// A transient failure (database down, timeout): try again later through the retry tiers.
    Retry { reason: String },
    /// A permanent failure: to `Q.dlq` with this kind and reason.
    DeadLetter { kind: ErrorKind, reason: String },
}

impl Disposition {
    /// A transient failure.
    pub fn retry(reason: impl Display) -> Self {
        Self::Retry {
            reason: reason.to_string(),
        }
    }

    /// A message that can never succeed.
    pub fn malformed(reason: impl Display) -> Self {
        Self::DeadLetter {
            kind: ErrorKind::Malformed,
            reason: reason.to_string(),
        }
    }

    /// A permanent failure of the given kind.
    pub fn dead_letter(kind: ErrorKind, reason: impl Display) -> Self {
        Self::DeadLetter {
            kind,
            reason: reason.to_string(),
        }
    }
}

/// A delivered message, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    pub exchange: String,
    pub routing_key: String,
    /// The broker's redelivered flag: a previous delivery was not acknowledged.
    pub redelivered: bool,
    /// This is the `attempt`-th handler attempt (1 for a fresh message).
    pub attempt: u32,
}

impl Incoming {
    /// The AMQP `message_id` property.
    pub fn message_id(&self) -> Option<&str> {
        self.properties.message_id().as_ref().map(|id| id.as_str())
    }

    /// A string header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        header_str(self.properties.headers().as_ref(), name)
    }
}

/// A service's message handler.
///
/// It must commit its effects (and its inbox row) before returning [`Disposition::Ack`]; it
/// must not acknowledge anything itself. A panic is caught and treated as a transient failure.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: &Incoming) -> impl Future<Output = Disposition> + Send;
}

/// Consumer settings (`[consumer]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Unacknowledged messages the broker may send ahead (`basic.qos`).
    pub prefetch: u16,
    /// Handlers running at once.
    pub concurrency: usize,
    /// How long running handlers may take to finish after SIGTERM.
    pub shutdown_grace_ms: u64,
    /// How long a retry or dead-letter publish may wait for the broker's confirm.
    pub publish_timeout_ms: u64,
    /// Largest message body handed to the handler; a larger one goes to `Q.dlq` as `malformed`
    /// without being parsed. The default is the relay's body limit (a product webhook it
    /// accepted always fits); WOS transactions are far smaller.
    pub max_message_bytes: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            prefetch: 64,
            concurrency: 16,
            shutdown_grace_ms: 20_000,
            publish_timeout_ms: 10_000,
            max_message_bytes: 2 * 1024 * 1024,
        }
    }
}

impl ConsumerSettings {
    /// Checks the values; the error names the key and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            ("publish_timeout_ms", self.publish_timeout_ms),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
        ] {
            if value == 0 {
                return Err((format!("consumer.{key}"), "must be at least 1".into()));
            }
        }
        if self.prefetch == 0 {
            return Err(("consumer.prefetch".into(), "must be at least 1".into()));
        }
        if self.max_message_bytes == 0 {
            return Err((
                "consumer.max_message_bytes".into(),
                "must be at least 1".into(),
            ));
        }
        if self.concurrency == 0 || self.concurrency > usize::from(self.prefetch) {
            return Err((
                "consumer.concurrency".into(),
                "must be at least 1 and at most consumer.prefetch".into(),
            ));
        }
        Ok(())
    }
}

/// Everything the runtime needs to know about one consumer.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The service's name: metric label, `x-service` header, connection name.
    pub service: String,
    pub amqp_url: String,
    pub names: Names,
    pub queue: WorkQueue,
    pub settings: ConsumerSettings,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("service", &self.service)
            .field("amqp_url", &crate::settings::redact_url(&self.amqp_url))
            .field("names", &self.names)
            .field("queue", &self.queue)
            .field("settings", &self.settings)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ConsumerConfig {
    /// The connection name shown by the broker: `<service>/<queue>`.
    pub fn connection_name(&self) -> String {
        format!("{}/{}", self.service, self.queue.name)
    }
}

/// Runs the consumer until `shutdown` is cancelled, reconnecting after every broker failure.
///
/// Returns only after shutdown, once running handlers finished (or the grace period ran out)
/// and the connection is closed.
pub async fn run_consumer<H: Handler>(
    config: ConsumerConfig,
    handler: Arc<H>,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) {
    // Retry and dead-letter copies go through a publisher of their own: one publish in flight
    // per confirm channel, so a returned (unroutable) copy is never mistaken for another's
    // confirm, and consuming is not slowed by publishing flow control.
    let publisher = Publisher::new(
        config.amqp_url.clone(),
        format!("{}/forward", config.connection_name()),
    );
    let runtime = Arc::new(Runtime {
        config,
        metrics,
        handler,
        publisher: publisher.clone(),
    });
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let result = runtime.clone().run_session(&health, &shutdown).await;
        health.set_broker_connected(false);
        match result {
            Ok(()) => break,
            Err(err) => {
                // A session that ran for a while was healthy: start the backoff over.
                if started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let delay = reconnect_delay(failures, rand::random());
                tracing::warn!(
                    queue = %runtime.config.queue.name,
                    error = %err,
                    retry_in_ms = delay.as_millis() as u64,
                    "broker session ended; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    publisher.close().await;
    tracing::info!(queue = %runtime.config.queue.name, "consumer stopped");
}

/// Backoff between reconnects: 0.5 s doubling to 30 s, with ±25% jitter so replicas that lost
/// the broker together do not reconnect in lockstep.
fn reconnect_delay(failures: u32, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    let base = Duration::from_millis(500 * (1u64 << exponent)).min(Duration::from_secs(30));
    base.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Why a broker session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{stage}: {source}")]
    Broker {
        stage: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker ended the consumer (channel or connection closed)")]
    ConsumerEnded,
    #[error("connecting and declaring did not finish within {0:?}")]
    SetupTimeout(Duration),
}

/// Longest a connect + declare + consume may take before the supervisor tries again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a cancel or close may take at shutdown (a half-open connection never answers).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn at(stage: &'static str) -> impl FnOnce(lapin::Error) -> SessionError {
    move |source| SessionError::Broker { stage, source }
}

struct Runtime<H> {
    config: ConsumerConfig,
    metrics: Metrics,
    handler: Arc<H>,
    publisher: Publisher,
}

impl<H: Handler> Runtime<H> {
    /// One connection's lifetime: connect, declare, consume until shutdown or failure.
    async fn run_session(
        self: Arc<Self>,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let config = &self.config;
        // lapin has no connect timeout: a broker (or load balancer) that accepts TCP and never
        // speaks AMQP would hold the session here for ever, deaf to SIGTERM.
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            opened = tokio::time::timeout(SETUP_TIMEOUT, self.open_session()) => opened,
        };
        let (connection, channel, mut deliveries, consumer_tag) =
            opened.map_err(|_| SessionError::SetupTimeout(SETUP_TIMEOUT))??;
        health.set_broker_connected(true);
        tracing::info!(queue = %config.queue.name, "consuming");
        self.consume(connection, channel, &mut deliveries, consumer_tag, shutdown)
            .await
    }

    /// Connects, declares the topology, and starts consuming.
    async fn open_session(
        &self,
    ) -> Result<(Connection, Channel, lapin::Consumer, String), SessionError> {
        let config = &self.config;
        let connection = super::connect(&config.amqp_url, &config.connection_name())
            .await
            .map_err(at("connect"))?;

        let declare = connection
            .create_channel()
            .await
            .map_err(at("open channel"))?;
        declare_exchanges(&declare, &config.names)
            .await
            .map_err(at("declare exchanges"))?;
        declare_work_queue(&declare, &config.queue, &config.retry)
            .await
            .map_err(at("declare queues"))?;
        let _ = declare.close(200, "topology declared".into()).await;

        let channel = connection
            .create_channel()
            .await
            .map_err(at("open consume channel"))?;
        channel
            .basic_qos(config.settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(at("basic.qos"))?;
        let consumer_tag = format!("{}-{}", config.service, uuid::Uuid::new_v4().simple());
        let deliveries = channel
            .basic_consume(
                config.queue.name.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(at("basic.consume"))?;
        Ok((connection, channel, deliveries, consumer_tag))
    }

    /// Runs deliveries until shutdown or a broker failure.
    async fn consume(
        self: Arc<Self>,
        connection: Connection,
        channel: Channel,
        deliveries: &mut lapin::Consumer,
        consumer_tag: String,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let config = &self.config;

        let permits = Arc::new(Semaphore::new(config.settings.concurrency));
        let mut running = JoinSet::new();
        let ended = loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()), // the semaphore is never closed
                },
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                next = deliveries.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => break Err(at("consume")(err)),
                None => break Err(SessionError::ConsumerEnded),
            };
            let runtime = self.clone();
            running.spawn(async move {
                runtime.process(delivery).await;
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        };

        match &ended {
            Ok(()) => {
                // Stop the flow first so no new message starts, then let running ones finish.
                let cancel = channel
                    .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default());
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, cancel).await;
                let grace = Duration::from_millis(config.settings.shutdown_grace_ms);
                let drained = tokio::time::timeout(grace, async {
                    while running.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::warn!(
                        unfinished = running.len(),
                        "shutdown grace period over; unfinished messages return to the queue"
                    );
                    running.abort_all();
                }
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close(&connection, &channel)).await;
            }
            Err(_) => {
                // The channel is gone, so running handlers cannot acknowledge anyway: their
                // messages are redelivered (and recognised as duplicates where they committed).
                // Stop them rather than let them compete with the next session's handlers for
                // the database pool; an aborted transaction rolls back.
                running.abort_all();
            }
        }
        ended
    }

    /// Runs the handler on one delivery and carries out its disposition.
    async fn process(&self, delivery: Delivery) {
        let started = Instant::now();
        let Delivery {
            data,
            properties,
            exchange,
            routing_key,
            redelivered,
            acker,
            ..
        } = delivery;
        let attempt = previous_attempts(&properties).saturating_add(1);
        let (properties, trace) = crate::trace::adopt(properties);
        let message = Incoming {
            body: data,
            properties,
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            redelivered,
            attempt,
        };
        let span = tracing::info_span!(
            "message",
            queue = %self.config.queue.name,
            message_id = message.message_id().unwrap_or(""),
            attempt,
            trace_id = %trace.trace_id(),
        );
        let work = async {
            // The broker counts redeliveries of one message (`x-delivery-count`): one that keeps
            // coming back (it crashes the process, or we could never forward it) is dead-lettered
            // here, with the contract's headers, before the broker's own limit would move it
            // without them.
            let deliveries = header_u64(message.properties.headers().as_ref(), "x-delivery-count")
                .unwrap_or(0)
                .saturating_add(1);
            let limit = self.config.settings.max_message_bytes;
            let disposition = if deliveries >= u64::from(self.config.retry.delivery_limit) {
                Disposition::dead_letter(
                    ErrorKind::Exhausted,
                    format!(
                        "delivered {deliveries} times without being acknowledged (a crash loop?)"
                    ),
                )
            } else if message.body.len() > limit {
                // Before any parsing: a huge body must not cost a parse (or a retry) per
                // delivery.
                Disposition::malformed(format!(
                    "message of {} bytes is over the limit of {limit} bytes \
                     (consumer.max_message_bytes); not parsed",
                    message.body.len()
                ))
            } else {
                AssertUnwindSafe(self.handler.handle(&message))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Disposition::retry(panic_message(&*panic)))
            };

            let outcome = match disposition {
                Disposition::Ack => Ok(MessageOutcome::Acked),
                Disposition::Duplicate => Ok(MessageOutcome::Duplicate),
                Disposition::Parked => Ok(MessageOutcome::Parked),
                Disposition::Retry { reason } if attempt >= self.config.retry.max_attempts => {
                    let reason = format!("gave up after {attempt} attempts; last error: {reason}");
                    self.dead_letter(&message, ErrorKind::Exhausted, &reason)
                        .await
                }
                Disposition::Retry { reason } => self.retry(&message, &reason).await,
                Disposition::DeadLetter { kind, reason } => {
                    self.dead_letter(&message, kind, &reason).await
                }
            };

            match outcome {
                Ok(outcome) => {
                    match acker.ack(BasicAckOptions::default()).await {
                        Ok(true) => {}
                        Ok(false) | Err(_) => tracing::warn!(
                            "acknowledgement failed (channel closed); the broker will redeliver \
                             the message and its handler will see a duplicate"
                        ),
                    }
                    self.count(outcome, started);
                }
                Err(err) => {
                    // The retry or dead-letter copy is not safely stored: keep the original.
                    // Requeueing is bounded by the queue's x-delivery-limit, after which the
                    // broker dead-letters the message to Q.dlq on its own.
                    tracing::error!(error = %err, "cannot forward the message; requeueing it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await;
                }
            }
        };
        crate::trace::scope(trace, span, work).await
    }

    fn count(&self, outcome: MessageOutcome, started: Instant) {
        let (service, queue) = (
            self.config.service.as_str(),
            self.config.queue.name.as_str(),
        );
        self.metrics
            .messages_total
            .with_label_values(&[service, queue, outcome.as_str()])
            .inc();
        self.metrics
            .message_processing_seconds
            .with_label_values(&[service, queue])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Republishes to the retry tier for this attempt; the broker brings it back when the
    /// (jittered) expiration passes.
    async fn retry(
        &self,
        message: &Incoming,
        reason: &str,
    ) -> Result<MessageOutcome, ForwardError> {
        let retry = &self.config.retry;
        let tier = retry.tier_for_attempt(message.attempt);
        let delay = retry.jittered_delay(tier, rand::random());
        let mut headers = message.properties.headers().clone().unwrap_or_default();
        set_i64(&mut headers, ATTEMPTS_HEADER, i64::from(message.attempt));
        set_str(&mut headers, "x-last-error", one_line(reason));
        let properties = republished(&message.properties, headers)
            .with_expiration(delay.as_millis().to_string().as_str().into());
        let queue = self.config.queue.retry_queue(tier);
        self.forward(&queue, &message.body, properties).await?;
        tracing::warn!(
            error = %reason,
            retry_queue = %queue,
            delay_ms = delay.as_millis() as u64,
            "transient failure; retrying later"
        );
        Ok(MessageOutcome::Retried)
    }

    /// Publishes to `Q.dlq` with the contract's error headers.
    async fn dead_letter(
        &self,
        message: &Incoming,
        kind: ErrorKind,
        reason: &str,
    ) -> Result<MessageOutcome, ForwardError> {
        let headers = dead_letter_headers(
            message.properties.headers().clone().unwrap_or_default(),
            kind,
            reason,
            message.attempt,
            &self.config.service,
            chrono::Utc::now(),
        );
        let queue = self.config.queue.dead_letter_queue();
        self.forward(
            &queue,
            &message.body,
            republished(&message.properties, headers),
        )
        .await?;
        tracing::error!(kind = kind.as_str(), error = %reason, dead_letter_queue = %queue, "dead-lettered");
        Ok(MessageOutcome::DeadLettered)
    }
}

impl<H> Runtime<H> {
    /// Publishes a copy straight into `queue` (default exchange); it counts only once the
    /// broker confirmed it was stored there.
    async fn forward(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), ForwardError> {
        let timeout = Duration::from_millis(self.config.settings.publish_timeout_ms);
        match self
            .publisher
            .publish("", queue, body, properties, timeout)
            .await
        {
            Ok(Confirmed::Routed) => Ok(()),
            Ok(Confirmed::Unroutable) => {
                Err(ForwardError(format!("queue `{queue}` does not exist")))
            }
            Err(err) => Err(ForwardError(err.to_string())),
        }
    }
}

/// Why a retry or dead-letter copy was not stored (the original is then kept).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ForwardError(String);

/// How many handler attempts the message already failed (our `x-attempts` header).
fn previous_attempts(properties: &BasicProperties) -> u32 {
    header_u64(properties.headers().as_ref(), ATTEMPTS_HEADER)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// The contract's dead-letter headers (CONTRACT 3), as a JSON object of strings and integers:
/// `x-error-kind`, `x-error` (one line), `x-attempts`, `x-failed-at` (RFC 3339), `x-service`.
pub fn dead_letter_fields(
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
    service: &str,
    failed_at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "x-error-kind": kind.as_str(),
        "x-error": one_line(reason),
        ATTEMPTS_HEADER: attempts,
        "x-failed-at": failed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "x-service": service,
    })
}

/// The contract's dead-letter headers added to a message's own headers.
pub fn dead_letter_headers(
    mut headers: FieldTable,
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
    service: &str,
    failed_at: chrono::DateTime<chrono::Utc>,
) -> FieldTable {
    let fields = dead_letter_fields(kind, reason, attempts, service, failed_at);
    for (name, value) in from_json(&fields).inner() {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// The message's properties for a copy we publish: everything kept but the expiration (which
/// would let a dead letter vanish) and the user id (the broker refuses a publish whose user id
/// is not the publishing user's; it is kept as the `x-original-user-id` header). Also used by
/// `wos-sync dlq replay` for the copy it puts back on a work queue.
pub fn republished(original: &BasicProperties, mut headers: FieldTable) -> BasicProperties {
    if let Some(user_id) = original.user_id() {
        set_str(&mut headers, "x-original-user-id", user_id.as_str());
    }
    let mut copy = BasicProperties::default().with_headers(headers);
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = original.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}

/// `x-error` is one line: newlines and other control characters become spaces, and it is cut
/// at 1000 characters so a huge error cannot blow up a header.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("handler panicked: {detail}")
}

async fn close(connection: &Connection, channel: &Channel) {
    let _ = channel.close(200, "shutting down".into()).await;
    let _ = connection.close(200, "shutting down".into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_to_a_cap_with_bounded_jitter() {
        let middle: Vec<_> = (1..=9)
            .map(|n| reconnect_delay(n, 0.5).as_millis())
            .collect();
        assert_eq!(
            middle,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(reconnect_delay(1, 0.0).as_millis(), 375);
        assert_eq!(reconnect_delay(1, 1.0).as_millis(), 625);
    }

    #[test]
    fn dead_letter_headers_keep_the_original_ones_and_add_the_contract_fields() {
        let mut original = FieldTable::default();
        set_str(&mut original, "x-shopify-topic", "products/update");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let headers =
            dead_letter_headers(original, ErrorKind::Malformed, "bad\njson", 3, "svc", at);
        let get = |name| header_str(Some(&headers), name);
        assert_eq!(get("x-shopify-topic"), Some("products/update"));
        assert_eq!(get("x-error-kind"), Some("malformed"));
        assert_eq!(get("x-error"), Some("bad json"));
        assert_eq!(header_u64(Some(&headers), "x-attempts"), Some(3));
        assert_eq!(get("x-failed-at"), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(get("x-service"), Some("svc"));
    }

    #[test]
    fn republished_copies_drop_expiration_and_keep_the_rest() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_expiration("1000".into())
            .with_user_id("wos".into())
            .with_app_id("wos".into());
        let copy = republished(&original, FieldTable::default());
        assert_eq!(copy.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(
            copy.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(copy.app_id().as_ref().map(|s| s.as_str()), Some("wos"));
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        assert_eq!(
            header_str(copy.headers().as_ref(), "x-original-user-id"),
            Some("wos")
        );
    }

    #[test]
    fn one_line_flattens_and_bounds_errors() {
        assert_eq!(one_line("a\r\nb\tc"), "a  b c");
        assert_eq!(one_line(&"x".repeat(5000)).len(), 1000);
    }

    #[test]
    fn attempts_are_read_from_the_header() {
        let mut headers = FieldTable::default();
        set_i64(&mut headers, ATTEMPTS_HEADER, 4);
        assert_eq!(
            previous_attempts(&BasicProperties::default().with_headers(headers)),
            4
        );
        assert_eq!(previous_attempts(&BasicProperties::default()), 0);
    }
}
