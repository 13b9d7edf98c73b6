-- Close the loop (issue 18, DOMAIN §4.9).
-- R-OPP-1: what a win records.
ALTER TABLE opportunity ADD COLUMN actualvalue BIGINT;
ALTER TABLE opportunity ADD COLUMN actualclosedate TEXT;
-- What people and rules did to a record that its own row no longer shows: stage and
-- probability changes, win/lose/reopen, the Act, completion and cancellation, callbacks
-- closed by a call (R-PBX-6). The timeline (R-DEAL-1) reads it beside the records.
CREATE TABLE record_history (
    id TEXT PRIMARY KEY,
    entitytype TEXT NOT NULL,
    entityid TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX record_history_entity ON record_history (entityid, at);
