-- One row per message: a notice (what one event tells the person) goes by
-- one or several media. The event is kept as received and rendered at each
-- try, so a template fixed later applies to what is still queued.
CREATE TABLE notices (
    id           TEXT        PRIMARY KEY,
    -- What the notice is about, derived from the event's content (not its
    -- message id), so a republished or redelivered event is one notice.
    notice_key   TEXT        NOT NULL,
    medium       TEXT        NOT NULL,
    kind         TEXT        NOT NULL,
    -- The dossier reference, report id or appointment id.
    subject_ref  TEXT        NOT NULL,
    -- E-mail address, phone number, or the first line of the address.
    recipient    TEXT        NOT NULL,
    language     TEXT        NOT NULL,
    routing_key  TEXT        NOT NULL,
    event        BLOB        NOT NULL,
    has_address  BOOLEAN     NOT NULL,
    -- queued, sent, delivered, failed, cancelled.
    state        TEXT        NOT NULL,
    -- Why the last try failed.
    failure      TEXT,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    not_before   TEXT        NOT NULL,
    -- A sender working on the row holds it until then (several notifiers).
    lease_until  TEXT       ,
    event_at     TEXT        NOT NULL,
    created_at   TEXT        NOT NULL,
    first_try_at TEXT       ,
    sent_at      TEXT       ,
    delivered_at TEXT       ,
    -- The SMS provider's id of the message, to ask whether it arrived,
    -- and when it was last asked (the least recently asked go first).
    provider_id  TEXT,
    checked_at   TEXT       ,
    UNIQUE (notice_key, medium)
);
CREATE INDEX notices_due ON notices (not_before) WHERE state = 'queued';
CREATE INDEX notices_subject ON notices (subject_ref, created_at);
CREATE INDEX notices_awaiting_report ON notices (sent_at) WHERE state = 'sent' AND provider_id IS NOT NULL;
