//! The handler API: what a service implements ([`Handler`]), what it is given ([`Incoming`])
//! and what it answers ([`Disposition`], or [`GroupOutcome`] for a group of messages). The
//! runtime (`super::runtime`) carries the answer out.

use std::{fmt::Display, future::Future};

use lapin::BasicProperties;

use crate::amqp::{copies::ErrorKind, headers::header_str};

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
    /// This is the `attempt`-th handler attempt (1 for a fresh message and for a dead letter put
    /// back by hand; `copies::previous_attempts`).
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

/// What a handler made of a group of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// One disposition per message, in the order the messages were given. The effects of the
    /// acknowledged ones are committed (together, in one transaction). A database outage is
    /// `Retry` for every message: the whole group is tried again.
    Handled(Vec<Disposition>),
    /// The group could not be handled together because of one of its messages (a statement of
    /// the shared transaction failed for a reason other than the database being unavailable):
    /// the runtime handles each message by itself with [`Handler::handle`], so the bad one is
    /// retried or dead-lettered alone and its neighbours are not.
    HandleAlone,
}

/// A service's message handler.
///
/// It must commit its effects (and its inbox row) before returning [`Disposition::Ack`]; it
/// must not acknowledge anything itself. A panic is caught and treated as a transient failure.
///
/// A handler that sets [`Handler::GROUPS`] is also given groups of the deliveries that arrived
/// together (`[consumer] group_size`, `group_linger_ms`), to handle in one transaction: one
/// commit for many messages. Each message of a group is acknowledged only after that commit.
pub trait Handler: Send + Sync + 'static {
    /// Whether the runtime should give this handler groups ([`Handler::handle_group`]).
    const GROUPS: bool = false;

    fn handle(&self, message: &Incoming) -> impl Future<Output = Disposition> + Send;

    /// Handles at least two messages together, in one transaction. Called only when
    /// [`Handler::GROUPS`] is set. A panic is caught and the messages are then handled one by
    /// one, as for [`GroupOutcome::HandleAlone`].
    fn handle_group(&self, messages: &[Incoming]) -> impl Future<Output = GroupOutcome> + Send {
        let _ = messages;
        std::future::ready(GroupOutcome::HandleAlone)
    }
}
