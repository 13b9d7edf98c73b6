//! Asterisk (and FreePBX, Issabel, VitalPBX …) through the Asterisk Manager Interface: one
//! TCP connection per configured PBX, `Login` with the `cdr` event class, and every
//! `Event: Cdr` (cdr_manager) becomes a call event on the same durable path as the
//! webhooks. The connection is kept with `Ping` when quiet and re-made with a doubling
//! back-off when it drops or the login is refused. AMI delivers events only to a connected
//! client: a CDR written while inflow is away is not replayed (read FreePBX's `cdr` table for
//! those).
//!
//! A CDR has no direction: a call from a short (internal) number to an outside one is
//! outbound, from an outside number inbound. Asterisk 12+ writes one CDR per pair of
//! parties; they group under `LinkedID` when cdr_manager.conf maps it (`[mappings]
//! linkedid => LinkedID`), else each `UniqueID` is its own call. Times are the PBX's local
//! time (`timezone`). Source: asterisk/asterisk cdr/cdr_manager.c (the Cdr event's fields)
//! and main/manager.c (the AMI framing, Login, Ping).

use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::process::{IngestRequest, SubmitError};
use super::{CallEvent, CallFacts, Direction, Disposition, WebhookError};
use crate::crm::normalize::Phone;

/// One Asterisk PBX to listen to.
#[derive(Debug, Clone)]
pub struct AmiClient {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: String,
    pub tz: Tz,
    pub region: String,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// Where an unreadable CDR is kept (the quarantine).
    pub store: crate::store::Store,
}

/// One AMI message: `Key: Value` lines up to a blank line.
pub type Frame = Vec<(String, String)>;

fn get<'a>(f: &'a Frame, key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// The peer of a channel name: `PJSIP/101-0000001a` → `101`.
fn peer(channel: &str) -> Option<String> {
    let rest = channel.split_once('/').map(|(_, r)| r)?;
    let name = rest.rsplit_once('-').map(|(n, _)| n).unwrap_or(rest);
    let name = name.split('@').next().unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

fn internal(n: Option<&str>, region: &str) -> bool {
    n.is_some_and(|n| matches!(Phone::parse(n, region), Phone::Internal(_)))
}

/// A `Cdr` event as one final call event.
pub fn cdr_event(f: &Frame, tz: Tz, region: &str) -> Result<CallEvent, WebhookError> {
    let unique = get(f, "UniqueID").ok_or_else(|| WebhookError::missing("UniqueID"))?;
    let call_id = get(f, "LinkedID").unwrap_or(unique).to_string();
    let time = |k: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, WebhookError> {
        let Some(raw) = get(f, k) else { return Ok(None) };
        let naive =
            NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S").map_err(|e| WebhookError::invalid(k, e))?;
        Ok(tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&chrono::Utc)))
    };
    let (src, dst) = (get(f, "Source"), get(f, "Destination"));
    let direction = match (internal(src, region), internal(dst, region)) {
        (true, true) => Direction::Internal,
        (true, false) => Direction::Outbound,
        _ => Direction::Inbound,
    };
    let disposition = match get(f, "Disposition").unwrap_or("NO ANSWER").to_ascii_uppercase().as_str() {
        "ANSWERED" => Disposition::Answered,
        "NO ANSWER" => Disposition::Missed,
        "BUSY" => Disposition::Busy,
        "FAILED" | "CONGESTION" => Disposition::Failed,
        other => return Err(WebhookError::invalid("Disposition", format!("unknown value '{other}'"))),
    };
    let billable: i64 = match get(f, "BillableSeconds") {
        Some(v) => v.trim().parse().map_err(|e| WebhookError::invalid("BillableSeconds", e))?,
        None => 0,
    };
    let mut facts = CallFacts {
        direction: Some(direction),
        started_at: time("StartTime")?,
        answered_at: time("AnswerTime")?.filter(|_| disposition == Disposition::Answered),
        ended_at: time("EndTime")?,
        duration_secs: Some(if disposition == Disposition::Answered { billable } else { 0 }),
        disposition: Some(disposition),
        recording: get(f, "RecordingFile").map(str::to_string),
        is_final: true,
        rank: 2,
        ..Default::default()
    };
    match direction {
        Direction::Outbound => {
            facts.external = dst.map(str::to_string);
            facts.extension = src.map(str::to_string).or_else(|| get(f, "Channel").and_then(peer));
            facts.did = get(f, "DID").map(str::to_string);
        }
        _ => {
            facts.external = src.map(str::to_string);
            facts.did = get(f, "DID").or(dst).map(str::to_string);
            facts.extension = get(f, "DestinationChannel").and_then(peer);
        }
    }
    let event_id =
        format!("cdr:{unique}:{}:{}", get(f, "DestinationChannel").unwrap_or(""), get(f, "StartTime").unwrap_or(""));
    Ok(CallEvent { call_id, event_id, facts })
}

/// A CDR's key where it cannot be read as a call: its event id as `cdr_event` would make it.
pub fn cdr_key(f: &Frame) -> String {
    format!(
        "cdr:{}:{}:{}",
        get(f, "UniqueID").unwrap_or(""),
        get(f, "DestinationChannel").unwrap_or(""),
        get(f, "StartTime").unwrap_or("")
    )
}

/// Keeps a CDR that cannot become a call (from the manager interface or a CDR table), with
/// the reason, where operators look (`GET /api/v1/ops/quarantine`, the console's quarantine):
/// never dropped in silence. Recording it again is a no-op (one row per key).
pub async fn quarantine_cdr(
    store: &crate::store::Store,
    key: &str,
    raw: &str,
    why: &str,
    from: &str,
) -> crate::store::Result<()> {
    tracing::warn!(from, cdr = %key, reason = %why, "a CDR could not be read; quarantined");
    let now = chrono::Utc::now();
    store
        .record_inbound(&crate::store::InboundEvent {
            id: uuid::Uuid::new_v4(),
            source: "pbx:asterisk".into(),
            external_id: key.to_string(),
            received_at: now,
            status: crate::crm::status::EventStatus::Quarantined,
            reason: Some(format!("{from}: {why}")),
            result: None,
            raw: Some(raw.as_bytes().to_vec()),
            raw_location: Some(from.to_string()),
            processed_at: Some(now),
        })
        .await?;
    Ok(())
}

/// Why a session ended.
enum Ended {
    Cancelled,
    /// The PBX refused the login: wait the longest back-off before trying again.
    Refused(String),
    Dropped(String),
}

impl AmiClient {
    /// Keeps a session with the PBX until `token` is cancelled.
    pub async fn run(self, writer: tokio::sync::mpsc::Sender<IngestRequest>, token: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let ended = self.session(&writer, &token, &mut backoff).await;
            let wait = match ended {
                Ended::Cancelled => return,
                Ended::Refused(why) => {
                    tracing::error!(pbx = %self.name, %why, "Asterisk refused the manager login; check \
                        pbx.asterisk username and secret");
                    self.max_backoff
                }
                Ended::Dropped(why) => {
                    tracing::warn!(pbx = %self.name, %why, retry_in = ?backoff, "Asterisk manager connection lost");
                    let w = backoff;
                    backoff = (backoff * 2).min(self.max_backoff);
                    w
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn session(
        &self,
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        token: &CancellationToken,
        backoff: &mut Duration,
    ) -> Ended {
        let addr = format!("{}:{}", self.host, self.port);
        let stream = match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ended::Dropped(format!("connect {addr}: {e}")),
            Err(_) => return Ended::Dropped(format!("connect {addr}: timed out")),
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // The banner ("Asterisk Call Manager/5.0.1") comes first, before any frame.
        match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
            Ok(Ok(Some(b))) if b.contains("Call Manager") => {}
            Ok(Ok(other)) => return Ended::Dropped(format!("not an Asterisk manager: {other:?}")),
            Ok(Err(e)) => return Ended::Dropped(e.to_string()),
            Err(_) => return Ended::Dropped("no banner".into()),
        }
        let login = format!(
            "Action: Login\r\nActionID: inflow-login\r\nUsername: {}\r\nSecret: {}\r\nEvents: cdr\r\n\r\n",
            self.username, self.secret
        );
        if let Err(e) = write.write_all(login.as_bytes()).await {
            return Ended::Dropped(e.to_string());
        }
        let mut frame: Frame = Vec::new();
        let mut logged_in = false;
        let mut quiet = 0u32;
        loop {
            let line = tokio::select! {
                _ = token.cancelled() => {
                    let _ = write.write_all(b"Action: Logoff\r\n\r\n").await;
                    return Ended::Cancelled;
                }
                l = tokio::time::timeout(Duration::from_secs(30), lines.next_line()) => l,
            };
            let line = match line {
                Err(_) => {
                    // Quiet for 30 s: a Ping shows whether the connection still carries.
                    quiet += 1;
                    if quiet > 2 {
                        return Ended::Dropped("no answer to Ping for 60 s".into());
                    }
                    if let Err(e) = write.write_all(b"Action: Ping\r\nActionID: inflow-ping\r\n\r\n").await {
                        return Ended::Dropped(e.to_string());
                    }
                    continue;
                }
                Ok(Ok(Some(l))) => l,
                Ok(Ok(None)) => return Ended::Dropped("the PBX closed the connection".into()),
                Ok(Err(e)) => return Ended::Dropped(e.to_string()),
            };
            quiet = 0;
            if !line.trim().is_empty() {
                if let Some((k, v)) = line.split_once(':') {
                    frame.push((k.trim().to_string(), v.trim().to_string()));
                }
                continue;
            }
            let f = std::mem::take(&mut frame);
            if f.is_empty() {
                continue;
            }
            if !logged_in {
                match get(&f, "Response") {
                    Some(r) if r.eq_ignore_ascii_case("Success") => {
                        logged_in = true;
                        *backoff = Duration::from_secs(1);
                        tracing::info!(pbx = %self.name, "Asterisk manager connected");
                    }
                    Some(_) => return Ended::Refused(get(&f, "Message").unwrap_or("login refused").to_string()),
                    None => {}
                }
                continue;
            }
            if get(&f, "Event").is_some_and(|e| e.eq_ignore_ascii_case("Cdr")) {
                if !self.store(&f, writer, token).await {
                    return Ended::Cancelled;
                }
            }
        }
    }

    /// Stores one CDR, retrying while the store is unavailable (the PBX's socket buffers
    /// what comes meanwhile). False: shutting down.
    async fn store(
        &self,
        f: &Frame,
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        token: &CancellationToken,
    ) -> bool {
        let raw: String = f.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let ev = match cdr_event(f, self.tz, &self.region) {
            Ok(ev) => ev,
            Err(e) => {
                let from = format!("asterisk:{}", self.name);
                if let Err(se) = quarantine_cdr(&self.store, &cdr_key(f), &raw, &e.to_string(), &from).await {
                    tracing::error!(pbx = %self.name, error = %se, cdr = %raw, "an unreadable Cdr event could \
                        not be quarantined");
                }
                return true;
            }
        };
        let mut wait = Duration::from_millis(200);
        loop {
            match IngestRequest::submit(writer, "asterisk", &self.name, std::slice::from_ref(&ev), raw.clone()).await {
                Ok(_) => return true,
                Err(SubmitError::Malformed(why)) => {
                    tracing::warn!(pbx = %self.name, %why, cdr = %raw, "a Cdr event with unusable ids skipped");
                    return true;
                }
                Err(SubmitError::Unavailable(_)) => {}
            }
            tracing::warn!(pbx = %self.name, call = %ev.call_id, retry_in = ?wait, "could not store a Cdr event");
            tokio::select! {
                _ = token.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Frame {
        s.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect()
    }

    #[test]
    fn a_cdr_event_reads_as_one_final_call() {
        // The fields cdr_manager.c writes (Asterisk 20), an inbound trunk call to the DID.
        let f = frame(
            "Event: Cdr\nAccountCode: \nSource: 89161234567\nDestination: 74951234567\nDestinationContext: from-trunk\n\
             CallerID: \"Sidorov\" <89161234567>\nChannel: PJSIP/trunk-00000012\n\
             DestinationChannel: PJSIP/101-00000013\n\
             LastApplication: Dial\nLastData: PJSIP/101,30\nStartTime: 2026-12-07 12:00:00\n\
             AnswerTime: 2026-12-07 12:00:06\n\
             EndTime: 2026-12-07 12:01:41\nDuration: 101\nBillableSeconds: 95\nDisposition: ANSWERED\n\
             AMAFlags: DOCUMENTATION\n\
             UniqueID: 1764226800.42\nUserField: ",
        );
        let ev = cdr_event(&f, chrono_tz::Europe::Moscow, "RU").unwrap();
        assert_eq!(ev.call_id, "1764226800.42");
        let x = ev.facts;
        assert_eq!(
            (x.direction, x.disposition, x.duration_secs),
            (Some(Direction::Inbound), Some(Disposition::Answered), Some(95))
        );
        assert_eq!(
            (x.external.as_deref(), x.did.as_deref(), x.extension.as_deref()),
            (Some("89161234567"), Some("74951234567"), Some("101"))
        );
        assert_eq!(x.started_at.unwrap().to_rfc3339(), "2026-12-07T09:00:00+00:00");
        let out = frame(
            "Source: 102\nDestination: 89031234567\nChannel: SIP/102-0001\nDisposition: BUSY\nUniqueID: 9.1\n\
                LinkedID: 9.0",
        );
        let ev = cdr_event(&out, chrono_tz::UTC, "RU").unwrap();
        assert_eq!(
            (ev.call_id.as_str(), ev.facts.direction, ev.facts.extension.as_deref()),
            ("9.0", Some(Direction::Outbound), Some("102"))
        );
        assert_eq!(peer("Local/101@from-queue-00000a;1").as_deref(), Some("101"));
    }
}
