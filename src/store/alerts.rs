//! Overdue scan (R-TASK-1) and the notification log of alert digests.

use crate::crm::status::NotificationStatus;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::db::{Exec, Row, Value};
use super::ops::NotificationClaim;
use super::{Result, Store};
use crate::crm::activity::date_only_due;
use crate::crm::alerts::{OverdueItem, UserNode};
use crate::crm::{EntityKind, EntityRef};

/// A pending row of a digest, as stored.
#[derive(Debug, Clone)]
pub struct DigestRow {
    pub id: Uuid,
    pub recipient: String,
    pub item: Option<String>,
    pub level: i32,
    pub attempts: i32,
}

fn regarding(r: &Row, id: &str, ty: &str) -> Result<Option<EntityRef>> {
    Ok(match (r.get::<Option<Uuid>>(id)?, r.get::<Option<EntityKind>>(ty)?) {
        (Some(i), Some(k)) => Some(EntityRef::new(k, i)),
        _ => None,
    })
}

impl Store {
    /// What is new for people since `since` and not yet told (R-LD-6, R-ACT-2, R-WV-6b):
    /// leads the daemon created (no `createdby`), open activities given to someone,
    /// campaigns gone over budget. Each names its recipient: the lead's, activity's or
    /// campaign's owner now. A notice told is in the notification log at `NOTICE_LEVEL`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn notices_since(
        &self,
        since: DateTime<Utc>,
        new_leads: bool,
    ) -> Result<Vec<crate::crm::alerts::PendingNotice>> {
        use crate::crm::alerts::{NOTICE_LEVEL, PendingNotice};
        let mut db = self.db.clone();
        let mut out = Vec::new();
        if new_leads {
            let sql = "SELECT leadid, ownerid, createdon, subject, COALESCE(firstname || ' ', '') || lastname \
                AS name FROM lead l WHERE createdby IS NULL AND createdon > $1 \
                       AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.activityid = l.leadid AND \
                       n.level = $2) ORDER BY createdon LIMIT 10000";
            for r in db.fetch_all(sql, vec![since.into(), NOTICE_LEVEL.into()]).await? {
                let id: Uuid = r.get("leadid")?;
                out.push(PendingNotice {
                    id,
                    kind: "new_lead".into(),
                    about: EntityRef::new(EntityKind::Lead, id),
                    recipient: r.get("ownerid")?,
                    at: r.get("createdon")?,
                    text: format!("{} — {}", r.get::<String>("subject")?, r.get::<String>("name")?),
                });
            }
        }
        let sql = "SELECT h.id, h.entitytype, h.entityid, h.at, h.summary, a.ownerid FROM record_history h \
            JOIN activity a ON a.activityid = h.entityid \
                   WHERE h.kind = 'assigned' AND h.at > $1 AND a.statecode = 0 \
                     AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.activityid = h.id AND n.level = \
                     $2) ORDER BY h.at LIMIT 10000";
        for r in db.fetch_all(sql, vec![since.into(), NOTICE_LEVEL.into()]).await? {
            out.push(PendingNotice {
                id: r.get("id")?,
                kind: "assigned".into(),
                about: EntityRef::new(r.get("entitytype")?, r.get("entityid")?),
                recipient: r.get("ownerid")?,
                at: r.get("at")?,
                text: r.get("summary")?,
            });
        }
        let sql = "SELECT h.id, h.entityid, h.at, h.summary, c.name, c.ownerid FROM record_history h JOIN \
            campaign c ON c.campaignid = h.entityid \
                   WHERE h.kind = 'over_budget' AND h.at > $1 \
                     AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.activityid = h.id AND n.level = \
                     $2) ORDER BY h.at LIMIT 10000";
        for r in db.fetch_all(sql, vec![since.into(), NOTICE_LEVEL.into()]).await? {
            out.push(PendingNotice {
                id: r.get("id")?,
                kind: "over_budget".into(),
                about: EntityRef::new(EntityKind::Campaign, r.get("entityid")?),
                recipient: r.get("ownerid")?,
                at: r.get("at")?,
                text: format!("{}: {}", r.get::<String>("name")?, r.get::<String>("summary")?),
            });
        }
        Ok(out)
    }

    /// R-TASK-1: open activities of the given kinds whose due instant has passed. Plain
    /// activities compare their instant; campaign activities and responses carry a DateOnly
    /// due date that falls due at the end of that day in `tz`, so they are overdue once the
    /// org's date is past it. Each query runs on a partial index `(scheduledend) WHERE statecode = 0`.
    pub async fn overdue_items(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
        kinds: &[EntityKind],
        limit: i64,
    ) -> Result<Vec<OverdueItem>> {
        let mut db = self.db.clone();
        let mut out = Vec::new();
        let plain: Vec<EntityKind> = kinds.iter().copied().filter(|k| k.is_plain_activity()).collect();
        if !plain.is_empty() {
            let ph: Vec<String> = (0..plain.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT activityid, activitytypecode, subject, ownerid, owneridtype, scheduledend, \
                    regardingobjectid, regardingobjectidtype \
                 FROM activity WHERE statecode = 0 AND scheduledend < $1 AND activitytypecode IN ({}) ORDER BY \
                 scheduledend LIMIT $2",
                ph.join(", ")
            );
            let mut args: Vec<Value> = vec![now.into(), limit.into()];
            args.extend(plain.iter().map(|k| Value::from(*k)));
            for r in db.fetch_all(&sql, args).await? {
                out.push(OverdueItem {
                    kind: r.get("activitytypecode")?,
                    id: r.get("activityid")?,
                    subject: r.get::<Option<String>>("subject")?.unwrap_or_default(),
                    owner: r.get("ownerid")?,
                    owner_type: r.get("owneridtype")?,
                    due: r.get("scheduledend")?,
                    regarding: regarding(&r, "regardingobjectid", "regardingobjectidtype")?,
                });
            }
        }
        let today = now.with_timezone(&tz).date_naive();
        for (kind, table) in
            [(EntityKind::Campaignactivity, "campaignactivity"), (EntityKind::Campaignresponse, "campaignresponse")]
        {
            if !kinds.contains(&kind) {
                continue;
            }
            let sql = format!(
                "SELECT activityid, subject, ownerid, owneridtype, scheduledend, regardingobjectid FROM {table} \
                 WHERE statecode = 0 AND scheduledend < $1 ORDER BY scheduledend LIMIT $2"
            );
            for r in db.fetch_all(&sql, vec![today.into(), limit.into()]).await? {
                let date: NaiveDate = r.get("scheduledend")?;
                out.push(OverdueItem {
                    kind,
                    id: r.get("activityid")?,
                    subject: r.get("subject")?,
                    owner: r.get("ownerid")?,
                    owner_type: r.get("owneridtype")?,
                    due: date_only_due(date, tz),
                    regarding: Some(EntityRef::new(EntityKind::Campaign, r.get("regardingobjectid")?)),
                });
            }
        }
        Ok(out)
    }

    /// Every user (for the manager chain) and every team's contact address.
    pub async fn alert_directory(&self) -> Result<(HashMap<Uuid, UserNode>, HashMap<Uuid, String>)> {
        let mut db = self.db.clone();
        let mut users = HashMap::new();
        for r in db
            .fetch_all(
                "SELECT systemuserid, fullname, firstname, lastname, internalemailaddress, \
            isdisabled, parentsystemuserid FROM systemuser",
                vec![],
            )
            .await?
        {
            let name = r.get::<Option<String>>("fullname")?.unwrap_or_else(|| {
                let first: Option<String> = r.get("firstname").ok().flatten();
                let last: String = r.get("lastname").unwrap_or_default();
                first.map(|f| format!("{f} {last}")).unwrap_or(last)
            });
            let id: Uuid = r.get("systemuserid")?;
            users.insert(
                id,
                UserNode {
                    id,
                    name,
                    email: r.get("internalemailaddress")?,
                    disabled: r.get("isdisabled")?,
                    manager: r.get("parentsystemuserid")?,
                },
            );
        }
        let mut teams = HashMap::new();
        for r in db.fetch_all("SELECT teamid, contact_email FROM team WHERE contact_email IS NOT NULL", vec![]).await? {
            teams.insert(r.get("teamid")?, r.get("contact_email")?);
        }
        Ok((users, teams))
    }

    /// Claims notifications in one transaction (multi-row inserts, ON CONFLICT DO NOTHING);
    /// returns which were new — only those go out (R-TASK-5).
    pub async fn claim_notifications(&self, claims: &[NotificationClaim]) -> Result<Vec<bool>> {
        use std::collections::HashSet;
        let mut tx = self.db.begin().await?;
        let mut new: HashSet<(Uuid, i32, i64, Uuid)> = HashSet::new();
        for chunk in claims.chunks(super::ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO notification_log (id, activityid, activitytype, level, scheduledend, ownerid, \
                    recipient, recipient_userid, digest_id, item, status, created_at) VALUES ",
            );
            let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 11);
            for (i, c) in chunk.iter().enumerate() {
                let b = i * 11;
                let ph: Vec<String> = (1..=11).map(|k| format!("${}", b + k)).collect();
                sql.push_str(&format!(
                    "{}({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 'pending', {})",
                    if i > 0 { ", " } else { "" },
                    ph[0],
                    ph[1],
                    ph[2],
                    ph[3],
                    ph[4],
                    ph[5],
                    ph[6],
                    ph[7],
                    ph[8],
                    ph[9],
                    ph[10]
                ));
                args.extend([
                    Uuid::new_v4().into(),
                    c.activityid.into(),
                    c.activitytype.into(),
                    c.level.into(),
                    c.scheduledend.into(),
                    c.ownerid.into(),
                    c.recipient.clone().into(),
                    c.recipient_userid.into(),
                    c.digest_id.into(),
                    c.item.clone().into(),
                    c.created_at.into(),
                ]);
            }
            sql.push_str(
                " ON CONFLICT (activityid, level, scheduledend, ownerid) DO NOTHING RETURNING \
                activityid, level, scheduledend, ownerid",
            );
            for r in tx.fetch_all(&sql, args).await? {
                let due: DateTime<Utc> = r.get("scheduledend")?;
                new.insert((r.get("activityid")?, r.get("level")?, due.timestamp_millis(), r.get("ownerid")?));
            }
        }
        tx.commit().await?;
        Ok(claims
            .iter()
            .map(|c| new.contains(&(c.activityid, c.level, c.scheduledend.timestamp_millis(), c.ownerid)))
            .collect())
    }

    /// The query plan of the plain-activity overdue query (for the benchmark). Dialect:
    /// SQLite says EXPLAIN QUERY PLAN, PostgreSQL EXPLAIN.
    pub async fn explain_overdue(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let q = "SELECT activityid FROM activity WHERE statecode = 0 AND scheduledend < $1 AND \
            activitytypecode IN ($2, $3) ORDER BY scheduledend LIMIT 100000";
        let (sql, col) = match self.engine() {
            super::Engine::Sqlite => (format!("EXPLAIN QUERY PLAN {q}"), "detail"),
            super::Engine::Postgres => (format!("EXPLAIN {q}"), "QUERY PLAN"),
        };
        let rows = self
            .db
            .clone()
            .fetch_all(&sql, vec![now.into(), EntityKind::Task.into(), EntityKind::Phonecall.into()])
            .await?;
        rows.iter().map(|r| r.get(col)).collect()
    }

    /// The pending rows of a digest.
    pub async fn digest_rows(&self, digest: Uuid) -> Result<Vec<DigestRow>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT id, recipient, item, level, attempts FROM notification_log WHERE digest_id = $1 \
                AND status = 'pending' ORDER BY scheduledend, id",
                vec![digest.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DigestRow {
                    id: r.get("id")?,
                    recipient: r.get("recipient")?,
                    item: r.get("item")?,
                    level: r.get("level")?,
                    attempts: r.get("attempts")?,
                })
            })
            .collect()
    }

    /// Marks a digest's pending rows sent, failed (with the reason), or retried (attempts + 1).
    pub async fn finish_digest(
        &self,
        digest: Uuid,
        status: NotificationStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.db
            .clone()
            .execute(
                "UPDATE notification_log SET status = $2, last_error = $3, attempts = attempts + 1, \
                    sending_until = NULL, sent_at = CASE WHEN $2 = 'sent' THEN $4 ELSE sent_at END \
                 WHERE digest_id = $1 AND status = 'pending'",
                vec![digest.into(), status.into(), error.into(), now.into()],
            )
            .await
    }

    /// Digests with rows still pending since before `before` (their job was lost, or a
    /// 4xx left them for later).
    /// Claims a pending digest for one sender until `until`: false if another job holds a
    /// live claim (it is sending it now) or nothing is pending. The claim ends with the
    /// outcome (`finish_digest`) or when it runs out (a sender that died).
    pub async fn claim_digest(&self, digest: Uuid, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool> {
        let n = self
            .db
            .clone()
            .execute(
                "UPDATE notification_log SET sending_until = $2 WHERE digest_id = $1 AND status = 'pending' \
                 AND NOT EXISTS (SELECT 1 FROM notification_log o WHERE o.digest_id = $1 AND o.status = \
                 'pending' AND o.sending_until >= $3)",
                vec![digest.into(), until.into(), now.into()],
            )
            .await?;
        Ok(n > 0)
    }

    pub async fn stale_digests(&self, before: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT DISTINCT digest_id FROM notification_log WHERE status = 'pending' AND \
                created_at < $1 AND digest_id IS NOT NULL",
                vec![before.into()],
            )
            .await?;
        rows.iter().map(|r| r.get("digest_id")).collect()
    }
}
