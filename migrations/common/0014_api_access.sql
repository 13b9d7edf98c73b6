-- Issue 22 §6: an API token may expire, and its last use is recorded (to one minute), so an
-- operator sees which tokens are still used before revoking or rotating them.
ALTER TABLE api_token ADD COLUMN expires_on BIGINT;
ALTER TABLE api_token ADD COLUMN last_used_on BIGINT;

-- Every successful write through the admin API: who (the token's user, role and name), when,
-- and what (method, route, path, status). Admins read it at /api/v1/ops/audit.
CREATE TABLE api_audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    systemuserid TEXT NOT NULL,
    role TEXT NOT NULL,
    token_name TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX api_audit_at ON api_audit (at);
CREATE INDEX api_audit_user ON api_audit (systemuserid, at);
