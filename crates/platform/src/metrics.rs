//! Every Prometheus metric family of CONTRACT section 6, registered in one place.
//!
//! Names and label sets are part of the contract (dashboards and alert rules depend on them), so
//! they are defined once here and the services only record into them. Label values are always
//! from bounded sets (service, queue, shop, outcome, ...), never message ids or SKUs.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Outcome label of `wos_sync_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    Acked,
    Duplicate,
    Retried,
    Parked,
    DeadLettered,
}

impl MessageOutcome {
    /// The label value written to Prometheus.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::Duplicate => "duplicate",
            Self::Retried => "retried",
            Self::Parked => "parked",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// The registry and every metric family of the contract.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub messages_total: IntCounterVec,
    pub message_processing_seconds: HistogramVec,
    pub adjustments_total: IntCounterVec,
    pub adjustment_lag_seconds: HistogramVec,
    pub push_batch_changes: HistogramVec,
    pub parked_adjustments: IntGaugeVec,
    pub sku_conflicts: IntGaugeVec,
    pub items_total: IntCounterVec,
    pub shopify_requests_total: IntCounterVec,
    pub shopify_request_seconds: HistogramVec,
    pub shopify_throttle_available: IntGaugeVec,
    pub webhooks_total: IntCounterVec,
    /// Beyond CONTRACT 6: failed rounds of background loops (`platform::supervise`).
    pub loop_failures_total: IntCounterVec,
    pub loop_consecutive_failures: IntGaugeVec,
    /// Beyond CONTRACT 6: rows each service's retention job deleted (`platform::retention`).
    pub retention_pruned_rows_total: IntCounterVec,
    /// Beyond CONTRACT 6: outbox rows that could not be published, by why (`unroutable`: a
    /// dead letter's queue does not exist; `refused`: the broker refused the message or its
    /// exchange; `unavailable`: the broker could not be reached, which holds up every row).
    pub outbox_publish_failures_total: IntCounterVec,
    /// Beyond CONTRACT 6: outbox rows waiting for a retry after their own publish failed
    /// (the same table-wide count from every service's relay).
    pub outbox_deferred_messages: IntGaugeVec,
}

/// Latency buckets for work measured in milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Lag buckets: from sub-second (the goal) to a day (a shop that was down).
const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];
/// Changes per `inventoryAdjustQuantities` call; Shopify allows at most 250.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0];

impl Metrics {
    /// Creates a fresh registry with every family registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definition is valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let metric = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("metric definition is valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric definition is valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        Self {
            messages_total: counter(
                "wos_sync_messages_total",
                "Messages consumed, by how they ended.",
                &["service", "queue", "outcome"],
            ),
            message_processing_seconds: histogram(
                "wos_sync_message_processing_seconds",
                "Time from delivery to acknowledgement of one message.",
                &["service", "queue"],
                LATENCY_BUCKETS,
            ),
            adjustments_total: counter(
                "wos_sync_adjustments_total",
                "Inventory adjustments derived from WOS transactions, by outcome.",
                &["shop", "type", "outcome"],
            ),
            adjustment_lag_seconds: histogram(
                "wos_sync_adjustment_lag_seconds",
                "From a transaction's occurred_at to Shopify's acknowledgement of its adjustment.",
                &["shop"],
                LAG_BUCKETS,
            ),
            push_batch_changes: histogram(
                "wos_sync_push_batch_changes",
                "Changes per inventoryAdjustQuantities call.",
                &["shop"],
                BATCH_BUCKETS,
            ),
            parked_adjustments: gauge(
                "wos_sync_parked_adjustments",
                "Adjustments waiting for their item's Shopify mapping.",
                &["shop"],
            ),
            sku_conflicts: gauge(
                "wos_sync_sku_conflicts",
                "SKUs carried by more than one live Shopify variant.",
                &["shop"],
            ),
            items_total: counter(
                "wos_sync_items_total",
                "WOS item writes from Shopify product events, by outcome.",
                &["shop", "outcome"],
            ),
            shopify_requests_total: counter(
                "wos_sync_shopify_requests_total",
                "Shopify Admin API requests, by operation and status.",
                &["shop", "operation", "status"],
            ),
            shopify_request_seconds: histogram(
                "wos_sync_shopify_request_seconds",
                "Shopify Admin API request duration.",
                &["shop", "operation"],
                LATENCY_BUCKETS,
            ),
            shopify_throttle_available: gauge(
                "wos_sync_shopify_throttle_available",
                "Shopify cost points available, from the last throttleStatus.",
                &["shop"],
            ),
            webhooks_total: counter(
                "wos_sync_webhooks_total",
                "Shopify webhooks received by the relay, by outcome.",
                &["topic", "outcome"],
            ),
            loop_failures_total: counter(
                "wos_sync_loop_failures_total",
                "Failed rounds of a background loop (errors and panics); the loop is restarted.",
                &["service", "loop", "shop"],
            ),
            loop_consecutive_failures: gauge(
                "wos_sync_loop_consecutive_failures",
                "Failed rounds in a row of a background loop; 0 while it is healthy.",
                &["service", "loop", "shop"],
            ),
            retention_pruned_rows_total: counter(
                "wos_sync_retention_pruned_rows_total",
                "Rows deleted by a service's retention job, by table.",
                &["service", "table"],
            ),
            outbox_publish_failures_total: counter(
                "wos_sync_outbox_publish_failures_total",
                "Outbox rows whose publish failed, by reason (unroutable, refused, unavailable).",
                &["service", "reason"],
            ),
            outbox_deferred_messages: gauge(
                "wos_sync_outbox_deferred_messages",
                "Outbox rows waiting to be tried again after their own publish failed.",
                &["service"],
            ),
            registry,
        }
    }

    /// Renders the registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_family_is_exposed_with_its_labels() {
        let metrics = Metrics::new();
        metrics
            .messages_total
            .with_label_values(&["svc", "q", "acked"])
            .inc();
        metrics
            .message_processing_seconds
            .with_label_values(&["svc", "q"])
            .observe(0.01);
        metrics
            .adjustments_total
            .with_label_values(&["s", "put", "pushed"])
            .inc();
        metrics
            .adjustment_lag_seconds
            .with_label_values(&["s"])
            .observe(0.2);
        metrics
            .push_batch_changes
            .with_label_values(&["s"])
            .observe(3.0);
        metrics.parked_adjustments.with_label_values(&["s"]).set(1);
        metrics.sku_conflicts.with_label_values(&["s"]).set(1);
        metrics
            .items_total
            .with_label_values(&["s", "created"])
            .inc();
        metrics
            .shopify_requests_total
            .with_label_values(&["s", "op", "200"])
            .inc();
        metrics
            .shopify_request_seconds
            .with_label_values(&["s", "op"])
            .observe(0.1);
        metrics
            .shopify_throttle_available
            .with_label_values(&["s"])
            .set(2000);
        metrics
            .webhooks_total
            .with_label_values(&["products/create", "accepted"])
            .inc();
        let text = metrics.render();
        for line in [
            "wos_sync_messages_total{outcome=\"acked\",queue=\"q\",service=\"svc\"} 1",
            "wos_sync_message_processing_seconds_count{queue=\"q\",service=\"svc\"} 1",
            "wos_sync_adjustments_total{outcome=\"pushed\",shop=\"s\",type=\"put\"} 1",
            "wos_sync_adjustment_lag_seconds_count{shop=\"s\"} 1",
            "wos_sync_push_batch_changes_count{shop=\"s\"} 1",
            "wos_sync_parked_adjustments{shop=\"s\"} 1",
            "wos_sync_sku_conflicts{shop=\"s\"} 1",
            "wos_sync_items_total{outcome=\"created\",shop=\"s\"} 1",
            "wos_sync_shopify_requests_total{operation=\"op\",shop=\"s\",status=\"200\"} 1",
            "wos_sync_shopify_request_seconds_count{operation=\"op\",shop=\"s\"} 1",
            "wos_sync_shopify_throttle_available{shop=\"s\"} 2000",
            "wos_sync_webhooks_total{outcome=\"accepted\",topic=\"products/create\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn outcome_labels_match_the_contract() {
        let labels: Vec<_> = [
            MessageOutcome::Acked,
            MessageOutcome::Duplicate,
            MessageOutcome::Retried,
            MessageOutcome::Parked,
            MessageOutcome::DeadLettered,
        ]
        .iter()
        .map(|o| o.as_str())
        .collect();
        assert_eq!(
            labels,
            ["acked", "duplicate", "retried", "parked", "dead_lettered"]
        );
    }
}
