-- The case lifecycle, the equal-rights queue and rights continuity.
ALTER TABLE dossiers
    -- Document kinds still missing, comma-separated, recomputed on every arrival.
    ADD COLUMN missing            TEXT        NOT NULL DEFAULT '',
    ADD COLUMN documents_deadline DATE,
    -- Who the person is, as a digest (no name in clear in an index).
    ADD COLUMN person_key         TEXT        NOT NULL DEFAULT '',
    -- A second filing of the same request: the dossier it is linked to.
    ADD COLUMN linked_to          TEXT        REFERENCES dossiers (reference),
    ADD COLUMN link_confirmed     BOOLEAN     NOT NULL DEFAULT false,
    -- The date the queue orders by: the earliest legal filing date of the
    -- linked filings.
    ADD COLUMN queue_date         DATE,
    ADD COLUMN cover_basis        TEXT,
    ADD COLUMN taken_by           TEXT,
    ADD COLUMN taken_at           TIMESTAMPTZ,
    ADD COLUMN decided_at         TIMESTAMPTZ,
    ADD COLUMN updated_at         TIMESTAMPTZ;

UPDATE dossiers SET queue_date = legal_filing_date WHERE queue_date IS NULL;

DROP INDEX IF EXISTS dossiers_queue;
CREATE INDEX dossiers_open_queue ON dossiers (prefecture, queue_date, filed_at)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed') AND linked_to IS NULL;
CREATE INDEX dossiers_person ON dossiers (person_key, procedure);

-- Attestations issued: each a proof of legal stay the person can show.
CREATE TABLE attestations (
    id                BIGSERIAL   PRIMARY KEY,
    reference         TEXT        NOT NULL REFERENCES dossiers (reference),
    kind              TEXT        NOT NULL,
    valid_from        DATE        NOT NULL,
    -- NULL: until the card is handed over.
    valid_until       DATE,
    issued_at         TIMESTAMPTZ NOT NULL,
    verification_code TEXT        NOT NULL UNIQUE
);
CREATE INDEX attestations_reference ON attestations (reference, id);

-- Documents received after filing, from any channel.
CREATE TABLE dossier_documents (
    id          BIGSERIAL   PRIMARY KEY,
    reference   TEXT        NOT NULL REFERENCES dossiers (reference),
    kind        TEXT        NOT NULL,
    sha256      TEXT        NOT NULL,
    media_type  TEXT        NOT NULL,
    size_bytes  BIGINT      NOT NULL,
    channel     TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dossier_documents_reference ON dossier_documents (reference);

-- Every read of a dossier by an agent: who, when.
CREATE TABLE agent_reads (
    id        BIGSERIAL   PRIMARY KEY,
    reference TEXT        NOT NULL,
    agent     TEXT        NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_reads_reference ON agent_reads (reference, at);
