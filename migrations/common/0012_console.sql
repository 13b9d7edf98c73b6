-- The web console (issue 19). Who may sign in with a password (set by `inflow user
-- password`): only the Argon2 hash is kept, with the role the user acts in, as an API
-- token carries one.
CREATE TABLE console_login (
    systemuserid TEXT PRIMARY KEY REFERENCES systemuser(systemuserid),
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'viewer')),
    modifiedon BIGINT NOT NULL
);

-- Signed-in browsers. The cookie holds a random id; only its SHA-256 is kept here, with the
-- form token (CSRF) of the session and a server-side expiry.
CREATE TABLE console_session (
    id_sha256 TEXT PRIMARY KEY,
    systemuserid TEXT NOT NULL REFERENCES systemuser(systemuserid),
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'viewer')),
    csrf TEXT NOT NULL,
    createdon BIGINT NOT NULL,
    expireson BIGINT NOT NULL
);
CREATE INDEX console_session_expiry ON console_session (expireson);

-- The dashboard's charts count leads per day and source, and by source: from the indexes
-- alone, not the table.
CREATE INDEX lead_created_source ON lead (createdon, leadsourcecode);
CREATE INDEX lead_source ON lead (leadsourcecode);
-- The work charts read PBX calls by their start.
CREATE INDEX activity_pbx_calls ON activity (actualstart) WHERE activitytypecode = 'phonecall' AND actualstart IS NOT NULL;
-- Overdue activities by owner and the escalated ones (R-TASK-1's views, the work page) from
-- the index alone; it replaces activity_open_due, which it extends (the alert scan's range
-- on scheduledend uses it the same way).
DROP INDEX activity_open_due;
CREATE INDEX activity_open_due ON activity (scheduledend, activitytypecode, ownerid, activityid) WHERE statecode = 0;
-- The `stale` lead view asks, per open lead, whether anything regarding it changed lately:
-- answered from the index when it also holds the time.
DROP INDEX activity_regarding;
CREATE INDEX activity_regarding ON activity (regardingobjectid, modifiedon);
