-- The figures, the alerts and the purge read notices by when they were
-- made (the last 30 days; older than 400). SQLite has no block-range index;
-- a plain one serves the same windows.
CREATE INDEX notices_created ON notices (created_at);
