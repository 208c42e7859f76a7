-- Sharing KV records (the Share aggregate) and the key epochs that shares follow.
--
-- A record's versions carry the life they belong to (the version that life began at) and the key
-- epoch (the version their data key began at): updates keep the key, a rotation after a revocation
-- starts a new epoch, a new life starts both. Rows written before this migration have 0 for both.
ALTER TABLE kv_records ADD COLUMN life bigint NOT NULL DEFAULT 0;
ALTER TABLE kv_records ADD COLUMN key_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE kv_versions ADD COLUMN key_epoch bigint NOT NULL DEFAULT 0;

-- The shares projection: the owner's outgoing shares of a record and each recipient's inbox. Only
-- ciphertext (the alias, encrypted to the recipient) and ids: the wraps stay in the events and are
-- read from the Share aggregate when the recipient opens the share.
CREATE TABLE kv_shares
(
    share_id        uuid PRIMARY KEY,
    org_id          uuid        NOT NULL,
    owner_id        uuid        NOT NULL,
    recipient_id    uuid        NOT NULL,
    key_name        text COLLATE "C" NOT NULL,
    -- The life of the record shared: a record deleted and written again is not shared.
    life            bigint      NOT NULL,
    permission      text        NOT NULL,
    encrypted_alias text        NOT NULL,
    expires_at      timestamptz,
    -- active, revoked (by the owner), removed (by the recipient), ended (the record was deleted).
    state           text        NOT NULL,
    -- The newest key epoch wrapped for this share: an ended share whose newest epoch is the record's
    -- current one means the record's key is still one a former recipient held (rotation pending).
    max_epoch       bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    ended_at        timestamptz
);

CREATE INDEX kv_shares_inbox ON kv_shares (recipient_id, created_at) WHERE state = 'active';
CREATE INDEX kv_shares_by_record ON kv_shares (owner_id, key_name);
