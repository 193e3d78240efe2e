//! How a sandbox runs: the library's [`SandboxConfig`] (what [`crate::Sandbox::start`] takes),
//! the API versions it serves and the shops it is seeded with. The configuration file's
//! `[shopify_sandbox]` section becomes one in [`crate::settings`].

use std::{net::SocketAddr, time::Duration};

use model::ids::LocationId;
use serde::{Deserialize, Serialize};

use crate::{faults::FaultConfig, store::ProductSpec, throttle::ThrottleConfig};

/// The API versions served. Shopify releases quarterly (`YYYY-01/04/07/10`): a request for a
/// supported version runs under it; an older one falls forward to the oldest supported (as
/// Shopify does, saying so in `X-Shopify-API-Version`); a newer one, or anything that is not
/// a release name, is 404.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiVersions {
    /// Oldest supported version.
    pub oldest: String,
    /// Newest released version.
    pub latest: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self {
            oldest: "2025-01".to_owned(),
            latest: "2026-07".to_owned(),
        }
    }
}

impl ApiVersions {
    /// The version a request for `requested` runs under, or `None` for 404.
    pub fn resolve(&self, requested: &str) -> Option<String> {
        if requested == "unstable" {
            return Some(requested.to_owned());
        }
        if !is_release_name(requested) || requested > self.latest.as_str() {
            return None;
        }
        if requested < self.oldest.as_str() {
            return Some(self.oldest.clone());
        }
        Some(requested.to_owned())
    }

    /// Checks both bounds are release names, oldest first; `Err((key, reason))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, v) in [("oldest", &self.oldest), ("latest", &self.latest)] {
            if !is_release_name(v) {
                return Err((
                    key.to_owned(),
                    format!("{v:?} is not a Shopify release (YYYY-01, -04, -07 or -10)"),
                ));
            }
        }
        if self.oldest > self.latest {
            return Err(("oldest".into(), "is newer than latest".into()));
        }
        Ok(())
    }
}

/// `YYYY-01`, `YYYY-04`, `YYYY-07` or `YYYY-10`.
pub fn is_release_name(version: &str) -> bool {
    let bytes = version.as_bytes();
    bytes.len() == 7
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && matches!(&version[5..], "01" | "04" | "07" | "10")
}

/// A shop to create at start (and again at every reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSeed {
    /// `name.myshopify.com`.
    pub domain: String,
    /// The access token of its app.
    pub access_token: String,
    /// The webhook signing secret (webhooks are emitted only for shops that have one).
    pub webhook_secret: Option<String>,
    /// Locations with fixed ids and names (e.g. the configuration's warehouse map).
    pub locations: Vec<(LocationId, String)>,
    /// Products to create.
    pub products: Vec<ProductSpec>,
}

/// How a sandbox runs. `Default` suits tests: a free port on 127.0.0.1, Shopify Standard
/// throttling, no faults, no webhooks.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Throttling.
    pub throttle: ThrottleConfig,
    /// Faults active from the start.
    pub faults: FaultConfig,
    /// API versions served.
    pub api_versions: ApiVersions,
    /// How long idempotency keys are remembered (Shopify: 24 hours).
    pub idempotency_retention: Duration,
    /// The single-query cost limit (Shopify: 1000).
    pub max_query_cost: u64,
    /// Where product webhooks are POSTed (the relay's URL), if anywhere.
    pub webhook_url: Option<String>,
    /// `X-Shopify-API-Version` of emitted webhooks.
    pub webhook_api_version: String,
    /// Delivery attempts per webhook before giving up.
    pub webhook_max_attempts: u32,
    /// First id handed out; ids above 2^53 (e.g. `9_007_199_254_740_993`) check that
    /// clients never read ids through floats.
    pub id_base: u64,
    /// Shops created at start and at every reset.
    pub seed: Vec<ShopSeed>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            throttle: ThrottleConfig::default(),
            faults: FaultConfig::default(),
            api_versions: ApiVersions::default(),
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
            max_query_cost: 1000,
            webhook_url: None,
            webhook_api_version: "2026-07".to_owned(),
            webhook_max_attempts: 5,
            id_base: 10_000_000_000_000,
            seed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_resolve_like_shopify() {
        let v = ApiVersions::default();
        assert_eq!(v.resolve("2026-04").as_deref(), Some("2026-04"));
        assert_eq!(v.resolve("2026-07").as_deref(), Some("2026-07"));
        assert_eq!(v.resolve("2024-10").as_deref(), Some("2025-01"));
        assert_eq!(v.resolve("unstable").as_deref(), Some("unstable"));
        for bad in ["2026-10", "2026-05", "2026-4", "latest", "", "2026-04x"] {
            assert_eq!(v.resolve(bad), None, "{bad}");
        }
        assert!(v.validate().is_ok());
        assert!(
            ApiVersions {
                oldest: "2026-07".into(),
                latest: "2026-04".into()
            }
            .validate()
            .is_err()
        );
    }
}
