-- PostgreSQL part of migration 0001. Only what differs from SQLite lives here.

-- Raw bytes of quarantined or replayable inbound items (PostgreSQL spells binary BYTEA).
ALTER TABLE inbound_event ADD COLUMN raw BYTEA;

-- Foreign keys SQLite declares inline but PostgreSQL also wants indexed for cheap deletes.
CREATE INDEX campaignitem_list ON campaignitem (listid);
CREATE INDEX campaignactivityitem_list ON campaignactivityitem (listid);
