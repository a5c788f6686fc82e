-- Threads, their items and feedback. Items are stored whole as JSONB; `seq`
-- gives the order (never timestamps). Every table carries the owner so each
-- query can be scoped by user without a join.
CREATE TABLE threads (
    seq        BIGSERIAL   PRIMARY KEY,
    id         TEXT        NOT NULL UNIQUE,
    user_id    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    title      TEXT,
    body       JSONB       NOT NULL
);
CREATE INDEX threads_user_seq ON threads (user_id, seq);

CREATE TABLE items (
    seq        BIGSERIAL   PRIMARY KEY,
    id         TEXT        NOT NULL UNIQUE,
    thread_id  TEXT        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id    TEXT        NOT NULL,
    item_type  TEXT        NOT NULL,
    hidden     BOOLEAN     NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    body       JSONB       NOT NULL
);
CREATE INDEX items_thread_seq ON items (thread_id, seq);
CREATE INDEX items_thread_visible_seq ON items (thread_id, seq) WHERE NOT hidden;

CREATE TABLE feedback (
    thread_id  TEXT        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    item_id    TEXT        NOT NULL,
    user_id    TEXT        NOT NULL,
    kind       TEXT        NOT NULL CHECK (kind IN ('positive', 'negative')),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (item_id, user_id)
);
CREATE INDEX feedback_thread ON feedback (thread_id);
