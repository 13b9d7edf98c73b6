-- SQLite part of migration 0001. Only what differs from PostgreSQL lives here.

-- Raw bytes of quarantined or replayable inbound items (SQLite spells binary BLOB).
ALTER TABLE inbound_event ADD COLUMN raw BLOB;
