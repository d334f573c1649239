-- What each keyed upload sent (guichet_dossier::idempotency), so the same
-- key with another upload is refused rather than answered with the first
-- batch. Rows from before have none and replay as they did.
ALTER TABLE postal_batches ADD COLUMN request_fingerprint TEXT;
