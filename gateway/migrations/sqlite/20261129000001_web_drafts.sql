-- Filings being written on the web pages (SQLite form; see the PostgreSQL one).
CREATE TABLE web_drafts (
    id          TEXT        PRIMARY KEY,
    data        TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL
);
CREATE INDEX web_drafts_updated_at ON web_drafts (updated_at);
