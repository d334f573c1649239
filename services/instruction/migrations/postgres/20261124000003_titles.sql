-- Titles known to the system (decided here, or imported from the legacy
-- system), so their holders are warned before they expire.
CREATE TABLE titles (
    id          BIGSERIAL   PRIMARY KEY,
    kind        TEXT        NOT NULL,
    number      TEXT        NOT NULL,
    expires_on  DATE        NOT NULL,
    prefecture  TEXT        NOT NULL,
    -- guichet.v1.Applicant and guichet.v1.Contact, encoded.
    holder      BYTEA       NOT NULL,
    contact     BYTEA       NOT NULL,
    -- 'decided' (reference set) or 'imported'.
    source      TEXT        NOT NULL,
    reference   TEXT,
    recorded_at TIMESTAMPTZ NOT NULL,
    UNIQUE (kind, number)
);
CREATE INDEX titles_expiry ON titles (expires_on);

-- One row per alert sent: never twice for the same offset.
CREATE TABLE title_alerts (
    title_id    BIGINT      NOT NULL REFERENCES titles (id),
    offset_days INTEGER     NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (title_id, offset_days)
);
