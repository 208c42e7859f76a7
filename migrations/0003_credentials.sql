-- The credential index: which API key hash belongs to which active user.
--
-- Unlike the read models, this table is maintained by a trigger inside the append transaction.
-- A rotated, revoked or offboarded key must stop working before the command that killed it
-- returns; an asynchronous follower could lag behind and let an old key through. The trigger makes
-- "the event is committed" and "the key is dead" the same instant.
--
-- Keys are looked up by the SHA-256 of the presented key (the primary key): an index probe, never
-- a scan, and the plaintext key is stored nowhere.
CREATE TABLE principals
(
    user_id uuid PRIMARY KEY,
    org_id  uuid,
    role    text    NOT NULL,
    active  boolean NOT NULL DEFAULT true
);

CREATE TABLE api_keys
(
    key_hash   text PRIMARY KEY,
    key_id     uuid        NOT NULL UNIQUE,
    user_id    uuid        NOT NULL REFERENCES principals (user_id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_keys_by_user ON api_keys (user_id);

-- Event payloads are serde's externally tagged enums: {"<EventType>": {...fields}}.
CREATE FUNCTION apply_credential_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    body jsonb := NEW.payload -> NEW.event_type;
BEGIN
    IF NEW.aggregate_type <> 'User' THEN
        RETURN NULL;
    END IF;
    CASE NEW.event_type
        WHEN 'GlobalAdminBootstrapped' THEN
            INSERT INTO principals (user_id, org_id, role)
            VALUES ((body ->> 'user_id')::uuid, NULL, 'global_admin');
        WHEN 'UserCreated' THEN
            INSERT INTO principals (user_id, org_id, role)
            VALUES ((body ->> 'user_id')::uuid, (body ->> 'org_id')::uuid, body ->> 'role');
        WHEN 'ApiKeyIssued' THEN
            INSERT INTO api_keys (key_hash, key_id, user_id, created_at)
            VALUES (body ->> 'key_hash', (body ->> 'key_id')::uuid, (body ->> 'user_id')::uuid, NEW.recorded_at);
        WHEN 'ApiKeyRevoked' THEN
            DELETE FROM api_keys WHERE key_id = (body ->> 'key_id')::uuid;
        WHEN 'UserDeactivated' THEN
            UPDATE principals SET active = false WHERE user_id = (body ->> 'user_id')::uuid;
            DELETE FROM api_keys WHERE user_id = (body ->> 'user_id')::uuid;
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_maintain_credentials
    AFTER INSERT ON events
    FOR EACH ROW
EXECUTE FUNCTION apply_credential_event();
