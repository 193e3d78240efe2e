//! How pending adjustments become one `inventoryAdjustQuantities` call, and how Shopify's
//! refusal of that call is traced back to the adjustments behind it.
//!
//! The rule ([`form_batch`]), applied to a shop's pending adjustments in id order:
//! - **one reason per call** (Shopify takes one `reason` per input): the first adjustment's;
//! - **sums per inventory item and location**: several adjustments of one pair become one change
//!   (a pair that sums to zero is no change at all: its adjustments are `cancelled`);
//! - **the 250 cut**: at most `max_changes` distinct pairs; the rest wait for a later call;
//! - **the Int bound**: GraphQL's `Int` is 32-bit, so no change leaves the pusher outside
//!   ±(2^31 − 1). An adjustment that would take its pair's sum outside waits for a later call,
//!   and so does every later adjustment of that pair (a pair's adjustments go out in order);
//! - **solo adjustments**: one Shopify refused as part of a sum goes out as a change of its own,
//!   so Shopify judges it alone;
//! - an adjustment that cannot be sent at all (a delta outside the Int bound by itself) is
//!   `unsendable`, never retried.
//!
//! The formed batch is the exact list of `(inventory item, location, adjustments)` behind each
//! change index; it is stored with the batch, and [`settle_refusal`] reads it to send each of
//! Shopify's errors to the adjustments it names and nowhere else.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{InventoryItemId, LocationId};

/// The largest delta magnitude one change may carry: GraphQL's `Int` is a signed 32-bit integer.
pub const MAX_DELTA: i64 = i32::MAX as i64;

/// Shopify's limit of changes per `inventoryAdjustQuantities` call.
pub const MAX_CHANGES: usize = 250;

/// A pending adjustment, with the inventory item its item is mapped to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAdjustment {
    /// The adjustment's row id (the order they go out in).
    pub id: i64,
    pub inventory_item_id: InventoryItemId,
    pub location_id: LocationId,
    pub delta: i64,
    /// Shopify's reason (`received`, `correction`, ...).
    pub reason: String,
    /// The WOS transaction it comes from.
    pub transaction_id: String,
    /// Must be a change of its own.
    pub solo: bool,
}

/// How batches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRules {
    /// Distinct `(inventory item, location)` changes per call, at most [`MAX_CHANGES`].
    pub max_changes: usize,
    /// `false`: one call per transaction (the benchmark's comparison mode).
    pub coalesce_transactions: bool,
}

impl Default for BatchRules {
    fn default() -> Self {
        Self {
            max_changes: MAX_CHANGES,
            coalesce_transactions: true,
        }
    }
}

/// One change of the call: `input.changes[i]`, and the adjustments it sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub inventory_item_id: InventoryItemId,
    pub location_id: LocationId,
    /// Within ±[`MAX_DELTA`], never zero.
    pub delta: i64,
    /// The adjustment ids behind it, in id order.
    pub adjustments: Vec<i64>,
}

/// What [`form_batch`] took from the pending adjustments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormedBatch {
    /// The call's reason (empty when nothing is sendable).
    pub reason: String,
    /// The call's changes, in `input.changes` order.
    pub changes: Vec<Change>,
    /// Adjustments whose pair summed to zero in this batch: nothing to send, done.
    pub cancelled: Vec<i64>,
    /// Adjustments that can never be sent, with why.
    pub unsendable: Vec<(i64, String)>,
}

impl FormedBatch {
    /// Whether there is a call to make.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Every adjustment the batch took (sent, cancelled or unsendable).
    pub fn adjustment_count(&self) -> usize {
        self.changes
            .iter()
            .map(|c| c.adjustments.len())
            .sum::<usize>()
            + self.cancelled.len()
            + self.unsendable.len()
    }
}

/// A pair being summed.
struct Sum {
    delta: i64,
    adjustments: Vec<i64>,
    /// No more adjustments of this pair in this batch (one was left out: the pair's order
    /// holds only if every later one waits too).
    closed: bool,
}

/// Forms one batch from `pending` (any order; taken in id order). `None` when `pending` is
/// empty; a batch without changes when everything cancelled out or is unsendable.
pub fn form_batch(pending: &[PendingAdjustment], rules: BatchRules) -> Option<FormedBatch> {
    let mut rows: Vec<&PendingAdjustment> = pending.iter().collect();
    rows.sort_by_key(|row| row.id);
    let mut batch = FormedBatch::default();
    let mut first: Option<&PendingAdjustment> = None;
    let mut sums: BTreeMap<(InventoryItemId, LocationId), Sum> = BTreeMap::new();
    let mut order: Vec<(InventoryItemId, LocationId)> = Vec::new();
    let max_changes = rules.max_changes.clamp(1, MAX_CHANGES);
    for row in rows {
        if row.delta.abs() > MAX_DELTA {
            batch.unsendable.push((
                row.id,
                format!(
                    "delta {} is outside GraphQL's Int range (±{MAX_DELTA}): Shopify cannot take \
                     it in one change",
                    row.delta
                ),
            ));
            continue;
        }
        let first = *first.get_or_insert(row);
        if row.reason != first.reason
            || (!rules.coalesce_transactions && row.transaction_id != first.transaction_id)
        {
            continue;
        }
        let pair = (row.inventory_item_id, row.location_id);
        match sums.get_mut(&pair) {
            None => {
                if order.len() == max_changes {
                    continue;
                }
                order.push(pair);
                sums.insert(
                    pair,
                    Sum {
                        delta: row.delta,
                        adjustments: vec![row.id],
                        closed: row.solo,
                    },
                );
            }
            Some(sum) => {
                if sum.closed {
                    continue;
                }
                let total = sum.delta + row.delta;
                if row.solo || total.abs() > MAX_DELTA {
                    // Goes out in a later call, and so does every later adjustment of the pair.
                    sum.closed = true;
                    continue;
                }
                sum.delta = total;
                sum.adjustments.push(row.id);
            }
        }
    }
    let Some(first) = first else {
        return (!batch.unsendable.is_empty()).then_some(batch);
    };
    batch.reason = first.reason.clone();
    for pair in order {
        let Some(sum) = sums.remove(&pair) else {
            continue;
        };
        if sum.delta == 0 {
            batch.cancelled.extend(sum.adjustments);
        } else {
            batch.changes.push(Change {
                inventory_item_id: pair.0,
                location_id: pair.1,
                delta: sum.delta,
                adjustments: sum.adjustments,
            });
        }
    }
    Some(batch)
}

/// Forms up to `at_most` batches from `pending` at once, as [`form_batch`] would one after
/// another with each earlier batch in flight: a batch never carries a pair (`(inventory item,
/// location)`) an earlier one has changes for, and every later adjustment of such a pair waits
/// (its adjustments go out in order, one batch at a time). Stops early when nothing is left.
pub fn form_disjoint_batches(
    pending: &[PendingAdjustment],
    rules: BatchRules,
    at_most: usize,
) -> Vec<FormedBatch> {
    let mut left: Vec<PendingAdjustment> = pending.to_vec();
    let mut batches = Vec::new();
    while batches.len() < at_most {
        let Some(batch) = form_batch(&left, rules) else {
            break;
        };
        let taken: BTreeSet<i64> = batch
            .changes
            .iter()
            .flat_map(|c| c.adjustments.iter().copied())
            .chain(batch.cancelled.iter().copied())
            .chain(batch.unsendable.iter().map(|(id, _)| *id))
            .collect();
        let in_flight: BTreeSet<(InventoryItemId, LocationId)> = batch
            .changes
            .iter()
            .map(|c| (c.inventory_item_id, c.location_id))
            .collect();
        left.retain(|row| {
            !taken.contains(&row.id)
                && !in_flight.contains(&(row.inventory_item_id, row.location_id))
        });
        batches.push(batch);
    }
    batches
}

/// One error of a refused call, as batching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The change index it names (`input.changes[i]`), if any.
    pub change: Option<usize>,
    /// Whether it is about the change's delta (a sum Shopify would not take, e.g. a quantity
    /// out of range): then the adjustments behind the sum are each worth trying alone.
    pub about_delta: bool,
    /// One line for `x-error`.
    pub message: String,
}

/// What becomes of each adjustment of a refused call (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefusalOutcome {
    /// Every adjustment of the batch is dead-lettered as `rejected`, with this reason (whether
    /// a change lists it or not); the lists below are then empty.
    pub condemned: Option<String>,
    /// Dead-lettered as `rejected`, with Shopify's reason.
    pub dead: Vec<(i64, String)>,
    /// Back to pending, to go out in a later call under a new key.
    pub retry: Vec<i64>,
    /// Back to pending as solo adjustments (each its own change).
    pub isolate: Vec<i64>,
}

/// Sends each of Shopify's errors to the adjustments behind the change it names.
///
/// - An error that names no change (an invalid reason, a bad request), or names a change the
///   batch does not have, condemns every adjustment of the batch (`condemned`): the answer
///   cannot be attributed, and forming the same batch again would only get it again.
/// - A named change's adjustments are dead-lettered with the errors about it; but when the
///   error is about the delta and the change sums several adjustments, they go back to be
///   sent alone (the sum was refused, not necessarily each of them), and adjustments in
///   `moved` (their item is mapped to another inventory item now, or to none) go back to be
///   sent to the item mapped now.
/// - The other adjustments go back to pending: Shopify applied nothing.
pub fn settle_refusal(
    changes: &[Change],
    errors: &[Refusal],
    moved: &BTreeSet<i64>,
) -> RefusalOutcome {
    let mut outcome = RefusalOutcome::default();
    let summary = errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let unattributable = errors.iter().find(|e| match e.change {
        None => true,
        Some(index) => index >= changes.len(),
    });
    if let Some(error) = unattributable {
        let reason = match error.change {
            Some(index) => format!(
                "Shopify named change {index} of a call with {} changes: {summary}",
                changes.len()
            ),
            None => summary,
        };
        outcome.condemned = Some(reason);
        return outcome;
    }
    let mut named: BTreeMap<usize, Vec<&Refusal>> = BTreeMap::new();
    for error in errors {
        if let Some(index) = error.change {
            named.entry(index).or_default().push(error);
        }
    }
    for (index, change) in changes.iter().enumerate() {
        let Some(errors) = named.get(&index) else {
            outcome.retry.extend(&change.adjustments);
            continue;
        };
        let about_delta = errors.iter().all(|e| e.about_delta);
        if about_delta && change.adjustments.len() > 1 {
            outcome.isolate.extend(&change.adjustments);
            continue;
        }
        let reason = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        for &id in &change.adjustments {
            if moved.contains(&id) {
                outcome.retry.push(id);
            } else {
                outcome.dead.push((id, reason.clone()));
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_formed_at_once_never_share_a_pair_and_keep_each_pairs_order() {
        // Pair (1, 1) has three adjustments; 300 distinct pairs follow; one call takes 250.
        let mut pending = vec![adj(1, 1, 1, 5), adj(2, 1, 1, 3)];
        pending.extend((0..300).map(|n| adj(10 + n, 100 + n as u64, 1, 1)));
        pending.push(adj(1000, 1, 1, 2));
        let batches = form_disjoint_batches(&pending, BatchRules::default(), 4);
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert_eq!(batches[0].changes.len(), 250);
        assert_eq!(batches[0].changes[0].adjustments, vec![1, 2, 1000]);
        assert_eq!(batches[1].changes.len(), 51);
        let pairs = |b: &FormedBatch| -> BTreeSet<(InventoryItemId, LocationId)> {
            b.changes
                .iter()
                .map(|c| (c.inventory_item_id, c.location_id))
                .collect()
        };
        assert!(pairs(&batches[0]).is_disjoint(&pairs(&batches[1])));
    }

    #[test]
    fn a_pair_held_back_in_one_batch_waits_for_it_to_settle() {
        // The second adjustment of (1, 1) would leave the Int bound: it and every later one of
        // the pair wait, even though another batch could be formed now.
        let pending = vec![
            adj(1, 1, 1, MAX_DELTA),
            adj(2, 1, 1, 1),
            adj(3, 2, 1, 1),
            adj(4, 1, 1, -1),
        ];
        let batches = form_disjoint_batches(&pending, BatchRules::default(), 4);
        assert_eq!(batches.len(), 1, "{batches:?}");
        assert_eq!(batches[0].changes.len(), 2);
        assert_eq!(batches[0].changes[0].adjustments, vec![1]);
        assert_eq!(
            form_disjoint_batches(&pending, BatchRules::default(), 0),
            Vec::new()
        );
    }

    fn adj(id: i64, item: u64, location: u64, delta: i64) -> PendingAdjustment {
        PendingAdjustment {
            id,
            inventory_item_id: InventoryItemId(item),
            location_id: LocationId(location),
            delta,
            reason: "received".into(),
            transaction_id: format!("t-{id}"),
            solo: false,
        }
    }

    fn deltas(batch: &FormedBatch) -> Vec<(u64, u64, i64, Vec<i64>)> {
        batch
            .changes
            .iter()
            .map(|c| {
                (
                    c.inventory_item_id.0,
                    c.location_id.0,
                    c.delta,
                    c.adjustments.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn nothing_pending_is_no_batch() {
        assert_eq!(form_batch(&[], BatchRules::default()), None);
    }

    #[test]
    fn adjustments_of_one_pair_are_summed_in_first_seen_order() {
        let pending = [
            adj(3, 1, 10, 5),
            adj(1, 2, 10, 1),
            adj(2, 1, 10, -2),
            adj(4, 1, 11, 7),
        ];
        let batch = form_batch(&pending, BatchRules::default()).unwrap();
        assert_eq!(
            deltas(&batch),
            vec![
                (2, 10, 1, vec![1]),
                (1, 10, 3, vec![2, 3]),
                (1, 11, 7, vec![4])
            ]
        );
        assert_eq!(batch.reason, "received");
        assert_eq!(batch.adjustment_count(), 4);
    }

    #[test]
    fn one_reason_per_call_the_first_one() {
        let mut pull = adj(2, 1, 10, -3);
        pull.reason = "correction".into();
        let batch = form_batch(
            &[adj(1, 1, 10, 5), pull, adj(3, 1, 10, 1)],
            BatchRules::default(),
        )
        .unwrap();
        assert_eq!(deltas(&batch), vec![(1, 10, 6, vec![1, 3])]);
    }

    #[test]
    fn pairs_that_sum_to_zero_are_cancelled_not_sent() {
        let batch = form_batch(
            &[adj(1, 1, 10, 5), adj(2, 1, 10, -5), adj(3, 2, 10, 4)],
            BatchRules::default(),
        )
        .unwrap();
        assert_eq!(deltas(&batch), vec![(2, 10, 4, vec![3])]);
        assert_eq!(batch.cancelled, vec![1, 2]);
        let all_zero = form_batch(
            &[adj(1, 1, 10, 5), adj(2, 1, 10, -5)],
            BatchRules::default(),
        )
        .unwrap();
        assert!(!all_zero.has_changes());
        assert_eq!(all_zero.cancelled, vec![1, 2]);
    }

    #[test]
    fn at_most_max_changes_pairs_the_rest_waits() {
        let pending: Vec<_> = (0..300).map(|n| adj(n, n as u64 + 1, 10, 1)).collect();
        let batch = form_batch(&pending, BatchRules::default()).unwrap();
        assert_eq!(batch.changes.len(), MAX_CHANGES);
        assert_eq!(batch.changes.last().unwrap().adjustments, vec![249]);
        // A pair already in the batch still takes its later adjustments.
        let mut pending: Vec<_> = (0..3).map(|n| adj(n, n as u64 + 1, 10, 1)).collect();
        pending.push(adj(3, 1, 10, 1));
        let rules = BatchRules {
            max_changes: 2,
            ..BatchRules::default()
        };
        let batch = form_batch(&pending, rules).unwrap();
        assert_eq!(
            deltas(&batch),
            vec![(1, 10, 2, vec![0, 3]), (2, 10, 1, vec![1])]
        );
    }

    #[test]
    fn no_change_leaves_the_int_bound_and_the_rest_of_the_pair_waits() {
        let huge = 1_000_000_000;
        let pending = [
            adj(1, 1, 10, huge),
            adj(2, 1, 10, huge),
            adj(3, 1, 10, huge),
            // Would bring the sum back in range, but comes after one that waits: waits too.
            adj(4, 1, 10, -huge),
            adj(5, 2, 10, 5),
        ];
        let batch = form_batch(&pending, BatchRules::default()).unwrap();
        assert_eq!(
            deltas(&batch),
            vec![(1, 10, 2 * huge, vec![1, 2]), (2, 10, 5, vec![5])]
        );
        for change in &batch.changes {
            assert!(change.delta.abs() <= MAX_DELTA);
        }
        let negative: Vec<_> = (1..=3).map(|n| adj(n, 1, 10, -huge)).collect();
        let batch = form_batch(&negative, BatchRules::default()).unwrap();
        assert_eq!(deltas(&batch), vec![(1, 10, -2 * huge, vec![1, 2])]);
    }

    #[test]
    fn an_adjustment_outside_the_int_bound_by_itself_is_unsendable() {
        let batch = form_batch(
            &[adj(1, 1, 10, MAX_DELTA + 1), adj(2, 1, 10, 3)],
            BatchRules::default(),
        )
        .unwrap();
        assert_eq!(deltas(&batch), vec![(1, 10, 3, vec![2])]);
        assert_eq!(batch.unsendable.len(), 1);
        assert_eq!(batch.unsendable[0].0, 1);
        assert!(
            batch.unsendable[0].1.contains("Int"),
            "{:?}",
            batch.unsendable
        );
        let only = form_batch(&[adj(1, 1, 10, -MAX_DELTA - 1)], BatchRules::default()).unwrap();
        assert!(!only.has_changes());
        assert_eq!(only.adjustment_count(), 1);
    }

    #[test]
    fn a_solo_adjustment_is_a_change_of_its_own() {
        let mut solo = adj(1, 1, 10, 7);
        solo.solo = true;
        let batch = form_batch(
            &[solo.clone(), adj(2, 1, 10, 1), adj(3, 2, 10, 1)],
            BatchRules::default(),
        )
        .unwrap();
        assert_eq!(
            deltas(&batch),
            vec![(1, 10, 7, vec![1]), (2, 10, 1, vec![3])]
        );
        // After other adjustments of its pair: it waits (and so does the rest of the pair).
        solo.id = 5;
        let batch = form_batch(
            &[adj(2, 1, 10, 1), solo, adj(6, 1, 10, 1)],
            BatchRules::default(),
        )
        .unwrap();
        assert_eq!(deltas(&batch), vec![(1, 10, 1, vec![2])]);
    }

    #[test]
    fn without_coalescing_one_transaction_per_call() {
        let mut second = adj(2, 1, 10, 1);
        second.transaction_id = "t-1".into();
        let rules = BatchRules {
            coalesce_transactions: false,
            ..BatchRules::default()
        };
        let batch = form_batch(&[adj(1, 1, 10, 1), second, adj(3, 1, 10, 1)], rules).unwrap();
        assert_eq!(deltas(&batch), vec![(1, 10, 2, vec![1, 2])]);
    }

    fn change(item: u64, adjustments: &[i64]) -> Change {
        Change {
            inventory_item_id: InventoryItemId(item),
            location_id: LocationId(10),
            delta: 1,
            adjustments: adjustments.to_vec(),
        }
    }

    fn refusal(change: Option<usize>, about_delta: bool, message: &str) -> Refusal {
        Refusal {
            change,
            about_delta,
            message: message.into(),
        }
    }

    #[test]
    fn a_named_change_condemns_only_its_adjustments() {
        let changes = [change(1, &[1, 2]), change(2, &[3]), change(3, &[4])];
        let outcome = settle_refusal(
            &changes,
            &[refusal(Some(1), false, "INVALID_INVENTORY_ITEM: not found")],
            &BTreeSet::new(),
        );
        assert_eq!(
            outcome.dead,
            vec![(3, "INVALID_INVENTORY_ITEM: not found".to_owned())]
        );
        assert_eq!(outcome.retry, vec![1, 2, 4]);
        assert!(outcome.isolate.is_empty());
    }

    #[test]
    fn an_error_naming_no_change_or_a_change_that_is_not_there_condemns_all() {
        let changes = [change(1, &[1]), change(2, &[2, 3])];
        let none = settle_refusal(
            &changes,
            &[refusal(None, false, "INVALID_REASON: bad")],
            &BTreeSet::new(),
        );
        assert_eq!(none.condemned.as_deref(), Some("INVALID_REASON: bad"));
        assert!(none.dead.is_empty() && none.retry.is_empty() && none.isolate.is_empty());
        let beyond = settle_refusal(
            &changes,
            &[
                refusal(Some(0), false, "INVALID_LOCATION"),
                refusal(Some(2), false, "INVALID_INVENTORY_ITEM"),
            ],
            &BTreeSet::new(),
        );
        let reason = beyond.condemned.unwrap();
        assert!(
            reason.contains("change 2 of a call with 2 changes"),
            "{reason}"
        );
        assert!(beyond.dead.is_empty() && beyond.retry.is_empty());
        // A batch without its list (unreadable) cannot attribute anything either.
        let unlisted = settle_refusal(&[], &[refusal(Some(0), false, "X")], &BTreeSet::new());
        assert!(unlisted.condemned.is_some());
    }

    #[test]
    fn a_refused_sum_is_retried_adjustment_by_adjustment() {
        let changes = [change(1, &[1, 2]), change(2, &[3])];
        let outcome = settle_refusal(
            &changes,
            &[
                refusal(Some(0), true, "INVALID_QUANTITY_TOO_HIGH"),
                refusal(Some(1), true, "INVALID_QUANTITY_TOO_HIGH"),
            ],
            &BTreeSet::new(),
        );
        assert_eq!(outcome.isolate, vec![1, 2]);
        assert_eq!(
            outcome.dead,
            vec![(3, "INVALID_QUANTITY_TOO_HIGH".to_owned())]
        );
    }

    #[test]
    fn adjustments_whose_mapping_moved_go_back_instead_of_dying() {
        let changes = [change(1, &[1, 2])];
        let outcome = settle_refusal(
            &changes,
            &[refusal(Some(0), false, "INVALID_INVENTORY_ITEM")],
            &BTreeSet::from([2]),
        );
        assert_eq!(outcome.dead, vec![(1, "INVALID_INVENTORY_ITEM".to_owned())]);
        assert_eq!(outcome.retry, vec![2]);
    }

    #[test]
    fn changes_round_trip_as_stored() {
        let changes = vec![change(5, &[1, 2])];
        let json = serde_json::to_value(&changes).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"inventory_item_id": 5, "location_id": 10, "delta": 1, "adjustments": [1, 2]}])
        );
        assert_eq!(
            serde_json::from_value::<Vec<Change>>(json).unwrap(),
            changes
        );
    }
}
