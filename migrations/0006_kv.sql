-- The KV read model, fed by the "kv" follower: one row per (owner, key name) with the current
-- version and whether it is live, and one row per version with its ciphertext and the record's
-- wrapped data key. GET /kv, GET /kv/{key}, ?version=N and /versions read these tables.
-- Everything here is ciphertext or metadata: the Backend never holds a plaintext value.
-- Key names use the "C" collation: listings page by key name in byte order, the same on every
-- server whatever its locale.
CREATE TABLE kv_records
(
    owner_id   uuid        NOT NULL,
    key_name   text COLLATE "C" NOT NULL,
    org_id     uuid        NOT NULL,
    version    bigint      NOT NULL,
    live       boolean     NOT NULL,
    -- When the current life of the record began (a write after a delete starts a new life).
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (owner_id, key_name)
);

-- The listing: a user's live keys in name order, paged by key name.
CREATE INDEX kv_records_live_by_owner ON kv_records (owner_id, key_name) WHERE live;

CREATE TABLE kv_versions
(
    owner_id   uuid        NOT NULL,
    key_name   text        NOT NULL,
    version    bigint      NOT NULL,
    ciphertext text        NOT NULL,
    wrap_ecc   text        NOT NULL,
    wrap_kyber text        NOT NULL,
    writer_id  uuid,
    created_at timestamptz NOT NULL,
    -- Set when the life this version belongs to was deleted; such versions are history only.
    deleted_at timestamptz,
    PRIMARY KEY (owner_id, key_name, version)
);
