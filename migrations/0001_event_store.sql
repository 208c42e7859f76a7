-- The event store. postgres-es writes the first seven columns and names them in every statement,
-- so the three columns after them are filled by their defaults on every append.
--
-- global_id   a total order of appends, for humans, audit and NATS message ids.
-- tx_id       the appending transaction. Followers read in (tx_id, global_id) order and only rows
--             with tx_id below the oldest transaction still running (pg_snapshot_xmin). A bare
--             "global_id > last seen" cursor would skip a transaction that took its identity values
--             early but committed late; the xmin bound makes such a row impossible to overtake.
-- recorded_at the commit-side clock; read models take their timestamps from it so a replay rebuilds
--             exactly the same rows.
--
-- payload and metadata are jsonb: triggers and projections read fields out of them.
CREATE TABLE events
(
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL CHECK (sequence >= 0),
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    global_id      bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The followers' read order. Unique because global_id alone is.
CREATE UNIQUE INDEX events_follow_order ON events (tx_id, global_id);
