-- Every channel's dossiers, in one table: the one queue.
CREATE TABLE dossiers (
    reference         TEXT        PRIMARY KEY,
    channel           TEXT        NOT NULL,
    procedure         TEXT        NOT NULL,
    motif             TEXT        NOT NULL,
    prefecture        TEXT        NOT NULL,
    -- The date that counts in law (postmark for mail): the queue's order.
    legal_filing_date DATE        NOT NULL,
    filed_at          TIMESTAMPTZ NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL,
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    title_expires_on  DATE,
    -- Legal stay is proven until this date; drives urgency.
    cover_until       DATE,
    state             TEXT        NOT NULL DEFAULT 'filed',
    -- guichet.v1.Dossier as received.
    dossier           BYTEA       NOT NULL,
    trace_id          TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX dossiers_queue ON dossiers (prefecture, legal_filing_date, filed_at)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed');

-- What happened to each dossier, in order: who, when, why.
CREATE TABLE dossier_events (
    id         BIGSERIAL   PRIMARY KEY,
    reference  TEXT        NOT NULL REFERENCES dossiers (reference),
    kind       TEXT        NOT NULL,
    actor      TEXT        NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    reason     TEXT        NOT NULL DEFAULT '',
    trace_id   TEXT        NOT NULL DEFAULT '',
    message_id TEXT
);

CREATE INDEX dossier_events_reference ON dossier_events (reference, id);
