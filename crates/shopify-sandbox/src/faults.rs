//! Fault injection: which GraphQL calls fail, and how.
//!
//! A [`FaultConfig`] is an ordered list of rules. For each authenticated GraphQL call, the
//! first rule whose scope matches and whose trigger fires decides the call's fault:
//! - trigger `next: N` fires for the next N matching calls (deterministic for tests);
//! - trigger `probability: p` fires for a fraction p of matching calls, drawn from an RNG
//!   seeded with [`FaultConfig::seed`] (reproducible for a given call order).
//!
//! The actions ([`FaultAction`]) are what a real client meets: 5xx and 429 with
//! `Retry-After`, slow responses, a connection dropped before anything ran, and the nasty
//! ones: the change is applied and then the connection is dropped, or hangs past the
//! client's timeout, or a 5xx is sent — so only the idempotency key saves the client from
//! applying it twice; and Shopify's idempotency refusals (`IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`,
//! `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`) and an empty payload, which a well-behaved client
//! never provokes by itself. The server (`server.rs`) carries the actions out.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::lock;

/// What happens to a faulted call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this HTTP status (500, 502, 503, 429, …) without running the call, or
    /// after running it when `after_apply` (a gateway error after the change was made).
    /// `Retry-After` is sent when `retry_after_secs` is set.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        #[serde(default)]
        retry_after_secs: Option<u64>,
        /// Run (and apply) the call first, then answer with the status instead.
        #[serde(default)]
        after_apply: bool,
    },
    /// Hold the call this long before running it. A mutation's idempotency key is in flight
    /// meanwhile, so a retry with the same key gets `IDEMPOTENCY_CONCURRENT_REQUEST`; a
    /// client that times out still has its change applied afterwards.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Close the connection without a response, before running anything.
    Drop,
    /// Run (and apply) the call, then close the connection without a response.
    ApplyThenDrop,
    /// Run (and apply) the call, then keep the connection open without a response for this
    /// long (past the client's timeout), then close it.
    ApplyThenHang {
        /// Milliseconds.
        ms: u64,
    },
    /// Hold the call (key in flight) until the test releases it
    /// (`SandboxHandle::release_held`), then run it. Deterministic concurrency tests.
    Hold,
    /// A mutation is answered `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED` (a user error, `field:
    /// null`, Shopify's message) without running, and its key stays failed: a resend under it
    /// gets the same answer, a new key runs. Acts on a key's first run only.
    IdempotencyPreviousAttemptFailed,
    /// A mutation is answered `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`, as Shopify answers a key
    /// that already ran with other parameters. With `after_apply` it runs (and applies, and
    /// its key keeps that outcome) first: the client cannot tell whether it was applied.
    /// Acts on a key's first run only.
    IdempotencyKeyParameterMismatch {
        /// Run (and apply) the call first.
        #[serde(default)]
        after_apply: bool,
    },
    /// A mutation is answered with a payload without adjustment group and without user errors
    /// (an answer that proves nothing); with `after_apply` it runs (and applies) first.
    /// Acts on a key's first run only.
    EmptyPayload {
        /// Run (and apply) the call first.
        #[serde(default)]
        after_apply: bool,
    },
}

impl FaultAction {
    /// The answer this fault puts in place of a mutation's own, if it is that kind of fault.
    pub fn forced_answer(&self) -> Option<crate::graphql::ForcedAnswer> {
        use crate::graphql::ForcedAnswer;
        match *self {
            Self::IdempotencyPreviousAttemptFailed => Some(ForcedAnswer::PreviousAttemptFailed),
            Self::IdempotencyKeyParameterMismatch { after_apply } => {
                Some(ForcedAnswer::KeyParameterMismatch { after_apply })
            }
            Self::EmptyPayload { after_apply } => Some(ForcedAnswer::EmptyPayload { after_apply }),
            _ => None,
        }
    }
}

/// Which calls a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operations {
    /// Every GraphQL call.
    #[default]
    All,
    /// Mutations only.
    Mutations,
    /// Queries only.
    Queries,
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The next N matching calls (the count goes down as they happen).
    Next(u32),
    /// This fraction of matching calls (0.0 to 1.0), from the seeded RNG.
    Probability(f64),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// What happens.
    pub action: FaultAction,
    /// When.
    pub trigger: Trigger,
    /// Which operations.
    #[serde(default)]
    pub operations: Operations,
    /// Only calls to this shop (domain); every shop when absent.
    #[serde(default)]
    pub shop: Option<String>,
}

impl FaultRule {
    /// `action` for the next `n` calls of any kind to any shop.
    pub fn next(n: u32, action: FaultAction) -> Self {
        Self {
            action,
            trigger: Trigger::Next(n),
            operations: Operations::All,
            shop: None,
        }
    }

    /// `action` for a fraction `p` of calls of any kind to any shop.
    pub fn probability(p: f64, action: FaultAction) -> Self {
        Self {
            action,
            trigger: Trigger::Probability(p),
            operations: Operations::All,
            shop: None,
        }
    }

    /// Restricts the rule to mutations.
    pub fn mutations_only(mut self) -> Self {
        self.operations = Operations::Mutations;
        self
    }

    /// Restricts the rule to queries.
    pub fn queries_only(mut self) -> Self {
        self.operations = Operations::Queries;
        self
    }

    /// Restricts the rule to one shop.
    pub fn for_shop(mut self, domain: impl Into<String>) -> Self {
        self.shop = Some(domain.into());
        self
    }
}

/// The fault rules and the RNG seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Seed of the RNG behind probability triggers.
    pub seed: u64,
    /// Rules, first match wins.
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// One rule.
    pub fn rule(rule: FaultRule) -> Self {
        Self {
            seed: 0,
            rules: vec![rule],
        }
    }

    /// Checks the rules (statuses, probabilities); `Err((key, reason))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Trigger::Probability(p) = rule.trigger
                && !(0.0..=1.0).contains(&p)
            {
                return Err((
                    format!("rules[{i}].trigger"),
                    "probability must be within 0..=1".into(),
                ));
            }
            if let FaultAction::Status { status, .. } = rule.action
                && !(400..=599).contains(&status)
            {
                return Err((
                    format!("rules[{i}].action"),
                    "status must be 400..=599".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A fault that fired, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiredFault {
    /// When.
    pub at: DateTime<Utc>,
    /// The shop called.
    pub shop: String,
    /// Whether the call was a mutation.
    pub mutation: bool,
    /// The action taken.
    pub action: FaultAction,
}

#[derive(Debug)]
struct Engine {
    config: FaultConfig,
    rng: StdRng,
    fired: Vec<FiredFault>,
}

/// The live fault rules, shared by every request.
#[derive(Debug)]
pub struct Faults {
    engine: Mutex<Engine>,
}

/// Cap on the fired-fault log, so a long probabilistic run does not grow without bound.
const FIRED_LOG_LIMIT: usize = 10_000;

impl Faults {
    /// Starts with `config`.
    pub fn new(config: FaultConfig) -> Self {
        Self {
            engine: Mutex::new(Engine {
                rng: StdRng::seed_from_u64(config.seed),
                config,
                fired: Vec::new(),
            }),
        }
    }

    /// Replaces the rules (and reseeds the RNG).
    pub fn set(&self, config: FaultConfig) {
        let mut engine = lock(&self.engine);
        engine.rng = StdRng::seed_from_u64(config.seed);
        engine.config = config;
    }

    /// The rules as they stand (`next` counts reflect the calls already faulted).
    pub fn get(&self) -> FaultConfig {
        lock(&self.engine).config.clone()
    }

    /// The faults fired so far (at most the last 10 000).
    pub fn fired(&self) -> Vec<FiredFault> {
        lock(&self.engine).fired.clone()
    }

    /// Clears the fired log.
    pub fn clear_fired(&self) {
        lock(&self.engine).fired.clear();
    }

    /// Decides the fault of one call, consuming a `next` count or an RNG draw.
    pub fn decide(&self, shop: &str, mutation: bool) -> Option<FaultAction> {
        let mut engine = lock(&self.engine);
        let Engine { config, rng, fired } = &mut *engine;
        let mut chosen = None;
        for rule in &mut config.rules {
            let operation_matches = match rule.operations {
                Operations::All => true,
                Operations::Mutations => mutation,
                Operations::Queries => !mutation,
            };
            let shop_matches = rule
                .shop
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(shop));
            if !operation_matches || !shop_matches {
                continue;
            }
            let fires = match &mut rule.trigger {
                Trigger::Next(0) => false,
                Trigger::Next(n) => {
                    *n -= 1;
                    true
                }
                Trigger::Probability(p) => rng.random::<f64>() < *p,
            };
            if fires {
                chosen = Some(rule.action.clone());
                break;
            }
        }
        // Spent `next` rules are dropped so `get` shows what is still armed.
        config
            .rules
            .retain(|r| !matches!(r.trigger, Trigger::Next(0)));
        if let Some(action) = &chosen {
            if fired.len() >= FIRED_LOG_LIMIT {
                fired.remove(0);
            }
            fired.push(FiredFault {
                at: Utc::now(),
                shop: shop.to_owned(),
                mutation,
                action: action.clone(),
            });
        }
        chosen
    }
}

/// Calls held by the `hold` fault until a test releases them.
#[derive(Debug)]
pub struct Holds {
    held: AtomicUsize,
    release: watch::Sender<u64>,
}

impl Holds {
    pub(crate) fn new() -> Self {
        Self {
            held: AtomicUsize::new(0),
            release: watch::channel(0).0,
        }
    }

    /// Waits until the next release (or shutdown).
    pub async fn hold(&self, shutdown: &CancellationToken) {
        let mut releases = self.release.subscribe();
        let generation = *releases.borrow_and_update();
        self.held.fetch_add(1, Ordering::SeqCst);
        loop {
            tokio::select! {
                changed = releases.changed() => {
                    if changed.is_err() || *releases.borrow() > generation {
                        break;
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    /// Releases every held call; returns how many were held.
    pub fn release_all(&self) -> usize {
        let held = self.held.load(Ordering::SeqCst);
        self.release.send_modify(|g| *g += 1);
        held
    }

    /// How many calls are held now.
    pub fn count(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// The body and content type of a faulted status, shaped like what Shopify's edge sends.
pub fn status_body(status: u16) -> (&'static str, String) {
    match status {
        429 => (
            "application/json",
            r#"{"errors":"Exceeded the rate limit for api client. Reduce request rates to resume uninterrupted service."}"#
                .to_owned(),
        ),
        // Shopify's edge answers gateway errors with HTML, not JSON: clients must not assume
        // every body is JSON.
        502 | 504 => (
            "text/html; charset=utf-8",
            format!(
                "<html><head><title>{status}</title></head><body><h1>{status} {}</h1></body></html>",
                if status == 502 { "Bad Gateway" } else { "Gateway Timeout" }
            ),
        ),
        503 => (
            "application/json",
            r#"{"errors":"Service Unavailable"}"#.to_owned(),
        ),
        _ => (
            "application/json",
            r#"{"errors":"Internal Server Error"}"#.to_owned(),
        ),
    }
}

/// Convenience: a `Duration` from milliseconds.
pub(crate) fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn next_n_fires_exactly_n_times_for_matching_calls_only() {
        let faults = Faults::new(FaultConfig::rule(
            FaultRule::next(
                2,
                FaultAction::Status {
                    status: 503,
                    retry_after_secs: Some(1),
                    after_apply: false,
                },
            )
            .mutations_only()
            .for_shop("a.myshopify.com"),
        ));
        assert_eq!(faults.decide("a.myshopify.com", false), None);
        assert_eq!(faults.decide("b.myshopify.com", true), None);
        assert!(faults.decide("A.myshopify.com", true).is_some());
        assert!(faults.decide("a.myshopify.com", true).is_some());
        assert_eq!(faults.decide("a.myshopify.com", true), None);
        assert!(faults.get().rules.is_empty());
        assert_eq!(faults.fired().len(), 2);
    }

    #[test]
    fn probability_is_reproducible_with_a_seed_and_close_to_p() {
        let config = FaultConfig {
            seed: 42,
            rules: vec![FaultRule::probability(0.25, FaultAction::Drop)],
        };
        let run = || {
            let faults = Faults::new(config.clone());
            (0..4000)
                .map(|_| faults.decide("s", true).is_some())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let hits = first.iter().filter(|h| **h).count();
        assert!((800..1200).contains(&hits), "{hits} of 4000");
    }

    #[test]
    fn first_matching_rule_wins_and_rules_round_trip_as_json() {
        let config = FaultConfig {
            seed: 7,
            rules: vec![
                FaultRule::next(1, FaultAction::ApplyThenDrop),
                FaultRule::probability(1.0, FaultAction::Delay { ms: 5 }),
            ],
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<FaultConfig>(&json).unwrap(), config);
        let faults = Faults::new(config);
        assert_eq!(faults.decide("s", true), Some(FaultAction::ApplyThenDrop));
        assert_eq!(faults.decide("s", true), Some(FaultAction::Delay { ms: 5 }));
    }

    #[test]
    fn documented_json_shapes_parse() {
        let config: FaultConfig = serde_json::from_str(
            r#"{"seed": 1, "rules": [
                {"action": {"kind": "status", "status": 429, "retry_after_secs": 2}, "trigger": {"probability": 0.1}},
                {"action": {"kind": "apply_then_hang", "ms": 3000}, "trigger": {"next": 1}, "operations": "mutations", "shop": "a.myshopify.com"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(config.rules.len(), 2);
        assert!(config.validate().is_ok());
        let bad = FaultConfig::rule(FaultRule::probability(1.5, FaultAction::Drop));
        assert!(bad.validate().is_err());
    }

    #[test]
    fn answer_faults_parse_and_say_what_they_answer() {
        use crate::graphql::ForcedAnswer;
        let config: FaultConfig = serde_json::from_str(
            r#"{"rules": [
                {"action": {"kind": "idempotency_previous_attempt_failed"}, "trigger": {"next": 1}},
                {"action": {"kind": "idempotency_key_parameter_mismatch", "after_apply": true}, "trigger": {"next": 1}},
                {"action": {"kind": "empty_payload"}, "trigger": {"next": 1}}
            ]}"#,
        )
        .unwrap();
        let answers: Vec<_> = config
            .rules
            .iter()
            .map(|r| r.action.forced_answer())
            .collect();
        assert_eq!(
            answers,
            vec![
                Some(ForcedAnswer::PreviousAttemptFailed),
                Some(ForcedAnswer::KeyParameterMismatch { after_apply: true }),
                Some(ForcedAnswer::EmptyPayload { after_apply: false }),
            ]
        );
        assert_eq!(FaultAction::Drop.forced_answer(), None);
    }

    #[test]
    fn gateway_errors_are_html() {
        assert!(status_body(502).0.starts_with("text/html"));
        assert!(status_body(500).1.contains("Internal Server Error"));
    }
}
