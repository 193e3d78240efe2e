-- WOS items (CONTRACT 5): one row per (shop, SKU), read and written by WOS too.
CREATE TABLE items (
    shop_domain       text        NOT NULL,
    sku               text        NOT NULL,
    description       text,
    barcode           text,
    vendor            text,
    product_type      text,
    price             numeric,
    inventory_item_id bigint,
    custom_fields     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, sku)
);
CREATE INDEX items_by_inventory_item ON items (shop_domain, inventory_item_id);

-- item-ingest's mirror of every Shopify variant it has seen; the SKU mapping is derived from it.
-- (`version`, `version_triggered_at`) orders the events applied to the variant: the payload's
-- updated_at, then X-Shopify-Triggered-At for events of the same second. Older events are stale.
CREATE TABLE shopify_variants (
    shop_domain       text        NOT NULL,
    variant_id        bigint      NOT NULL,
    product_id        bigint      NOT NULL,
    sku               text,
    inventory_item_id bigint,
    product_title     text        NOT NULL,
    variant_title     text,
    barcode           text,
    price             text,
    vendor            text,
    product_type      text,
    created_at        timestamptz,
    version           timestamptz NOT NULL,
    version_triggered_at timestamptz,
    deleted           boolean     NOT NULL DEFAULT false,
    mirrored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, variant_id)
);
CREATE INDEX shopify_variants_by_product ON shopify_variants (shop_domain, product_id);
CREATE INDEX shopify_variants_live_by_sku ON shopify_variants (shop_domain, sku) WHERE NOT deleted;
CREATE INDEX shopify_variants_by_inventory_item ON shopify_variants (shop_domain, inventory_item_id);

-- One row per product: the newest event's version, its complete variant listing (when an event
-- gave one), and whether products/delete arrived (terminal).
CREATE TABLE shopify_products (
    shop_domain     text        NOT NULL,
    product_id      bigint      NOT NULL,
    version         timestamptz NOT NULL,
    version_triggered_at timestamptz,
    listed_variants bigint[],
    deleted         boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (shop_domain, product_id)
);

-- The transactional outbox: messages written in the same transaction as the state change they
-- announce, published (with confirms) after commit and deleted once the broker confirmed.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    exchange    text        NOT NULL,
    routing_key text        NOT NULL,
    message_id  text        NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
