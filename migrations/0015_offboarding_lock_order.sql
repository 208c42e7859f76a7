-- Offboarding and a write of the user being offboarded take their locks in one order.
--
-- A write of user U appends with U as its actor: events_enforce_active_actor_and_user_usage takes
-- U's principal row FOR SHARE, then U's user_usage row, and events_enforce_plan_limits the org's
-- org_limits row. UserDeactivated of U took U's user_usage row and the org's org_limits row in the
-- first trigger, and U's principal row FOR UPDATE only in events_maintain_credentials (triggers fire
-- in name order): the reverse, so the two could wait on each other until PostgreSQL broke the
-- deadlock (one of them failing with 40P01). Now the deactivation locks U's principal row first;
-- a write in flight then either commits before it or finds U inactive. The function is 0011's with
-- that one step added.
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
    -- Offboarding locks the user's principal row first, as every write of that user does (its
    -- FOR SHARE below comes before its usage and org rows): taking the usage and org rows first,
    -- and the principal last (in events_maintain_credentials), could deadlock with a write in flight.
    IF NEW.event_type = 'UserDeactivated' THEN
        PERFORM 1 FROM principals WHERE user_id = (body ->> 'user_id')::uuid FOR UPDATE;
    END IF;
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
