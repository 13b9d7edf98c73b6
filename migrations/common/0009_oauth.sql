-- OAuth 2.0 sign-in for mailboxes and the relay (issue 17). One grant per account (a
-- mailbox's name, or `smtp`). Tokens are sealed (ChaCha20-Poly1305, `oauth::seal`) before
-- they reach this table: a copy of the database alone gives no access to anyone's mail.
CREATE TABLE oauth_grant (
    account TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    scopes TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    access_token TEXT,
    access_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    last_refresh_at BIGINT,
    last_error TEXT
);
