-- The in-process bus: every message routed to a queue is a row until it is
-- acked. `leased` marks a message handed to a consumer of this process; a
-- restart clears every lease, so what was in flight is delivered again.
CREATE TABLE IF NOT EXISTS bus_messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue          TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    exchange       TEXT    NOT NULL,
    routing_key    TEXT    NOT NULL,
    headers        TEXT    NOT NULL,
    body           BLOB    NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    leased         INTEGER NOT NULL DEFAULT 0,
    enqueued_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX IF NOT EXISTS bus_messages_ready ON bus_messages (queue, leased, seq);
