-- The code a person asked for to see their own file: one per file (a new
-- one replaces the last), kept as an HMAC under the gateway's link key,
-- ended by its expiry or by too many wrong tries.
CREATE TABLE person_codes (
    reference    TEXT        PRIMARY KEY,
    code_hash    TEXT        NOT NULL,
    wrong_tries  INTEGER     NOT NULL DEFAULT 0,
    sent_at      TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX person_codes_expires_at ON person_codes (expires_at);
