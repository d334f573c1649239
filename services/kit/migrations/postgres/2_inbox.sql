-- The inbox: a message id is claimed in the same transaction as the write it
-- causes, so a redelivered message changes nothing.
CREATE TABLE IF NOT EXISTS inbox (
    message_id  TEXT        PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
