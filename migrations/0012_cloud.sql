-- The Cloud API (dashboard): onboarded orgs, their members and invites, their API keys, and the
-- identity provider's users.

-- 1. Read models, fed by the "cloud" follower from Org and User events. Timestamps come from the
--    events' recorded_at, so a replay rebuilds identical rows.
CREATE TABLE cloud_orgs
(
    org_id        uuid PRIMARY KEY,
    name          text        NOT NULL,
    slug          text        NOT NULL,
    billing_email text,
    created_by    text        NOT NULL,
    -- The org's project: the harden user that holds the org's Cloud API keys.
    project_id    uuid        NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);

CREATE INDEX cloud_orgs_by_creator ON cloud_orgs (created_by);

-- Active memberships only: a removed member's row goes, and a deleted org's rows go with it.
CREATE TABLE cloud_members
(
    org_id    uuid        NOT NULL,
    identity  text        NOT NULL,
    user_id   uuid        NOT NULL,
    role      text        NOT NULL,
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, identity)
);

CREATE INDEX cloud_members_by_identity ON cloud_members (identity, joined_at);

CREATE TABLE cloud_invites
(
    invite_id   uuid PRIMARY KEY,
    org_id      uuid        NOT NULL,
    email       text        NOT NULL,
    token       text        NOT NULL,
    role        text        NOT NULL,
    created_by  text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX cloud_invites_by_org ON cloud_invites (org_id, created_at, invite_id);
CREATE UNIQUE INDEX cloud_invites_by_token ON cloud_invites (token);

-- Active Cloud API keys (a revoked key's row goes). Never a hash or a secret: the name and the
-- public identifier only.
CREATE TABLE cloud_api_keys
(
    key_id     uuid PRIMARY KEY,
    org_id     uuid        NOT NULL,
    name       text        NOT NULL,
    label      text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX cloud_api_keys_by_org ON cloud_api_keys (org_id, created_at, key_id);

-- 2. When each API key was last used. Not an event: a write per request would be an event per
--    request. The server batches uses in memory and writes them here every few seconds.
CREATE TABLE api_key_usage
(
    key_id       uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);

-- 3. The identity provider's users, as its webhooks describe them: a cache of the provider's data
--    (names and email are the provider's, and stay out of the event store).
CREATE TABLE identity_users
(
    identity       text PRIMARY KEY,
    email          text,
    email_verified boolean     NOT NULL DEFAULT false,
    first_name     text,
    last_name      text,
    image_url      text,
    updated_at     timestamptz NOT NULL,
    deleted_at     timestamptz
);

-- Webhook deliveries already applied (Svix retries a delivery until it gets a 2xx). A delivery is
-- recorded only after its change is applied, so a retry of a failed one still lands.
CREATE TABLE webhook_deliveries
(
    svix_id    text PRIMARY KEY,
    event_type text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- 4. A deleted org's API keys and users stop working in the transaction that deletes it, as
--    revoked and offboarded keys do (0003): the credential index forgets them at once.
CREATE FUNCTION apply_org_deletion_to_credentials() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    org uuid := (NEW.payload -> NEW.event_type ->> 'org_id')::uuid;
BEGIN
    IF NEW.aggregate_type = 'Org' AND NEW.event_type = 'OrgDeleted' THEN
        UPDATE principals SET active = false WHERE org_id = org;
        DELETE FROM api_keys WHERE user_id IN (SELECT user_id FROM principals WHERE org_id = org);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_org_deletion_credentials
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Org' AND NEW.event_type = 'OrgDeleted')
EXECUTE FUNCTION apply_org_deletion_to_credentials();
