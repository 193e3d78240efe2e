//! Shopify product webhooks: topics, payloads and their lenient-but-exact parser.
//!
//! This module owns what item-ingest reads out of a `products/create`, `products/update` or
//! `products/delete` body (CONTRACT §3.1): the product, its variants (SKU, barcode, price,
//! inventory item) and the full list of variant ids. It is lenient where Shopify varies
//! (unknown fields, null or missing optional fields, ids as strings, several timestamp
//! spellings, `variant_gids` versus the older `variant_ids`) and exact where mistakes would be
//! silent: identity fields (ids, the SKU, the inventory item, timestamps) are read as `u64` or
//! exact types, never through a float, and one that is malformed is an error naming its path,
//! never a guess. A descriptive field (titles, barcode, price, vendor, ...) that does not parse
//! costs nothing else: it is read as unknown and reported in [`ProductPayload::unreadable`],
//! so one bad price never costs a variant its mapping.
//!
//! The types are here; `parse` reads a body into them ([`parse_product_event`]).

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};

use crate::ids::{InventoryItemId, ProductId, VariantId};
use crate::validate::quote_untrusted;

mod parse;

pub use parse::{is_decimal, parse_product_event, parse_shopify_timestamp, sku_or_none};

/// The product topics item-ingest consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductTopic {
    /// `products/create`.
    Create,
    /// `products/update`.
    Update,
    /// `products/delete`.
    Delete,
}

impl ProductTopic {
    /// Every product topic.
    pub const ALL: [ProductTopic; 3] = [Self::Create, Self::Update, Self::Delete];

    /// Reads a topic as Shopify spells it (`products/create`, the `X-Shopify-Topic` header)
    /// or as the relay routes it (`products.create`). Case-sensitive: Shopify's topics are
    /// lowercase, and anything else did not come from the relay.
    pub fn parse(topic: &str) -> Option<Self> {
        match topic {
            "products/create" | "products.create" => Some(Self::Create),
            "products/update" | "products.update" => Some(Self::Update),
            "products/delete" | "products.delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// Shopify's spelling, e.g. `products/create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "products/create",
            Self::Update => "products/update",
            Self::Delete => "products/delete",
        }
    }

    /// The AMQP routing key on `shopify.events`, e.g. `products.create`.
    pub fn routing_key(self) -> &'static str {
        match self {
            Self::Create => "products.create",
            Self::Update => "products.update",
            Self::Delete => "products.delete",
        }
    }
}

/// What a product webhook asks item-ingest to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductEvent {
    /// `products/create` or `products/update`: the product as it is now. Create and update
    /// are handled alike because delivery is unordered and at least once (an update can
    /// arrive before its create). Boxed: a payload is large next to a delete.
    Upsert(Box<ProductPayload>),
    /// `products/delete`: Shopify sends only the id.
    Delete {
        /// The deleted product.
        product_id: ProductId,
    },
}

impl ProductEvent {
    /// The product the event is about.
    pub fn product_id(&self) -> ProductId {
        match self {
            Self::Upsert(product) => product.id,
            Self::Delete { product_id } => *product_id,
        }
    }
}

/// A product from a create/update webhook (Shopify's REST product JSON), reduced to what
/// the sync uses. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPayload {
    /// The product id.
    pub id: ProductId,
    /// The product title; `None` only when it is missing or unreadable (Shopify always sends
    /// one), which [`unreadable`](Self::unreadable) then reports.
    pub title: Option<String>,
    /// HTML description; `None` when absent or null.
    pub body_html: Option<String>,
    /// Vendor as given; `None` when absent or null, `Some("")` when Shopify sends it empty.
    pub vendor: Option<String>,
    /// Product type as given; `None` when absent or null, `Some("")` when empty.
    pub product_type: Option<String>,
    /// `active`, `draft`, `archived`, … as given.
    pub status: Option<String>,
    /// When the product was created; Shopify's own examples send `null`.
    pub created_at: Option<DateTime<FixedOffset>>,
    /// When the product (or one of its variants) last changed; what "older events never
    /// overwrite newer state" compares.
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// Full details of at most 100 variants (Shopify's limit), in payload order.
    pub variants: Vec<VariantPayload>,
    /// Every variant of the product, from `variant_gids` (or the older `variant_ids`);
    /// `None` when the payload has neither. A variant listed here but missing from
    /// [`variants`](Self::variants) still exists and must not be treated as deleted.
    /// Kept in payload order (Shopify sorts it by variant `updated_at`, newest first).
    pub listed_variant_ids: Option<Vec<VariantId>>,
    /// The `updated_at` each `variant_gids` entry carries (milliseconds; the newest when a
    /// variant is listed twice): how item-ingest sees that a variant beyond the detailed 100
    /// changed.
    pub listed_updated_at: BTreeMap<VariantId, DateTime<Utc>>,
    /// Descriptive fields of the product and its variants that did not parse (read as
    /// unknown), in payload order.
    pub unreadable: Vec<UnreadableField>,
}

/// One variant of a [`ProductPayload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantPayload {
    /// The variant id.
    pub id: VariantId,
    /// The product it belongs to, if the payload says.
    pub product_id: Option<ProductId>,
    /// Variant title, e.g. `Small`.
    pub title: Option<String>,
    /// The SKU, verbatim (no trimming: it is the WOS item key). An empty or whitespace-only
    /// string is read as `None` ([`sku_or_none`]): Shopify stores a cleared SKU as `""`, and
    /// such a key would merge every SKU-less variant into one WOS item.
    pub sku: Option<String>,
    /// The barcode as given (`None` when null or absent).
    pub barcode: Option<String>,
    /// The price as Shopify's decimal string (e.g. `19.99`), never converted to a float.
    pub price: Option<String>,
    /// The inventory item adjustments are made against; null for variants Shopify has not
    /// finished creating.
    pub inventory_item_id: Option<InventoryItemId>,
    /// 1-based position within the product.
    pub position: Option<u32>,
    /// When the variant was created (the "oldest candidate" tie-break of the SKU mapping).
    pub created_at: Option<DateTime<FixedOffset>>,
    /// When the variant last changed.
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// This variant's descriptive fields that did not parse (their values above are `None`
    /// but mean "unknown", not "empty").
    pub unreadable: Vec<DescriptiveField>,
}

/// A descriptive field of a product payload: one that does not parse is read as unknown and
/// reported, never fatal (identity fields stay strict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DescriptiveField {
    /// The product's `title`.
    ProductTitle,
    /// `body_html`.
    BodyHtml,
    /// `vendor`.
    Vendor,
    /// `product_type`.
    ProductType,
    /// `status`.
    Status,
    /// A variant's `title`.
    VariantTitle,
    /// A variant's `barcode`.
    Barcode,
    /// A variant's `price`.
    Price,
    /// A variant's `position`.
    Position,
}

impl DescriptiveField {
    /// The metric label (a bounded set).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductTitle => "product_title",
            Self::BodyHtml => "body_html",
            Self::Vendor => "vendor",
            Self::ProductType => "product_type",
            Self::Status => "status",
            Self::VariantTitle => "variant_title",
            Self::Barcode => "barcode",
            Self::Price => "price",
            Self::Position => "position",
        }
    }
}

/// A descriptive field that did not parse: which one, where, and why (one line, the value
/// quoted and shortened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableField {
    pub field: DescriptiveField,
    /// JSON path, e.g. `variants[0].price`.
    pub path: String,
    pub problem: String,
}

/// Why a product webhook could not be read. `Display` is one line naming the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not one of the product topics.
    #[error(
        "unsupported topic {} (expected products/create, products/update or products/delete)",
        quote_untrusted(.topic)
    )]
    UnsupportedTopic {
        /// The topic as received.
        topic: String,
    },
    /// The body is not UTF-8.
    #[error("body is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The body is not well-formed JSON; carries `serde_json`'s position-only message.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object, got {found}")]
    NotObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("{path}: missing")]
    MissingField {
        /// JSON path, e.g. `variants[3].id`.
        path: String,
    },
    /// A field is present but unusable.
    #[error("{path}: {problem}")]
    InvalidField {
        /// JSON path, e.g. `variants[3].id`.
        path: String,
        /// What is wrong, e.g. `expected an integer id, got "abc"`.
        problem: String,
    },
}

impl WebhookError {
    /// The JSON path of the offending field, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::MissingField { path } | Self::InvalidField { path, .. } => Some(path),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
