//! `@idempotent(key:)` semantics, per shop and app (Shopify's scope).
//!
//! - a new key runs the mutation once and stores its outcome (applied group, no-op, or
//!   the user errors it produced);
//! - the same key with the same fingerprint (mutation + canonical arguments) replays that
//!   outcome: nothing is applied again, the response carries the original group;
//! - the same key with another fingerprint is `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`;
//! - the same key while its first request is still running is
//!   `IDEMPOTENCY_CONCURRENT_REQUEST` (a retry is safe: it replays once the first finishes).
//!
//! Keys expire after a retention window (Shopify documents 24 hours); an expired key is new
//! again. Requests refused before they ran (invalid variables, missing directive, `THROTTLED`)
//! never reach this store, so they do not burn the key.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::adjust::AdjustOutcome;

/// A SHA-256 of the mutation name and its canonical arguments.
pub type Fingerprint = [u8; 32];

/// What a request carrying a key may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// First use of the key (or it expired): run, then [`IdempotencyStore::finish`].
    Proceed,
    /// The first request with this key is still running.
    Concurrent,
    /// The key was used with other arguments.
    Mismatch,
    /// The key already ran with these arguments: answer with its outcome.
    Replay(AdjustOutcome),
}

#[derive(Debug, Clone)]
struct Entry {
    fingerprint: Fingerprint,
    started: Instant,
    outcome: Option<AdjustOutcome>,
}

/// The keys of one shop, scoped by app id.
#[derive(Debug, Default)]
pub struct IdempotencyStore {
    entries: HashMap<(u64, String), Entry>,
    inserts_since_purge: usize,
}

/// Purge expired keys after this many new ones, so memory stays bounded by the retention
/// window rather than by the sandbox's lifetime.
const PURGE_EVERY: usize = 4096;

impl IdempotencyStore {
    /// Looks the key up and, when the request may run, marks it in flight.
    pub fn begin(
        &mut self,
        app_id: u64,
        key: &str,
        fingerprint: Fingerprint,
        now: Instant,
        retention: Duration,
    ) -> Begin {
        let slot = (app_id, key.to_owned());
        if let Some(entry) = self.entries.get(&slot) {
            let expired = now.saturating_duration_since(entry.started) >= retention;
            if !expired {
                return match (&entry.outcome, entry.fingerprint == fingerprint) {
                    (_, false) => Begin::Mismatch,
                    (None, true) => Begin::Concurrent,
                    (Some(outcome), true) => Begin::Replay(outcome.clone()),
                };
            }
        }
        self.inserts_since_purge += 1;
        if self.inserts_since_purge >= PURGE_EVERY {
            self.inserts_since_purge = 0;
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.started) < retention);
        }
        self.entries.insert(
            slot,
            Entry {
                fingerprint,
                started: now,
                outcome: None,
            },
        );
        Begin::Proceed
    }

    /// Stores the outcome of a request that was allowed to [`Begin::Proceed`].
    pub fn finish(&mut self, app_id: u64, key: &str, outcome: AdjustOutcome) {
        if let Some(entry) = self.entries.get_mut(&(app_id, key.to_owned())) {
            entry.outcome = Some(outcome);
        }
    }

    /// Forgets a key whose request never finished (it did not apply anything), so a retry
    /// runs instead of being refused as concurrent forever.
    pub fn abandon(&mut self, app_id: u64, key: &str) {
        let slot = (app_id, key.to_owned());
        if self.entries.get(&slot).is_some_and(|e| e.outcome.is_none()) {
            self.entries.remove(&slot);
        }
    }

    /// How many keys are running now.
    pub fn in_flight(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.outcome.is_none())
            .count()
    }
}

/// The fingerprint of a mutation call: its field name and canonical JSON arguments (object
/// keys sorted, so key order in the request does not matter; a stored hash, not the text,
/// so a 250-change request costs 32 bytes of memory per key).
pub fn fingerprint(field: &str, arguments: &serde_json::Value) -> Fingerprint {
    use sha2::{Digest, Sha256};
    let mut canonical = String::new();
    write_canonical(arguments, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(field.as_bytes());
    hasher.update([0]);
    hasher.update(canonical.as_bytes());
    hasher.finalize().into()
}

/// JSON with object keys sorted at every level, independent of how `serde_json` orders maps.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn same_key_same_arguments_replays_the_outcome() {
        let mut store = IdempotencyStore::default();
        let t0 = Instant::now();
        let fp = fingerprint("inventoryAdjustQuantities", &json!({"a": 1}));
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Proceed);
        assert_eq!(store.in_flight(), 1);
        store.finish(1, "k", AdjustOutcome::NoOp);
        assert_eq!(store.in_flight(), 0);
        assert_eq!(
            store.begin(1, "k", fp, t0, DAY),
            Begin::Replay(AdjustOutcome::NoOp)
        );
    }

    #[test]
    fn in_flight_same_key_is_concurrent_and_other_arguments_are_a_mismatch() {
        let mut store = IdempotencyStore::default();
        let t0 = Instant::now();
        let fp = fingerprint("m", &json!({"a": 1}));
        let other = fingerprint("m", &json!({"a": 2}));
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Proceed);
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Concurrent);
        assert_eq!(store.begin(1, "k", other, t0, DAY), Begin::Mismatch);
        store.finish(1, "k", AdjustOutcome::NoOp);
        assert_eq!(store.begin(1, "k", other, t0, DAY), Begin::Mismatch);
    }

    #[test]
    fn keys_are_scoped_by_app_and_expire() {
        let mut store = IdempotencyStore::default();
        let t0 = Instant::now();
        let fp = fingerprint("m", &json!({}));
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Proceed);
        store.finish(1, "k", AdjustOutcome::NoOp);
        assert_eq!(store.begin(2, "k", fp, t0, DAY), Begin::Proceed);
        assert_eq!(store.begin(1, "k", fp, t0 + DAY, DAY), Begin::Proceed);
    }

    #[test]
    fn an_abandoned_key_can_run_again() {
        let mut store = IdempotencyStore::default();
        let t0 = Instant::now();
        let fp = fingerprint("m", &json!({}));
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Proceed);
        store.abandon(1, "k");
        assert_eq!(store.begin(1, "k", fp, t0, DAY), Begin::Proceed);
        store.finish(1, "k", AdjustOutcome::NoOp);
        store.abandon(1, "k");
        assert_eq!(
            store.begin(1, "k", fp, t0, DAY),
            Begin::Replay(AdjustOutcome::NoOp)
        );
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"x":1,"y":[1,2]}"#).expect("json");
        let b: serde_json::Value = serde_json::from_str(r#"{"y":[1,2],"x":1}"#).expect("json");
        let c: serde_json::Value = serde_json::from_str(r#"{"y":[2,1],"x":1}"#).expect("json");
        assert_eq!(fingerprint("m", &a), fingerprint("m", &b));
        assert_ne!(fingerprint("m", &a), fingerprint("m", &c));
        assert_ne!(fingerprint("m", &a), fingerprint("n", &a));
    }
}
