-- item-ingest (issue 9): event kinds in versions, descriptive fields that may be unknown.

-- The kind of the event a version comes from (0 = products/create, 1 = anything later): at the
-- same updated_at and X-Shopify-Triggered-At, a create is older than an update. Rows written
-- before this column existed count as updates, so a same-second create never undoes them.
ALTER TABLE shopify_variants ADD COLUMN version_kind smallint NOT NULL DEFAULT 1;
ALTER TABLE shopify_products ADD COLUMN version_kind smallint NOT NULL DEFAULT 1;

-- A product title that does not parse is unknown, not fatal: a variant first seen with one has
-- no title yet.
ALTER TABLE shopify_variants ALTER COLUMN product_title DROP NOT NULL;

-- Products with more than 100 variants: a webhook details 100 and lists the rest with their
-- updated_at. listed_updated_at is the newest listing time whose state the mirror holds.
ALTER TABLE shopify_variants ADD COLUMN listed_updated_at timestamptz;

-- Variants item-ingest must read from the shop's Admin API (listed as changed beyond the
-- detailed ones, or unknown). While a variant has a row here it is no mapping candidate.
-- A row is claimed with a lease (replicas read disjoint rows); `generation` changes when a
-- newer listing asks again, so a read that started before does not complete the newer request.
CREATE SEQUENCE variant_refresh_generation;
CREATE TABLE variant_refreshes (
    shop_domain     text        NOT NULL,
    variant_id      bigint      NOT NULL,
    product_id      bigint      NOT NULL,
    listed_at       timestamptz,
    generation      bigint      NOT NULL DEFAULT nextval('variant_refresh_generation'),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    PRIMARY KEY (shop_domain, variant_id)
);
CREATE INDEX variant_refreshes_by_product ON variant_refreshes (shop_domain, product_id);
CREATE INDEX variant_refreshes_due ON variant_refreshes (shop_domain, next_attempt_at);

-- The SKUs an operator should look at, and why (shared_sku, unverified, not_carried,
-- awaiting_shopify): written for a SKU whenever item-ingest settles it, so counting them is
-- cheap after every webhook; rebuilt from the mirror and items at start and periodically (which
-- also catches mappings WOS wrote since).
CREATE TABLE sku_conflicts (
    shop_domain text NOT NULL,
    sku         text NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (shop_domain, sku, reason)
);
