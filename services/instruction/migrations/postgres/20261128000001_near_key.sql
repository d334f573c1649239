-- Two filings are one request only when family name, given names, birth
-- date and nationality all match (person_key now digests the given names
-- too). near_key digests the first three alone: filings that share it but
-- not person_key are proposed to an agent, never linked by the system.
--
-- person_key used to be exactly that digest, so it is the right near_key for
-- rows recorded before this migration. Their person_key, without the given
-- names, will not match a new filing's: a later filing of theirs is
-- proposed as a near match instead of linked, the safe side.
ALTER TABLE dossiers ADD COLUMN near_key TEXT NOT NULL DEFAULT '';
UPDATE dossiers SET near_key = person_key;
CREATE INDEX dossiers_near ON dossiers (near_key, procedure)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed') AND linked_to IS NULL;
