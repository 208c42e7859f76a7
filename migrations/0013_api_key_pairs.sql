-- The Cloud API's key pair: a client sends a key's public identifier (`hkid_…`, the `key` of
-- `POST /cloud/organizations/{id}/api-keys`) as X-Api-Key and its secret as X-API-Secret.
--
-- The credential index learns each key's identifier, so the pair is checked as one credential in
-- one index probe: the identifier finds the row (unique, so at most one), and the server compares
-- the secret's SHA-256 with the row's hash in constant time. Keys issued without an identifier (every
-- key but the Cloud API's) have none and can only be presented alone, as before.
ALTER TABLE api_keys ADD COLUMN label text UNIQUE;

-- Keys already issued: their identifier is in the event that issued them.
UPDATE api_keys k
SET label = e.payload -> 'ApiKeyIssued' -> 'label' ->> 'key'
FROM events e
WHERE e.aggregate_type = 'User'
  AND e.event_type = 'ApiKeyIssued'
  AND (e.payload -> 'ApiKeyIssued' ->> 'key_id')::uuid = k.key_id;

-- As 0003's, with the identifier. Still inside the append transaction: a revoked key is dead, in
-- both forms, the moment its event commits.
CREATE OR REPLACE FUNCTION apply_credential_event() RETURNS trigger
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
            INSERT INTO api_keys (key_hash, key_id, user_id, created_at, label)
            VALUES (body ->> 'key_hash', (body ->> 'key_id')::uuid, (body ->> 'user_id')::uuid, NEW.recorded_at,
                    body -> 'label' ->> 'key');
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
