-- The transactional outbox: a service writes its state change and the message
-- announcing it in one transaction; the relay publishes rows and marks them
-- sent only after the broker confirmed them.
CREATE TABLE IF NOT EXISTS outbox (
    id          BIGSERIAL PRIMARY KEY,
    message_id  TEXT        NOT NULL UNIQUE,
    exchange    TEXT        NOT NULL,
    routing_key TEXT        NOT NULL,
    headers     JSONB       NOT NULL DEFAULT '{}',
    body        BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ,
    attempts    INTEGER     NOT NULL DEFAULT 0,
    last_error  TEXT
);

CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
