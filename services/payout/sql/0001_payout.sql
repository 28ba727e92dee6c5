-- The payout service's projection: who may call its API, what contributors contributed
-- (for their dashboard), the allocations it settles, and the payouts it issued.
-- Rebuilt from the log by `1tt rebuild payout`.

CREATE TABLE principals (
    principal_id   text PRIMARY KEY,
    role           text NOT NULL,
    name           text NOT NULL,
    api_key_sha256 text NOT NULL UNIQUE
);

CREATE TABLE contributions (
    contribution_id text        PRIMARY KEY,
    contributor_id  text        NOT NULL,
    dataset_name    text        NOT NULL DEFAULT '',
    file_name       text        NOT NULL DEFAULT '',
    byte_size       bigint      NOT NULL DEFAULT 0,
    received_at     timestamptz,
    -- The contribution.processed fact, as JSON (counts, removals, redactions, languages).
    processed       jsonb,
    report_uri      text,
    withdrawn_at    timestamptz
);
CREATE INDEX contributions_by_contributor ON contributions (contributor_id, received_at);

CREATE TABLE agreements (
    agreement_id     text   PRIMARY KEY,
    service_id       text   NOT NULL,
    currency         text   NOT NULL,
    share_bps        integer NOT NULL,
    min_payout_minor bigint NOT NULL
);

CREATE TABLE allocations (
    allocation_id    text   PRIMARY KEY,
    revenue_id       text   NOT NULL,
    service_id       text   NOT NULL,
    agreement_id     text   NOT NULL,
    contributor_id   text   NOT NULL,
    contribution_id  text   NOT NULL,
    period           text   NOT NULL,
    currency         text   NOT NULL,
    allocated_micros bigint NOT NULL,
    pool_micros      bigint NOT NULL,
    weight           bigint NOT NULL,
    total_weight     bigint NOT NULL,
    made_at          timestamptz NOT NULL
);
CREATE INDEX allocations_by_contributor ON allocations (contributor_id, currency, period);

CREATE TABLE payouts (
    payout_id              text    PRIMARY KEY,
    payout_run_id          text    NOT NULL,
    contributor_id         text    NOT NULL,
    period                 text    NOT NULL,
    currency               text    NOT NULL,
    amount_minor           bigint  NOT NULL CHECK (amount_minor >= 0),
    opening_carried_micros bigint  NOT NULL,
    carried_forward_micros bigint  NOT NULL,
    allocated_micros       bigint  NOT NULL,
    issued_at              timestamptz NOT NULL,
    UNIQUE (contributor_id, period, currency)
);

-- Which payout settled each allocation (an allocation is settled at most once).
CREATE TABLE payout_allocations (
    allocation_id text PRIMARY KEY,
    payout_id     text NOT NULL REFERENCES payouts
);
CREATE INDEX payout_allocations_by_payout ON payout_allocations (payout_id);
