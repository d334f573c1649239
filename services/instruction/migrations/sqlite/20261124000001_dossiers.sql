-- Every channel's dossiers, in one table (SQLite form; see the PostgreSQL one).
CREATE TABLE dossiers (
    reference         TEXT PRIMARY KEY,
    channel           TEXT NOT NULL,
    procedure         TEXT NOT NULL,
    motif             TEXT NOT NULL,
    prefecture        TEXT NOT NULL,
    legal_filing_date TEXT NOT NULL,
    filed_at          TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    recorded_at       TEXT NOT NULL,
    title_expires_on  TEXT,
    cover_until       TEXT,
    state             TEXT NOT NULL DEFAULT 'filed',
    dossier           BLOB NOT NULL,
    trace_id          TEXT NOT NULL DEFAULT ''
);

CREATE INDEX dossiers_queue ON dossiers (prefecture, legal_filing_date, filed_at)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed');

CREATE TABLE dossier_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    reference  TEXT NOT NULL REFERENCES dossiers (reference),
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    at         TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    trace_id   TEXT NOT NULL DEFAULT '',
    message_id TEXT
);

CREATE INDEX dossier_events_reference ON dossier_events (reference, id);
