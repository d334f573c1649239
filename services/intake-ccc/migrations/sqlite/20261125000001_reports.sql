-- Blocked-user reports (SQLite form; see the PostgreSQL one).
CREATE TABLE reports (
    id               TEXT        PRIMARY KEY,
    -- The same key twice is the same report (a retried call).
    idempotency_key  TEXT        NOT NULL UNIQUE,
    category         TEXT        NOT NULL,
    what_was_tried   TEXT        NOT NULL,
    family_name      TEXT        NOT NULL,
    given_names      TEXT        NOT NULL DEFAULT '',
    -- guichet.v1.Contact, encoded.
    contact          BLOB       NOT NULL,
    procedure        TEXT,
    -- The prefecture of residence, which must offer an alternative.
    prefecture       TEXT        NOT NULL,
    state            TEXT        NOT NULL,
    opened_at        TEXT        NOT NULL,
    opened_by        TEXT        NOT NULL,
    call_id          TEXT        NOT NULL DEFAULT '',
    deadline         TEXT        NOT NULL,
    alternative_kind TEXT,
    appointment_id   TEXT,
    -- guichet.v1.PostalAddress, encoded: where a paper kit was sent.
    kit_sent_to      BLOB,
    offered_at       TEXT       ,
    offered_by       TEXT,
    outcome          TEXT,
    outcome_note     TEXT        NOT NULL DEFAULT '',
    closed_at        TEXT       
);

CREATE INDEX reports_waiting ON reports (prefecture, deadline)
    WHERE state IN ('open', 'escalated');

CREATE TABLE report_events (
    id        INTEGER     PRIMARY KEY AUTOINCREMENT,
    report_id TEXT        NOT NULL REFERENCES reports (id),
    kind      TEXT        NOT NULL,
    actor     TEXT        NOT NULL,
    at        TEXT        NOT NULL,
    detail    TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX report_events_report ON report_events (report_id, id);
