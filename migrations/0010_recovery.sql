-- Trusted-user recovery: who named whom as trustee, so a trustee can list the owners whose
-- recovery material they hold. The material itself (ciphertext) stays in the events and is read
-- from the Recovery aggregate.
CREATE TABLE recovery_trustees
(
    owner_id      uuid        NOT NULL,
    trustee_id    uuid        NOT NULL,
    org_id        uuid        NOT NULL,
    xor_applied   boolean     NOT NULL,
    xor_salt_hint text,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (owner_id, trustee_id)
);

CREATE INDEX recovery_trustees_by_trustee ON recovery_trustees (trustee_id, owner_id);
