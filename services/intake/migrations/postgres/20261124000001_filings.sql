-- One row per accepted online filing: the idempotency key decides whether a
-- request is new or a replay, and the saved receipt is the replay's answer.
CREATE TABLE filings (
    idempotency_key   TEXT        PRIMARY KEY,
    fingerprint       TEXT        NOT NULL,
    reference         TEXT        NOT NULL UNIQUE,
    legal_filing_date DATE        NOT NULL,
    filed_at          TIMESTAMPTZ NOT NULL,
    -- guichet.v1.Receipt, encoded: exactly what the person was given.
    receipt           BYTEA       NOT NULL,
    trace_id          TEXT        NOT NULL
);
