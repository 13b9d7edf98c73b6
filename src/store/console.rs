//! What the web console keeps (issue 19): password logins (Argon2 hashes set by `inflow user
//! password`), signed-in sessions (only the SHA-256 of the cookie, the form token and a
//! server-side expiry), and the few figures its charts need that the API's views do not
//! already give. SQL only; hashing and the rules of a session are the console's.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::db::Exec;
use super::{Result, Store};
use crate::crm::views as cal;

/// A signed-in browser, as the console needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleSession {
    pub user: Uuid,
    /// The user's name as pages greet them (full name, else e-mail), read with the session.
    pub user_name: String,
    pub role: String,
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// One day's count of one series of a stacked chart.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCount {
    pub day: NaiveDate,
    pub series: Option<i64>,
    pub count: i64,
}

impl Store {
    /// Sets (or replaces) a user's console password hash and role.
    pub async fn set_console_login(&self, user: Uuid, hash: &str, role: &str, now: DateTime<Utc>) -> Result<()> {
        self.db
            .clone()
            .execute(
                "INSERT INTO console_login (systemuserid, password_hash, role, modifiedon) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (systemuserid) DO UPDATE SET password_hash = excluded.password_hash, role = \
                 excluded.role, modifiedon = excluded.modifiedon",
                vec![user.into(), hash.into(), role.into(), now.into()],
            )
            .await?;
        Ok(())
    }

    /// The password hash and role of an enabled user who may sign in with a password.
    pub async fn console_login(&self, user: Uuid) -> Result<Option<(String, String)>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                "SELECT l.password_hash, l.role FROM console_login l JOIN systemuser u ON u.systemuserid = \
                    l.systemuserid \
                 WHERE l.systemuserid = $1 AND u.isdisabled = FALSE",
                vec![user.into()],
            )
            .await?;
        row.map(|r| Ok((r.get("password_hash")?, r.get("role")?))).transpose()
    }

    /// Starts a session; sessions that have expired are removed on the way.
    pub async fn start_console_session(
        &self,
        id_sha256: &str,
        user: Uuid,
        role: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.execute("DELETE FROM console_session WHERE expireson <= $1", vec![now.into()]).await?;
        tx.execute(
            "INSERT INTO console_session (id_sha256, systemuserid, role, csrf, createdon, expireson) VALUES \
                ($1, $2, $3, $4, $5, $6)",
            vec![id_sha256.into(), user.into(), role.into(), csrf.into(), now.into(), expires.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session with this id hash, if its user is still enabled.
    pub async fn console_session(&self, id_sha256: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                "SELECT s.systemuserid, COALESCE(u.fullname, u.internalemailaddress, '') AS user_name, s.role, \
                    s.csrf, s.expireson \
                 FROM console_session s JOIN systemuser u ON u.systemuserid = s.systemuserid \
                 WHERE s.id_sha256 = $1 AND s.expireson > $2 AND u.isdisabled = FALSE",
                vec![id_sha256.into(), now.into()],
            )
            .await?;
        row.map(|r| {
            Ok(ConsoleSession {
                user: r.get("systemuserid")?,
                user_name: r.get("user_name")?,
                role: r.get("role")?,
                csrf: r.get("csrf")?,
                expires: r.get("expireson")?,
            })
        })
        .transpose()
    }

    /// Ends a session (sign-out).
    pub async fn end_console_session(&self, id_sha256: &str) -> Result<()> {
        self.db.clone().execute("DELETE FROM console_session WHERE id_sha256 = $1", vec![id_sha256.into()]).await?;
        Ok(())
    }

    /// Leads created per local day over the last `days` days, per lead source (oldest first;
    /// a day without leads has no entries). Counted by the database, a few queries for the
    /// whole span (`day_runs`), never row by row.
    pub async fn lead_creation_by_source(&self, now: DateTime<Utc>, tz: Tz, days: u32) -> Result<Vec<DayCount>> {
        let first_day = cal::last_days(now, tz, days)[0];
        let mut out = Vec::new();
        let mut day0 = first_day;
        for (start, n) in cal::day_runs(first_day, days.max(1), tz) {
            let end = cal::start_of_day(day0 + chrono::Days::new(u64::from(n)), tz)
                .min(now + chrono::Duration::milliseconds(1));
            let rows = self
                .db
                .clone()
                .fetch_all(
                    "SELECT (createdon - $1) / 86400000 AS d, leadsourcecode AS s, COUNT(*) AS n FROM lead \
                     WHERE createdon >= $1 AND createdon < $2 GROUP BY 1, 2",
                    vec![start.into(), end.into()],
                )
                .await?;
            for r in rows {
                // A longer (25-hour) day is a run of one: its last hour still belongs to it.
                let d = u64::try_from(r.get::<i64>("d")?).unwrap_or(0).min(u64::from(n) - 1);
                out.push(DayCount { day: day0 + chrono::Days::new(d), series: r.get("s")?, count: r.get("n")? });
            }
            day0 = day0 + chrono::Days::new(u64::from(n));
        }
        out.sort_by_key(|c| (c.day, c.series));
        Ok(out)
    }

    /// PBX calls per local day over the last `days` days (R-PBX-2): inbound calls answered
    /// (talk time recorded) and missed, by the day the call started. Calls logged by hand
    /// (no `actualstart`) are not PBX calls and are not counted.
    pub async fn calls_per_day(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
        days: u32,
    ) -> Result<BTreeMap<NaiveDate, (i64, i64)>> {
        let from = cal::start_of_day(cal::last_days(now, tz, days)[0], tz);
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT actualstart, actualdurationminutes FROM activity WHERE activitytypecode = 'phonecall' \
                 AND actualstart IS NOT NULL AND actualstart >= $1 AND directioncode = FALSE",
                vec![from.into()],
            )
            .await?;
        let mut out: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
        for r in rows {
            let t: DateTime<Utc> = r.get("actualstart")?;
            let talk: Option<i64> = r.get("actualdurationminutes")?;
            let e = out.entry(cal::today(t, tz)).or_default();
            if talk.unwrap_or(0) > 0 { e.0 += 1 } else { e.1 += 1 }
        }
        Ok(out)
    }

    /// Inbound PBX calls per line over the last `days` days: (the line's number, its name if
    /// it is a configured line, answered, missed), most calls first. Answered and missed as
    /// in `calls_per_day`.
    pub async fn calls_per_line(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
        days: u32,
    ) -> Result<Vec<(String, Option<String>, i64, i64)>> {
        let from = cal::start_of_day(cal::last_days(now, tz, days)[0], tz);
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT c.line, l.name, a.actualdurationminutes FROM pbx_call c \
                 JOIN activity a ON a.activityid = c.activityid LEFT JOIN pbx_line l ON l.did = c.line \
                 WHERE c.line IS NOT NULL AND c.first_event_at >= $1 AND a.activitytypecode = 'phonecall' \
                 AND a.directioncode = FALSE",
                vec![from.into()],
            )
            .await?;
        let mut by: BTreeMap<String, (Option<String>, i64, i64)> = BTreeMap::new();
        for r in rows {
            let e = by.entry(r.get("line")?).or_insert((r.get("name")?, 0, 0));
            if r.get::<Option<i64>>("actualdurationminutes")?.unwrap_or(0) > 0 { e.1 += 1 } else { e.2 += 1 }
        }
        let mut out: Vec<_> = by.into_iter().map(|(line, (name, a, m))| (line, name, a, m)).collect();
        out.sort_by(|x, y| (y.2 + y.3).cmp(&(x.2 + x.3)).then_with(|| x.0.cmp(&y.0)));
        Ok(out)
    }

    /// Callbacks (R-PBX-3: open inbound phone calls with a due date) opened per local day over
    /// the last `days` days, and of those the ones closed, by the day they were closed.
    pub async fn callbacks_per_day(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
        days: u32,
    ) -> Result<BTreeMap<NaiveDate, (i64, i64)>> {
        let from = cal::start_of_day(cal::last_days(now, tz, days)[0], tz);
        let rows = self
            .db
            .clone()
            .fetch_all(
                // A callback is made when its call ends, so its call started at most a day
                // before: the index on calls by start finds them.
                "SELECT createdon, modifiedon, statecode FROM activity WHERE activitytypecode = 'phonecall' \
                 AND actualstart IS NOT NULL AND actualstart >= $1 AND createdon >= $2 AND directioncode = FALSE \
                 AND scheduledend IS NOT NULL",
                vec![(from - chrono::Duration::days(1)).into(), from.into()],
            )
            .await?;
        let mut out: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
        for r in rows {
            let opened: DateTime<Utc> = r.get("createdon")?;
            out.entry(cal::today(opened, tz)).or_default().0 += 1;
            if r.get::<i64>("statecode")? != 0 {
                let closed: DateTime<Utc> = r.get("modifiedon")?;
                out.entry(cal::today(closed, tz)).or_default().1 += 1;
            }
        }
        Ok(out)
    }
}
