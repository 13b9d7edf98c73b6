-- Issue 19 (R-LD-5): when something last happened with a lead, so the `stale` view reads one
-- column instead of asking, for every open lead, whether any activity regarding it or
-- naming it as a party changed lately (about 250 ms on SQLite at 100,000 leads and
-- 1,000,000 activities, over the console's 100 ms).
--
-- `lastactivityon` (epoch ms) is the `modifiedon` of the latest activity event of the lead:
-- an activity regarding it or naming it as a party was created, changed state (completed,
-- canceled, sent…), or was moved to it. Editing an activity's text does not count. NULL:
-- none yet. Kept by triggers (each engine's part of this migration), in the transaction
-- that writes the activity, so no writer has to remember it.
ALTER TABLE lead ADD COLUMN lastactivityon BIGINT;
UPDATE lead SET lastactivityon = (
    SELECT MAX(m) FROM (
        SELECT MAX(a.modifiedon) AS m FROM activity a WHERE a.regardingobjectid = lead.leadid
        UNION ALL
        SELECT MAX(a.modifiedon) AS m FROM activityparty p JOIN activity a ON a.activityid = p.activityid
        WHERE p.partyid = lead.leadid
    ) AS t
);
