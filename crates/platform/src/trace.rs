//! Trace context across the services: the W3C `traceparent`, where it is read and written.
//!
//! One trace id follows a piece of work through every service: a webhook from the relay's HTTP
//! request to item-ingest's item rows and the mapping announcements they cause, a WOS
//! transaction from its AMQP message to the pusher's batch and its Shopify call. The id is the
//! `trace_id` field of the span each delivery (and each batch push) runs in, so every log line
//! written on its behalf names it, and operators follow one id through the logs of all services.
//!
//! - **Format** ([`TraceParent`]): W3C Trace Context `version-traceid-parentid-flags`, parsed
//!   strictly (lowercase hex, version `00` exactly 55 characters, no all-zero ids, version `ff`
//!   refused; a later version read as the specification says, by its first four fields).
//!   A header that is missing or invalid starts a new trace; it never fails a message.
//! - **Messages**: the AMQP header [`HEADER`] (`traceparent`, a string). The consumer runtime
//!   [`adopt`]s a delivery's trace (writing a new one into its headers when it has none or an
//!   invalid one, so retry and dead-letter copies keep the same trace) and runs its handler in
//!   [`scope`] (the relay its request, the pusher a batch's push): the span the work runs in
//!   continues the trace, and [`current`] is that span's context, which is what the work
//!   passes on: what a handler publishes through the outbox carries it ([`stamp_json`]), as
//!   does a Shopify request sent while it runs.
//! - **Ids**: a new trace has a random trace id and parent id and the sampled flag set (every
//!   trace is recorded, in the logs). A span that continues a trace gets its own parent id
//!   ([`TraceParent::child`]: the same trace id and flags), which is the parent id the next hop
//!   sees.

use std::{fmt, future::Future, str::FromStr};

use lapin::{BasicProperties, types::FieldTable};
use tracing::Instrument;

use crate::amqp::headers::{header_str, set_str};

/// The AMQP (and HTTP) header carrying the trace context.
pub const HEADER: &str = "traceparent";

/// The version this code writes.
const VERSION: u8 = 0;
/// `sampled`: the only flag W3C defines so far.
const SAMPLED: u8 = 0x01;
/// `00-` + 32 + `-` + 16 + `-` + 2.
const VERSION_00_LEN: usize = 55;

/// A 16-byte trace id, never all zero; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// The 16 bytes (as OpenTelemetry and the OTLP protobuf carry them).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A W3C `traceparent`: the trace, the caller's span (parent id) and the trace flags.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` value was not taken (then a new trace starts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTraceParent {
    #[error("not `version-traceid-parentid-flags` in lowercase hex of the right lengths")]
    Shape,
    #[error("version ff is invalid")]
    ForbiddenVersion,
    #[error("version 00 must be exactly 55 characters")]
    Length,
    #[error("trace id is all zeros")]
    ZeroTraceId,
    #[error("parent id is all zeros")]
    ZeroParentId,
}

impl TraceParent {
    /// A new trace: random trace and parent ids, sampled.
    pub fn new_root() -> Self {
        loop {
            let (trace_id, parent_id): ([u8; 16], [u8; 8]) = (rand::random(), rand::random());
            // All zeros is invalid (and about as likely as a hash collision): draw again.
            if trace_id != [0; 16] && parent_id != [0; 8] {
                return Self {
                    trace_id: TraceId(trace_id),
                    parent_id,
                    flags: SAMPLED,
                };
            }
        }
    }

    /// The context a hop passes on: the same trace and flags, its own (new) parent id.
    pub fn child(&self) -> Self {
        let parent_id = loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                break id;
            }
        };
        Self { parent_id, ..*self }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent id as 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        hex(&self.parent_id)
    }

    /// The parent id's 8 bytes.
    pub fn parent_id_bytes(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The same trace and flags with `parent_id` (an exported span's id, never all zero).
    #[cfg(feature = "otlp")]
    pub(crate) fn with_parent_id(&self, parent_id: [u8; 8]) -> Self {
        Self { parent_id, ..*self }
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Parses a `traceparent` value as W3C Trace Context (level 1) requires; surrounding
    /// whitespace (optional whitespace of an HTTP header) is ignored.
    pub fn parse(value: &str) -> Result<Self, InvalidTraceParent> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < VERSION_00_LEN {
            return Err(InvalidTraceParent::Shape);
        }
        let version = hex_field::<1>(&bytes[0..2]).ok_or(InvalidTraceParent::Shape)?[0];
        if version == 0xff {
            return Err(InvalidTraceParent::ForbiddenVersion);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(InvalidTraceParent::Shape);
        }
        let trace_id = hex_field::<16>(&bytes[3..35]).ok_or(InvalidTraceParent::Shape)?;
        let parent_id = hex_field::<8>(&bytes[36..52]).ok_or(InvalidTraceParent::Shape)?;
        let flags = hex_field::<1>(&bytes[53..55]).ok_or(InvalidTraceParent::Shape)?[0];
        let flags = if version == VERSION {
            if bytes.len() != VERSION_00_LEN {
                return Err(InvalidTraceParent::Length);
            }
            flags
        } else {
            // A later version: its first fields as version 00 has them, more only after a
            // dash; of the flags only those this version knows.
            if bytes.len() > VERSION_00_LEN && bytes[VERSION_00_LEN] != b'-' {
                return Err(InvalidTraceParent::Shape);
            }
            flags & SAMPLED
        };
        if trace_id == [0; 16] {
            return Err(InvalidTraceParent::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(InvalidTraceParent::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        })
    }

    /// The trace of a message's headers: its `traceparent` when present and valid.
    pub fn from_headers(headers: Option<&FieldTable>) -> Option<Result<Self, InvalidTraceParent>> {
        header_str(headers, HEADER).map(Self::parse)
    }

    /// Writes this context as the `traceparent` header.
    pub fn write_to(&self, headers: &mut FieldTable) {
        set_str(headers, HEADER, self.to_string());
    }
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for TraceParent {
    /// Always version 00 (what this code speaks, whatever version it read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION:02x}-{}-{}-{:02x}",
            self.trace_id,
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// A delivery's trace: its `traceparent` when valid; otherwise a new trace, written into the
/// returned properties, so that what is done with the message (retry and dead-letter copies,
/// a stored transaction) carries the trace its log lines name.
pub fn adopt(properties: BasicProperties) -> (BasicProperties, TraceParent) {
    match TraceParent::from_headers(properties.headers().as_ref()) {
        Some(Ok(trace)) => (properties, trace),
        found => {
            let trace = TraceParent::new_root();
            if let Some(Err(err)) = found {
                tracing::debug!(error = %err, new_trace_id = %trace.trace_id(), "invalid traceparent header replaced by a new trace");
            }
            let mut headers = properties.headers().clone().unwrap_or_default();
            trace.write_to(&mut headers);
            (properties.with_headers(headers), trace)
        }
    }
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// Runs `work` in `span`, which continues `trace` (the trace of the message, request or batch
/// the work is for): [`current`] is then the span's own context, the one to pass on. When the
/// span is exported to OpenTelemetry (feature `otlp`, `[log] otlp_endpoint`), `trace` is its
/// remote parent and its OpenTelemetry span id is that context's parent id; otherwise the
/// parent id is a new random one.
pub async fn scope<F: Future>(trace: TraceParent, span: tracing::Span, work: F) -> F::Output {
    #[cfg(feature = "otlp")]
    let ours = crate::otlp::continue_trace(&span, trace).unwrap_or_else(|| trace.child());
    #[cfg(not(feature = "otlp"))]
    let ours = trace.child();
    CURRENT.scope(ours, work.instrument(span)).await
}

/// The context of the span the running task works in (a delivery's, a request's, a batch's
/// push), if any: what it passes on as `traceparent`.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|trace| *trace).ok()
}

/// Adds the [`current`] context to a JSON header object (an outbox message's) that has no
/// `traceparent` of its own. Headers copied from a message (a dead letter's) keep theirs.
pub fn stamp_json(headers: &mut serde_json::Value) {
    if let (Some(trace), Some(object)) = (current(), headers.as_object_mut()) {
        object
            .entry(HEADER)
            .or_insert_with(|| serde_json::Value::from(trace.to_string()));
    }
}

/// The context of work done for several traces at once (a push batch of several
/// transactions), and the distinct trace ids it was done for, sorted: a child of the one trace
/// they all share, else a new trace (its log lines then list the ids it joins).
pub fn joined(parents: impl IntoIterator<Item = TraceParent>) -> (TraceParent, Vec<TraceId>) {
    let mut first = None;
    let mut ids = std::collections::BTreeSet::new();
    for parent in parents {
        first.get_or_insert(parent);
        ids.insert(parent.trace_id());
    }
    let trace = match first {
        Some(parent) if ids.len() == 1 => parent.child(),
        _ => TraceParent::new_root(),
    };
    (trace, ids.into_iter().collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// `N` bytes from `2N` lowercase hex digits (W3C: uppercase is invalid).
fn hex_field<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_writes_the_w3c_example() {
        let trace = TraceParent::parse(VALID).expect("valid");
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace.parent_id(), "00f067aa0ba902b7");
        assert!(trace.sampled());
        assert_eq!(trace.to_string(), VALID);
        assert_eq!(TraceParent::parse(&format!(" {VALID}\t")), Ok(trace));
        let unsampled = TraceParent::parse(&VALID.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled());
    }

    #[test]
    fn refuses_what_w3c_calls_invalid() {
        use InvalidTraceParent::*;
        let cases = [
            ("", Shape),
            ("garbage", Shape),
            (&VALID.to_uppercase(), Shape),
            (&VALID.replace("00-4bf", "ff-4bf"), ForbiddenVersion),
            (&format!("{VALID}-extra"), Length),
            (&format!("{VALID}0"), Length),
            (&VALID[..54], Shape),
            (&VALID.replace('-', "_"), Shape),
            (
                &VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
                ZeroTraceId,
            ),
            (
                &VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
                ZeroParentId,
            ),
            (&VALID.replace("-01", "-0g"), Shape),
            (&VALID.replace("4bf9", "4bf "), Shape),
            (&VALID.replace("4bf92f35", "+bf92f35"), Shape),
        ];
        for (value, expected) in cases {
            assert_eq!(TraceParent::parse(value), Err(expected), "{value:?}");
        }
    }

    #[test]
    fn reads_a_later_version_by_its_version_00_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes-next";
        let trace = TraceParent::parse(later).expect("later versions are read");
        // Written back as version 00, with only the flags version 00 knows.
        assert_eq!(trace.to_string(), VALID);
        assert_eq!(
            TraceParent::parse(&later.replace("-09-", "-09x")),
            Err(InvalidTraceParent::Shape)
        );
    }

    #[test]
    fn children_keep_the_trace_and_get_a_new_parent() {
        let root = TraceParent::new_root();
        assert!(root.sampled());
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.parent_id(), root.parent_id());
        assert_ne!(TraceParent::new_root().trace_id(), root.trace_id());
    }

    #[test]
    fn adopt_keeps_a_valid_header_and_replaces_a_missing_or_invalid_one() {
        let mut headers = FieldTable::default();
        set_str(&mut headers, HEADER, VALID);
        set_str(&mut headers, "x-other", "kept");
        let (properties, trace) = adopt(BasicProperties::default().with_headers(headers.clone()));
        assert_eq!(trace.to_string(), VALID);
        assert_eq!(properties.headers().as_ref(), Some(&headers));

        for properties in [
            BasicProperties::default(),
            BasicProperties::default().with_headers({
                let mut invalid = headers.clone();
                set_str(&mut invalid, HEADER, "00-zz");
                invalid
            }),
        ] {
            let (properties, trace) = adopt(properties);
            let written = properties.headers().as_ref();
            assert_eq!(
                header_str(written, HEADER),
                Some(trace.to_string().as_str())
            );
            assert_ne!(trace.to_string(), VALID);
        }
        let (properties, _) = adopt(BasicProperties::default().with_headers(headers));
        assert_eq!(
            header_str(properties.headers().as_ref(), "x-other"),
            Some("kept")
        );
    }

    #[test]
    fn joined_work_continues_a_shared_trace_and_starts_one_for_several() {
        let one = TraceParent::parse(VALID).expect("valid");
        let (trace, ids) = joined([one, one.child()]);
        assert_eq!(trace.trace_id(), one.trace_id());
        assert_eq!(ids, [one.trace_id()]);

        let other = TraceParent::new_root();
        let (trace, ids) = joined([other, one, other]);
        assert_ne!(trace.trace_id(), one.trace_id());
        assert_ne!(trace.trace_id(), other.trace_id());
        let mut expected = vec![one.trace_id(), other.trace_id()];
        expected.sort();
        assert_eq!(ids, expected);

        let (_, ids) = joined([]);
        assert!(ids.is_empty());
    }

    #[tokio::test]
    async fn work_in_a_scope_passes_on_its_own_span_of_the_trace() {
        let mut untraced = serde_json::json!({});
        stamp_json(&mut untraced);
        assert_eq!(
            untraced,
            serde_json::json!({}),
            "no current trace, no header"
        );

        let trace = TraceParent::parse(VALID).expect("valid");
        let (ours, stamped, kept) = scope(trace, tracing::Span::none(), async {
            let ours = current().expect("in a scope");
            let mut fresh = serde_json::json!({"x-a": "b"});
            stamp_json(&mut fresh);
            let other = "00-11111111111111111111111111111111-2222222222222222-01";
            let mut copied = serde_json::json!({ HEADER: other });
            stamp_json(&mut copied);
            (ours, fresh, copied[HEADER].clone())
        })
        .await;
        assert_eq!(ours.trace_id(), trace.trace_id());
        assert_ne!(ours.parent_id(), trace.parent_id(), "a span of its own");
        assert_eq!(stamped[HEADER], ours.to_string());
        assert_eq!(stamped["x-a"], "b");
        assert_eq!(
            kept,
            "00-11111111111111111111111111111111-2222222222222222-01"
        );
        assert_eq!(current(), None);
    }
}
