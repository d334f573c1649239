-- Browser sign-in: a sign-in under way (until the provider sends the
-- browser back) and the sessions it opens. Only hashes of the secrets the
-- browser holds are kept.
CREATE TABLE pending_logins (
    state_hash     TEXT        PRIMARY KEY,
    nonce          TEXT        NOT NULL,
    code_verifier  TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT        PRIMARY KEY,
    uid         TEXT        NOT NULL,
    csrf_token  TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
