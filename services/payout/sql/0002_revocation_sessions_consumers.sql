-- Revoked API keys (principal.revoked). A revoked principal keeps its row (statements
-- still name it) with revoked_at set, and no longer authenticates. The revocation is kept
-- by key and principal, so a principal.registered fact read after it (topics are not
-- ordered with each other) is projected as revoked too: revocation is final.
ALTER TABLE principals ADD COLUMN revoked_at timestamptz;

CREATE TABLE revoked_keys (
    api_key_sha256 text        PRIMARY KEY,
    principal_id   text        NOT NULL,
    revoked_at     timestamptz NOT NULL
);
CREATE INDEX revoked_keys_by_principal ON revoked_keys (principal_id);

-- Whose agreement it is: a consumer sees the revenue of its own agreements only. Rows
-- projected before this migration have '' until `1tt rebuild payout` replays the log.
ALTER TABLE agreements ADD COLUMN consumer_id text NOT NULL DEFAULT '';

-- Dashboard sessions, held on the server so that signing out (or a revocation) ends them.
-- Not a projection of the log: `1tt rebuild payout` drops them (everyone signs in again).
-- The cookie carries a random token; only its HMAC under the dashboard's key is stored.
CREATE TABLE dashboard_sessions (
    token_digest text        PRIMARY KEY,
    principal_id text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_by_principal ON dashboard_sessions (principal_id);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
