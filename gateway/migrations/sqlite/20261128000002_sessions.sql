-- Browser sign-in (SQLite form; see the PostgreSQL one).
CREATE TABLE pending_logins (
    state_hash     TEXT        PRIMARY KEY,
    nonce          TEXT        NOT NULL,
    code_verifier  TEXT        NOT NULL,
    created_at     TEXT        NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT        PRIMARY KEY,
    uid         TEXT        NOT NULL,
    csrf_token  TEXT        NOT NULL,
    created_at  TEXT        NOT NULL,
    expires_at  TEXT        NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
