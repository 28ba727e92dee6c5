-- The ledger's projection: the consumer's facts and the token counts it allocates by,
-- the revenue events (parked until everything they name has arrived), the allocations,
-- and a double-entry journal. Everything here is rebuilt by replaying the log
-- (`1tt rebuild ledger`); nothing is written that a fact does not determine.

CREATE TABLE agreements (
    agreement_id     text        PRIMARY KEY,
    consumer_id      text        NOT NULL,
    service_id       text        NOT NULL,
    share_bps        integer     NOT NULL CHECK (share_bps BETWEEN 0 AND 10000),
    weighting_rule   integer     NOT NULL,
    effective_from   timestamptz NOT NULL,
    effective_until  timestamptz,
    currency         text        NOT NULL,
    min_payout_minor bigint      NOT NULL CHECK (min_payout_minor >= 0),
    event_id         text        NOT NULL,
    payload_sha256   text        NOT NULL
);
CREATE INDEX agreements_by_service ON agreements (service_id, effective_from);

CREATE TABLE snapshots (
    snapshot_id    text        PRIMARY KEY,
    consumer_id    text        NOT NULL,
    name           text        NOT NULL,
    selection      integer     NOT NULL,
    as_of          timestamptz,
    merkle_root    text        NOT NULL,
    member_count   integer     NOT NULL,
    event_id       text        NOT NULL,
    payload_sha256 text        NOT NULL
);

CREATE TABLE snapshot_members (
    snapshot_id        text   NOT NULL REFERENCES snapshots ON DELETE CASCADE,
    contribution_id    text   NOT NULL,
    contributor_id     text   NOT NULL,
    -- As the snapshot claims; the ledger allocates by the processed fact's count.
    tokens_accepted    bigint NOT NULL CHECK (tokens_accepted >= 0),
    processed_event_id text   NOT NULL,
    PRIMARY KEY (snapshot_id, contribution_id)
);
CREATE INDEX snapshot_members_by_processed ON snapshot_members (processed_event_id);

CREATE TABLE deployments (
    deployment_id  text        PRIMARY KEY,
    consumer_id    text        NOT NULL,
    service_id     text        NOT NULL,
    snapshot_ids   text[]      NOT NULL,
    deployed_from  timestamptz NOT NULL,
    event_id       text        NOT NULL,
    payload_sha256 text        NOT NULL
);

-- contribution.processed facts, by their event id (a snapshot member names one).
CREATE TABLE processed (
    event_id        text   PRIMARY KEY,
    contribution_id text   NOT NULL,
    contributor_id  text   NOT NULL,
    tokens_accepted bigint NOT NULL CHECK (tokens_accepted >= 0)
);

-- The earliest withdrawal of each contribution.
CREATE TABLE withdrawals (
    contribution_id text        PRIMARY KEY,
    contributor_id  text        NOT NULL,
    effective_at    timestamptz NOT NULL
);

-- Revenue events and adjustments. An adjustment's row has kind 'adjusted', its own id
-- as revenue_id and the corrected event's id as original_revenue_id.
CREATE TABLE revenue (
    revenue_id          text     PRIMARY KEY,
    kind                text     NOT NULL CHECK (kind IN ('recorded', 'adjusted')),
    original_revenue_id text,
    consumer_id         text     NOT NULL,
    external_id         text     NOT NULL,
    service_id          text     NOT NULL,
    period              text     NOT NULL,
    -- Minor units; signed for adjustments.
    amount_minor        bigint   NOT NULL,
    currency            text     NOT NULL,
    agreement_id        text     NOT NULL,
    deployment_ids      text[]   NOT NULL,
    reason              text     NOT NULL DEFAULT '',
    event_id            text     NOT NULL,
    payload_sha256      text     NOT NULL,
    -- parked: waiting for facts it names (status_reason says which);
    -- allocated: split, allocations written; rejected: can never be allocated
    -- (status_reason says why); unallocated: nothing eligible, the pool stays with the
    -- consumer.
    status              text     NOT NULL CHECK (status IN
                                   ('parked', 'allocated', 'rejected', 'unallocated')),
    status_reason       text     NOT NULL DEFAULT '',
    share_bps           integer,
    pool_micros         bigint,
    total_weight        bigint,
    CHECK ((kind = 'adjusted') = (original_revenue_id IS NOT NULL))
);
CREATE INDEX revenue_parked ON revenue (revenue_id) WHERE status = 'parked';
CREATE UNIQUE INDEX revenue_external_id ON revenue (consumer_id, external_id)
    WHERE kind = 'recorded';

CREATE TABLE allocations (
    allocation_id    text   PRIMARY KEY,
    revenue_id       text   NOT NULL REFERENCES revenue,
    service_id       text   NOT NULL,
    agreement_id     text   NOT NULL,
    contributor_id   text   NOT NULL,
    contribution_id  text   NOT NULL,
    period           text   NOT NULL,
    currency         text   NOT NULL,
    allocated_micros bigint NOT NULL,
    pool_micros      bigint NOT NULL,
    weight           bigint NOT NULL CHECK (weight > 0),
    total_weight     bigint NOT NULL CHECK (total_weight >= weight),
    UNIQUE (revenue_id, contribution_id)
);
CREATE INDEX allocations_by_contributor ON allocations (contributor_id, period);

-- Double entry. Every movement is a set of lines whose debits equal its credits;
-- amounts are non-negative micro-units and each line is a debit or a credit.
CREATE TABLE accounts (
    account  text PRIMARY KEY,
    kind     text NOT NULL CHECK (kind IN ('consumer', 'contributor')),
    owner_id text NOT NULL,
    currency text NOT NULL
);

CREATE TABLE entries (
    movement_id   text    NOT NULL,
    line          integer NOT NULL,
    account       text    NOT NULL REFERENCES accounts,
    currency      text    NOT NULL,
    debit_micros  bigint  NOT NULL CHECK (debit_micros >= 0),
    credit_micros bigint  NOT NULL CHECK (credit_micros >= 0),
    PRIMARY KEY (movement_id, line),
    CHECK ((debit_micros = 0) <> (credit_micros = 0))
);

CREATE VIEW balances AS
    SELECT account, currency,
           sum(credit_micros) - sum(debit_micros) AS balance_micros
      FROM entries GROUP BY account, currency;

CREATE VIEW unbalanced_movements AS
    SELECT movement_id, currency, sum(debit_micros) AS debits, sum(credit_micros) AS credits
      FROM entries GROUP BY movement_id, currency
    HAVING sum(debit_micros) <> sum(credit_micros);
