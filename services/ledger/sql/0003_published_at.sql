-- When the broker appended each consumer fact (its LogAppendTime): terms take effect no
-- earlier than they are published, and a revenue event is judged by the terms published
-- before it (docs/allocation.md, "Which terms apply"). NULL only in rows projected by an
-- earlier version: `1tt rebuild ledger` fills them from the log.
ALTER TABLE agreements ADD COLUMN published_at timestamptz;
ALTER TABLE deployments ADD COLUMN published_at timestamptz;
ALTER TABLE revenue ADD COLUMN published_at timestamptz;
CREATE INDEX deployments_by_service ON deployments (consumer_id, service_id);
