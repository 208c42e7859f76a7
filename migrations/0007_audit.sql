-- The audit view, fed by the "audit" follower: one entry per audited event, numbered per org, each
-- carrying the hash of the previous entry of its org and its own hash over both (a hash chain).
-- `harden audit verify` recomputes the chain from the event store and reports the first entry
-- that differs, so an edited event or an edited entry is found.
--
-- scope 'kv' holds the KV create/update/delete entries GET /audit shows by default; 'admin' holds
-- the other audited actions (orgs, plans, users, keys), shown with ?scope=all.
CREATE TABLE audit_entries
(
    org_id      uuid        NOT NULL,
    seq         bigint      NOT NULL,
    event_id    bigint      NOT NULL,
    scope       text        NOT NULL,
    action      text        NOT NULL,
    key_name    text,
    version     bigint,
    user_id     uuid,
    subject_id  text,
    details     jsonb,
    recorded_at timestamptz NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE INDEX audit_entries_by_key ON audit_entries (org_id, key_name, seq);
CREATE INDEX audit_entries_by_user ON audit_entries (org_id, user_id, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (org_id, recorded_at, seq);

-- audit verify reads one org's events in follower order.
CREATE INDEX events_by_org ON events ((metadata ->> 'org_id'), tx_id, global_id);
