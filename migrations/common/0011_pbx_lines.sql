-- Phone lines as data (DOMAIN §2.13 `pbx_line`, issue 20): tracking numbers and company
-- lines, managed through the API and the CLI without a restart. `[[pbx.lines]]` in the
-- config seeds its own lines (and updates them on each start: `from_config`).
CREATE TABLE pbx_line (
    pbx_lineid TEXT PRIMARY KEY,
    -- The number dialled, E.164.
    did TEXT NOT NULL UNIQUE,
    name TEXT,
    -- Owner of calls, callbacks and leads from the line: a systemuser id or internal e-mail.
    owner TEXT NOT NULL,
    -- R-PBX-4: the line's wave; or its campaign, whose current phone campaign activity is used.
    campaignactivityid TEXT,
    campaignid TEXT,
    create_leads BOOLEAN NOT NULL DEFAULT FALSE,
    min_answered_seconds INTEGER,
    lead_subject TEXT,
    from_config BOOLEAN NOT NULL DEFAULT FALSE,
    createdon BIGINT NOT NULL,
    modifiedon BIGINT NOT NULL
);
