-- Leases (SQLite form): one process uses the file, so the lease is always
-- its own; the table keeps the store code the same on both backends.
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
