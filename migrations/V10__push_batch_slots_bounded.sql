-- Several batches in flight per shop (issue 11, point 4): the pusher forms batches in slots
-- 0..batches_in_flight-1, and push_batches_one_open_per_slot (V4) keeps one open batch per
-- (shop, slot). This bounds the slots themselves, so no configuration of any replica can put
-- more than 16 batches of a shop in flight (adjustment_pusher.batches_in_flight is at most 16).
-- NOT VALID: only new and updated rows are checked (a shop that raced into many open batches
-- before V4 may have a settled batch with a higher slot).
ALTER TABLE push_batches ADD CONSTRAINT push_batches_slot_bounded CHECK (slot < 16) NOT VALID;
