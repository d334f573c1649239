-- Finding the first open filing of the same request by the same person, for
-- every dossier that arrives: an index that holds exactly the candidates
-- (open, not linked) in the order wanted, so the answer is its first entry
-- whatever the planner believes about the table's size. Without it, a plan
-- made while the table was small scanned every open dossier for each arrival.
CREATE INDEX dossiers_person_first ON dossiers (person_key, procedure, filed_at, reference)
    WHERE state NOT IN ('favourable', 'unfavourable', 'closed') AND linked_to IS NULL;
