//! `wos-sync-bench`: every benchmark of the workspace, apart from the services they measure (no
//! production binary links the Shopify sandbox or a load generator).
//!
//! - [`runtime`]: the consumer runtime (the probe's handler) next to a bare consume-and-ack loop;
//! - [`ingest`]: item-ingest's variant upserts per second and peak RSS;
//! - [`pusher`]: adjustment-pusher end to end against the sandbox, batched and one call per
//!   transaction;
//! - [`backlog`]: the adjustment-pusher's memory with a million transactions queued;
//! - [`fair`]: one adjustment-pusher serving a thousand shops, one with a backlog: the others'
//!   lag, its database connections and memory;
//! - [`pusher_child`]: the adjustment-pusher as a child process, and the scratch every pusher
//!   benchmark runs in;
//! - [`relay`]: webhook-relay's accepted webhooks per second, latency, and behaviour under attack;
//! - [`sandbox`]: the Shopify sandbox's own request rate;
//! - [`scratch`]: the throw-away database and queue prefix every measurement runs in;
//! - [`serve`]: the services the benchmarks start as child processes (to read their RSS).
//!
//! Every benchmark ends with one machine-readable line, [`Figures::result_line`].

pub mod backlog;
pub mod fair;
pub mod ingest;
pub mod pusher;
pub mod pusher_child;
pub mod relay;
pub mod runtime;
pub mod sandbox;
pub mod scratch;
pub mod serve;

use std::fmt::Display;

use lapin::{BasicProperties, Channel, options::BasicPublishOptions};
use platform::amqp::publisher::PERSISTENT;

/// A benchmark's headline figures, printed last as `RESULT name=value name=value ...`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures(Vec<(String, String)>);

impl Figures {
    /// Adds one figure (a name in snake_case, without spaces; the value as printed).
    pub fn add(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.0.push((name.to_owned(), value.to_string()));
        self
    }

    /// Appends every figure of `other` (for `wos-sync-bench all`); a name already present is
    /// refused, so every name of the combined line means one thing.
    pub fn extend(&mut self, other: Figures) -> anyhow::Result<()> {
        for (name, value) in other.0 {
            anyhow::ensure!(
                self.0.iter().all(|(present, _)| *present != name),
                "two benchmarks report a figure named {name}"
            );
            self.0.push((name, value));
        }
        Ok(())
    }

    /// The summary line scripts read.
    pub fn result_line(&self) -> String {
        let mut line = String::from("RESULT");
        for (name, value) in &self.0 {
            line.push_str(&format!(" {name}={value}"));
        }
        line
    }
}

/// One message of [`publish_pipelined`].
#[derive(Debug)]
pub struct Outgoing {
    pub routing_key: String,
    pub body: Vec<u8>,
    /// Its properties (message id, headers); the delivery mode is set to persistent.
    pub properties: BasicProperties,
}

/// Publishes `count` messages to `exchange` ("" for the default exchange, routing by queue
/// name), `message(n)` the n-th, persistent and with confirms, pipelined in windows of 1000:
/// as fast as the broker confirms, never more than a window unconfirmed. Fails if the broker
/// refuses one.
pub async fn publish_pipelined(
    channel: &Channel,
    exchange: &str,
    count: u64,
    mut message: impl FnMut(u64) -> Outgoing,
) -> anyhow::Result<()> {
    const WINDOW: u64 = 1000;
    let mut sent = 0;
    while sent < count {
        let window = (count - sent).min(WINDOW);
        let mut confirms = Vec::with_capacity(usize::try_from(window)?);
        for n in sent..sent + window {
            let outgoing = message(n);
            confirms.push(
                channel
                    .basic_publish(
                        exchange.into(),
                        outgoing.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &outgoing.body,
                        outgoing.properties.with_delivery_mode(PERSISTENT),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            anyhow::ensure!(
                confirm.await?.is_ack(),
                "the broker refused a benchmark message"
            );
        }
        sent += window;
    }
    Ok(())
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM:` is the peak resident set size, `VmRSS:` the
/// current one), for the benchmarks that run a service as a child process; 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::Figures;

    #[test]
    fn the_result_line_lists_figures_in_the_order_added() {
        let mut figures = Figures::default();
        figures
            .add("runtime_ratio", format!("{:.2}", 0.5))
            .add("peak_rss_mib", 31);
        assert_eq!(
            figures.result_line(),
            "RESULT runtime_ratio=0.50 peak_rss_mib=31"
        );
    }
}
