-- One row per accepted online filing (SQLite form; see the PostgreSQL one).
CREATE TABLE filings (
    idempotency_key   TEXT PRIMARY KEY,
    fingerprint       TEXT NOT NULL,
    reference         TEXT NOT NULL UNIQUE,
    legal_filing_date TEXT NOT NULL,
    filed_at          TEXT NOT NULL,
    receipt           BLOB NOT NULL,
    trace_id          TEXT NOT NULL
);
