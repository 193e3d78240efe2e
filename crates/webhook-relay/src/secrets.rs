//! Per-shop webhook secrets: read once at start from the environment variables the
//! configuration names, and the signature check against them.
//!
//! A configured shop whose current secret is missing stops the relay at start, with the shop
//! and the variable named (never a value): a relay that answered 401 to every webhook of a shop
//! would look healthy while Shopify gives up on it after 8 failed deliveries. The previous
//! secret is optional: it is accepted only while its variable is set (the rotation window).
//! Values never appear in logs, errors or `Debug` output.

use std::{collections::HashMap, fmt};

use model::{config::ShopDirectory, signature::verify_webhook};

/// A secret value; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// One shop's secrets.
#[derive(Debug, Clone)]
struct ShopKeys {
    current: Secret,
    previous: Option<Secret>,
}

/// Why the relay cannot start with this configuration and environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no shop is configured ([[shops]]): the relay would refuse every webhook")]
    NoShops,
    #[error(
        "shop {shop}: `webhook_secret_env` is not configured; the relay needs every shop's webhook secret"
    )]
    NotConfigured { shop: String },
    #[error("shop {shop}: environment variable {variable} (its `{key}`) is unset or empty")]
    Unset {
        shop: String,
        variable: String,
        key: &'static str,
    },
}

/// The outcome of checking a webhook's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Signed with the shop's current secret.
    Current,
    /// Signed with the shop's previous secret (rotation window).
    Previous,
    /// The signature matches neither secret (or is not base64).
    Invalid,
    /// No shop with this domain is configured.
    UnknownShop,
}

/// Every configured shop's secrets, by domain.
#[derive(Debug, Clone, Default)]
pub struct ShopSecrets {
    by_domain: HashMap<String, ShopKeys>,
}

impl ShopSecrets {
    /// Reads every shop's secrets from the process environment.
    pub fn from_env(shops: &ShopDirectory) -> Result<Self, SecretError> {
        Self::resolve(shops, |name| std::env::var(name).ok())
    }

    /// Reads every shop's secrets through `lookup` (variable name -> value), so tests need not
    /// touch the process environment.
    ///
    /// Leading and trailing whitespace is trimmed: Shopify secrets have none, and a secret file
    /// written with `echo` ends in a newline that would otherwise make every signature wrong.
    pub fn resolve(
        shops: &ShopDirectory,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SecretError> {
        if shops.is_empty() {
            return Err(SecretError::NoShops);
        }
        let read = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(Secret::new)
        };
        let mut by_domain = HashMap::new();
        for shop in shops {
            let Some(variable) = &shop.webhook_secret_env else {
                return Err(SecretError::NotConfigured {
                    shop: shop.domain.clone(),
                });
            };
            let current = read(variable).ok_or_else(|| SecretError::Unset {
                shop: shop.domain.clone(),
                variable: variable.clone(),
                key: "webhook_secret_env",
            })?;
            let previous = shop.previous_webhook_secret_env.as_deref().and_then(|name| {
                let value = read(name);
                if value.is_none() {
                    tracing::info!(
                        shop = %shop.domain,
                        variable = name,
                        "previous webhook secret variable is unset: only the current secret is accepted"
                    );
                }
                value
            });
            tracing::info!(
                shop = %shop.domain,
                previous_secret = previous.is_some(),
                "webhook secrets loaded"
            );
            by_domain.insert(shop.domain.clone(), ShopKeys { current, previous });
        }
        Ok(Self { by_domain })
    }

    /// Whether `domain` (already lowercased) is a configured shop.
    pub fn knows(&self, domain: &str) -> bool {
        self.by_domain.contains_key(domain)
    }

    /// Checks `signature` (the `X-Shopify-Hmac-Sha256` value) over the raw `body` against the
    /// shop's current secret, then its previous one. Each comparison is constant-time.
    pub fn verify(&self, domain: &str, body: &[u8], signature: &str) -> Verification {
        let Some(keys) = self.by_domain.get(domain) else {
            return Verification::UnknownShop;
        };
        if verify_webhook(keys.current.bytes(), body, signature) {
            return Verification::Current;
        }
        match &keys.previous {
            Some(previous) if verify_webhook(previous.bytes(), body, signature) => {
                Verification::Previous
            }
            _ => Verification::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use model::signature::sign_webhook;
    use platform::settings::Settings;

    use super::*;

    fn shops(extra: &str) -> ShopDirectory {
        let text = format!(
            "[[shops]]\ndomain = \"acme.myshopify.com\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"https://acme.myshopify.com\"\naccess_token_env = \"ACME_TOKEN\"\n{extra}"
        );
        Settings::from_toml_str(&text, "test.toml")
            .expect("valid configuration")
            .shops
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn a_missing_current_secret_names_shop_and_variable_but_no_value() {
        let directory = shops("webhook_secret_env = \"ACME_SECRET\"");
        for pairs in [&[][..], &[("ACME_SECRET", "  ")][..]] {
            let err = ShopSecrets::resolve(&directory, env(pairs)).expect_err("refused");
            assert_eq!(
                err.to_string(),
                "shop acme.myshopify.com: environment variable ACME_SECRET \
                 (its `webhook_secret_env`) is unset or empty"
            );
        }
        let err = ShopSecrets::resolve(&shops(""), env(&[])).expect_err("refused");
        assert!(
            matches!(err, SecretError::NotConfigured { ref shop } if shop == "acme.myshopify.com"),
            "{err}"
        );
        let err = ShopSecrets::resolve(&ShopDirectory::default(), env(&[])).expect_err("refused");
        assert_eq!(err, SecretError::NoShops);
    }

    #[test]
    fn verifies_against_the_current_and_only_a_configured_previous_secret() {
        let rotating = shops(
            "webhook_secret_env = \"ACME_SECRET\"\nprevious_webhook_secret_env = \"ACME_OLD\"",
        );
        let body = b"{\"id\":1}";
        let new = sign_webhook(b"new-secret", body);
        let old = sign_webhook(b"old-secret", body);

        let both = ShopSecrets::resolve(
            &rotating,
            env(&[("ACME_SECRET", "new-secret\n"), ("ACME_OLD", "old-secret")]),
        )
        .expect("valid");
        assert_eq!(
            both.verify("acme.myshopify.com", body, &new),
            Verification::Current
        );
        assert_eq!(
            both.verify("acme.myshopify.com", body, &old),
            Verification::Previous
        );
        assert_eq!(
            both.verify("acme.myshopify.com", b"{\"id\":2}", &new),
            Verification::Invalid
        );
        assert_eq!(
            both.verify("other.myshopify.com", body, &new),
            Verification::UnknownShop
        );
        assert!(both.knows("acme.myshopify.com"));

        // The rotation window is over once the previous variable is unset.
        let current_only =
            ShopSecrets::resolve(&rotating, env(&[("ACME_SECRET", "new-secret")])).expect("valid");
        assert_eq!(
            current_only.verify("acme.myshopify.com", body, &old),
            Verification::Invalid
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let secrets = ShopSecrets::resolve(
            &shops("webhook_secret_env = \"ACME_SECRET\""),
            env(&[("ACME_SECRET", "hunter2-very-secret")]),
        )
        .expect("valid");
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
