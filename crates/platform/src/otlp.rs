//! OpenTelemetry export of the spans (feature `otlp`): OTLP over HTTP/protobuf to the collector
//! of `[log] otlp_endpoint`, and the link between [`crate::trace`]'s W3C context and the
//! exported spans.
//!
//! - **Exporter** ([`Exporter`]): an SDK tracer provider with a batch span processor (its own
//!   thread) and the OTLP/HTTP exporter on reqwest's blocking client, built after rustls' `ring`
//!   provider is installed (reqwest is built without a TLS provider of its own and panics in
//!   `build()` without one). Dropping the [`Exporter`] shuts the provider down, which exports what
//!   is still queued.
//! - **Joining the trace** ([`continue_trace`]): the span a delivery, request or batch runs in
//!   gets the incoming `traceparent` as its OpenTelemetry (remote) parent, and the context the
//!   work passes on is that exported span's own id, so every parent id a service sends is a span
//!   the collector has.

use opentelemetry::{
    Context,
    trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    },
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource,
    trace::{SdkTracer, SdkTracerProvider},
};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::trace::TraceParent;

/// The path of the trace signal under the collector's base URL (the OTLP/HTTP specification's,
/// as `OTEL_EXPORTER_OTLP_ENDPOINT` is resolved).
const TRACES_PATH: &str = "/v1/traces";

/// The instrumentation scope of every exported span.
const SCOPE: &str = "wos-shopify-sync";

/// The running span exporter; dropping it flushes what is queued and stops it.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to the collector at `endpoint` (its base URL, `http://collector:4318`).
    /// The service name is `OTEL_SERVICE_NAME` when set, else the program's file name.
    pub fn start(endpoint: &str) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|err| anyhow::anyhow!("OTLP exporter to {endpoint}: {err}"))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(program_name());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    /// The tracing layer that turns spans into OpenTelemetry spans of this exporter.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(SCOPE))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "OpenTelemetry exporter shutdown");
        }
    }
}

/// The trace signal's URL under the collector's base URL.
fn traces_url(endpoint: &str) -> String {
    format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'))
}

/// `item-ingest` for `/usr/local/bin/item-ingest`.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_stem)
        .map_or_else(
            || SCOPE.to_owned(),
            |name| name.to_string_lossy().into_owned(),
        )
}

/// Makes `span` continue `trace` as an OpenTelemetry span and returns that span's context (the
/// trace id of `trace`, the span's own id as parent id): what the work passes on. `None` when
/// the span is not exported (no OpenTelemetry layer, or the span is disabled).
pub(crate) fn continue_trace(span: &tracing::Span, trace: TraceParent) -> Option<TraceParent> {
    let flags = if trace.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(trace.trace_id().to_bytes()),
        SpanId::from_bytes(trace.parent_id_bytes()),
        flags,
        true,
        TraceState::NONE,
    );
    span.set_parent(Context::new().with_remote_span_context(remote))
        .ok()?;
    // Starts the span (now, as the work starts), which gives it its id.
    let started = span.context();
    let ours = started.span().span_context().clone();
    let same_trace = ours.trace_id().to_bytes() == trace.trace_id().to_bytes();
    (ours.is_valid() && same_trace).then(|| trace.with_parent_id(ours.span_id().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_to_the_base() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
    }

    #[test]
    fn without_an_exported_span_the_trace_is_not_continued() {
        assert_eq!(
            continue_trace(&tracing::Span::none(), TraceParent::new_root()),
            None
        );
    }
}
