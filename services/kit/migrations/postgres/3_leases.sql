-- Leases: the periodic work of a service (sweeps, clocks, purges) is done by
-- one instance at a time, the one holding its named lease. A lease held by an
-- instance that died runs out and is taken by another.
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT        PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
