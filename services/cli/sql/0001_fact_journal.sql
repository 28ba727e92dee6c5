-- The demo's projection: every fact it read, as JSON, once.
CREATE TABLE fact_journal (
    event_id       text        PRIMARY KEY,
    event_type     text        NOT NULL,
    kafka_key      text        NOT NULL,
    correlation_id text        NOT NULL,
    producer       text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    payload        jsonb       NOT NULL,
    journaled_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fact_journal_correlation ON fact_journal (correlation_id);
