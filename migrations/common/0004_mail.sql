-- IMAP ingest (DOMAIN §4.1). One row per polled (mailbox, folder): the checkpoint of
-- R-EM-1 (UIDVALIDITY + last UID, advanced only after the records are committed), the lease
-- that keeps one daemon per mailbox (DESIGN rule 5), and the connection state operators see.
CREATE TABLE mailbox_state (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity BIGINT,
    last_uid BIGINT NOT NULL DEFAULT 0,
    lease_holder TEXT,
    lease_until BIGINT,
    state TEXT NOT NULL DEFAULT 'idle',
    state_detail TEXT,
    last_poll_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (mailbox, folder)
);

-- Who sent an inbound item and what it was: the per-sender rate limit and the views.
ALTER TABLE inbound_event ADD COLUMN sender TEXT;
ALTER TABLE inbound_event ADD COLUMN class TEXT;
CREATE INDEX inbound_event_sender ON inbound_event (sender, received_at);

-- Bounce counts per address: a hard bounce suppresses at once, soft ones after N.
CREATE TABLE mail_bounce (
    address TEXT PRIMARY KEY,
    soft_count INTEGER NOT NULL DEFAULT 0,
    hard_count INTEGER NOT NULL DEFAULT 0,
    delayed_count INTEGER NOT NULL DEFAULT 0,
    last_status TEXT,
    last_diagnostic TEXT,
    last_at BIGINT NOT NULL
);

-- R-RS-2 lookups by responder (address or record) rather than by wave.
CREATE INDEX campaignresponse_email ON campaignresponse (emailaddress);
CREATE INDEX campaignresponse_customer ON campaignresponse (customerid);
