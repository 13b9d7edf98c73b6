//! Overdue-activity alerts: a periodic scan (apalis-cron) finds overdue activities, decides
//! the due notifications (crm::alerts), claims them in notification_log (persist before
//! side effects) grouped into one digest per recipient, and enqueues a `alert-digest` job
//! per digest; the job renders the digest (minijinja) and sends it through the SMTP relay
//! (lettre). A crash between claim and send leaves the rows pending; the next scan
//! re-enqueues them, so at most the in-flight digest is sent twice, and nothing is lost.
//! The clock is a parameter (`scan(now)`), so tests drive time without sleeping.

use crate::crm::status::NotificationStatus;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::crm::EntityKind;
use crate::crm::alerts::{
    DigestGroup, DigestLine, Escalation, NOTICE_LEVEL, Notice, NoticeLine, WorkingHours, due_notices, line,
    notice_line, weekday,
};
use crate::jobs::JobQueue;
use crate::store::{NotificationClaim, Store, StoreError};

/// Explicit queue name (DESIGN rule 9).
pub const QUEUE: &str = "alert-digest";

/// The job: send the digests one scan claimed (one job per scan keeps enqueueing cheap;
/// a retry skips digests already sent, whose rows are no longer pending).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendDigests {
    pub digest_ids: Vec<Uuid>,
}

/// The default templates (English). Config can replace them; config/alerts-ru.example.toml
/// has a Russian pair.
pub const DEFAULT_SUBJECT: &str = "{% if count == 0 %}{{ notices | length }} new for you{% else %}{% if \
    escalation %}Escalation: {% endif %}{{ count }} overdue activit{{ 'y' if count == 1 else 'ies' }}{% endif %}";
pub const DEFAULT_BODY: &str = "Hello {{ recipient }},\n\n\
{% if count %}{% if escalation %}These activities of your team are still overdue:{% else %}These activities \
you own are overdue:{% endif %}\n\
{% for g in groups %}\n{{ g.owner }}\n\
{% for l in g.lines %}  - {{ l.subject }} ({{ l.kind }}), due {{ l.due }}, {{ l.overdue_hours }} h overdue{% \
if l.regarding %}, regarding {{ l.regarding }}{% endif %}\n    {{ l.link }}\n{% endfor %}{% endfor %}\n{% endif %}\
{% if notices %}New for you:\n{% for n in notices %}  - {{ n.text }}\n    {{ n.link }}\n{% endfor %}\n{% endif %}\
-- \ninflow\n";

/// Sends digests through the `[smtp]` relay: the same client as the waves (TLS, private
/// CA, AUTH), one short session per digest.
#[derive(Clone)]
pub struct Mailer {
    relay: crate::smtp::Relay,
    from: Mailbox,
}

pub use crate::smtp::SendError;

impl Mailer {
    /// The mailer of `[smtp]` (None when no host is set).
    pub fn from_config(cfg: &Config, store: &Store) -> anyhow::Result<Option<Mailer>> {
        let c = &cfg.smtp;
        let Some(relay) = crate::smtp::Relay::from_config(cfg, store)? else { return Ok(None) };
        let from: Mailbox = c.from.as_deref().unwrap_or("inflow@localhost").parse()?;
        Ok(Some(Mailer { relay, from }))
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::Permanent(format!("bad recipient {to}: {e}")))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        self.relay.send_one(&msg).await
    }
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanReport {
    pub overdue: usize,
    pub notices: usize,
    /// Of the claimed, the notices of what is new (R-LD-6, R-ACT-2, R-WV-6b).
    pub told: usize,
    /// Notifications claimed now (new), and the digests enqueued for them.
    pub claimed: usize,
    pub digests: usize,
    /// Pending digests re-enqueued (lost job, 4xx).
    pub requeued: usize,
    /// Alerts sent to the operator about OAuth accounts that need a new sign-in.
    pub sign_in_alerts: usize,
    /// Outside working hours: nothing was claimed.
    pub quiet: bool,
    /// No `[smtp]` relay is configured: nothing was claimed (notifications wait for one).
    pub no_relay: bool,
    /// Where the time went, in milliseconds: the overdue query, the rules (directory,
    /// escalation, digest lines), the claims, the enqueueing.
    pub query_ms: f64,
    pub rules_ms: f64,
    pub claim_ms: f64,
    pub enqueue_ms: f64,
}

/// The alerts runtime.
pub struct AlertsRuntime {
    pub store: Store,
    pub queue: JobQueue<SendDigests>,
    pub mailer: Option<Mailer>,
    pub escalation: Escalation,
    pub hours: WorkingHours,
    pub kinds: Vec<EntityKind>,
    pub tz: Tz,
    pub link_base: String,
    pub subject_template: String,
    pub body_template: String,
    /// Pending digests older than this are re-enqueued.
    pub resend_after: Duration,
    /// R-LD-6: tell owners of the leads the daemon creates.
    pub new_lead_notice: bool,
    /// The OAuth accounts (issue 17) whose lost sign-in the operator is told about.
    pub oauth_accounts: Vec<crate::oauth::Account>,
}

/// One alert a day per OAuth account that needs a sign-in.
const OAUTH_ALERT_EVERY: Duration = Duration::hours(24);

/// How long a digest's sender holds it: longer than one SMTP session can take (connect,
/// TLS, the timeouts of `[smtp]`), so a live send is never joined by a second.
const DIGEST_SEND_CLAIM: Duration = Duration::minutes(5);

/// How far back a scan looks for notices not yet told: longer than a long weekend of quiet
/// hours; what is older is not news any more.
const NOTICE_WINDOW: Duration = Duration::days(4);

impl AlertsRuntime {
    pub fn from_config(cfg: &Config, store: Store) -> anyhow::Result<AlertsRuntime> {
        let a = &cfg.alerts;
        let (start_min, end_min) = crate::config::parse_working_hours(&a.working_hours).unwrap_or((9 * 60, 18 * 60));
        let mailer = Mailer::from_config(cfg, &store)?;
        Ok(AlertsRuntime {
            queue: JobQueue::new(&store.db, QUEUE),
            store,
            mailer,
            escalation: Escalation {
                delay: Duration::seconds(a.escalation_delay_secs as i64),
                max_level: a.max_level,
                fallback: a.fallback_address.clone(),
            },
            hours: WorkingHours {
                start_min,
                end_min,
                days: a.working_days.iter().filter_map(|d| weekday(d)).collect(),
                tz: cfg.tz(),
            },
            kinds: a.kinds.iter().filter_map(|k| k.parse().ok()).collect(),
            tz: cfg.tz(),
            link_base: cfg.org.public_base_url.clone().unwrap_or_else(|| format!("http://{}", cfg.http.listen)),
            subject_template: a.subject_template.clone().unwrap_or_else(|| DEFAULT_SUBJECT.to_string()),
            body_template: a.body_template.clone().unwrap_or_else(|| DEFAULT_BODY.to_string()),
            resend_after: Duration::seconds((a.scan_interval_secs as i64 * 2).max(60)),
            new_lead_notice: a.new_lead_notice,
            oauth_accounts: crate::oauth::accounts(cfg),
        })
    }

    /// Tells the operator (`alerts.fallback_address`), at most once a day per account, which
    /// OAuth accounts need a new sign-in and the command that does it: without one a mailbox
    /// fetches nothing and the relay sends nothing, and nothing else would say so. Working
    /// hours do not apply (this is for the operator, about the daemon). The relay's own
    /// account can only be logged: the alert would go out through it.
    async fn sign_in_alerts(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let (Some(mailer), Some(to)) = (&self.mailer, &self.escalation.fallback) else { return Ok(0) };
        let mut sent = 0;
        for (a, why) in crate::oauth::trouble(&self.store, &self.oauth_accounts).await? {
            let (account, fix) = (a.name.as_str(), a.fix());
            if account == crate::oauth::RELAY_ACCOUNT {
                continue;
            }
            if !self.store.claim_oauth_alert(account, now, OAUTH_ALERT_EVERY).await? {
                continue;
            }
            let subject = format!("inflow: mailbox '{account}' needs a new sign-in");
            let body = format!(
                "inflow cannot sign in to the mailbox '{account}': {why}.\n\n\
                 Nothing is fetched from it until this is fixed; its mail stays on the server \
                 and is read afterwards. To fix it, on the server:\n\n    {fix}\n\n\
                 (`inflow oauth login` takes --browser for the sign-in in a web browser; `inflow oauth status` \
                 shows every grant.)\n\nThis alert repeats once a day until then.\n-- \ninflow\n"
            );
            match mailer.send(to, &subject, body).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(account, error = %e, "could not send the sign-in alert; the next scan tries again");
                    self.store.unclaim_oauth_alert(account, now).await?;
                }
            }
        }
        Ok(sent)
    }

    /// One scan at `now`: claim the due notifications as digests and enqueue them.
    #[tracing::instrument(level = "debug", skip_all, fields(%now))]
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, StoreError> {
        let mut report = ScanReport::default();
        let stale = self.store.stale_digests(now - self.resend_after).await?;
        if !stale.is_empty() {
            // One re-push per resend window: the key changes with the window.
            let bucket = now.timestamp() / self.resend_after.num_seconds().max(1);
            let n = stale.len();
            if self
                .queue
                .push(
                    SendDigests { digest_ids: stale },
                    &format!("digests:stale:{bucket}"),
                    crate::jobs::DEFAULT_MAX_ATTEMPTS,
                )
                .await
                .is_ok()
            {
                report.requeued = n;
            }
        }
        report.sign_in_alerts = self.sign_in_alerts(now).await?;
        if self.mailer.is_none() {
            // Claiming without a relay would only pile up pending rows; once [smtp] is set,
            // the first scan claims and sends everything still overdue.
            report.no_relay = true;
            return Ok(report);
        }
        if !self.hours.contains(now) {
            report.quiet = true;
            return Ok(report);
        }
        let clock = std::time::Instant::now();
        let lap = |c: &mut std::time::Instant| {
            let ms = c.elapsed().as_secs_f64() * 1000.0;
            *c = std::time::Instant::now();
            ms
        };
        let mut c = clock;
        let items = self.store.overdue_items(now, self.tz, &self.kinds, 100_000).await?;
        report.query_ms = lap(&mut c);
        report.overdue = items.len();
        let (users, teams) = self.store.alert_directory().await?;
        let notices = due_notices(&items, now, &users, &teams, &self.escalation);
        report.notices = notices.len();
        // What is new for people and not yet told, within a window longer than the longest
        // quiet period (a weekend), so nothing waits out of reach.
        let pending = self.store.notices_since(now - NOTICE_WINDOW, self.new_lead_notice).await?;
        // One digest per recipient, whatever it carries; all claims of the scan in one
        // transaction.
        let mut digest_for: BTreeMap<String, Uuid> = BTreeMap::new();
        let mut claims: Vec<NotificationClaim> = Vec::with_capacity(notices.len() + pending.len());
        for n in &notices {
            let address = n.recipient.address.clone();
            let digest_id = *digest_for.entry(address.clone()).or_insert_with(Uuid::new_v4);
            claims.push(NotificationClaim {
                activityid: n.item.id,
                activitytype: n.item.kind,
                level: n.level as i32,
                scheduledend: n.item.due,
                ownerid: n.item.owner,
                recipient: address,
                recipient_userid: n.recipient.user,
                digest_id: Some(digest_id),
                item: serde_json::to_string(&StoredLine::of(n, &users, now, self.tz, &self.link_base)).ok(),
                created_at: now,
            });
        }
        for p in &pending {
            let (address, user) = match (users.get(&p.recipient), teams.get(&p.recipient)) {
                (Some(u), _) if !u.disabled => match &u.email {
                    Some(e) => (e.clone(), Some(u.id)),
                    None => continue,
                },
                (None, Some(team)) => (team.clone(), None),
                _ => continue,
            };
            let digest_id = *digest_for.entry(address.clone()).or_insert_with(Uuid::new_v4);
            let stored = StoredLine { owner: String::new(), line: None, notice: Some(notice_line(p, &self.link_base)) };
            claims.push(NotificationClaim {
                activityid: p.id,
                activitytype: p.about.kind,
                level: NOTICE_LEVEL,
                scheduledend: p.at,
                ownerid: p.recipient,
                recipient: address,
                recipient_userid: user,
                digest_id: Some(digest_id),
                item: serde_json::to_string(&stored).ok(),
                created_at: now,
            });
        }
        report.rules_ms = lap(&mut c);
        let fresh = self.store.claim_notifications(&claims).await?;
        report.claim_ms = lap(&mut c);
        let mut seen = std::collections::HashSet::new();
        let digests: Vec<Uuid> = claims
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .filter_map(|(c, _)| c.digest_id)
            .filter(|d| seen.insert(*d))
            .collect();
        report.claimed = fresh.iter().filter(|f| **f).count();
        report.told = claims.iter().zip(&fresh).filter(|(c, f)| **f && c.level == NOTICE_LEVEL).count();
        report.digests = digests.len();
        if !digests.is_empty() {
            let key = format!("digests:{}", digests[0]);
            if let Err(e) =
                self.queue.push(SendDigests { digest_ids: digests }, &key, crate::jobs::DEFAULT_MAX_ATTEMPTS).await
            {
                tracing::warn!(error = %e, "could not enqueue the digests; the next scan will");
            }
        }
        report.enqueue_ms = lap(&mut c);
        Ok(report)
    }

    /// Renders and sends one digest; marks its rows. A transient failure is an `Err` (the
    /// job retries, the rows stay pending); a permanent one marks them failed.
    #[tracing::instrument(skip_all, fields(%digest_id))]
    pub async fn send_digest(&self, digest_id: Uuid, now: DateTime<Utc>) -> Result<bool, anyhow::Error> {
        let Some(mailer) = &self.mailer else {
            anyhow::bail!("no [smtp] relay configured; digest {digest_id} stays pending");
        };
        // One sender at a time: a job re-pushed while another is still on it skips it.
        if !self.store.claim_digest(digest_id, now + DIGEST_SEND_CLAIM, now).await? {
            return Ok(false);
        }
        let rows = self.store.digest_rows(digest_id).await?;
        let Some(first) = rows.first() else { return Ok(false) };
        let lines: Vec<StoredLine> =
            rows.iter().filter_map(|r| r.item.as_deref().and_then(|j| serde_json::from_str(j).ok())).collect();
        let escalation = rows.iter().any(|r| r.level > 0);
        let (subject, body) = self.render(&first.recipient, &lines, escalation)?;
        match mailer.send(&first.recipient, &subject, body).await {
            Ok(()) => {
                self.store.finish_digest(digest_id, NotificationStatus::Sent, None, now).await?;
                for r in &rows {
                    metrics::counter!("inflow_alerts_total", "level" => r.level.to_string(), "status" => "sent")
                        .increment(1);
                }
                tracing::info!(%digest_id, recipient = %first.recipient, lines = rows.len(), "overdue digest sent");
                Ok(true)
            }
            Err(SendError::Permanent(e)) => {
                self.store.finish_digest(digest_id, NotificationStatus::Failed, Some(&e), now).await?;
                for r in &rows {
                    metrics::counter!("inflow_alerts_total", "level" => r.level.to_string(), "status" => "failed")
                        .increment(1);
                }
                tracing::warn!(%digest_id, error = %e, "overdue digest refused by the relay");
                Ok(false)
            }
            Err(SendError::Transient(e)) => {
                self.store.finish_digest(digest_id, NotificationStatus::Pending, Some(&e), now).await?;
                anyhow::bail!("digest {digest_id}: {e}")
            }
        }
    }

    fn render(&self, recipient: &str, lines: &[StoredLine], escalation: bool) -> anyhow::Result<(String, String)> {
        let mut groups: BTreeMap<String, Vec<DigestLine>> = BTreeMap::new();
        let mut notices: Vec<NoticeLine> = Vec::new();
        for l in lines {
            if let Some(line) = &l.line {
                groups.entry(l.owner.clone()).or_default().push(line.clone());
            }
            notices.extend(l.notice.clone());
        }
        let count: usize = groups.values().map(Vec::len).sum();
        let groups: Vec<DigestGroup> = groups
            .into_iter()
            .map(|(owner, mut lines)| {
                lines.sort_by(|a, b| b.overdue_hours.cmp(&a.overdue_hours).then(a.id.cmp(&b.id)));
                DigestGroup { owner, lines }
            })
            .collect();
        let mut env = minijinja::Environment::new();
        env.add_template("subject", &self.subject_template)?;
        env.add_template("body", &self.body_template)?;
        let ctx = minijinja::context! { recipient => recipient, count => count, escalation => escalation,
        groups => groups, notices => notices };
        Ok((env.get_template("subject")?.render(&ctx)?.trim().to_string(), env.get_template("body")?.render(&ctx)?))
    }
}

/// What a notification row keeps for its digest line: an overdue activity (with its
/// owner's name) or a notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLine {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    line: Option<DigestLine>,
    #[serde(default)]
    notice: Option<NoticeLine>,
}

impl StoredLine {
    fn of(
        n: &Notice,
        users: &std::collections::HashMap<Uuid, crate::crm::alerts::UserNode>,
        now: DateTime<Utc>,
        tz: Tz,
        link_base: &str,
    ) -> StoredLine {
        StoredLine {
            owner: users.get(&n.item.owner).map(|u| u.name.clone()).unwrap_or_else(|| n.item.owner.to_string()),
            line: Some(line(n, now, tz, link_base)),
            notice: None,
        }
    }
}

/// The cron handler: one scan per tick.
pub async fn on_tick(
    _tick: apalis_cron::Tick,
    rt: apalis::prelude::Data<Arc<AlertsRuntime>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    let r = rt.scan(Utc::now()).await?;
    if r.claimed > 0 || r.requeued > 0 {
        tracing::info!(
            overdue = r.overdue,
            claimed = r.claimed,
            digests = r.digests,
            requeued = r.requeued,
            "overdue scan"
        );
    }
    Ok(())
}

/// The digest job handler: every digest is attempted; a transient failure retries the job.
pub async fn on_digest(
    job: SendDigests,
    rt: apalis::prelude::Data<Arc<AlertsRuntime>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    let mut failed = 0;
    for d in &job.digest_ids {
        if let Err(e) = rt.send_digest(*d, Utc::now()).await {
            tracing::warn!(digest_id = %d, error = %e, "digest not sent; will retry");
            failed += 1;
        }
    }
    if failed == 0 { Ok(()) } else { Err(format!("{failed} of {} digests not sent", job.digest_ids.len()).into()) }
}

/// The cron expression for a scan interval (validated by the config: it must divide a
/// minute, an hour or a day).
pub fn cron_for(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("*/{s} * * * * *"),
        s if s < 3600 => format!("0 */{} * * * *", s / 60),
        s => format!("0 0 */{} * * *", (s / 3600).max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default templates and the Russian example render a digest of notices only and one
    /// of overdue lines only, each without the other's section.
    #[test]
    fn templates_render_notices_and_overdue_lines() {
        let ru: toml::Value = toml::from_str(include_str!("../../config/alerts-ru.example.toml")).unwrap();
        let pairs = [
            (DEFAULT_SUBJECT.to_string(), DEFAULT_BODY.to_string(), "These activities", "New for you"),
            (
                ru["alerts"]["subject_template"].as_str().unwrap().to_string(),
                ru["alerts"]["body_template"].as_str().unwrap().to_string(),
                "просрочены",
                "Новое для вас",
            ),
        ];
        let notice = NoticeLine {
            kind: "new_lead".into(),
            text: "New lead for you: Call — Caller +7916".into(),
            link: "https://crm/api/v1/leads/1".into(),
        };
        let line = DigestLine {
            kind: EntityKind::Task,
            id: Uuid::nil(),
            subject: "Call back".into(),
            due: "2026-12-01 10:00".into(),
            overdue_hours: 5,
            level: 0,
            regarding: None,
            link: "https://crm/a/1".into(),
        };
        for (subject, body, overdue_words, notice_words) in pairs {
            let mut env = minijinja::Environment::new();
            env.add_template("s", &subject).unwrap();
            env.add_template("b", &body).unwrap();
            let only_notices = minijinja::context! { recipient => "r", count => 0, escalation => false,
            groups => Vec::<DigestGroup>::new(), notices => vec![notice.clone()] };
            let b = env.get_template("b").unwrap().render(&only_notices).unwrap();
            assert!(b.contains(notice_words) && b.contains("Caller +7916") && !b.contains(overdue_words), "{b}");
            assert!(env.get_template("s").unwrap().render(&only_notices).unwrap().contains('1'));
            let only_lines = minijinja::context! { recipient => "r", count => 1, escalation => false,
            groups => vec![DigestGroup { owner: "Oleg".into(), lines: vec![line.clone()] }],
                notices => Vec::<NoticeLine>::new() };
            let b = env.get_template("b").unwrap().render(&only_lines).unwrap();
            assert!(b.contains(overdue_words) && b.contains("Call back") && !b.contains(notice_words), "{b}");
        }
    }

    #[test]
    fn cron_expressions_parse() {
        use std::str::FromStr;
        for s in [10, 30, 60, 300, 900, 3600, 7200] {
            assert!(cron::Schedule::from_str(&cron_for(s)).is_ok(), "{s}");
        }
        assert_eq!(cron_for(300), "0 */5 * * * *");
    }
}
