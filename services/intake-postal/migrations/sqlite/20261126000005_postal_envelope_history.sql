-- SQLite form of the PostgreSQL migration of the same name.
-- What operators did with each envelope, oldest first: a postmark held for
-- a second look (by whom, and why), its confirmation by another operator
-- (with the reason), the filing, the routing.
CREATE TABLE postal_envelope_events (
    id            TEXT        PRIMARY KEY,
    envelope_id   TEXT        NOT NULL REFERENCES postal_envelopes (id),
    -- postmark_held, postmark_confirmed, filed, routed.
    kind          TEXT        NOT NULL,
    operator_id   TEXT        NOT NULL,
    at            TEXT        NOT NULL,
    postmark_date TEXT,
    reason        TEXT        NOT NULL,
    reference     TEXT
);
CREATE INDEX postal_envelope_events_envelope ON postal_envelope_events (envelope_id, at);
