//! The OpenTelemetry export (feature `otlp`; `cargo test -p platform --features otlp --test
//! otlp`) against an OTLP/HTTP collector in the test process: the spans arrive, in the trace of
//! the incoming `traceparent`, and what is queued when a program ends is exported before it
//! returns.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span,
};
use platform::{
    otlp::Exporter,
    settings::LogSettings,
    telemetry::LogFormat,
    trace::{self, TraceParent},
};
use prost::Message as _;
use tracing_subscriber::prelude::*;

/// An OTLP/HTTP collector: the bodies POSTed to `/v1/traces`, decoded.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Bytes>>>);

impl Collector {
    /// Serves on a free port of 127.0.0.1 (on the calling runtime); returns the base URL.
    async fn start(&self) -> String {
        let app = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(collector): State<Collector>, body: Bytes| async move {
                        collector
                            .0
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(body);
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let bodies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bodies
            .iter()
            .map(|body| ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf"))
            .flat_map(|request| request.resource_spans)
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    /// The span named `name` of the trace `trace`.
    fn span(&self, trace: &TraceParent, name: &str) -> Span {
        let spans = self.spans();
        let trace_id = trace.trace_id().to_bytes();
        spans
            .iter()
            .find(|span| span.name == name && span.trace_id == trace_id)
            .unwrap_or_else(|| panic!("no span {name} of trace {trace:?} among {spans:?}"))
            .clone()
    }
}

/// The span of a scope and a span of the work inside it reach the collector in the trace of the
/// incoming `traceparent`: the scope's span a child of the incoming parent id, the inner span a
/// child of the scope's span, whose id is the parent id the work passes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_spans_are_exported_in_the_incoming_trace() {
    let collector = Collector::default();
    let exporter = Exporter::start(&collector.start().await).expect("exporter");
    let subscriber = tracing_subscriber::registry().with(exporter.layer());
    let incoming = TraceParent::new_root();

    let passed_on = {
        // This thread's subscriber: the scope's future runs on it (awaited, not spawned).
        let _default = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("message", trace_id = %incoming.trace_id());
        trace::scope(incoming, span, async {
            tracing::info_span!("handler").in_scope(|| tracing::info!("working"));
            trace::current().expect("in a scope")
        })
        .await
    };
    assert_eq!(passed_on.trace_id(), incoming.trace_id());
    // Shutting the provider down exports what is queued; it blocks, so not on a thread of the
    // runtime the collector runs on.
    tokio::task::spawn_blocking(move || drop(exporter))
        .await
        .expect("shutdown");

    testkit::wait_until(Duration::from_secs(10), "both spans collected", || {
        let count = collector.spans().len();
        async move { count >= 2 }
    })
    .await;
    let message = collector.span(&incoming, "message");
    let handler = collector.span(&incoming, "handler");
    assert_eq!(message.parent_span_id, incoming.parent_id_bytes());
    assert_eq!(message.span_id, passed_on.parent_id_bytes());
    assert_eq!(handler.parent_span_id, message.span_id);
}

/// A program run through `platform::entry` with `[log] otlp_endpoint` exports its spans, and
/// those still queued when its work ends are sent before `run_with_tracing` returns (the batch
/// processor alone would wait seconds).
#[test]
fn a_program_exports_its_spans_and_flushes_them_when_it_ends() {
    let collector = Collector::default();
    let server = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = server.block_on(collector.start());
    let log = LogSettings {
        format: LogFormat::Json,
        otlp_endpoint: endpoint,
    };
    let incoming = TraceParent::new_root();

    let passed_on = platform::entry::run_with_tracing(&log, async {
        let span = tracing::info_span!("message", trace_id = %incoming.trace_id());
        Ok(trace::scope(incoming, span, async { trace::current() }).await)
    })
    .expect("ran")
    .expect("in a scope");

    // No waiting: run_with_tracing returned after the exporter's shutdown sent the batch and
    // the collector answered.
    let message = collector.span(&incoming, "message");
    assert_eq!(message.span_id, passed_on.parent_id_bytes());
    assert_eq!(message.parent_span_id, incoming.parent_id_bytes());
}
