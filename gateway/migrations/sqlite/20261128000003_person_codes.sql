-- A person's code (SQLite form; see the PostgreSQL one).
CREATE TABLE person_codes (
    reference    TEXT        PRIMARY KEY,
    code_hash    TEXT        NOT NULL,
    wrong_tries  INTEGER     NOT NULL DEFAULT 0,
    sent_at      TEXT        NOT NULL,
    expires_at   TEXT        NOT NULL
);
CREATE INDEX person_codes_expires_at ON person_codes (expires_at);
