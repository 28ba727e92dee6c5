-- API keys revoked by principal.revoked facts. A revoked key's principal row is removed
-- from `principals` (every authentication, ingest's own and the tools' that read this
-- table, finds nothing); the revocation is kept here, so a principal.registered fact for
-- that key or principal read later (topics are not ordered with each other) is not
-- projected back: revocation is final.
CREATE TABLE revoked_keys (
    api_key_sha256 text        PRIMARY KEY,
    principal_id   text        NOT NULL,
    api_key_prefix text        NOT NULL,
    reason         text        NOT NULL,
    revoked_at     timestamptz NOT NULL,
    event_id       text        NOT NULL
);
CREATE INDEX revoked_keys_by_principal ON revoked_keys (principal_id);
