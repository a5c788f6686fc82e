-- Attachments: the record (JSON), who owns it, the thread that first used it
-- and, unless a directory holds them, its bytes. A thread's attachments go
-- with it (ON DELETE CASCADE); one no message used is swept after
-- `[attachments] unused_ttl`, found by `created_unix`.
CREATE TABLE attachments (
    id           TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    thread_id    TEXT    REFERENCES threads (id) ON DELETE CASCADE,
    created_unix INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    uploaded     BOOLEAN NOT NULL,
    body         TEXT    NOT NULL,
    bytes        BLOB
);
CREATE INDEX attachments_thread ON attachments (thread_id);
CREATE INDEX attachments_unused ON attachments (created_unix) WHERE thread_id IS NULL;
