-- The ingest service's projections. Every row comes from a fact and can be rebuilt by
-- replaying the log; the upload path writes the same rows directly so that a receipt
-- can be served at once, and the consumer's copy of the fact then changes nothing.

CREATE TABLE principals (
    principal_id   text        PRIMARY KEY,
    role           text        NOT NULL,
    name           text        NOT NULL,
    api_key_sha256 text        NOT NULL UNIQUE,
    api_key_prefix text        NOT NULL,
    registered_at  timestamptz NOT NULL
);

CREATE TABLE contributions (
    contribution_id   text        PRIMARY KEY,
    contributor_id    text        NOT NULL,
    upload_id         text        NOT NULL,
    dataset_name      text        NOT NULL,
    file_name         text        NOT NULL,
    format            integer     NOT NULL,
    compression       integer     NOT NULL,
    sha256            text        NOT NULL,
    byte_size         bigint      NOT NULL,
    document_count    bigint      NOT NULL,
    blob_uri          text        NOT NULL,
    received_at       timestamptz NOT NULL,
    received_event_id text        NOT NULL,
    key_id            text        NOT NULL,
    signature         bytea       NOT NULL,
    UNIQUE (contributor_id, upload_id)
);
CREATE INDEX contributions_by_contributor
    ON contributions (contributor_id, received_at DESC, contribution_id DESC);

-- Facts about a contribution may be read before its contribution.received (they are on
-- other topics), so they live in tables of their own and the state is derived on read.
CREATE TABLE contribution_reports (
    contribution_id text    PRIMARY KEY,
    outcome         integer NOT NULL,
    report          bytea   NOT NULL  -- a serialised tt.facts.v1.ContributionProcessed
);

CREATE TABLE contribution_withdrawals (
    contribution_id text        PRIMARY KEY,
    effective_at    timestamptz NOT NULL,
    event_id        text        NOT NULL
);
