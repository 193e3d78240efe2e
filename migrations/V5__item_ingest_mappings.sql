-- item-ingest (issue 9): event kinds in versions, descriptive fields that may be unknown.

-- The kind of the event a version comes from (0 = products/create, 1 = anything later): at the
-- same updated_at and X-Shopify-Triggered-At, a create is older than an update. Rows written
-- before this column existed count as updates, so a same-second create never undoes them.
ALTER TABLE shopify_variants ADD COLUMN version_kind smallint NOT NULL DEFAULT 1;
ALTER TABLE shopify_products ADD COLUMN version_kind smallint NOT NULL DEFAULT 1;

-- A product title that does not parse is unknown, not fatal: a variant first seen with one has
-- no title yet.
ALTER TABLE shopify_variants ALTER COLUMN product_title DROP NOT NULL;
