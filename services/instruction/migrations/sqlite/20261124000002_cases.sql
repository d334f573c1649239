-- The case lifecycle, the equal-rights queue and rights continuity (SQLite
-- form; see the PostgreSQL one for what each column is for).
ALTER TABLE dossiers ADD COLUMN missing TEXT NOT NULL DEFAULT '';
ALTER TABLE dossiers ADD COLUMN documents_deadline TEXT;
ALTER TABLE dossiers ADD COLUMN person_key TEXT NOT NULL DEFAULT '';
ALTER TABLE dossiers ADD COLUMN linked_to TEXT REFERENCES dossiers (reference);
ALTER TABLE dossiers ADD COLUMN link_confirmed BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE dossiers ADD COLUMN queue_date TEXT;
ALTER TABLE dossiers ADD COLUMN cover_basis TEXT;
ALTER TABLE dossiers ADD COLUMN taken_by TEXT;
ALTER TABLE dossiers ADD COLUMN taken_at TEXT;
ALTER TABLE dossiers ADD COLUMN decided_at TEXT;
ALTER TABLE dossiers ADD COLUMN updated_at TEXT;

UPDATE dossiers SET queue_date = legal_filing_date WHERE queue_date IS NULL;

DROP INDEX IF EXISTS dossiers_queue;
CREATE INDEX dossiers_open_queue ON dossiers (prefecture, queue_date, filed_at)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed') AND linked_to IS NULL;
CREATE INDEX dossiers_person ON dossiers (person_key, procedure);

CREATE TABLE attestations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    reference         TEXT NOT NULL REFERENCES dossiers (reference),
    kind              TEXT NOT NULL,
    valid_from        TEXT NOT NULL,
    valid_until       TEXT,
    issued_at         TEXT NOT NULL,
    verification_code TEXT NOT NULL UNIQUE
);
CREATE INDEX attestations_reference ON attestations (reference, id);

CREATE TABLE dossier_documents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    reference   TEXT NOT NULL REFERENCES dossiers (reference),
    kind        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX dossier_documents_reference ON dossier_documents (reference);

CREATE TABLE agent_reads (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL,
    agent     TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX agent_reads_reference ON agent_reads (reference, at);
