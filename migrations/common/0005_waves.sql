-- Campaign e-mail waves (DOMAIN §4.4, §4.5). `wave` is the daemon's schedule and books for
-- one e-mail campaign activity; `wave_delivery` is one row per (wave, normalised address),
-- written at the wave's start with its Message-ID, tracking token and subject (DESIGN rule
-- 3); its id is the id of the outbound e-mail activity, which the claim that first hands
-- the delivery to a sender creates (`has_activity`), so the activity too exists before any
-- SMTP attempt, and the IMAP ingest correlates replies to it.
CREATE TABLE wave (
    activityid TEXT PRIMARY KEY REFERENCES campaignactivity(activityid),
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
    -- Every delivery row is written; until then `expand_until` is the expanding daemon's lease.
    expanded BOOLEAN NOT NULL DEFAULT FALSE,
    expand_until BIGINT,
    -- The recipients frozen at the start (JSON: member type, id, address), kept until every
    -- chunk is written, so a resumed expansion writes exactly the member set of the start.
    frozen TEXT,
    error TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX wave_state ON wave (state, start_at);

CREATE TABLE wave_delivery (
    id TEXT PRIMARY KEY,
    wave_id TEXT NOT NULL REFERENCES wave(activityid),
    address TEXT NOT NULL,
    written TEXT NOT NULL,
    member_id TEXT NOT NULL,
    member_type TEXT NOT NULL,
    message_id TEXT NOT NULL,
    token TEXT NOT NULL,
    vars TEXT NOT NULL,
    subject TEXT NOT NULL,
    has_activity BOOLEAN NOT NULL DEFAULT FALSE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'canceled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    reason TEXT,
    detail TEXT,
    sent_at BIGINT,
    UNIQUE (wave_id, address)
);
CREATE INDEX wave_delivery_due ON wave_delivery (wave_id, state, next_attempt_at);

-- One row per SMTP relay: the global rate (GCRA theoretical arrival time) shared by every
-- wave and every daemon, and the back-off after a throttling reply.
CREATE TABLE smtp_relay (
    relay TEXT PRIMARY KEY,
    tat BIGINT NOT NULL DEFAULT 0,
    throttled_until BIGINT NOT NULL DEFAULT 0,
    throttle_streak INTEGER NOT NULL DEFAULT 0,
    last_reply TEXT,
    updated_at BIGINT NOT NULL
);

-- Keys the daemon generates once and shares between instances (the unsubscribe-link key
-- when no key file is configured).
CREATE TABLE instance_secret (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
