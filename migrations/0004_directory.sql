-- The org directory read model, fed by the "directory" follower. GET routes for orgs, users and
-- public profiles read these tables, never the aggregates. Timestamps come from the events'
-- recorded_at, so a replay rebuilds identical rows.
CREATE TABLE directory_orgs
(
    org_id     uuid PRIMARY KEY,
    name       text        NOT NULL,
    plan       text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX directory_orgs_by_creation ON directory_orgs (created_at, org_id);

-- Users. The global admin is here too, with no org (org_id NULL), so GET /users/me reads one table;
-- org listings never show it. The sealed private keys are ciphertext made by the Proxy; only
-- GET /users/me returns them, to their owner.
CREATE TABLE directory_users
(
    user_id            uuid PRIMARY KEY,
    org_id             uuid,
    name               text        NOT NULL,
    role               text        NOT NULL,
    active             boolean     NOT NULL,
    public_key_ecc     text,
    public_key_kyber   text,
    sealed_key_ecc     text,
    sealed_key_kyber   text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

CREATE INDEX directory_users_by_org ON directory_users (org_id, created_at, user_id);
