-- The rows a month of traffic leaves, at their real ages (scripts/measure-retention.sh):
-- :transactions WOS transactions received evenly over :days days, settled the way the pusher
-- settles them (one adjustment each, a tenth of them moves with two; batches of five
-- transactions, applied), with the bodies and batch variables the services write; a hundred
-- dead and five hundred parked transactions (kept whatever their age); replay records;
-- item-ingest's inbox (a fifth as many webhooks as transactions), a live catalog with its
-- items, and deleted products with their variants.
\set ON_ERROR_STOP on
\set shop '''acme.myshopify.com'''

BEGIN;

-- WOS transactions, oldest first: transaction n arrives at (n / :transactions) of the period.
INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, content_digest,
                              body, headers, received_at)
SELECT :shop, format('tx-%s', lpad(n::text, 8, '0')), kind, sku, at - interval '2 seconds',
       md5(n::text) || md5((n + 1)::text),
       convert_to(json_build_object(
           'transaction_id', format('tx-%s', lpad(n::text, 8, '0')),
           'shop_domain', :shop, 'type', kind, 'sku', sku, 'warehouse', 'MAIN',
           'location', format('A-%s-%s', lpad((n % 40)::text, 2, '0'), lpad((n % 7)::text, 2, '0')),
           'quantity', 1 + n % 12,
           'to_warehouse', CASE WHEN kind = 'move' THEN 'EAST' END,
           'to_location', CASE WHEN kind = 'move' THEN 'B-01-01' END,
           'occurred_at', to_char(at - interval '2 seconds', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'user', format('picker-%s', n % 50))::text, 'UTF8'),
       '{"x-wos-source": "wms-1"}'::jsonb, at
FROM (SELECT n,
             now() - make_interval(secs => :days * 86400.0 * (1 - n::float8 / :transactions)) AS at,
             CASE WHEN n % 10 = 0 THEN 'move' ELSE 'put' END AS kind,
             format('SKU-%s', lpad((n % 60000)::text, 6, '0')) AS sku
      FROM generate_series(1, :transactions) AS n) t;

-- Their adjustments: pushed in batches of five transactions (batch id = (n - 1) / 5 + 1), except
-- the dead and the parked ones.
INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, reason,
                         occurred_at, state, inventory_item_id, batch_id, error, created_at,
                         updated_at)
SELECT t.shop_domain, t.transaction_id, t.kind,
       -- A parked transaction's item is not in WOS yet (else the sweep would release it).
       CASE WHEN state = 'parked' THEN 'NEW-' || t.sku ELSE t.sku END,
       side.location, side.sign * (1 + n % 12),
       CASE WHEN t.kind = 'move' THEN 'movement_updated' ELSE 'received' END, t.occurred_at,
       state, CASE WHEN state = 'parked' THEN NULL ELSE 44000000000 + n % 60000 END,
       CASE WHEN state = 'pushed' THEN (n - 1) / 5 + 1 END,
       CASE WHEN state = 'dead' THEN 'INVALID_INVENTORY_ITEM: The specified inventory item could not be found.' END,
       t.received_at, t.received_at + interval '3 seconds'
FROM (SELECT *, substring(transaction_id FROM 4)::bigint AS n FROM wos_transactions) t
CROSS JOIN LATERAL (
    SELECT CASE WHEN t.n % (:transactions / 200) = 0 AND t.n <= :transactions / 2 THEN 'dead'
                WHEN t.n > :transactions - 500 THEN 'parked'
                ELSE 'pushed' END AS state) s
CROSS JOIN LATERAL (
    VALUES (68845568042::bigint, CASE WHEN t.kind = 'move' THEN -1 ELSE 1 END)
    UNION ALL
    SELECT 68845600810, 1 WHERE t.kind = 'move') AS side (location, sign);

-- The batches: the exact variables sent and the adjustments behind each change.
INSERT INTO push_batches (id, shop_domain, reason, idempotency_key, variables, changes,
                          change_count, state, attempts, uncertain_attempts, first_sent_at,
                          not_before, adjustment_group_id, created_at, completed_at)
SELECT b.batch_id, :shop, 'received', md5(b.batch_id::text)::uuid::text,
       jsonb_build_object(
           'name', 'available', 'reason', 'received',
           'referenceDocumentUri', format('wos-sync://push-batch/acme.myshopify.com/%s', b.batch_id),
           'changes', b.gql_changes),
       b.changes, b.change_count, 'applied', 1, 0, b.first_at, b.first_at,
       format('gid://shopify/InventoryAdjustmentGroup/%s', 90000000000 + b.batch_id),
       b.first_at, b.last_at
FROM (SELECT batch_id, min(created_at) AS first_at, max(updated_at) AS last_at,
             count(*)::int AS change_count,
             jsonb_agg(jsonb_build_object(
                 'delta', delta,
                 'inventoryItemId', format('gid://shopify/InventoryItem/%s', inventory_item_id),
                 'locationId', format('gid://shopify/Location/%s', location_id),
                 'changeFromQuantity', NULL) ORDER BY id) AS gql_changes,
             jsonb_agg(jsonb_build_object(
                 'inventory_item_id', inventory_item_id, 'location_id', location_id,
                 'delta', delta, 'adjustments', jsonb_build_array(id)) ORDER BY id) AS changes
      FROM adjustments WHERE batch_id IS NOT NULL GROUP BY batch_id) b;
SELECT setval(pg_get_serial_sequence('push_batches', 'id'), (SELECT max(id) FROM push_batches));

-- Replay records of a thousand transactions (dead-lettered once, replayed, pushed).
INSERT INTO dead_letter_replays (shop_domain, transaction_id, failed_at, kind, pending, parked,
                                 replayed_at)
SELECT shop_domain, transaction_id, to_char(received_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       'rejected', 1, 0, received_at + interval '1 hour'
FROM wos_transactions
WHERE substring(transaction_id FROM 4)::bigint % (:transactions / 1000) = 1;

-- item-ingest: a webhook for every fifth transaction, at the same pace.
INSERT INTO inbox (consumer, message_id, processed_at)
SELECT 'item-ingest', format('acme.myshopify.com/%s', gen_random_uuid()),
       now() - make_interval(secs => :days * 86400.0 * (1 - n::float8 / (:transactions / 5)))
FROM generate_series(1, :transactions / 5) AS n;

-- The catalog: 20,000 live products of three variants with their WOS items, and 2,000 products
-- deleted over the period (a tombstone and three deleted variants each).
INSERT INTO shopify_products (shop_domain, product_id, version, listed_variants, deleted)
SELECT :shop, p, CASE WHEN p > 20000 THEN now() - make_interval(days => :days) * ((p - 20000) / 2000.0)
                      ELSE now() - interval '40 days' END,
       ARRAY[p * 10 + 1, p * 10 + 2, p * 10 + 3], p > 20000
FROM generate_series(1, 22000) AS p;
INSERT INTO shopify_variants (shop_domain, variant_id, product_id, sku, inventory_item_id,
                              product_title, variant_title, barcode, price, vendor, product_type,
                              created_at, version, deleted, mirrored_at)
SELECT :shop, p * 10 + v, p, format('SKU-%s', lpad(((p - 1) * 3 + v - 1)::text, 6, '0')),
       43000000000 + p * 10 + v, format('Product %s', p), format('Size %s', v),
       format('0%s', 400000000000 + p * 10 + v), '19.99', 'Acme', 'Shirts',
       now() - interval '60 days', pr.version, pr.deleted,
       CASE WHEN pr.deleted THEN pr.version ELSE now() - interval '40 days' END
FROM shopify_products pr, generate_series(1, 3) AS v, LATERAL (SELECT pr.product_id AS p) x;
INSERT INTO items (shop_domain, sku, description, barcode, vendor, product_type, price,
                   inventory_item_id)
SELECT shop_domain, sku, product_title || ' - ' || variant_title, barcode, vendor, product_type,
       price::numeric, inventory_item_id
FROM shopify_variants WHERE NOT deleted;

COMMIT;
ANALYZE;
