//! FreePBX and Issabel (and any Asterisk writing CDRs with `cdr_mysql` or
//! `cdr_adaptive_odbc`) read from their CDR table, `asteriskcdrdb.cdr` on MariaDB or MySQL:
//! read-only, polled, with a checkpoint in inflow's own database. The AMI client hears calls
//! only while it is connected. The table has them all, so a call made while inflow was away
//! is still stored.
//!
//! Asterisk writes a CDR row when its call leg **ends**, with the leg's **start** as
//! `calldate`. So a poll that only looked past the last `calldate` would miss a long call that
//! ends after shorter, later ones. Each poll reads the rows whose end (`calldate + duration`)
//! is at or after the checkpoint minus a slack. The `calldate` index bounds the scan to
//! `longest_call` before that. Rows are read in end order, a page at a time, and the
//! checkpoint moves to the latest end stored.
//!
//! A row becomes the same `Cdr` event the AMI client reads (`ami::cdr_event`), with the same
//! event id and provider (`asterisk`): when both watch one PBX, each call is stored once.
//! A row that cannot be read is kept as a quarantined inbound event with the reason, never
//! dropped in silence.
//!
//! Source of the columns: FreePBX's `asteriskcdrdb.cdr` (calldate, clid, src, dst, dcontext,
//! channel, dstchannel, lastapp, lastdata, duration, billsec, disposition, amaflags,
//! accountcode, uniqueid, userfield, did, recordingfile, cnum, cnam, …, linkedid, peeraccount,
//! sequence), the columns Asterisk's `cdr_adaptive_odbc` fills by name. Tables without
//! `linkedid`, `did` or `recordingfile` (older Asterisk, Issabel 2) are read without them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::Row as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use tokio_util::sync::CancellationToken;

use super::CallEvent;
use super::ami::{Frame, cdr_event, cdr_key, quarantine_cdr};
use super::process::{IngestRequest, SubmitError};
use crate::store::Store;

/// Rows read per query.
const PAGE: usize = 500;

/// How far before the checkpoint each poll reads again: rows committed late, or the PBX's and
/// inflow's clocks a little apart. The overlap is de-duplicated by event id.
const SLACK_SECS: i64 = 300;

/// The time format of `calldate` cast to text.
const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// The columns read, and the name each has in the `Cdr` frame `ami::cdr_event` reads.
const COLUMNS: [(&str, &str, bool); 13] = [
    // (column, frame key, required)
    ("calldate", "StartTime", true),
    ("src", "Source", true),
    ("dst", "Destination", true),
    ("channel", "Channel", true),
    ("dstchannel", "DestinationChannel", true),
    ("disposition", "Disposition", true),
    ("duration", "Duration", true),
    ("billsec", "BillableSeconds", true),
    ("uniqueid", "UniqueID", true),
    ("linkedid", "LinkedID", false),
    ("did", "DID", false),
    ("recordingfile", "RecordingFile", false),
    ("clid", "CallerID", false),
];

/// One CDR table to poll.
#[derive(Debug, Clone)]
pub struct CdrTable {
    pub name: String,
    pub options: MySqlConnectOptions,
    pub table: String,
    pub tz: Tz,
    pub region: String,
    pub poll: Duration,
    pub longest_call: chrono::Duration,
    pub backfill: chrono::Duration,
}

/// Why a poll stopped early.
enum PollError {
    /// The PBX's database: retried after a back-off.
    Source(String),
    /// inflow's own store.
    Store(String),
    Cancelled,
}

impl CdrTable {
    /// The checkpoint's key, and the health name.
    pub fn source(&self) -> String {
        format!("cdr_table:{}", self.name)
    }

    /// Polls until `token` is cancelled.
    pub async fn run(self, store: Store, writer: tokio::sync::mpsc::Sender<IngestRequest>, token: CancellationToken) {
        // Lazy: a PBX database that is down at start is reached when it comes back.
        let db = MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(self.options.clone());
        // Event ids stored by this process, with their call's end: the overlap of two polls is
        // not submitted twice (after a restart the store de-duplicates it).
        let mut seen: HashMap<String, NaiveDateTime> = HashMap::new();
        let mut columns: Option<Vec<&'static str>> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.poll_once(&db, &mut columns, &store, &writer, &mut seen, &token).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(pbx = %self.name, calls = n, "CDR rows stored");
                    }
                    backoff = Duration::from_secs(1);
                    self.poll
                }
                Err(PollError::Cancelled) => return,
                Err(PollError::Source(why)) => {
                    metrics::counter!("inflow_cdr_table_errors_total", "name" => self.name.clone()).increment(1);
                    tracing::warn!(pbx = %self.name, %why, retry_in = ?backoff, "the CDR table could not be read");
                    columns = None;
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60)).max(self.poll.min(Duration::from_secs(60)));
                    w
                }
                Err(PollError::Store(why)) => {
                    tracing::warn!(pbx = %self.name, %why, retry_in = ?self.poll, "CDR rows could not be stored");
                    self.poll
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The table's columns among those read (once per connection): tables differ by
    /// Asterisk version and distribution.
    async fn columns(&self, db: &MySqlPool) -> Result<Vec<&'static str>, PollError> {
        let rows = sqlx::query(
            "SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND \
                TABLE_NAME = ?",
        )
        .bind(&self.table)
        .fetch_all(db)
        .await
        .map_err(|e| PollError::Source(e.to_string()))?;
        let have: Vec<String> =
            rows.iter().filter_map(|r| r.try_get::<String, _>("c").ok()).map(|c| c.to_ascii_lowercase()).collect();
        let missing: Vec<&str> =
            COLUMNS.iter().filter(|(c, _, req)| *req && !have.iter().any(|h| h == c)).map(|(c, _, _)| *c).collect();
        if !missing.is_empty() {
            return Err(PollError::Source(format!(
                "table `{}` lacks the columns {} (is it a CDR table, and may this user read it?)",
                self.table,
                missing.join(", ")
            )));
        }
        Ok(COLUMNS.iter().map(|(c, _, _)| *c).filter(|c| have.iter().any(|h| h == c)).collect())
    }

    /// Reads and stores every row that ended since the checkpoint. Returns how many were new.
    async fn poll_once(
        &self,
        db: &MySqlPool,
        columns: &mut Option<Vec<&'static str>>,
        store: &Store,
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        seen: &mut HashMap<String, NaiveDateTime>,
        token: &CancellationToken,
    ) -> Result<usize, PollError> {
        let cols = match columns {
            Some(c) => c.clone(),
            None => columns.insert(self.columns(db).await?).clone(),
        };
        let source = self.source();
        let st = |e: crate::store::StoreError| PollError::Store(e.to_string());
        let checkpoint = store.cdr_checkpoint(&source).await.map_err(st)?;
        let read_until = checkpoint.unwrap_or_else(|| Utc::now() - self.backfill);
        let mut from_end = (read_until - chrono::Duration::seconds(SLACK_SECS)).with_timezone(&self.tz).naive_local();
        seen.retain(|_, end| *end >= from_end - chrono::Duration::hours(1));
        let select: Vec<String> = cols.iter().map(|c| format!("CAST(`{c}` AS CHAR) AS `{c}`")).collect();
        let sql = format!(
            "SELECT {}, CAST(DATE_ADD(calldate, INTERVAL duration SECOND) AS CHAR) AS call_end FROM `{}` \
             WHERE calldate >= ? AND DATE_ADD(calldate, INTERVAL duration SECOND) >= ? \
             ORDER BY call_end, uniqueid LIMIT {PAGE}",
            select.join(", "),
            self.table
        );
        let mut stored = 0;
        let mut latest: Option<NaiveDateTime> = None;
        loop {
            let from_start = from_end - self.longest_call;
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(from_start.format(TIME).to_string())
                .bind(from_end.format(TIME).to_string())
                .fetch_all(db)
                .await
                .map_err(|e| PollError::Source(e.to_string()))?;
            let full = rows.len() == PAGE;
            let mut fresh: Vec<(CallEvent, String, NaiveDateTime)> = Vec::new();
            let mut page_end = from_end;
            for r in &rows {
                let text = |c: &str| r.try_get::<Option<String>, _>(c).ok().flatten();
                let end = text("call_end").and_then(|e| NaiveDateTime::parse_from_str(&e, TIME).ok());
                let frame: Frame = cols
                    .iter()
                    .filter_map(|c| {
                        let key = COLUMNS.iter().find(|(n, _, _)| n == c).map(|(_, k, _)| *k)?;
                        Some((key.to_string(), text(c)?))
                    })
                    .chain(end.map(|e| ("EndTime".to_string(), e.format(TIME).to_string())))
                    .chain(answer_time(end, text("billsec").as_deref()).map(|a| ("AnswerTime".to_string(), a)))
                    .collect();
                let raw: String = frame.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                let end = end.unwrap_or(from_end);
                page_end = page_end.max(end);
                match cdr_event(&frame, self.tz, &self.region) {
                    Ok(ev) if seen.contains_key(&ev.event_id) => {}
                    Ok(ev) => fresh.push((ev, raw, end)),
                    Err(e) => {
                        self.quarantine(store, &cdr_key(&frame), &raw, &e.to_string(), seen, end).await.map_err(st)?
                    }
                }
            }
            stored += self.store(store, writer, fresh, seen, token).await?;
            if !rows.is_empty() {
                latest = latest.max(Some(page_end));
            }
            if !full || page_end <= from_end {
                if full {
                    tracing::warn!(pbx = %self.name, at = %from_end, "more than {PAGE} CDR rows end in one \
                        second; the rest wait for the next poll");
                }
                break;
            }
            from_end = page_end;
        }
        if let Some(end) = latest.and_then(|l| self.tz.from_local_datetime(&l).earliest())
            && end.with_timezone(&Utc) > read_until
        {
            store.save_cdr_checkpoint(&source, end.with_timezone(&Utc), Utc::now()).await.map_err(st)?;
        }
        Ok(stored)
    }

    /// Submits a page's new calls on the webhooks' durable path, retrying while the store is
    /// unavailable. A page the writer refuses for its ids is submitted row by row, and a row it
    /// still refuses is quarantined.
    async fn store(
        &self,
        store: &Store,
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        fresh: Vec<(CallEvent, String, NaiveDateTime)>,
        seen: &mut HashMap<String, NaiveDateTime>,
        token: &CancellationToken,
    ) -> Result<usize, PollError> {
        if fresh.is_empty() {
            return Ok(0);
        }
        let events: Vec<CallEvent> = fresh.iter().map(|(e, _, _)| e.clone()).collect();
        let raw: String = fresh.iter().map(|(_, r, _)| r.as_str()).collect::<Vec<_>>().join("\r\n");
        match self.submit(writer, &events, raw, token).await? {
            Ok(()) => {}
            Err(_) if fresh.len() > 1 => {
                for (ev, raw, end) in &fresh {
                    if let Err(why) = self.submit(writer, std::slice::from_ref(ev), raw.clone(), token).await? {
                        self.quarantine(store, &ev.event_id, raw, &why, seen, *end)
                            .await
                            .map_err(|e| PollError::Store(e.to_string()))?;
                    }
                }
            }
            Err(why) => {
                let (ev, raw, end) = &fresh[0];
                self.quarantine(store, &ev.event_id, raw, &why, seen, *end)
                    .await
                    .map_err(|e| PollError::Store(e.to_string()))?;
            }
        }
        metrics::counter!("inflow_cdr_table_rows_total", "name" => self.name.clone()).increment(fresh.len() as u64);
        for (ev, _, end) in fresh {
            seen.insert(ev.event_id, end);
        }
        Ok(events.len())
    }

    /// One submission; the inner error is a refusal of the events themselves.
    async fn submit(
        &self,
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        events: &[CallEvent],
        raw: String,
        token: &CancellationToken,
    ) -> Result<Result<(), String>, PollError> {
        let mut wait = Duration::from_millis(200);
        loop {
            match IngestRequest::submit(writer, "asterisk", &self.name, events, raw.clone()).await {
                Ok(_) => return Ok(Ok(())),
                Err(SubmitError::Malformed(why)) => return Ok(Err(why)),
                Err(SubmitError::Unavailable(why)) => {
                    tracing::warn!(pbx = %self.name, %why, retry_in = ?wait, "could not store CDR rows");
                }
            }
            tokio::select! {
                _ = token.cancelled() => return Err(PollError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Keeps a row that cannot become a call, with the reason, where operators look
    /// (`GET /api/v1/ops/quarantine`): once per row.
    async fn quarantine(
        &self,
        store: &Store,
        key: &str,
        raw: &str,
        why: &str,
        seen: &mut HashMap<String, NaiveDateTime>,
        end: NaiveDateTime,
    ) -> crate::store::Result<()> {
        if seen.contains_key(key) {
            return Ok(());
        }
        quarantine_cdr(store, key, raw, why, &format!("{}/{}", self.source(), self.table)).await?;
        seen.insert(key.to_string(), end);
        Ok(())
    }
}

/// When an answered leg was answered: its end less its billed seconds.
fn answer_time(end: Option<NaiveDateTime>, billsec: Option<&str>) -> Option<String> {
    let secs: i64 = billsec?.trim().parse().ok().filter(|s| *s > 0)?;
    Some((end? - chrono::Duration::seconds(secs)).format(TIME).to_string())
}

/// The configured table, with its connection options.
pub fn from_config(c: &crate::config::CdrTableConfig, org_tz: Tz, region: &str) -> Result<CdrTable, String> {
    use std::str::FromStr as _;
    let mut options =
        MySqlConnectOptions::from_str(&c.url.replacen("mariadb://", "mysql://", 1)).map_err(|e| e.to_string())?;
    if let Some(p) = &c.password {
        options = options.password(p.trim_end_matches(['\r', '\n']));
    }
    Ok(CdrTable {
        name: c.name.clone(),
        options,
        table: c.table.clone(),
        tz: c.timezone.as_deref().and_then(|t| t.parse().ok()).unwrap_or(org_tz),
        region: region.to_string(),
        poll: Duration::from_secs(c.poll_interval_secs.max(1)),
        longest_call: chrono::Duration::seconds(c.longest_call_secs as i64),
        backfill: chrono::Duration::hours(c.backfill_hours as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_leg_was_answered_its_billed_seconds_before_its_end() {
        let end = NaiveDateTime::parse_from_str("2026-12-07 12:01:41", TIME).unwrap();
        assert_eq!(answer_time(Some(end), Some("95")).as_deref(), Some("2026-12-07 12:00:06"));
        assert_eq!(answer_time(Some(end), Some("0")), None, "not answered");
        assert_eq!(answer_time(None, Some("95")), None);
    }

    /// A row read as a frame is the AMI client's `Cdr` event, with the same event id, so a
    /// PBX watched both ways stores each call once.
    #[test]
    fn a_row_is_the_ami_clients_event() {
        let frame: Frame = [
            ("StartTime", "2026-12-07 12:00:00"),
            ("Source", "89161234567"),
            ("Destination", "74951234567"),
            ("DestinationChannel", "PJSIP/101-00000013"),
            ("Disposition", "ANSWERED"),
            ("BillableSeconds", "95"),
            ("UniqueID", "1764226800.42"),
            ("EndTime", "2026-12-07 12:01:41"),
            ("AnswerTime", "2026-12-07 12:00:06"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ev = cdr_event(&frame, chrono_tz::Europe::Moscow, "RU").unwrap();
        assert_eq!(ev.event_id, "cdr:1764226800.42:PJSIP/101-00000013:2026-12-07 12:00:00");
        assert_eq!(ev.facts.duration_secs, Some(95));
    }
}
