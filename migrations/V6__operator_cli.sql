-- The operator CLI's own state (wos-sync).

-- `wos-sync dlq replay` of a push-loop dead letter (rejected, exhausted, unmapped): one row per
-- dead-lettering of a transaction, identified by the dead letter's `x-failed-at`, written in the
-- same transaction that returned the transaction's dead adjustments to pending (or parked). A
-- second replay of the same dead letter (an outbox duplicate of it, or a replay interrupted
-- before the DLQ message was removed) finds the row and changes nothing.
CREATE TABLE dead_letter_replays (
    shop_domain    text        NOT NULL,
    transaction_id text        NOT NULL,
    failed_at      text        NOT NULL,
    kind           text        NOT NULL,
    pending        integer     NOT NULL,
    parked         integer     NOT NULL,
    replayed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, transaction_id, failed_at)
);

-- `wos-sync backfill-mappings`: one run per shop at a time, and what it found for each SKU, so
-- an interrupted run resumes with the SKUs it has not looked up yet.
CREATE TABLE mapping_backfill_runs (
    id          bigserial   PRIMARY KEY,
    shop_domain text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE UNIQUE INDEX mapping_backfill_runs_one_open ON mapping_backfill_runs (shop_domain)
    WHERE finished_at IS NULL;

--   filled         -> exactly one Shopify variant carries the SKU: the item now points at it
--   ambiguous      -> several do: reported, not filled
--   not_found      -> none does
--   already_mapped -> the item got a mapping meanwhile (item-ingest, WOS): left alone
CREATE TABLE mapping_backfill_results (
    run_id            bigint      NOT NULL REFERENCES mapping_backfill_runs (id),
    sku               text        NOT NULL,
    outcome           text        NOT NULL
        CHECK (outcome IN ('filled', 'ambiguous', 'not_found', 'already_mapped')),
    inventory_item_id bigint,
    candidates        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    checked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, sku)
);
