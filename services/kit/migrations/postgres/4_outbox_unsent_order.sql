-- The relay takes unsent rows least tried first, then oldest: an index in
-- that order lets it walk to its batch and stop, where one on id alone had
-- every unsent row (and every entry left by a row since sent) read and
-- sorted for each batch.
DROP INDEX IF EXISTS outbox_unsent;
CREATE INDEX IF NOT EXISTS outbox_unsent_order ON outbox (attempts, id) WHERE sent_at IS NULL;
