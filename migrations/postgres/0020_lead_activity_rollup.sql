-- PostgreSQL part of migration 0020 (issue 19, R-LD-5): `lead.lastactivityon` (epoch ms), so
-- the `stale` view reads one column, as on SQLite (236 ms at 100,000 leads and 1,000,000
-- activities when it asked the activities of every open lead).
--
-- Not kept by triggers: row triggers that update the lead inside every writer's transaction
-- took call processing from about 1,000 to 394 calls/s (see 0018). Instead a roll-up
-- (`Store::roll_up_lead_activity`, every minute on each daemon, one at a time) folds the
-- activities modified since its checkpoint into the column, and the view adds the few
-- activities modified since that checkpoint itself, so it is exact between roll-ups.
-- Here `lastactivityon` is the latest `modifiedon` of an activity regarding the lead or
-- naming it as a party (the view's old meaning on PostgreSQL).
ALTER TABLE lead ADD COLUMN lastactivityon BIGINT;
UPDATE lead SET lastactivityon = t.m
FROM (
    SELECT leadid, MAX(m) AS m FROM (
        SELECT a.regardingobjectid AS leadid, a.modifiedon AS m FROM activity a WHERE a.regardingobjectid IS NOT NULL
        UNION ALL
        SELECT p.partyid, a.modifiedon FROM activityparty p JOIN activity a ON a.activityid = p.activityid
        WHERE p.partyid IS NOT NULL
    ) AS e GROUP BY leadid
) AS t
WHERE lead.leadid = t.leadid;

-- The roll-up and the view's tail find the activities modified since a time.
CREATE INDEX activity_modified ON activity (modifiedon);

-- How far the roll-up has read (epoch ms of the daemon clock that ran it).
CREATE TABLE rollup_checkpoint (name TEXT PRIMARY KEY, upto BIGINT NOT NULL);
INSERT INTO rollup_checkpoint (name, upto)
VALUES ('lead_last_activity', (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT);

-- The `stale` view answered from an index: open leads by creation, with the time of their
-- last activity beside it (as on SQLite).
DROP INDEX lead_state_created;
CREATE INDEX lead_state_created ON lead (statecode, createdon, lastactivityon);
ANALYZE lead;
