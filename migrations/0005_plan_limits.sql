-- Org-wide plan limits, enforced inside the append transaction.
--
-- A limit such as "at most N active KV records per org" spans many aggregates (each record is its
-- own Secret aggregate), so per-aggregate optimistic concurrency cannot hold it, and a
-- check-then-write from the application races. Instead this trigger, running in the transaction
-- that appends the event, moves the org's usage counter and refuses the append when it would pass
-- the limit. Two appends racing for the last free record serialize on the org's row: the second
-- re-reads the counter after the first commits and is refused.
--
-- The limits come from the Org events themselves (OrgCreated / OrgPlanChanged carry the limits of
-- the plan they put in force), so this file holds no copy of the plan catalog, and a plan change
-- applies to the very next append. A downgrade below current usage blocks new records and keeps
-- the existing ones.
--
-- Refusals raise SQLSTATE HL001 (MESSAGE: the limit's name, DETAIL: the plan, HINT: the maximum);
-- not 23505, which postgres-es would report as a retryable concurrency conflict.
CREATE TABLE org_limits
(
    org_id         uuid PRIMARY KEY,
    plan           text   NOT NULL,
    max_records    bigint NOT NULL,
    max_kv_bytes   bigint NOT NULL,
    max_files      bigint NOT NULL,
    max_file_bytes bigint NOT NULL,
    records_used   bigint NOT NULL DEFAULT 0 CHECK (records_used >= 0),
    files_used     bigint NOT NULL DEFAULT 0 CHECK (files_used >= 0)
);

CREATE FUNCTION enforce_plan_limits() RETURNS trigger
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
            IF (body ->> 'kv_bytes')::bigint > limits.max_kv_bytes THEN
                RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxKeyPlusValueBytes',
                    DETAIL = limits.plan, HINT = limits.max_kv_bytes::text;
            END IF;
            IF NEW.event_type = 'SecretCreated' THEN
                UPDATE org_limits SET records_used = records_used + 1
                WHERE org_id = org AND records_used + 1 <= max_records;
                IF NOT FOUND THEN
                    SELECT * INTO limits FROM org_limits WHERE org_id = org;
                    RAISE EXCEPTION USING ERRCODE = 'HL001', MESSAGE = 'maxRecords',
                        DETAIL = limits.plan, HINT = limits.max_records::text;
                END IF;
            END IF;
        WHEN 'SecretDeleted' THEN
            UPDATE org_limits SET records_used = records_used - 1 WHERE org_id = org;
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_enforce_plan_limits
    AFTER INSERT ON events
    FOR EACH ROW
EXECUTE FUNCTION enforce_plan_limits();
