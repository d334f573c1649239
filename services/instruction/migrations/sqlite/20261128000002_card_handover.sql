-- A favourable decision ends with the card handed over at a desk: from that
-- day the person's cover rests on the card, and the favourable-decision
-- attestation stops (its valid_until is set to the handover day).
ALTER TABLE dossiers ADD COLUMN card_number TEXT;
ALTER TABLE dossiers ADD COLUMN card_handed_over_on DATE;
ALTER TABLE dossiers ADD COLUMN card_until DATE;
