-- Issue 22 §6: an API token may expire, and its last use is recorded (to one minute), so an
-- operator sees which tokens are still used before revoking or rotating them.
ALTER TABLE api_token ADD COLUMN expires_on BIGINT;
ALTER TABLE api_token ADD COLUMN last_used_on BIGINT;
