-- Sites, slots and appointments (SQLite form; see the PostgreSQL one).
CREATE TABLE sites (
    id         TEXT        PRIMARY KEY,
    prefecture TEXT        NOT NULL,
    -- guichet.v1.Site, encoded: the site as its prefecture stated it.
    site       BLOB       NOT NULL,
    updated_at TEXT        NOT NULL
);

-- A slot gets a row when it is first booked; its places are the site's at
-- that moment. Booking is one conditional UPDATE of this row, so concurrent
-- bookings cannot overfill it.
CREATE TABLE slots (
    site_id            TEXT        NOT NULL REFERENCES sites (id),
    starts_at          TEXT        NOT NULL,
    places             INTEGER     NOT NULL,
    places_for_reports INTEGER     NOT NULL,
    booked             INTEGER     NOT NULL DEFAULT 0 CHECK (booked >= 0 AND booked <= places),
    -- Of those, booked as alternatives offered to reports.
    booked_for_reports INTEGER     NOT NULL DEFAULT 0 CHECK (booked_for_reports >= 0),
    PRIMARY KEY (site_id, starts_at)
);

CREATE TABLE appointments (
    id              TEXT        PRIMARY KEY,
    idempotency_key TEXT        NOT NULL UNIQUE,
    site_id         TEXT        NOT NULL REFERENCES sites (id),
    starts_at       TEXT        NOT NULL,
    family_name     TEXT        NOT NULL,
    given_names     TEXT        NOT NULL DEFAULT '',
    phone           TEXT        NOT NULL DEFAULT '',
    email           TEXT        NOT NULL DEFAULT '',
    route           TEXT        NOT NULL,
    booked_by       TEXT        NOT NULL DEFAULT '',
    report_id       TEXT,
    state           TEXT        NOT NULL,
    booked_at       TEXT        NOT NULL
);
CREATE INDEX appointments_site ON appointments (site_id, starts_at);

CREATE TABLE appointment_events (
    id             INTEGER     PRIMARY KEY AUTOINCREMENT,
    appointment_id TEXT        NOT NULL REFERENCES appointments (id),
    kind           TEXT        NOT NULL,
    actor          TEXT        NOT NULL,
    route          TEXT        NOT NULL,
    at             TEXT        NOT NULL,
    detail         TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX appointment_events_appointment ON appointment_events (appointment_id, id);
