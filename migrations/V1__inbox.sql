-- The inbox: one row per message a consumer has applied. A handler inserts the message's id in
-- the same transaction as its state change, so a redelivered message (crash between commit and
-- ack, broker redelivery, publisher duplicate) finds its row and is acknowledged as a duplicate.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
