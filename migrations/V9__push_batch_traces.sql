-- Trace context of a push batch (issue 14, point 6): the `traceparent` its Shopify call sends
-- (the same on every resend of the batch) and the trace ids of the WOS transactions whose
-- adjustments it carries, so an operator following a transaction's trace id finds its batch.
ALTER TABLE push_batches
    ADD COLUMN traceparent      text,
    ADD COLUMN source_trace_ids text[] NOT NULL DEFAULT '{}';
