-- One row per follower (projection or relay): the position of the last event it has applied.
-- A follower updates its row in the same transaction as its read-model rows, so an event is
-- applied exactly once even if the process dies at any point. The row is locked FOR UPDATE while a
-- batch is applied, so several instances of harden can run the same follower safely.
CREATE TABLE follower_checkpoints
(
    name       text PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    global_id  bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
