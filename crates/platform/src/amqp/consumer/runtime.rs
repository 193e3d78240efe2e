//! The runtime loop: one broker session after another, deliveries run through the handler,
//! dispositions carried out (ack, retry copy, dead letter), shutdown.

use std::{
    borrow::Cow,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    ConsumerConfig, Disposition, GroupOutcome, Handler, Incoming,
    acks::{AckLedger, Settle},
    backoff,
    forward::{Forwarder, Stopped},
};
use crate::{
    amqp::{
        copies::{
            ATTEMPTS_HEADER, ErrorKind, copied_headers, dead_letter_headers, one_line,
            previous_attempts, republished,
        },
        headers::{header_u64, set_i64, set_str},
        topology::declare_topology,
    },
    http::Health,
    metrics::{MessageOutcome, Metrics},
};
use futures_util::{FutureExt, StreamExt};
use lapin::{
    Channel, Connection,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

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
    let runtime = Arc::new(Runtime {
        forwarder: Forwarder::new(&config),
        config,
        metrics,
        handler,
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
                let delay = backoff(failures, MAX_RECONNECT_BACKOFF, rand::random());
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
    runtime.forwarder.close().await;
    tracing::info!(queue = %runtime.config.queue.name, "consumer stopped");
}

/// Longest pause between reconnects (replicas that lost the broker together spread out by the
/// jitter).
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

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
/// How often a paused consumer (or one whose handler slots are all busy) looks whether its
/// channel is still open.
const PAUSED_CHECK: Duration = Duration::from_secs(1);

fn at(stage: &'static str) -> impl FnOnce(lapin::Error) -> SessionError {
    move |source| SessionError::Broker { stage, source }
}

struct Runtime<H> {
    config: ConsumerConfig,
    metrics: Metrics,
    handler: Arc<H>,
    forwarder: Forwarder,
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
        let connection = crate::amqp::connect(&config.amqp_url, &config.connection_name())
            .await
            .map_err(at("connect"))?;
        declare_topology(&connection, &config.names, &config.queue, &config.retry)
            .await
            .map_err(at("declare"))?;

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
        let ledger = Arc::new(AckLedger::new(
            channel.clone(),
            usize::from(config.settings.prefetch) / 2,
        ));
        let mut stalled = self.forwarder.stalled();
        let mut running = JoinSet::new();
        let ended = loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()), // the semaphore is never closed
                },
                // Every handler slot busy (a slow database): the delivery stream is not read,
                // so a lost connection would go unnoticed (readiness still "connected") until
                // a handler finished.
                () = channel_lost(&channel) => break Err(SessionError::ConsumerEnded),
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                next = deliveries.next() => next,
            };
            let mut group = match next {
                Some(Ok(delivery)) => vec![delivery],
                Some(Err(err)) => break Err(at("consume")(err)),
                None => break Err(SessionError::ConsumerEnded),
            };
            if H::GROUPS
                && let Err(err) = self.gather(deliveries, &mut group).await
            {
                // What was gathered goes back to the queue with the channel.
                break Err(err);
            }
            // While a copy cannot be stored, these messages would most likely fail the same
            // way: hold them, and start nothing new until the broker takes copies again.
            // (Checked after taking the deliveries, so a copy that began waiting meanwhile
            // counts too.) Held deliveries go back to the queue with the channel if the session
            // ends.
            let resumed = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                resumed = wait_while_stalled(&mut stalled, &channel) => resumed,
            };
            if let Err(err) = resumed {
                break Err(err);
            }
            ledger
                .take(group.iter().map(|delivery| delivery.delivery_tag))
                .await;
            let runtime = self.clone();
            let shutdown = shutdown.clone();
            let ledger = ledger.clone();
            running.spawn(async move {
                let settled = runtime.process(group, &shutdown).await;
                ledger.finish(settled).await;
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
                // Finished messages held behind an unfinished one are acknowledged now.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ledger.flush()).await;
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

    /// Adds to `group` the deliveries that are ready now, up to `[consumer] group_size` and
    /// `group_max_bytes`, for at most `group_linger_ms`. It never waits for a delivery that has not arrived: an idle
    /// stream ends the group at once.
    async fn gather(
        &self,
        deliveries: &mut lapin::Consumer,
        group: &mut Vec<Delivery>,
    ) -> Result<(), SessionError> {
        let settings = &self.config.settings;
        let deadline = Instant::now() + Duration::from_millis(settings.group_linger_ms);
        let mut yielded = false;
        let most = settings.group_size.min(usize::from(settings.prefetch));
        let mut bytes: usize = group.iter().map(|delivery| delivery.data.len()).sum();
        while group.len() < most && bytes < settings.group_max_bytes && Instant::now() < deadline {
            match deliveries.next().now_or_never() {
                Some(Some(Ok(delivery))) => {
                    bytes = bytes.saturating_add(delivery.data.len());
                    group.push(delivery);
                    yielded = false;
                }
                Some(Some(Err(err))) => return Err(at("consume")(err)),
                Some(None) => return Err(SessionError::ConsumerEnded),
                // Nothing ready: let the connection hand over what it has already read once,
                // then start with what there is.
                None if !yielded => {
                    tokio::task::yield_now().await;
                    yielded = true;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Runs the handler on a group of deliveries (one, when grouping is off or nothing else
    /// was ready) and carries out each message's disposition; returns how each is settled.
    async fn process(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Vec<(u64, Settle)> {
        let started = Instant::now();
        let mut tags = Vec::with_capacity(deliveries.len());
        let mut traces = Vec::with_capacity(deliveries.len());
        let mut messages = Vec::with_capacity(deliveries.len());
        for Received {
            tag,
            trace,
            message,
        } in deliveries.into_iter().map(Received::new)
        {
            tags.push(tag);
            traces.push(trace);
            messages.push(message);
        }
        // The runtime's own verdicts first: these messages never reach the handler.
        let verdicts: Vec<Option<Disposition>> = messages.iter().map(|m| self.verdict(m)).collect();
        // A redelivery is handled alone: if its group crashed the process (a message that
        // aborts, or exhausts memory), grouping it again would crash its neighbours' deliveries
        // with it until `delivery_limit` dead-lettered them all.
        let grouped: Vec<usize> = (0..messages.len())
            .filter(|i| verdicts[*i].is_none() && !messages[*i].redelivered)
            .collect();
        let mut dispositions = verdicts;
        if grouped.len() > 1 {
            // Usually the whole group: then its messages are not copied.
            let group: Cow<[Incoming]> = if grouped.len() == messages.len() {
                Cow::Borrowed(&messages)
            } else {
                Cow::Owned(grouped.iter().map(|i| messages[*i].clone()).collect())
            };
            let group_traces = grouped.iter().map(|i| traces[*i]);
            for (i, disposition) in grouped
                .iter()
                .zip(self.handle_group(group_traces, &group).await)
            {
                dispositions[*i] = disposition;
            }
        }
        let mut settled = Vec::with_capacity(messages.len());
        let each = tags.into_iter().zip(traces).zip(messages).zip(dispositions);
        for (((tag, trace), message), disposition) in each {
            let span = message_span(&self.config.queue.name, &message, trace);
            let work = async {
                let disposition = match disposition {
                    Some(disposition) => disposition,
                    None => self.handle_alone(&message).await,
                };
                self.carry_out(&message, disposition, shutdown).await
            };
            let settle = match crate::trace::scope(trace, span, work).await {
                Ok(outcome) => {
                    self.count(outcome, started);
                    Settle::Ack
                }
                Err(Stopped) => {
                    tracing::warn!(
                        "shutting down before the copy was stored; returning the message to the \
                         queue"
                    );
                    Settle::Requeue
                }
            };
            settled.push((tag, settle));
        }
        settled
    }

    /// What the runtime decides without the handler: a crash loop, a body over the limit.
    fn verdict(&self, message: &Incoming) -> Option<Disposition> {
        let failed = failed_deliveries(message);
        let delivery_limit = self.config.retry.delivery_limit;
        let limit = self.config.settings.max_message_bytes;
        if failed >= u64::from(delivery_limit) {
            // The broker dead-letters the message, without the contract's headers, the next
            // time a delivery of it fails: do it here, with them, instead of running a handler
            // that keeps failing (a crash loop).
            Some(Disposition::dead_letter(
                ErrorKind::Exhausted,
                format!(
                    "{failed} deliveries ended without an acknowledgement (a crash loop?); \
                     retry.delivery_limit is {delivery_limit}"
                ),
            ))
        } else if message.body.len() > limit {
            // Before any parsing: a huge body must not cost a parse (or a retry) per delivery.
            Some(Disposition::malformed(format!(
                "message of {} bytes is over the limit of {limit} bytes \
                 (consumer.max_message_bytes); not parsed",
                message.body.len()
            )))
        } else {
            None
        }
    }

    /// The handler's group dispositions for `group` (whose messages' traces are `traces`), or
    /// `None` for each when they are to be handled one by one (the handler said so, it
    /// panicked, or it answered for another number of messages).
    async fn handle_group(
        &self,
        traces: impl Iterator<Item = crate::trace::TraceParent>,
        group: &[Incoming],
    ) -> Vec<Option<Disposition>> {
        let (trace, trace_ids) = crate::trace::joined(traces);
        let span = tracing::info_span!(
            "message_group",
            queue = %self.config.queue.name,
            messages = group.len(),
            trace_id = %trace.trace_id(),
            joins = %trace_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        );
        let work = AssertUnwindSafe(self.handler.handle_group(group)).catch_unwind();
        match crate::trace::scope(trace, span.clone(), work).await {
            Ok(GroupOutcome::Handled(dispositions)) if dispositions.len() == group.len() => {
                dispositions.into_iter().map(Some).collect()
            }
            Ok(GroupOutcome::Handled(dispositions)) => {
                span.in_scope(|| {
                    tracing::error!(
                        messages = group.len(),
                        dispositions = dispositions.len(),
                        "the handler answered a group with the wrong number of dispositions; \
                         handling its messages one by one"
                    )
                });
                vec![None; group.len()]
            }
            Ok(GroupOutcome::HandleAlone) => vec![None; group.len()],
            Err(panic) => {
                span.in_scope(|| {
                    tracing::warn!(
                        error = %panic_message(&*panic),
                        "handling a group panicked; handling its messages one by one"
                    )
                });
                vec![None; group.len()]
            }
        }
    }

    /// The handler's disposition for one message; a panic is a transient failure.
    async fn handle_alone(&self, message: &Incoming) -> Disposition {
        AssertUnwindSafe(self.handler.handle(message))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Disposition::retry(panic_message(&*panic)))
    }

    /// Carries out a disposition: nothing more to do for the acknowledged ones, the retry or
    /// dead-letter copy stored for the others.
    async fn carry_out(
        &self,
        message: &Incoming,
        disposition: Disposition,
        shutdown: &CancellationToken,
    ) -> Result<MessageOutcome, Stopped> {
        match disposition {
            Disposition::Ack => Ok(MessageOutcome::Acked),
            Disposition::Duplicate => Ok(MessageOutcome::Duplicate),
            Disposition::Parked => Ok(MessageOutcome::Parked),
            Disposition::Retry { reason } if message.attempt >= self.config.retry.max_attempts => {
                let reason = format!(
                    "gave up after {} attempts; last error: {reason}",
                    message.attempt
                );
                self.dead_letter(message, ErrorKind::Exhausted, &reason, shutdown)
                    .await
            }
            Disposition::Retry { reason } => self.retry(message, &reason, shutdown).await,
            Disposition::DeadLetter { kind, reason } => {
                self.dead_letter(message, kind, &reason, shutdown).await
            }
        }
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
        shutdown: &CancellationToken,
    ) -> Result<MessageOutcome, Stopped> {
        let retry = &self.config.retry;
        let tier = retry.tier_for_attempt(message.attempt);
        let delay = retry.jittered_delay(tier, rand::random());
        let mut headers = copied_headers(message.properties.headers().as_ref());
        set_i64(&mut headers, ATTEMPTS_HEADER, i64::from(message.attempt));
        set_str(&mut headers, "x-last-error", one_line(reason));
        let properties = republished(&message.properties, headers)
            .with_expiration(delay.as_millis().to_string().as_str().into());
        let queue = self.config.queue.retry_queue(tier);
        self.forwarder
            .store(&queue, &message.body, properties, shutdown)
            .await?;
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
        shutdown: &CancellationToken,
    ) -> Result<MessageOutcome, Stopped> {
        let headers = dead_letter_headers(
            copied_headers(message.properties.headers().as_ref()),
            kind,
            reason,
            message.attempt,
            &self.config.service,
            chrono::Utc::now(),
        );
        let queue = self.config.queue.dead_letter_queue();
        let properties = republished(&message.properties, headers);
        self.forwarder
            .store(&queue, &message.body, properties, shutdown)
            .await?;
        tracing::error!(kind = kind.as_str(), error = %reason, dead_letter_queue = %queue, "dead-lettered");
        Ok(MessageOutcome::DeadLettered)
    }
}

/// Deliveries of this message that ended without an acknowledgement, as its queue counts them
/// (`x-delivery-count`, what `x-delivery-limit` acts on). Read on a redelivery only: on a first
/// delivery the header can only be a copy (a message shovelled back from a queue that had
/// delivered it), which is not this queue's count.
fn failed_deliveries(message: &Incoming) -> u64 {
    if !message.redelivered {
        return 0;
    }
    header_u64(message.properties.headers().as_ref(), "x-delivery-count").unwrap_or(0)
}

/// A delivery as the handler sees it, with its tag and trace.
struct Received {
    tag: u64,
    message: Incoming,
    trace: crate::trace::TraceParent,
}

impl Received {
    fn new(delivery: Delivery) -> Self {
        let Delivery {
            delivery_tag,
            data,
            properties,
            exchange,
            routing_key,
            redelivered,
            ..
        } = delivery;
        let attempt = previous_attempts(properties.headers().as_ref()).saturating_add(1);
        let (properties, trace) = crate::trace::adopt(properties);
        Self {
            tag: delivery_tag,
            message: Incoming {
                body: data,
                properties,
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
                redelivered,
                attempt,
            },
            trace,
        }
    }
}

/// The span of one message's handling.
fn message_span(
    queue: &str,
    message: &Incoming,
    trace: crate::trace::TraceParent,
) -> tracing::Span {
    tracing::info_span!(
        "message",
        queue = %queue,
        message_id = message.message_id().unwrap_or(""),
        attempt = message.attempt,
        trace_id = %trace.trace_id(),
    )
}

/// Returns once the channel is no longer connected (checked every [`PAUSED_CHECK`]).
async fn channel_lost(channel: &Channel) {
    while channel.status().connected() {
        tokio::time::sleep(PAUSED_CHECK).await;
    }
}

/// Waits until no copy is waiting for the broker, or the channel closed meanwhile.
async fn wait_while_stalled(
    stalled: &mut watch::Receiver<usize>,
    channel: &Channel,
) -> Result<(), SessionError> {
    if *stalled.borrow() > 0 {
        tracing::warn!("pausing consumption until the broker stores copies again");
    }
    loop {
        match tokio::time::timeout(PAUSED_CHECK, stalled.wait_for(|waiting| *waiting == 0)).await {
            // An error means the forwarder is gone, which it never is while the runtime runs.
            Ok(_) => return Ok(()),
            Err(_) if !channel.status().connected() => return Err(SessionError::ConsumerEnded),
            Err(_) => {}
        }
    }
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
    use lapin::BasicProperties;

    use super::*;

    fn delivered(redelivered: bool, count: Option<i64>) -> Incoming {
        let mut headers = FieldTable::default();
        if let Some(count) = count {
            set_i64(&mut headers, "x-delivery-count", count);
        }
        Incoming {
            body: Vec::new(),
            properties: BasicProperties::default().with_headers(headers),
            exchange: String::new(),
            routing_key: String::new(),
            redelivered,
            attempt: 1,
        }
    }

    #[test]
    fn only_a_redelivery_counts_its_failed_deliveries() {
        assert_eq!(failed_deliveries(&delivered(false, None)), 0);
        assert_eq!(
            failed_deliveries(&delivered(false, Some(7))),
            0,
            "a copied count"
        );
        assert_eq!(failed_deliveries(&delivered(true, Some(3))), 3);
        // RabbitMQ 4.3 redelivers after a nack or a lost channel without counting it.
        assert_eq!(failed_deliveries(&delivered(true, None)), 0);
    }
}
