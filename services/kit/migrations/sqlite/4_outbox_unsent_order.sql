-- The relay's order (see the PostgreSQL form for why).
DROP INDEX IF EXISTS outbox_unsent;
CREATE INDEX IF NOT EXISTS outbox_unsent_order ON outbox (attempts, id) WHERE sent_at IS NULL;
