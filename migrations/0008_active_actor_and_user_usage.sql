-- Two rules enforced where events are appended, so they hold however requests interleave.
--
-- 1. No command of a deactivated user commits. A request authenticates at its start; if its user is
--    offboarded while it is in flight, its append must still fail. The append takes a share lock on
--    the acting principal's row and checks it is active: if the deactivation committed first, the
--    check sees it; if the append got the lock first, the deactivation waits for it, and the write
--    is ordered before the offboarding. Refusals raise SQLSTATE HL003.
--
-- 2. An offboarded user's records stop counting against the org's record limit (only their owner
--    could ever delete them, and the owner can no longer act). Per-user live-record counters are kept
--    exactly, in the same transactions as the org's, and a UserDeactivated event releases the user's
--    count from the org's usage. The records themselves, and their events, stay.
CREATE TABLE user_usage
(
    user_id      uuid PRIMARY KEY,
    org_id       uuid   NOT NULL,
    records_used bigint NOT NULL DEFAULT 0 CHECK (records_used >= 0)
);

-- Existing records: each Secret aggregate whose last event is not a delete is live.
INSERT INTO user_usage (user_id, org_id, records_used)
SELECT owner, org, count(*)
FROM (SELECT DISTINCT ON (aggregate_id) (payload -> event_type ->> 'owner')::uuid  AS owner,
                                        (payload -> event_type ->> 'org_id')::uuid AS org,
                                        event_type
      FROM events
      WHERE aggregate_type = 'Secret'
      ORDER BY aggregate_id, sequence DESC) AS last_events
WHERE event_type <> 'SecretDeleted'
GROUP BY owner, org;

CREATE FUNCTION enforce_active_actor_and_user_usage() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    body  jsonb := NEW.payload -> NEW.event_type;
    actor uuid  := (NEW.metadata ->> 'actor_user_id')::uuid;
    freed bigint;
    org   uuid;
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
        WHEN 'UserDeactivated' THEN
            DELETE FROM user_usage WHERE user_id = (body ->> 'user_id')::uuid RETURNING records_used, org_id INTO freed, org;
            IF FOUND THEN
                UPDATE org_limits SET records_used = records_used - freed WHERE org_id = org;
            END IF;
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_enforce_active_actor_and_user_usage
    AFTER INSERT ON events
    FOR EACH ROW
EXECUTE FUNCTION enforce_active_actor_and_user_usage();

-- The limit check of 0005, unchanged but for an org without a limits row (one created before 0005):
-- it now fails with a message that says so, instead of failing on a NULL RAISE option.
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
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;
