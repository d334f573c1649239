-- What each keyed report asked (guichet_dossier::idempotency), so the same
-- key with a different report is refused rather than answered with the
-- first. Rows from before have none and replay as they did.
ALTER TABLE reports ADD COLUMN request_fingerprint TEXT;
