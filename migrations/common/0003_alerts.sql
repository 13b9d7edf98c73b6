-- Overdue alerts: the notification log is keyed by (activity, level, due date, owner), so a
-- new owner restarts the escalation at level 0 (R-TASK-5), and rows carry what a digest
-- needs to be sent (again, after a crash or a 4xx) without re-reading the activity.
CREATE TABLE notification_log_v2 (
    id TEXT PRIMARY KEY,
    activityid TEXT NOT NULL,
    activitytype TEXT NOT NULL,
    level INTEGER NOT NULL,
    scheduledend BIGINT NOT NULL,
    ownerid TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_userid TEXT,
    digest_id TEXT,
    item TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (activityid, level, scheduledend, ownerid)
);
INSERT INTO notification_log_v2 (id, activityid, activitytype, level, scheduledend, ownerid, recipient, recipient_userid, status, created_at, sent_at)
    SELECT id, activityid, activitytype, level, scheduledend, COALESCE(recipient_userid, ''), recipient, recipient_userid, status, created_at, sent_at FROM notification_log;
DROP TABLE notification_log;
ALTER TABLE notification_log_v2 RENAME TO notification_log;
CREATE INDEX notification_log_digest ON notification_log (digest_id, status);
CREATE INDEX notification_log_pending_v2 ON notification_log (status, created_at);
