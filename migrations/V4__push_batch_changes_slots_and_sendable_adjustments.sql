-- adjustment-pusher: batches carry the exact adjustments behind each change, one open batch
-- per shop is enforced by a unique index, and a pending or batched adjustment always has the
-- inventory item it goes to.

-- The exact list behind `variables.changes`: element i is
-- {"inventory_item_id", "location_id", "delta", "adjustments": [adjustment ids]} of change i
-- (model::batch::Change). Shopify's errors name change indexes; this is what they point at.
ALTER TABLE push_batches ADD COLUMN changes jsonb NOT NULL DEFAULT '[]'::jsonb;

-- Open batches formed before this migration: rebuild their lists from the gids they sent.
UPDATE push_batches b SET changes = coalesce((
    SELECT jsonb_agg(jsonb_build_object(
               'inventory_item_id', coalesce(substring(c.value->>'inventoryItemId' FROM '[0-9]+$')::bigint, 0),
               'location_id', coalesce(substring(c.value->>'locationId' FROM '[0-9]+$')::bigint, 0),
               'delta', (c.value->>'delta')::bigint,
               'adjustments', coalesce((
                   SELECT jsonb_agg(a.id ORDER BY a.id) FROM adjustments a
                   WHERE a.batch_id = b.id AND a.state = 'batched'
                     AND 'gid://shopify/InventoryItem/' || a.inventory_item_id = c.value->>'inventoryItemId'
                     AND 'gid://shopify/Location/' || a.location_id = c.value->>'locationId'),
                   '[]'::jsonb))
           ORDER BY c.ordinality)
    FROM jsonb_array_elements(b.variables->'changes') WITH ORDINALITY AS c(value, ordinality)),
    '[]'::jsonb)
WHERE b.state = 'open';

-- At most one open batch per (shop, slot). The pusher forms batches in slot 0 only, so a shop
-- has at most one open batch; letting N batches be in flight per shop means using slots
-- 0..N-1, and the index still guarantees at most N, whatever the replicas do.
ALTER TABLE push_batches ADD COLUMN slot smallint NOT NULL DEFAULT 0 CHECK (slot >= 0);
-- Shops that raced into several open batches before: each keeps its own slot until sent.
UPDATE push_batches b SET slot = r.n - 1
FROM (SELECT id, row_number() OVER (PARTITION BY shop_domain ORDER BY id) AS n
      FROM push_batches WHERE state = 'open') r
WHERE b.id = r.id AND r.n > 1;
CREATE UNIQUE INDEX push_batches_one_open_per_slot ON push_batches (shop_domain, slot)
    WHERE state = 'open';

-- An adjustment Shopify refused as part of a sum goes out as a change of its own.
ALTER TABLE adjustments ADD COLUMN solo boolean NOT NULL DEFAULT false;

-- A pending or batched adjustment without a positive inventory item cannot be sent; such rows
-- (WOS wrote 0 or a negative id into `items`, or a NULL slipped in) wait for a mapping.
UPDATE adjustments SET state = 'parked', batch_id = NULL, updated_at = now()
WHERE state IN ('pending', 'batched') AND (inventory_item_id IS NULL OR inventory_item_id <= 0);
-- (A CHECK passes when it is NULL: `IS NOT NULL` says what `> 0` alone would not.)
ALTER TABLE adjustments ADD CONSTRAINT adjustments_sendable_have_an_inventory_item
    CHECK (state NOT IN ('pending', 'batched')
           OR (inventory_item_id IS NOT NULL AND inventory_item_id > 0));

-- The sweeps release and expire parked adjustments in chunks, oldest first.
CREATE INDEX adjustments_parked_by_age ON adjustments (created_at) WHERE state = 'parked';
