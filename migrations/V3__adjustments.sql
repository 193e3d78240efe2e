-- Dead letters written by a background task (not while handling a message) go through the outbox
-- too, and need the source message's headers and content type.
ALTER TABLE outbox
    ADD COLUMN headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN content_type text  NOT NULL DEFAULT 'application/json';

-- Every WOS transaction the adjustment-pusher accepted, once per (shop, transaction_id): the
-- pipeline's idempotency key. The body and headers are kept to dead-letter it later, byte for
-- byte, if Shopify rejects its adjustment or its item is never mapped.
CREATE TABLE wos_transactions (
    shop_domain    text        NOT NULL,
    transaction_id text        NOT NULL,
    kind           text        NOT NULL,
    sku            text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    content_digest text        NOT NULL,
    body           bytea       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, transaction_id)
);

-- One row per Shopify change a transaction produced (a move across locations makes two).
--   parked  -> the item has no inventory_item_id yet
--   pending -> ready to be batched
--   batched -> in push_batches row batch_id
--   pushed  -> Shopify applied the batch
--   dead    -> dead-lettered (rejected, unmapped, exhausted); `error` says why
CREATE TABLE adjustments (
    id                bigserial   PRIMARY KEY,
    shop_domain       text        NOT NULL,
    transaction_id    text        NOT NULL,
    kind              text        NOT NULL,
    sku               text        NOT NULL,
    location_id       bigint      NOT NULL,
    delta             bigint      NOT NULL,
    reason            text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    state             text        NOT NULL CHECK (state IN ('parked', 'pending', 'batched', 'pushed', 'dead')),
    inventory_item_id bigint,
    batch_id          bigint,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (shop_domain, transaction_id) REFERENCES wos_transactions (shop_domain, transaction_id)
);
CREATE INDEX adjustments_pending ON adjustments (shop_domain, id) WHERE state = 'pending';
CREATE INDEX adjustments_parked ON adjustments (shop_domain, sku) WHERE state = 'parked';
CREATE INDEX adjustments_by_batch ON adjustments (batch_id);
CREATE INDEX adjustments_by_transaction ON adjustments (shop_domain, transaction_id);

-- One row per inventoryAdjustQuantities call, persisted with its idempotency key and exact
-- variables BEFORE it is sent: an unknown outcome is resent unchanged with the same key.
--   open    -> to be sent (again); lease_until keeps other replicas off while one sends it
-- uncertain_attempts counts the attempts that may have been applied (sent, no definite answer):
-- a batch given up with none of those is safe to re-batch; with some, it is `exhausted`.
--   applied -> Shopify answered with the adjustment group (or a no-op)
--   failed  -> Shopify refused it; nothing was applied; its adjustments moved on
CREATE TABLE push_batches (
    id                  bigserial   PRIMARY KEY,
    shop_domain         text        NOT NULL,
    reason              text        NOT NULL,
    idempotency_key     text        NOT NULL,
    variables           jsonb       NOT NULL,
    change_count        integer     NOT NULL,
    state               text        NOT NULL CHECK (state IN ('open', 'applied', 'failed')),
    attempts            integer     NOT NULL DEFAULT 0,
    uncertain_attempts  integer     NOT NULL DEFAULT 0,
    first_sent_at       timestamptz,
    not_before          timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    adjustment_group_id text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz
);
CREATE INDEX push_batches_open ON push_batches (shop_domain, id) WHERE state = 'open';
