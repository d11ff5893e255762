-- airlock's outbox: intents written in the caller's transaction, dispatched
-- by a relay after COMMIT. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS airlock_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    options      TEXT    NOT NULL DEFAULT '{}',
    origin       TEXT,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    last_error   TEXT,
    state        TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'done', 'dead')),
    available_at INTEGER NOT NULL,
    done_at      INTEGER
);

-- The relay claims pending rows in id order.
CREATE INDEX IF NOT EXISTS airlock_outbox_pending
    ON airlock_outbox (id) WHERE state = 'pending';

CREATE INDEX IF NOT EXISTS airlock_outbox_dead
    ON airlock_outbox (id) WHERE state = 'dead';
