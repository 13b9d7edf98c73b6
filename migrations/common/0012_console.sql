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

-- The dashboard's charts read leads by creation time; the work charts read phone calls by
-- type and creation time.
CREATE INDEX lead_createdon ON lead (createdon);
CREATE INDEX activity_type_created ON activity (activitytypecode, createdon);
