//! Shopify numeric ids and their GraphQL global ids (gids).
//!
//! This module owns the typed ids the rest of the system passes around ([`LocationId`],
//! [`InventoryItemId`], [`ProductId`], [`VariantId`]) and the one formatter/parser for
//! `gid://shopify/<Kind>/<n>`. Ids are `u64` end to end: Shopify ids exceed 2^53, so they
//! must never pass through a float (JSON numbers are read with `serde_json`'s exact `u64`
//! path). They serialize as plain JSON/TOML integers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validate::quote_untrusted;

/// Why a string is not a gid of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a gid://shopify/{expected_kind}/<positive integer>, got {}",
    quote_untrusted(.input)
)]
pub struct GidError {
    /// The kind the caller asked for, e.g. `ProductVariant`.
    pub expected_kind: &'static str,
    /// The offending input (escaped and truncated when displayed).
    pub input: String,
}

/// Formats `gid://shopify/{kind}/{id}`.
fn format_gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

/// Parses `gid://shopify/{kind}/{n}` with `n` a positive decimal `u64` and nothing after it.
///
/// Shopify appends nothing to the gids this system reads (product, variant, inventory
/// item, location), so anything else (query strings, another kind, a zero id) is refused
/// rather than guessed at.
fn parse_gid_of_kind(kind: &'static str, input: &str) -> Result<u64, GidError> {
    let error = || GidError {
        expected_kind: kind,
        input: input.to_owned(),
    };
    let digits = input
        .strip_prefix("gid://shopify/")
        .and_then(|rest| rest.strip_prefix(kind))
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(error)?;
    parse_positive_decimal(digits).ok_or_else(error)
}

/// Parses a positive decimal `u64` made only of ASCII digits (no sign, no spaces).
pub(crate) fn parse_positive_decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|&n| n > 0)
}

macro_rules! shopify_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            #[doc = concat!("The gid kind: `gid://shopify/", $kind, "/<n>`.")]
            pub const GID_KIND: &'static str = $kind;

            #[doc = concat!("The GraphQL global id, `gid://shopify/", $kind, "/<n>`.")]
            pub fn gid(&self) -> String {
                format_gid(Self::GID_KIND, self.0)
            }

            #[doc = concat!(
                "Parses `gid://shopify/", $kind, "/<n>` (positive `n`, nothing after it)."
            )]
            pub fn parse_gid(input: &str) -> Result<Self, GidError> {
                parse_gid_of_kind(Self::GID_KIND, input).map(Self)
            }
        }

        impl fmt::Display for $name {
            /// The bare number, as the REST payloads and the database carry it.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = GidError;

            /// Accepts either the bare positive number or the gid, for CLI arguments.
            fn from_str(input: &str) -> Result<Self, Self::Err> {
                match parse_positive_decimal(input) {
                    Some(n) => Ok(Self(n)),
                    None => Self::parse_gid(input),
                }
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    };
}

shopify_id!(
    /// A Shopify location (where inventory is stocked); the target of WOS warehouses.
    LocationId,
    "Location"
);
shopify_id!(
    /// A Shopify inventory item: what inventory adjustments are made against. Each variant
    /// has exactly one.
    InventoryItemId,
    "InventoryItem"
);
shopify_id!(
    /// A Shopify product.
    ProductId,
    "Product"
);
shopify_id!(
    /// A Shopify product variant (gid kind `ProductVariant`).
    VariantId,
    "ProductVariant"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_use_the_shopify_kind_names() {
        assert_eq!(
            LocationId(68845568042).gid(),
            "gid://shopify/Location/68845568042"
        );
        assert_eq!(InventoryItemId(1).gid(), "gid://shopify/InventoryItem/1");
        assert_eq!(ProductId(2).gid(), "gid://shopify/Product/2");
        assert_eq!(VariantId(3).gid(), "gid://shopify/ProductVariant/3");
        assert_eq!(
            VariantId(u64::MAX).gid(),
            format!("gid://shopify/ProductVariant/{}", u64::MAX)
        );
    }

    #[test]
    fn parse_gid_round_trips_large_ids() {
        for n in [1, 9_007_199_254_740_993, 642_667_041_472_713_922, u64::MAX] {
            assert_eq!(VariantId::parse_gid(&VariantId(n).gid()), Ok(VariantId(n)));
            assert_eq!(
                LocationId::parse_gid(&LocationId(n).gid()),
                Ok(LocationId(n))
            );
        }
    }

    #[test]
    fn parse_gid_refusals() {
        for bad in [
            "",
            "123",
            "gid://shopify/ProductVariant/",
            "gid://shopify/ProductVariant/0",
            "gid://shopify/ProductVariant/-1",
            "gid://shopify/ProductVariant/+1",
            "gid://shopify/ProductVariant/1.0",
            "gid://shopify/ProductVariant/ 1",
            "gid://shopify/ProductVariant/1?x=y",
            "gid://shopify/ProductVariant/1/2",
            "gid://shopify/ProductVariant/18446744073709551616",
            "gid://shopify/Product/1",
            "gid://shopify/ProductVariants/1",
            "gid://other/ProductVariant/1",
            "GID://shopify/ProductVariant/1",
        ] {
            let err = VariantId::parse_gid(bad).expect_err(bad);
            assert_eq!(err.expected_kind, "ProductVariant");
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn gid_error_display_is_escaped() {
        let err = ProductId::parse_gid("x\ny").expect_err("not a gid");
        assert_eq!(
            err.to_string(),
            "expected a gid://shopify/Product/<positive integer>, got \"x\\ny\""
        );
    }

    #[test]
    fn display_is_the_bare_number() {
        assert_eq!(
            ProductId(788032119674292922).to_string(),
            "788032119674292922"
        );
    }

    #[test]
    fn from_str_accepts_number_or_gid() {
        assert_eq!("42".parse::<LocationId>(), Ok(LocationId(42)));
        assert_eq!(
            "gid://shopify/Location/42".parse::<LocationId>(),
            Ok(LocationId(42))
        );
        assert!("0".parse::<LocationId>().is_err());
        assert!("-4".parse::<LocationId>().is_err());
        assert!("gid://shopify/Product/42".parse::<LocationId>().is_err());
    }

    #[test]
    fn serde_is_a_plain_integer_without_float_loss() {
        let id = VariantId(9_007_199_254_740_993);
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "9007199254740993");
        let back: VariantId = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, id);
        let max: InventoryItemId = serde_json::from_str("18446744073709551615").expect("max");
        assert_eq!(max, InventoryItemId(u64::MAX));
        assert!(serde_json::from_str::<VariantId>("1.0").is_err());
        assert!(serde_json::from_str::<VariantId>("\"1\"").is_err());
    }

    #[test]
    fn conversion_to_u64() {
        assert_eq!(u64::from(ProductId(7)), 7);
    }
}
