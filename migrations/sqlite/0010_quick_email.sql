-- SQLite part of migration 0010. SQLite cannot drop a reference in place, so the table is
-- rebuilt (SQLite's documented procedure for other table changes). `foreign_keys` cannot
-- change inside a transaction, so this migration runs outside sqlx's one and opens its own.
-- Run again after a crash before its history row was written, it does the same thing over.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE wave_new (
    activityid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'sending', 'paused', 'completed', 'canceled', 'aborted')),
    start_at BIGINT NOT NULL,
    timezone TEXT NOT NULL,
    subject_template TEXT NOT NULL,
    text_template TEXT NOT NULL,
    html_template TEXT,
    from_address TEXT NOT NULL,
    from_name TEXT,
    reply_to TEXT,
    rate_per_minute INTEGER,
    tat BIGINT NOT NULL DEFAULT 0,
    skip_responders_of TEXT,
    bulkoperationid TEXT,
    targeted INTEGER,
    excluded TEXT,
    expanded BOOLEAN NOT NULL DEFAULT FALSE,
    expand_until BIGINT,
    frozen TEXT,
    error TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO wave_new SELECT * FROM wave;
DROP TABLE wave;
ALTER TABLE wave_new RENAME TO wave;
CREATE INDEX wave_state ON wave (state, start_at);
COMMIT;
PRAGMA foreign_keys = ON;
