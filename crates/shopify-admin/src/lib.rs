//! The Shopify Admin GraphQL client every part of wos-sync shares: the adjustment-pusher's
//! mutations, item-ingest's variant reads and the operator CLI's checks and backfills.
//!
//! | module | owns |
//! |---|---|
//! | [`client`] | one shop's endpoint: the HTTP client (rustls, no redirects), a request, its metrics and pacing |
//! | [`answer`] | what Shopify answers besides data: `extensions.cost`, errors, `Retry-After` |
//! | [`pacing`] | per-shop rate limiting from `throttleStatus`, so that no call is refused in steady state |
//! | [`read`] | paced, retried reads (queries are safe to resend) |
//! | [`tokens`] | each shop's access token, from the environment variable its configuration names |
//!
//! Shopify's rules followed here (CONTRACT 4): `POST {admin_base_url}/admin/api/{version}/graphql.json`
//! with `X-Shopify-Access-Token`; throttling is a leaky bucket of cost points per shop and app,
//! reported in every answer; `THROTTLED`, 429 and 503 with `Retry-After` are honoured per shop.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod answer;
pub mod client;
pub mod pacing;
pub mod read;
pub mod tokens;

pub use answer::{ShopifyError, ThrottleStatus};
pub use client::{Answer, Reply, ShopClient, TransportFailure, http_client};
pub use pacing::{Pacer, Reservation};
pub use read::{ReadError, ReadPolicy};
pub use tokens::{MissingToken, ShopTokens};
