-- Agents' grants and the audit log (SQLite form; see the PostgreSQL one).

CREATE TABLE agent_grants (
    uid         TEXT        NOT NULL,
    role        TEXT        NOT NULL,
    prefecture  TEXT        NOT NULL DEFAULT '',
    granted_by  TEXT        NOT NULL,
    granted_at  TEXT        NOT NULL,
    PRIMARY KEY (uid, role, prefecture)
);

CREATE TABLE audit_log (
    id          INTEGER     PRIMARY KEY AUTOINCREMENT,
    at          TEXT        NOT NULL,
    actor       TEXT        NOT NULL,
    agent       TEXT,
    operation   TEXT        NOT NULL,
    target      TEXT        NOT NULL,
    dossier     TEXT,
    prefecture  TEXT,
    client      TEXT        NOT NULL,
    status      INTEGER     NOT NULL,
    trace_id    TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_dossier ON audit_log (dossier, at);
CREATE INDEX audit_log_agent ON audit_log (agent, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
