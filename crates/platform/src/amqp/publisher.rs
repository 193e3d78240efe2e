//! A cloneable, self-reconnecting publisher with confirms: what a service that *produces*
//! messages (the webhook relay, an outbox) holds for its whole life.
//!
//! - **Lazy and self-healing.** It connects on first use. Any broker error or a confirm that does
//!   not arrive in time marks the connection broken and closes it; the next publish opens a new
//!   one. Reconnecting happens once, under a lock, not once per concurrent caller, and failed
//!   attempts back off (by default 100 ms doubling up to 1 s) so a dead broker costs callers a
//!   quick error instead of a connect storm. Connecting is bounded by a timeout, so a broker
//!   that accepts TCP but never answers yields an error within the caller's budget, never a
//!   hang.
//! - **Exact outcome per message.** Every publish is persistent and `mandatory`, and counts only
//!   once the broker confirmed it. The result says whether it was routed to a queue or returned
//!   as unroutable. Each publish has a confirm channel to itself while it waits (a small pool of
//!   channels, one publish in flight on each): lapin attaches a `basic.return` to whichever
//!   confirm it resolves next, and when the broker acks several publishes of one channel at once
//!   (`multiple`), that is not necessarily the returned one, so sharing a channel between
//!   concurrent publishes could report a routed message as unroutable and vice versa.
//! - **A hook at every (re)connect** ([`Publisher::on_connect`]) declares what the publisher
//!   needs (its exchange), so a broker that lost its definitions is repaired by reconnecting.
//!
//! The two primitives under it, [`PERSISTENT`] and [`confirm_channel`], are public for the
//! benchmarks and tests that pipeline thousands of publishes on one channel.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use tokio::{
    sync::{Mutex, Semaphore},
    time::Instant,
};

/// AMQP delivery mode 2: the broker writes the message to disk.
pub const PERSISTENT: u8 = 2;

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(connection: &lapin::Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// What the broker did with a confirmed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Stored in at least one queue.
    Routed,
    /// No queue is bound for its routing key: the broker returned it (`mandatory`) and confirmed
    /// the publish. Nothing was stored; whether that is fine is the caller's decision.
    Unroutable,
}

/// Why a publish did not count. Every variant is transient: the message can be sent again.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// No connection could be opened (refused, timed out, or backing off after such a failure).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The connection or channel failed while publishing; the connection is being replaced.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker refused the message (for example a queue at its length limit).
    #[error("broker refused the message (nack)")]
    Nacked,
    /// No confirm within the caller's budget; the connection is being replaced.
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// Runs on a fresh channel after every (re)connect, before the connection is used; an error
/// counts as a failed connect.
pub type OnConnect = Arc<
    dyn Fn(Channel) -> Pin<Box<dyn Future<Output = Result<(), lapin::Error>> + Send>> + Send + Sync,
>;

/// Tuning of a [`Publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherOptions {
    /// Longest time to open a connection (TCP, AMQP handshake and the [`OnConnect`] hook).
    pub connect_timeout: Duration,
    /// Publishes waiting for their confirm at once, which is also the most confirm channels the
    /// publisher opens; further callers wait for a slot (within their own timeout).
    pub max_in_flight: usize,
    /// Pause after a failed connect attempt, doubling with each further failure.
    pub min_backoff: Duration,
    /// Longest pause between connect attempts after consecutive failures.
    pub max_backoff: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            max_in_flight: 64,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// A confirmed, self-reconnecting publisher. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    connection_name: String,
    options: PublisherOptions,
    on_connect: Option<OnConnect>,
    /// The connection state; held across a connect attempt so only one caller reconnects.
    state: Mutex<State>,
    /// The current session, readable without awaiting (for `/readyz`).
    live: RwLock<Option<Arc<Session>>>,
    slots: Semaphore,
    sessions_opened: AtomicU64,
}

#[derive(Default)]
struct State {
    session: Option<Arc<Session>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

/// One connection and its idle confirm channels.
struct Session {
    id: u64,
    connection: Connection,
    idle: std::sync::Mutex<Vec<Channel>>,
    broken: AtomicBool,
}

impl Session {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && self.connection.status().connected()
    }

    async fn take_channel(&self) -> Result<Channel, lapin::Error> {
        loop {
            let idle = self.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
            match idle {
                Some(channel) if channel.status().connected() => return Ok(channel),
                // Closed (by the broker, e.g. after a 404 on a missing exchange): drop it.
                Some(_) => continue,
                None => return confirm_channel(&self.connection).await,
            }
        }
    }

    fn put_back(&self, channel: Channel) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(channel);
        }
    }

    /// Publishes on a channel of its own and waits for the confirm (no timeout here).
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<Confirmed, PublisherError> {
        let channel = self.take_channel().await?;
        let confirmation = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties.with_delivery_mode(PERSISTENT),
            )
            .await?
            .await?;
        // Only now is the channel free of pending confirms and returns: it may serve again.
        self.put_back(channel);
        match confirmation {
            Confirmation::Ack(None) => Ok(Confirmed::Routed),
            Confirmation::Ack(Some(_returned)) => Ok(Confirmed::Unroutable),
            Confirmation::Nack(_) => Err(PublisherError::Nacked),
            // Only on a channel without confirms: a programming error, never "ok".
            Confirmation::NotRequested => Err(PublisherError::Nacked),
        }
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("connection_name", &self.inner.connection_name)
            .field("connected", &self.is_connected())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `amqp_url` whose connection the broker shows as `connection_name`.
    /// Nothing is opened until the first publish (or [`Publisher::ensure_connected`]).
    pub fn new(amqp_url: String, connection_name: String) -> Self {
        Self::with_options(amqp_url, connection_name, PublisherOptions::default(), None)
    }

    /// [`Publisher::new`] with explicit options and an optional hook run at every (re)connect.
    pub fn with_options(
        amqp_url: String,
        connection_name: String,
        options: PublisherOptions,
        on_connect: Option<OnConnect>,
    ) -> Self {
        let slots = Semaphore::new(options.max_in_flight.max(1));
        Self {
            inner: Arc::new(Inner {
                url: amqp_url,
                connection_name,
                options,
                on_connect,
                state: Mutex::new(State::default()),
                live: RwLock::new(None),
                slots,
                sessions_opened: AtomicU64::new(0),
            }),
        }
    }

    /// Builds an [`OnConnect`] hook from an async closure.
    pub fn on_connect<F, Fut>(hook: F) -> OnConnect
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), lapin::Error>> + Send + 'static,
    {
        Arc::new(move |channel| Box::pin(hook(channel)))
    }

    /// Publishes `body` (persistent, `mandatory`) and waits for the broker's confirm.
    ///
    /// `timeout` bounds everything: waiting for an in-flight slot, (re)connecting, publishing and
    /// the confirm. `properties` are sent as given except that the delivery mode is forced to
    /// persistent. On a broker error or a timeout the connection is closed and replaced on the
    /// next call; a message whose confirm never came may still have been stored (at least once).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        timeout: Duration,
    ) -> Result<Confirmed, PublisherError> {
        let deadline = Instant::now() + timeout;
        let mut used: Option<Arc<Session>> = None;
        let attempt = async {
            let _slot = self
                .inner
                .slots
                .acquire()
                .await
                .map_err(|_| PublisherError::Unavailable("publisher closed".into()))?;
            let session = self.session().await?;
            if session.connection.status().blocked() {
                // The broker stopped reading from publishers (a memory or disk alarm). Answer at
                // once, and keep the connection: it unblocks when the alarm clears, while a
                // replacement would be blocked too (and a close cannot even be written).
                return Err(PublisherError::Unavailable(
                    "the broker is blocking publishers (resource alarm)".into(),
                ));
            }
            used = Some(Arc::clone(&session));
            session
                .publish(exchange, routing_key, body, properties)
                .await
        };
        let result = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result,
            Err(_elapsed) => Err(PublisherError::Timeout(timeout)),
        };
        match (result, used) {
            (Err(PublisherError::Timeout(_)), Some(session))
                if session.connection.status().blocked() =>
            {
                // The broker learned of its alarm from this very publish and blocked the
                // connection (RabbitMQ blocks a connection when it publishes, not before). Keep
                // it: it unblocks when the alarm clears, while a replacement would be blocked by
                // its first publish too, and a close cannot even be written to a connection the
                // broker no longer reads, so each replacement would leak one.
                Err(PublisherError::Unavailable(
                    "the broker is blocking publishers (resource alarm)".into(),
                ))
            }
            (
                Err(err @ (PublisherError::Broker(_) | PublisherError::Timeout(_))),
                Some(session),
            ) => {
                // The connection may be dead or wedged (a half-open socket): replace it rather
                // than let the next caller find out the slow way.
                self.discard(&session);
                Err(err)
            }
            (result, _) => result,
        }
    }

    /// Opens the connection now if there is none (bounded by the connect timeout and subject to
    /// the backoff after failures). For a service's start and its readiness keeper.
    pub async fn ensure_connected(&self) -> Result<(), PublisherError> {
        self.session().await.map(drop)
    }

    /// Whether a connection is open and not known to be broken (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.live_session()
            .is_some_and(|session| session.usable() && !session.connection.status().blocked())
    }

    /// How many connections this publisher has opened so far (each reconnect adds one).
    pub fn connections_opened(&self) -> u64 {
        self.inner.sessions_opened.load(Ordering::Relaxed)
    }

    /// Closes the connection (publishes still waiting for a confirm fail). A later publish opens
    /// a new one.
    pub async fn close(&self) {
        let session = {
            let mut state = self.inner.state.lock().await;
            self.set_live(None);
            state.session.take()
        };
        if let Some(session) = session {
            session.broken.store(true, Ordering::Release);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                session.connection.close(200, "publisher closed".into()),
            )
            .await;
        }
    }

    /// The current session, (re)connecting if needed.
    async fn session(&self) -> Result<Arc<Session>, PublisherError> {
        // Fast path without the async lock: every publish asks, and the connection is up nearly
        // always.
        if let Some(session) = self.live_session()
            && session.usable()
        {
            return Ok(session);
        }
        let mut state = self.inner.state.lock().await;
        if let Some(session) = &state.session {
            if session.usable() {
                return Ok(Arc::clone(session));
            }
            tracing::warn!(
                connection = %self.inner.connection_name,
                "broker connection lost; reconnecting"
            );
            state.session = None;
            self.set_live(None);
        }
        let now = Instant::now();
        if let Some(retry_at) = state.retry_at
            && now < retry_at
        {
            // Within the backoff after a failed attempt: answer at once with that failure.
            return Err(PublisherError::Unavailable(state.last_error.clone()));
        }
        match self.open_session().await {
            Ok(session) => {
                if state.failures > 0 {
                    tracing::info!(
                        connection = %self.inner.connection_name,
                        failed_attempts = state.failures,
                        "broker connection restored"
                    );
                }
                state.failures = 0;
                state.retry_at = None;
                state.session = Some(Arc::clone(&session));
                self.set_live(Some(Arc::clone(&session)));
                Ok(session)
            }
            Err(reason) => {
                state.failures = state.failures.saturating_add(1);
                let options = &self.inner.options;
                let backoff = backoff(state.failures, options.min_backoff, options.max_backoff);
                state.retry_at = Some(Instant::now() + backoff);
                let retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                // An outage is one warning, repeated every 30 attempts, not a line a second.
                if state.failures == 1 || state.failures % 30 == 0 {
                    tracing::warn!(
                        connection = %self.inner.connection_name,
                        error = %reason,
                        failed_attempts = state.failures,
                        retry_in_ms,
                        "cannot connect to the broker"
                    );
                } else {
                    tracing::debug!(
                        connection = %self.inner.connection_name,
                        error = %reason,
                        failed_attempts = state.failures,
                        retry_in_ms,
                        "cannot connect to the broker"
                    );
                }
                state.last_error = reason.clone();
                Err(PublisherError::Unavailable(reason))
            }
        }
    }

    async fn open_session(&self) -> Result<Arc<Session>, String> {
        let timeout = self.inner.options.connect_timeout;
        let open = async {
            let connection = super::connect(&self.inner.url, &self.inner.connection_name)
                .await
                .map_err(|err| format!("connect: {err}"))?;
            if let Some(hook) = &self.inner.on_connect {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|err| format!("channel: {err}"))?;
                hook(channel.clone())
                    .await
                    .map_err(|err| format!("declaring at connect: {err}"))?;
                let _ = channel.close(200, "declared".into()).await;
            }
            Ok::<_, String>(connection)
        };
        let connection = tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| format!("no connection within {timeout:?}"))??;
        let id = self.inner.sessions_opened.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            connection = %self.inner.connection_name,
            session = id,
            "connected to the broker"
        );
        Ok(Arc::new(Session {
            id,
            connection,
            idle: std::sync::Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
        }))
    }

    /// Marks `session` broken and closes it in the background; only that session, so a caller
    /// that failed late cannot throw away the fresh connection another caller just opened.
    fn discard(&self, session: &Arc<Session>) {
        if session.broken.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            connection = %self.inner.connection_name,
            session = session.id,
            "closing the broker connection after a failed publish"
        );
        let session = Arc::clone(session);
        // Closing fails every publish still waiting on this connection at once, instead of
        // each waiting out its own timeout.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                session
                    .connection
                    .close(320, "replaced after a failure".into()),
            )
            .await;
        });
    }

    fn live_session(&self) -> Option<Arc<Session>> {
        self.inner.live.read().ok().and_then(|live| live.clone())
    }

    fn set_live(&self, session: Option<Arc<Session>>) {
        if let Ok(mut live) = self.inner.live.write() {
            *live = session;
        }
    }
}

/// Pause after `failures` consecutive failed connects: `first`, doubling, capped at `cap`.
fn backoff(failures: u32, first: Duration, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << exponent).min(cap)
}

#[cfg(test)]
mod tests;
