//! `wos-sync-bench`: every benchmark of the workspace, apart from the services they measure (no
//! production binary links the Shopify sandbox or a load generator).
//!
//! - [`runtime`]: the consumer runtime (the probe's handler) next to a bare consume-and-ack loop;
//! - [`ingest`]: item-ingest's variant upserts per second and peak RSS;
//! - [`pusher`]: adjustment-pusher end to end against the sandbox, batched and one call per
//!   transaction;
//! - [`relay`]: webhook-relay's accepted webhooks per second, latency, and behaviour under attack;
//! - [`sandbox`]: the Shopify sandbox's own request rate;
//! - [`scratch`]: the throw-away database and queue prefix every measurement runs in;
//! - [`serve`]: the services the benchmarks start as child processes (to read their RSS).
//!
//! Every benchmark ends with one machine-readable line, [`Figures::result_line`].

pub mod ingest;
pub mod pusher;
pub mod relay;
pub mod runtime;
pub mod sandbox;
pub mod scratch;
pub mod serve;

use std::fmt::Display;

/// A benchmark's headline figures, printed last as `RESULT name=value name=value ...`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures(Vec<(String, String)>);

impl Figures {
    /// Adds one figure (a name in snake_case, without spaces; the value as printed).
    pub fn add(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.0.push((name.to_owned(), value.to_string()));
        self
    }

    /// Appends every figure of `other` (for `wos-sync-bench all`).
    pub fn extend(&mut self, other: Figures) {
        self.0.extend(other.0);
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
