//! Reads: a query is safe to send again, so a read is paced by the shop's throttle and retried
//! through throttling and transient failures until it has data or a definite refusal.
//!
//! - Before each attempt, wait until the pacer grants the query's cost (a reservation, so reads
//!   and other calls of the shop in flight never over-draw the bucket between them).
//! - `THROTTLED`, 429 and 503 with `Retry-After`: block the shop's pacer for that long, retry.
//! - 5xx, timeouts, dropped connections, `INTERNAL_SERVER_ERROR`: back off (doubling, jittered),
//!   retry up to [`ReadPolicy::attempts`].
//! - 401/403 or `ACCESS_DENIED`: [`ReadError::AccessDenied`] at once (a bad token or a missing
//!   scope does not heal by retrying).
//! - Any other GraphQL error: [`ReadError::Refused`] at once, with Shopify's words.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    answer::{describe_all, errors_of, throttled_wait},
    client::ShopClient,
};

/// How hard a read tries.
#[derive(Debug, Clone, Copy)]
pub struct ReadPolicy {
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Attempts in all, throttled ones included.
    pub attempts: u32,
    /// First backoff after a transient failure; doubles per attempt, with jitter.
    pub backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for ReadPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 8,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why a read has no data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The token was refused, or lacks a scope the query needs.
    #[error("Shopify refused access ({0}): check the shop's access token and its scopes")]
    AccessDenied(String),
    /// Shopify answered the query with errors that retrying cannot fix.
    #[error("Shopify refused the query: {0}")]
    Refused(String),
    /// No usable answer within the policy's attempts.
    #[error("no answer from Shopify after {attempts} attempts (last: {last})")]
    Unavailable { attempts: u32, last: String },
}

impl ShopClient {
    /// Runs a query and returns its `data`, paced and retried as the module says. `operation`
    /// labels the request in metrics (the query's operation name).
    pub async fn read(
        &self,
        operation: &str,
        query: &str,
        variables: Value,
        policy: &ReadPolicy,
    ) -> Result<Value, ReadError> {
        let request = json!({ "query": query, "variables": variables });
        let mut last = String::from("not sent");
        for attempt in 1..=policy.attempts.max(1) {
            let reservation = self.pacer().reserve().await;
            let answer = self
                .send_reserved(reservation, operation, &request, policy.timeout)
                .await;
            let wait = match answer.reply {
                Err(failure) => {
                    last = failure.reason;
                    None
                }
                Ok(reply) => {
                    let errors = errors_of(reply.document.as_ref().and_then(|d| d.get("errors")));
                    let has = |code: &str| errors.iter().any(|e| e.code.as_deref() == Some(code));
                    match reply.status {
                        200 if has("THROTTLED") => {
                            last = "THROTTLED".into();
                            throttled_wait(reply.throttle, reply.requested_cost)
                        }
                        200 if has("ACCESS_DENIED") => {
                            return Err(ReadError::AccessDenied(describe_all(&errors)));
                        }
                        200 if has("INTERNAL_SERVER_ERROR") => {
                            last = describe_all(&errors);
                            None
                        }
                        200 if !errors.is_empty() => {
                            return Err(ReadError::Refused(describe_all(&errors)));
                        }
                        200 => match reply
                            .document
                            .and_then(|mut d| d.get_mut("data").map(Value::take))
                        {
                            Some(data) if !data.is_null() => return Ok(data),
                            _ => {
                                last = "HTTP 200 without data".into();
                                None
                            }
                        },
                        401 | 403 => {
                            return Err(ReadError::AccessDenied(format!("HTTP {}", reply.status)));
                        }
                        status @ (429 | 500..=599 | 408) => {
                            last = format!("HTTP {status}");
                            reply.retry_after
                        }
                        status => {
                            return Err(ReadError::Refused(format!(
                                "HTTP {status}: {}",
                                reply.body.chars().take(200).collect::<String>()
                            )));
                        }
                    }
                }
            };
            if attempt == policy.attempts.max(1) {
                break;
            }
            match wait {
                // Shopify named the wait: the whole shop waits (the pacer is shared).
                Some(wait) => self.pacer().block_for(wait, Instant::now()),
                None => tokio::time::sleep(backoff(policy, attempt)).await,
            }
        }
        Err(ReadError::Unavailable {
            attempts: policy.attempts.max(1),
            last,
        })
    }
}

/// Exponential backoff with jitter in [50%, 100%] of the doubled base, capped.
fn backoff(policy: &ReadPolicy, attempt: u32) -> Duration {
    let doubled = policy
        .backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    doubled.mul_f64(0.5 + 0.5 * rand::random::<f64>())
}
