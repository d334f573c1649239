-- The mailroom marks each letter printed, then posted: what is still to
-- print or to post is listed first, and who did it is kept.
ALTER TABLE postal_letters ADD COLUMN printed_at TEXT;
ALTER TABLE postal_letters ADD COLUMN printed_by TEXT;
ALTER TABLE postal_letters ADD COLUMN posted_at TEXT;
ALTER TABLE postal_letters ADD COLUMN posted_by TEXT;
