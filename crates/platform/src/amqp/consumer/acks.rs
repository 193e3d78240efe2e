//! Acknowledging a session's deliveries: one `multiple=true` ack for a run of finished
//! messages, and only when every message it covers is finished.
//!
//! A message is *finished* when its handler's transaction committed, or its retry or
//! dead-letter copy is stored: then, and only then, may it be acknowledged. The ledger keeps
//! the session's unsettled delivery tags in order. When the lowest ones are all finished, one
//! `basic.ack` with `multiple=true` on the highest of that run settles them all: that is the
//! safe watermark, since `multiple` acknowledges every unacknowledged tag up to it. A finished
//! message above an unfinished one waits for it, but never more than `hold_limit` of them: past
//! that they are acknowledged one by one, so a slow handler never holds the prefetch window.
//! Frames go out in the order the ledger decides them (under its lock), so an ack never names a
//! tag an earlier `multiple` ack settled, which the broker would answer by closing the channel.

use std::collections::BTreeMap;

use lapin::{
    Channel,
    options::{BasicAckOptions, BasicRejectOptions},
};
use tokio::sync::Mutex;

/// How a finished message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    /// Committed, or its copy stored: acknowledge.
    Ack,
    /// Not handled (shutdown before its copy was stored): back to the queue.
    Requeue,
}

/// What the ledger sends for a set of finished messages (decided under its lock).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    AckUpTo(u64),
    Ack(u64),
    Requeue(u64),
}

/// The unsettled deliveries of one broker session.
pub(super) struct AckLedger {
    channel: Channel,
    hold_limit: usize,
    /// Unsettled tags; `true` once finished (and waiting for a lower tag).
    unsettled: Mutex<BTreeMap<u64, bool>>,
}

impl AckLedger {
    pub(super) fn new(channel: Channel, hold_limit: usize) -> Self {
        Self {
            channel,
            hold_limit,
            unsettled: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records deliveries taken from the stream (before their handling starts).
    pub(super) async fn take(&self, tags: impl IntoIterator<Item = u64>) {
        let mut unsettled = self.unsettled.lock().await;
        for tag in tags {
            unsettled.insert(tag, false);
        }
    }

    /// Settles finished messages: acknowledges what the watermark allows (or the hold limit
    /// forces) and returns the requeued ones to the queue.
    pub(super) async fn finish(&self, finished: impl IntoIterator<Item = (u64, Settle)>) {
        let mut unsettled = self.unsettled.lock().await;
        let frames = decide(&mut unsettled, finished, self.hold_limit);
        self.send(frames).await;
    }

    /// Acknowledges every finished message still held, whatever is below it: at shutdown, once
    /// the handlers that could finish did, before the channel closes.
    pub(super) async fn flush(&self) {
        let mut unsettled = self.unsettled.lock().await;
        let frames = decide(&mut unsettled, [], 0);
        self.send(frames).await;
    }

    async fn send(&self, frames: Vec<Frame>) {
        for frame in frames {
            let sent = match frame {
                Frame::AckUpTo(tag) => {
                    self.channel
                        .basic_ack(tag, BasicAckOptions { multiple: true })
                        .await
                }
                Frame::Ack(tag) => {
                    self.channel
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                }
                // `basic.reject`, not `basic.nack`: from RabbitMQ 4.3 only a reject counts
                // towards the queue's `x-delivery-limit`.
                Frame::Requeue(tag) => {
                    self.channel
                        .basic_reject(tag, BasicRejectOptions { requeue: true })
                        .await
                }
            };
            if sent.is_err() {
                tracing::warn!(
                    "acknowledgement failed (channel closed); the broker will redeliver the \
                     unacknowledged messages and their handler will see duplicates"
                );
                return;
            }
        }
    }
}

/// Marks `finished` and decides the frames that settle what may be settled now.
fn decide(
    unsettled: &mut BTreeMap<u64, bool>,
    finished: impl IntoIterator<Item = (u64, Settle)>,
    hold_limit: usize,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (tag, settle) in finished {
        match settle {
            Settle::Ack => {
                unsettled.insert(tag, true);
            }
            Settle::Requeue => {
                unsettled.remove(&tag);
                frames.push(Frame::Requeue(tag));
            }
        }
    }
    // The run of finished tags from the lowest unsettled one.
    let watermark = unsettled
        .iter()
        .take_while(|(_, finished)| **finished)
        .map(|(tag, _)| *tag)
        .last();
    if let Some(watermark) = watermark {
        unsettled.retain(|tag, _| *tag > watermark);
        frames.push(Frame::AckUpTo(watermark));
    }
    let held = unsettled.values().filter(|finished| **finished).count();
    if held > hold_limit {
        unsettled.retain(|tag, finished| {
            if *finished {
                frames.push(Frame::Ack(*tag));
            }
            !*finished
        });
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(tags: &[u64]) -> BTreeMap<u64, bool> {
        tags.iter().map(|tag| (*tag, false)).collect()
    }

    #[test]
    fn a_run_of_finished_tags_from_the_lowest_is_acknowledged_in_one_frame() {
        let mut unsettled = ledger(&[1, 2, 3, 4, 5]);
        let frames = decide(
            &mut unsettled,
            [(2, Settle::Ack), (1, Settle::Ack), (3, Settle::Ack)],
            10,
        );
        assert_eq!(frames, [Frame::AckUpTo(3)]);
        assert_eq!(unsettled.keys().copied().collect::<Vec<_>>(), [4, 5]);
    }

    #[test]
    fn a_finished_tag_above_an_unfinished_one_waits_for_it() {
        let mut unsettled = ledger(&[1, 2, 3]);
        assert_eq!(decide(&mut unsettled, [(2, Settle::Ack)], 10), []);
        assert_eq!(decide(&mut unsettled, [(3, Settle::Ack)], 10), []);
        assert_eq!(
            decide(&mut unsettled, [(1, Settle::Ack)], 10),
            [Frame::AckUpTo(3)]
        );
        assert!(unsettled.is_empty());
    }

    #[test]
    fn past_the_hold_limit_finished_tags_are_acknowledged_one_by_one() {
        let mut unsettled = ledger(&[1, 2, 3, 4]);
        assert_eq!(decide(&mut unsettled, [(2, Settle::Ack)], 1), []);
        assert_eq!(
            decide(&mut unsettled, [(4, Settle::Ack)], 1),
            [Frame::Ack(2), Frame::Ack(4)]
        );
        // The slow one finishes: the watermark names only tags still unacknowledged.
        assert_eq!(
            decide(&mut unsettled, [(1, Settle::Ack), (3, Settle::Ack)], 1),
            [Frame::AckUpTo(3)]
        );
        assert!(unsettled.is_empty());
    }

    #[test]
    fn a_requeued_tag_is_rejected_at_once_and_no_longer_holds_the_watermark() {
        let mut unsettled = ledger(&[1, 2, 3]);
        assert_eq!(decide(&mut unsettled, [(2, Settle::Ack)], 10), []);
        assert_eq!(
            decide(&mut unsettled, [(1, Settle::Requeue)], 10),
            [Frame::Requeue(1), Frame::AckUpTo(2)]
        );
        assert_eq!(unsettled.keys().copied().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_flush_acknowledges_what_is_held_and_leaves_the_unfinished() {
        let mut unsettled = ledger(&[1, 2, 3]);
        decide(&mut unsettled, [(2, Settle::Ack), (3, Settle::Ack)], 10);
        assert_eq!(
            decide(&mut unsettled, [], 0),
            [Frame::Ack(2), Frame::Ack(3)]
        );
        assert_eq!(unsettled.keys().copied().collect::<Vec<_>>(), [1]);
    }
}
