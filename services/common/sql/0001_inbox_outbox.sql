-- The exactly-once plumbing every Postgres-writing service has, in its own schema.

-- One row per fact a consumer group has applied. The projection change and this row
-- commit together, so a redelivered fact finds its row and changes nothing.
CREATE TABLE inbox (
    consumer_group text        NOT NULL,
    event_id       text        NOT NULL,
    event_type     text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    -- SHA-256 of the payload, to tell a redelivery from a different fact reusing an id.
    payload_sha256 text        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Facts derived by a handler, written in the handler's transaction and published by
-- the relay. event_id is deterministic, so publishing twice after a crash is harmless.
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    envelope     bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
