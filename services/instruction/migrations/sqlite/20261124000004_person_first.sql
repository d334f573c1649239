-- The PostgreSQL index of the same name, which SQLite had missed (the schema
-- parity test found it): a person's open, unlinked filings in filing order,
-- so finding the first filing of a request is one index probe here too.
CREATE INDEX dossiers_person_first ON dossiers (person_key, procedure, filed_at, reference)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed') AND linked_to IS NULL;
