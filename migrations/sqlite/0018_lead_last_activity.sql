-- SQLite part of migration 0018 (issue 19, R-LD-5): when something last happened with a
-- lead, so the `stale` view reads one column instead of asking, for every open lead, whether
-- any activity regarding it or naming it as a party changed lately (531 ms at 100,000 leads
-- and 1,000,000 activities, over the console's 100 ms; 6 ms with this).
--
-- `lastactivityon` (epoch ms) is the `modifiedon` of the latest activity event of the lead:
-- an activity regarding it or naming it as a party was created, changed state (completed,
-- canceled, sent…), or was moved to it. Editing an activity's text does not count. NULL:
-- none yet. Kept by the triggers below, in the transaction that writes the activity, so no
-- writer has to remember it.
ALTER TABLE lead ADD COLUMN lastactivityon BIGINT;
UPDATE lead SET lastactivityon = (
    SELECT MAX(m) FROM (
        SELECT MAX(a.modifiedon) AS m FROM activity a WHERE a.regardingobjectid = lead.leadid
        UNION ALL
        SELECT MAX(a.modifiedon) AS m FROM activityparty p JOIN activity a ON a.activityid = p.activityid
        WHERE p.partyid = lead.leadid
    ) AS t
);

-- The `stale` view answered from an index: open leads by creation, with the time of their
-- last activity beside it.
DROP INDEX lead_state_created;
CREATE INDEX lead_state_created ON lead (statecode, createdon, lastactivityon);

-- A reference typed as something else is no lead: those activities (a wave's e-mails regard
-- its campaign activity) skip the trigger.
CREATE TRIGGER activity_created_touches_lead AFTER INSERT ON activity
WHEN NEW.regardingobjectid IS NOT NULL AND (NEW.regardingobjectidtype IS NULL OR NEW.regardingobjectidtype = 'lead')
BEGIN
    UPDATE lead SET lastactivityon = NEW.modifiedon
    WHERE leadid = NEW.regardingobjectid AND (lastactivityon IS NULL OR lastactivityon < NEW.modifiedon);
END;

CREATE TRIGGER activity_changed_touches_lead AFTER UPDATE OF statecode, regardingobjectid ON activity
WHEN OLD.statecode IS NOT NEW.statecode OR OLD.regardingobjectid IS NOT NEW.regardingobjectid
BEGIN
    UPDATE lead SET lastactivityon = NEW.modifiedon
    WHERE leadid = NEW.regardingobjectid AND (lastactivityon IS NULL OR lastactivityon < NEW.modifiedon);
    UPDATE lead SET lastactivityon = NEW.modifiedon
    WHERE leadid IN (SELECT partyid FROM activityparty WHERE activityid = NEW.activityid)
      AND (lastactivityon IS NULL OR lastactivityon < NEW.modifiedon);
END;

CREATE TRIGGER activityparty_touches_lead AFTER INSERT ON activityparty
WHEN NEW.partyid IS NOT NULL AND (NEW.partyidtype IS NULL OR NEW.partyidtype = 'lead')
BEGIN
    UPDATE lead SET lastactivityon = (SELECT modifiedon FROM activity WHERE activityid = NEW.activityid)
    WHERE leadid = NEW.partyid
      AND (lastactivityon IS NULL OR lastactivityon < (SELECT modifiedon FROM activity WHERE activityid = NEW.activityid));
END;

CREATE TRIGGER activityparty_moved_touches_lead AFTER UPDATE OF partyid ON activityparty
WHEN NEW.partyid IS NOT NULL AND (NEW.partyidtype IS NULL OR NEW.partyidtype = 'lead')
    AND OLD.partyid IS NOT NEW.partyid
BEGIN
    UPDATE lead SET lastactivityon = (SELECT modifiedon FROM activity WHERE activityid = NEW.activityid)
    WHERE leadid = NEW.partyid
      AND (lastactivityon IS NULL OR lastactivityon < (SELECT modifiedon FROM activity WHERE activityid = NEW.activityid));
END;
