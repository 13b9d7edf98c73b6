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
-- R-DUP-5: a record merged into another points at it (Dynamics' masterid) and is
-- deactivated; a dismissed pair is never proposed again.
ALTER TABLE account ADD COLUMN masterid TEXT;
ALTER TABLE contact ADD COLUMN masterid TEXT;
ALTER TABLE lead ADD COLUMN masterid TEXT;
CREATE TABLE dup_dismissed (
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    dismissed_at BIGINT NOT NULL,
    PRIMARY KEY (a, b)
);
-- R-QC-1/R-QC-2: a run's members left out, by reason (JSON).
ALTER TABLE bulkoperation ADD COLUMN excluded TEXT;
-- Notices in the digests (R-LD-6, R-ACT-2, R-WV-6b): the alerts scan reads what is new.
CREATE INDEX record_history_kind ON record_history (kind, at);
CREATE INDEX lead_auto_created ON lead (createdon) WHERE createdby IS NULL;
-- A digest being sent is claimed until this instant (issue 22): a second job for the same
-- digest (re-pushed while the first was still retrying) skips it instead of sending it too.
ALTER TABLE notification_log ADD COLUMN sending_until BIGINT;
