-- What each keyed booking asked (guichet_dossier::idempotency), so the same
-- key with a different booking is refused rather than answered with the
-- first. Rows from before have none and replay as they did.
ALTER TABLE appointments ADD COLUMN request_fingerprint TEXT;
