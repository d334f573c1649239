-- The figures, the alerts and the purge read notices by when they were
-- made (the last 30 days; older than 400). Rows arrive in that order, so a
-- block-range index serves those windows at almost no cost to each insert,
-- where a b-tree would take an entry on every write of a message.
CREATE INDEX notices_created ON notices USING brin (created_at);
