-- Admin API bearer tokens (issue 7): only the SHA-256 of a token is kept, bound to the user
-- the token acts as (for the `@me` views) and a role: admin, marketer or viewer.
CREATE TABLE api_token (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    systemuserid TEXT NOT NULL REFERENCES systemuser(systemuserid),
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'viewer')),
    created_on BIGINT NOT NULL,
    revoked_on BIGINT
);
