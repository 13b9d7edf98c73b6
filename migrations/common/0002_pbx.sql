-- PBX call records (issue: PBX webhooks). Portable part.

-- Every accepted webhook event, raw and normalised; one row per (provider, event id), so a
-- redelivered event is a no-op.
CREATE TABLE pbx_event (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    facts TEXT NOT NULL,
    raw TEXT NOT NULL,
    UNIQUE (provider, event_id)
);
CREATE INDEX pbx_event_call ON pbx_event (provider, call_id);

-- One row per call: its events are merged into one record and processed into CRM records
-- once final (or timed out). `version` counts accepted events; a call is (re)processed while
-- processed_version < version.
CREATE TABLE pbx_call (
    provider TEXT NOT NULL,
    call_id TEXT NOT NULL,
    first_event_at BIGINT NOT NULL,
    last_event_at BIGINT NOT NULL,
    is_final BOOLEAN NOT NULL DEFAULT FALSE,
    timed_out BOOLEAN NOT NULL DEFAULT FALSE,
    version BIGINT NOT NULL DEFAULT 1,
    processed_version BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'processed', 'skipped', 'failed')),
    reason TEXT,
    activityid TEXT,
    result TEXT,
    PRIMARY KEY (provider, call_id)
);
CREATE INDEX pbx_call_open ON pbx_call (is_final, last_event_at) WHERE status = 'open';
CREATE INDEX activity_phonenumber ON activity (phonenumber, statecode) WHERE phonenumber IS NOT NULL;
