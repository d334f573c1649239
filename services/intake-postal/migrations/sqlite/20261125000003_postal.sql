-- SQLite form of the PostgreSQL migration of the same name.
-- Scanned batches, their pages, the envelopes read from them, and the
-- letters that answer postal filers. Page images live in the document store
-- (by sha256); these rows say where each page went.
CREATE TABLE postal_batches (
    id              TEXT        PRIMARY KEY,
    idempotency_key TEXT        NOT NULL UNIQUE,
    station_id      TEXT        NOT NULL,
    reception_date  TEXT        NOT NULL,
    -- JSON array of ISO dates (or ""), one per envelope in stack order.
    postmark_dates  TEXT        NOT NULL,
    -- stored: pages kept, not read yet; read: envelopes made.
    state           TEXT        NOT NULL,
    received_at     TEXT        NOT NULL,
    -- A reader's claim on the batch, so two instances do not read it twice.
    lease_until     TEXT       ,
    read_at         TEXT       
);
CREATE INDEX postal_batches_to_read ON postal_batches (received_at) WHERE state = 'stored';

CREATE TABLE postal_pages (
    batch_id    TEXT    NOT NULL REFERENCES postal_batches (id),
    seq         INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    media_type  TEXT    NOT NULL,
    size_bytes  INTEGER NOT NULL,
    -- After reading: form, enclosure or separator.
    role        TEXT,
    -- What the page's code said: form, separator, none, or the problem.
    code        TEXT,
    envelope_id TEXT,
    ocr_text    TEXT,
    PRIMARY KEY (batch_id, seq)
);
CREATE INDEX postal_pages_envelope ON postal_pages (envelope_id);

CREATE TABLE postal_envelopes (
    id             TEXT        PRIMARY KEY,
    batch_id       TEXT        NOT NULL REFERENCES postal_batches (id),
    seq            INTEGER     NOT NULL,
    page_count     INTEGER     NOT NULL,
    state          TEXT        NOT NULL,
    station_id     TEXT        NOT NULL,
    postmark_date  TEXT,
    reception_date TEXT        NOT NULL,
    form_id        TEXT,
    code_problem   TEXT,
    -- JSON array of {key, value, confidence, source}.
    fields         TEXT        NOT NULL,
    reference      TEXT,
    routed_reason  TEXT,
    routed_to      TEXT,
    keyed_by       TEXT,
    created_at     TEXT        NOT NULL,
    closed_at      TEXT       ,
    UNIQUE (batch_id, seq)
);
CREATE INDEX postal_envelopes_keying ON postal_envelopes (created_at) WHERE state = 'keying';
CREATE INDEX postal_envelopes_reference ON postal_envelopes (reference);

CREATE TABLE postal_letters (
    id          TEXT        PRIMARY KEY,
    -- One letter per event: a redelivered event makes no second letter.
    event_key   TEXT        NOT NULL UNIQUE,
    reference   TEXT        NOT NULL,
    envelope_id TEXT        NOT NULL,
    kind        TEXT        NOT NULL,
    sha256      TEXT        NOT NULL,
    emailed_to  TEXT,
    -- sent, none, or why the e-mail failed (the paper letter stands).
    email_state TEXT        NOT NULL,
    created_at  TEXT        NOT NULL
);
CREATE INDEX postal_letters_reference ON postal_letters (reference, created_at);
