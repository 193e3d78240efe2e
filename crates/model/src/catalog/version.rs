//! Ordering product events: the version every mirrored variant and product carries, so that an
//! older event changes nothing (delivery is at least once and unordered).

use chrono::{DateTime, Utc};

use crate::webhook::ProductTopic;

/// When an event happened, as far as ordering events goes: the payload's `updated_at` (whole
/// seconds in Shopify's payloads), then `X-Shopify-Triggered-At` (finer, and the same on every
/// redelivery of one webhook) to order events of the same second, then the topic: a product's
/// `products/create` is its first event, so it sorts before any `products/update` of the same
/// instant. An event without the header sorts before one with it in the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub updated_at: DateTime<Utc>,
    pub triggered_at: Option<DateTime<Utc>>,
    pub kind: EventKind,
}

impl Version {
    /// The version of an update (or of state read from Shopify).
    pub fn at(updated_at: DateTime<Utc>, triggered_at: Option<DateTime<Utc>>) -> Self {
        Self::of(updated_at, triggered_at, EventKind::Update)
    }

    pub fn of(
        updated_at: DateTime<Utc>,
        triggered_at: Option<DateTime<Utc>>,
        kind: EventKind,
    ) -> Self {
        Self {
            updated_at,
            triggered_at,
            kind,
        }
    }
}

/// Which kind of event a version comes from; orders events that agree on everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `products/create`: the product's first event.
    Create,
    /// `products/update`, `products/delete`, or state read from Shopify.
    Update,
}

impl EventKind {
    /// The kind of a product topic's events.
    pub fn of_topic(topic: ProductTopic) -> Self {
        match topic {
            ProductTopic::Create => Self::Create,
            ProductTopic::Update | ProductTopic::Delete => Self::Update,
        }
    }

    /// Stored as a smallint (`version_kind`).
    pub fn as_i16(self) -> i16 {
        match self {
            Self::Create => 0,
            Self::Update => 1,
        }
    }

    /// Reads the stored smallint; anything but 0 is an update.
    pub fn from_i16(value: i16) -> Self {
        if value == 0 {
            Self::Create
        } else {
            Self::Update
        }
    }
}

/// What orders one event against the others, besides its payload's `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock {
    /// Stands in for a missing `updated_at` (deletes, payloads without it): the webhook's
    /// `X-Shopify-Triggered-At`, or the time of receipt.
    pub event_time: DateTime<Utc>,
    /// `X-Shopify-Triggered-At`, when present: it orders events of the same second.
    pub triggered_at: Option<DateTime<Utc>>,
    /// Create or update.
    pub kind: EventKind,
}

impl EventClock {
    pub(super) fn version(&self, updated_at: DateTime<Utc>) -> Version {
        Version::of(updated_at, self.triggered_at, self.kind)
    }
}
