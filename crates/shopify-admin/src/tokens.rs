//! Each configured shop's Admin API access token, read from the environment variable its
//! configuration names (`access_token_env`). Tokens are secrets: `Debug` shows only the shops.

use std::collections::BTreeMap;

use model::config::ShopDirectory;

/// A shop whose token variable is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shop {shop}: environment variable {variable} (its Admin API access token) is not set")]
pub struct MissingToken {
    pub shop: String,
    pub variable: String,
}

/// Tokens by shop domain.
#[derive(Clone, Default)]
pub struct ShopTokens(BTreeMap<String, String>);

impl std::fmt::Debug for ShopTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ShopTokens {
    /// Every configured shop's token; the first missing one is an error naming the shop and
    /// the variable (never a value).
    pub fn from_env(shops: &ShopDirectory) -> Result<Self, MissingToken> {
        let mut tokens = BTreeMap::new();
        for shop in shops.iter() {
            let token = std::env::var(&shop.access_token_env)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| MissingToken {
                    shop: shop.domain.clone(),
                    variable: shop.access_token_env.clone(),
                })?;
            tokens.insert(shop.domain.clone(), token);
        }
        Ok(Self(tokens))
    }

    /// Tokens given directly (tests, benchmarks).
    pub fn new(tokens: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(tokens.into_iter().collect())
    }

    /// The shop's token.
    pub fn get(&self, shop: &str) -> Option<&str> {
        self.0.get(shop).map(String::as_str)
    }
}
