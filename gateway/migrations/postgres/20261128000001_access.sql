-- Who may do what, as Guichet assigns it (the identity provider only says
-- who an agent is), and the audit log of what agents read and changed.

-- One row per role an agent holds in one prefecture; a national role
-- (call centre, mailroom, operator) has prefecture ''.
CREATE TABLE agent_grants (
    uid         TEXT        NOT NULL,
    role        TEXT        NOT NULL,
    prefecture  TEXT        NOT NULL DEFAULT '',
    granted_by  TEXT        NOT NULL,
    granted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (uid, role, prefecture)
);

-- Append-only: rows are added, and removed only once past retention.
CREATE TABLE audit_log (
    id          BIGSERIAL   PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    -- agent:<uid>, agent:<uid> via client:<id>, station:<id>, cli:<user>
    actor       TEXT        NOT NULL,
    -- The agent's uid alone, to query by.
    agent       TEXT,
    -- The operation as the policy table names it, or grant / revoke.
    operation   TEXT        NOT NULL,
    -- What was asked: the path, or the grant changed.
    target      TEXT        NOT NULL,
    dossier     TEXT,
    prefecture  TEXT,
    -- The client's address (or "command line").
    client      TEXT        NOT NULL,
    -- The HTTP status answered (gRPC calls: their HTTP status, 200).
    status      INTEGER     NOT NULL,
    trace_id    TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_dossier ON audit_log (dossier, at);
CREATE INDEX audit_log_agent ON audit_log (agent, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
