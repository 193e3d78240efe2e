-- Retention and the outbox's bad rows (issue 13, points 11 and 12).

-- Each service prunes what it owns in chunks, oldest first (platform::retention); these indexes
-- let a chunk find its rows without scanning the table.
CREATE INDEX inbox_by_age ON inbox (consumer, processed_at);
CREATE INDEX wos_transactions_by_age ON wos_transactions (received_at, shop_domain, transaction_id);
CREATE INDEX push_batches_settled_by_age ON push_batches (completed_at, id) WHERE state <> 'open';
CREATE INDEX shopify_variants_deleted_by_age ON shopify_variants (mirrored_at) WHERE deleted;
CREATE INDEX shopify_products_deleted_by_version ON shopify_products (version) WHERE deleted;
CREATE INDEX mapping_backfill_runs_finished ON mapping_backfill_runs (finished_at)
    WHERE finished_at IS NOT NULL;

-- `wos-sync dlq purge` of a push-loop dead letter: its dead adjustments will never be pushed.
-- They stay (the transaction id keeps being recognised) until the retention window has passed.
ALTER TABLE adjustments DROP CONSTRAINT adjustments_state_check;
ALTER TABLE adjustments ADD CONSTRAINT adjustments_state_check
    CHECK (state IN ('parked', 'pending', 'batched', 'pushed', 'dead', 'discarded'));

-- A row the broker does not take (its queue or exchange is missing, the broker refuses it) is
-- put aside with a backoff of its own, and the rows after it are published meanwhile.
ALTER TABLE outbox
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error      text;
CREATE INDEX outbox_deferred ON outbox (next_attempt_at) WHERE attempts > 0;
