-- Filings being written on the web pages, saved at each step so that a
-- person can come back to them by their link. Kept by the hash of the
-- link's secret; removed 30 days after their last change.
CREATE TABLE web_drafts (
    id          TEXT        PRIMARY KEY,
    data        TEXT        NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_drafts_updated_at ON web_drafts (updated_at);
