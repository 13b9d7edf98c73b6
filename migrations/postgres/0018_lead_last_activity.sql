-- PostgreSQL part of migration 0018: the triggers. `lastactivityon` is not indexed here, so
-- the triggers' updates of a lead stay heap-only (HOT) and touch none of its indexes; the
-- `stale` view reads the open leads by creation (`lead_state_created`) and filters on it.
CREATE FUNCTION activity_touches_lead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lead SET lastactivityon = NEW.modifiedon
    WHERE leadid = NEW.regardingobjectid AND (lastactivityon IS NULL OR lastactivityon < NEW.modifiedon);
    IF TG_OP = 'UPDATE' THEN
        UPDATE lead SET lastactivityon = NEW.modifiedon
        WHERE leadid IN (SELECT partyid FROM activityparty WHERE activityid = NEW.activityid)
          AND (lastactivityon IS NULL OR lastactivityon < NEW.modifiedon);
    END IF;
    RETURN NULL;
END $$;

-- A reference typed as something else is no lead: those activities (a wave's e-mails regard
-- its campaign activity) skip the function call.
CREATE TRIGGER activity_created_touches_lead AFTER INSERT ON activity
FOR EACH ROW
WHEN (NEW.regardingobjectid IS NOT NULL AND (NEW.regardingobjectidtype IS NULL OR NEW.regardingobjectidtype = 'lead'))
EXECUTE FUNCTION activity_touches_lead();

CREATE TRIGGER activity_changed_touches_lead AFTER UPDATE OF statecode, regardingobjectid ON activity
FOR EACH ROW
WHEN (OLD.statecode IS DISTINCT FROM NEW.statecode OR OLD.regardingobjectid IS DISTINCT FROM NEW.regardingobjectid)
EXECUTE FUNCTION activity_touches_lead();

CREATE FUNCTION activityparty_touches_lead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lead SET lastactivityon = a.modifiedon FROM activity a
    WHERE a.activityid = NEW.activityid AND lead.leadid = NEW.partyid
      AND (lead.lastactivityon IS NULL OR lead.lastactivityon < a.modifiedon);
    RETURN NULL;
END $$;

CREATE TRIGGER activityparty_touches_lead AFTER INSERT ON activityparty
FOR EACH ROW WHEN (NEW.partyid IS NOT NULL AND (NEW.partyidtype IS NULL OR NEW.partyidtype = 'lead'))
EXECUTE FUNCTION activityparty_touches_lead();

CREATE TRIGGER activityparty_moved_touches_lead AFTER UPDATE OF partyid ON activityparty
FOR EACH ROW
WHEN (NEW.partyid IS NOT NULL AND (NEW.partyidtype IS NULL OR NEW.partyidtype = 'lead')
      AND OLD.partyid IS DISTINCT FROM NEW.partyid)
EXECUTE FUNCTION activityparty_touches_lead();

-- Fresh statistics for the planner: the backfill rewrote every lead (autovacuum reclaims the old
-- versions later).
ANALYZE lead;
