-- Encrypted files (the File aggregate) and shares of them.
--
-- 1. The files read model, fed by the "files" follower: one row per file with what GET /files and
--    the object reaper need. The content is ciphertext in the org's bucket under object_key (an
--    opaque id, never the name); the name here is the Proxy's ciphertext.
CREATE TABLE files
(
    file_id          uuid PRIMARY KEY,
    org_id           uuid        NOT NULL,
    owner_id         uuid        NOT NULL,
    object_key       text        NOT NULL,
    encrypted_name   text        NOT NULL,
    wrap_ecc         text        NOT NULL,
    wrap_kyber       text        NOT NULL,
    content_type     text        NOT NULL,
    file_bytes       bigint      NOT NULL,
    ciphertext_bytes bigint      NOT NULL,
    -- live; deleted (the object may still be in the bucket: the reaper removes it); removed.
    state            text        NOT NULL,
    created_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);

-- The listing: a user's live files, newest first, paged by (created_at, file_id).
CREATE INDEX files_live_by_owner ON files (owner_id, created_at DESC, file_id DESC) WHERE state = 'live';
-- The reaper's queue: deleted files whose object is not known to be gone.
CREATE INDEX files_to_remove ON files (deleted_at) WHERE state = 'deleted';

-- 2. Shares of files: the same Share aggregate as KV shares (a file never changes, so there are no
--    key epochs to follow). Ids, the alias sealed to the recipient, expiry and state; never a wrap.
CREATE TABLE file_shares
(
    share_id        uuid PRIMARY KEY,
    org_id          uuid        NOT NULL,
    owner_id        uuid        NOT NULL,
    recipient_id    uuid        NOT NULL,
    file_id         uuid        NOT NULL,
    permission      text        NOT NULL,
    encrypted_alias text        NOT NULL,
    expires_at      timestamptz,
    -- active, revoked (by the owner), removed (by the recipient), ended (the file was deleted).
    state           text        NOT NULL,
    created_at      timestamptz NOT NULL,
    ended_at        timestamptz
);

CREATE INDEX file_shares_inbox ON file_shares (recipient_id, created_at) WHERE state = 'active';
CREATE INDEX file_shares_by_file ON file_shares (file_id);

-- 3. Plan limits on files, in the append transaction like the KV limits of 0005/0008: a stored
--    file's plaintext size against max_file_bytes, and the org's live files against max_files.
--    Two uploads racing for the last free file serialize on the org's row. Deleting releases one.
--    An offboarded user's files stop counting against the org, as their records do (0008).
ALTER TABLE user_usage ADD COLUMN files_used bigint NOT NULL DEFAULT 0 CHECK (files_used >= 0);

CREATE OR REPLACE FUNCTION enforce_plan_limits() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    body   jsonb := NEW.payload -> NEW.event_type;
    org    uuid  := (body ->> 'org_id')::uuid;
    limits org_limits%ROWTYPE;
BEGIN
    CASE NEW.event_type
        WHEN 'OrgCreated' THEN
            INSERT INTO org_limits (org_id, plan, max_records, max_kv_bytes, max_files, max_file_bytes)
            VALUES (org, body ->> 'plan',
                    (body -> 'limits' ->> 'max_records')::bigint,
                    (body -> 'limits' ->> 'max_key_plus_value_bytes')::bigint,
                    (body -> 'limits' ->> 'max_files')::bigint,
                    (body -> 'limits' ->> 'max_file_size_bytes')::bigint);
        WHEN 'OrgPlanChanged' THEN
            UPDATE org_limits
            SET plan           = body ->> 'to',
                max_records    = (body -> 'limits' ->> 'max_records')::bigint,
                max_kv_bytes   = (body -> 'limits' ->> 'max_key_plus_value_bytes')::bigint,
                max_files      = (body -> 'limits' ->> 'max_files')::bigint,
                max_file_bytes = (body -> 'limits' ->> 'max_file_size_bytes')::bigint
            WHERE org_id = org;
        WHEN 'SecretCreated', 'SecretUpdated' THEN
            SELECT * INTO limits FROM org_limits WHERE org_id = org;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'organization % has no plan limits row', org;
            END IF;
            IF (body ->> 'kv_bytes')::bigint > limits.max_kv_bytes THEN
                RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxKeyPlusValueBytes',
                    DETAIL = limits.plan, HINT = limits.max_kv_bytes::text;
            END IF;
            IF NEW.event_type = 'SecretCreated' THEN
                UPDATE org_limits SET records_used = records_used + 1
                WHERE org_id = org AND records_used + 1 <= max_records;
                IF NOT FOUND THEN
                    RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxRecords',
                        DETAIL = limits.plan, HINT = limits.max_records::text;
                END IF;
            END IF;
        WHEN 'SecretDeleted' THEN
            -- An offboarded owner's records were released from the org's count already (0008).
            UPDATE org_limits SET records_used = records_used - 1
            WHERE org_id = org
              AND EXISTS (SELECT 1 FROM principals WHERE user_id = (body ->> 'owner')::uuid AND active);
        WHEN 'FileStored' THEN
            SELECT * INTO limits FROM org_limits WHERE org_id = org;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'organization % has no plan limits row', org;
            END IF;
            IF (body ->> 'file_bytes')::bigint > limits.max_file_bytes THEN
                RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxFileSizeBytes',
                    DETAIL = limits.plan, HINT = limits.max_file_bytes::text;
            END IF;
            UPDATE org_limits SET files_used = files_used + 1
            WHERE org_id = org AND files_used + 1 <= max_files;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxFiles',
                    DETAIL = limits.plan, HINT = limits.max_files::text;
            END IF;
        WHEN 'FileDeleted' THEN
            UPDATE org_limits SET files_used = files_used - 1
            WHERE org_id = org
              AND EXISTS (SELECT 1 FROM principals WHERE user_id = (body ->> 'owner')::uuid AND active);
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION enforce_active_actor_and_user_usage() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    body        jsonb := NEW.payload -> NEW.event_type;
    actor       uuid  := (NEW.metadata ->> 'actor_user_id')::uuid;
    freed       bigint;
    freed_files bigint;
    org         uuid;
BEGIN
    IF actor IS NOT NULL THEN
        PERFORM 1 FROM principals WHERE user_id = actor AND active FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'HL003', MESSAGE = 'the acting user is not active';
        END IF;
    END IF;
    CASE NEW.event_type
        WHEN 'SecretCreated' THEN
            INSERT INTO user_usage (user_id, org_id, records_used)
            VALUES ((body ->> 'owner')::uuid, (body ->> 'org_id')::uuid, 1)
            ON CONFLICT (user_id) DO UPDATE SET records_used = user_usage.records_used + 1;
        WHEN 'SecretDeleted' THEN
            UPDATE user_usage SET records_used = records_used - 1 WHERE user_id = (body ->> 'owner')::uuid;
        WHEN 'FileStored' THEN
            INSERT INTO user_usage (user_id, org_id, files_used)
            VALUES ((body ->> 'owner')::uuid, (body ->> 'org_id')::uuid, 1)
            ON CONFLICT (user_id) DO UPDATE SET files_used = user_usage.files_used + 1;
        WHEN 'FileDeleted' THEN
            UPDATE user_usage SET files_used = files_used - 1 WHERE user_id = (body ->> 'owner')::uuid;
        WHEN 'UserDeactivated' THEN
            DELETE FROM user_usage WHERE user_id = (body ->> 'user_id')::uuid
            RETURNING records_used, files_used, org_id INTO freed, freed_files, org;
            IF FOUND THEN
                UPDATE org_limits SET records_used = records_used - freed, files_used = files_used - freed_files
                WHERE org_id = org;
            END IF;
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;
