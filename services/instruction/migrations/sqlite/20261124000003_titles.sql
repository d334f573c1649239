-- Titles known to the system (SQLite form; see the PostgreSQL one).
CREATE TABLE titles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    number      TEXT NOT NULL,
    expires_on  TEXT NOT NULL,
    prefecture  TEXT NOT NULL,
    holder      BLOB NOT NULL,
    contact     BLOB NOT NULL,
    source      TEXT NOT NULL,
    reference   TEXT,
    recorded_at TEXT NOT NULL,
    UNIQUE (kind, number)
);
CREATE INDEX titles_expiry ON titles (expires_on);

CREATE TABLE title_alerts (
    title_id    INTEGER NOT NULL REFERENCES titles (id),
    offset_days INTEGER NOT NULL,
    sent_at     TEXT    NOT NULL,
    PRIMARY KEY (title_id, offset_days)
);
