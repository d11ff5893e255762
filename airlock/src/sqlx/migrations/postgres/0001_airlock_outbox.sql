-- airlock's outbox: intents written in the caller's transaction, dispatched
-- by a relay after COMMIT. JSON, not JSONB: the relay reads the text back
-- as written, and a row costs less to insert.
CREATE TABLE IF NOT EXISTS airlock_outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task         TEXT        NOT NULL,
    payload      JSON        NOT NULL,
    options      JSON        NOT NULL DEFAULT '{}',
    origin       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts     INTEGER     NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    last_error   TEXT,
    state        TEXT        NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'done', 'dead')),
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at      TIMESTAMPTZ
);

-- The relay claims pending rows in id order.
CREATE INDEX IF NOT EXISTS airlock_outbox_pending
    ON airlock_outbox (id) WHERE state = 'pending';

CREATE INDEX IF NOT EXISTS airlock_outbox_dead
    ON airlock_outbox (id) WHERE state = 'dead';
