//! Phone calls become CRM records (R-PBX-2..5): what one merged call record creates — the
//! phone-call activity, a callback for a missed call, a lead from an unknown caller, a
//! campaign response for a tracking number. Pure: the caller gathers the facts.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::activity::duration_minutes;
use super::entities::{Activity, ActivityParty, CampaignResponse, Lead};
use super::matching::MatchOutcome;
use super::normalize::Phone;
use super::types::{EntityKind, EntityRef};

/// Call direction, as seen from the company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Extension to extension: never a customer call.
    Internal,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Answered,
    Missed,
    Busy,
    Failed,
}

/// DOMAIN §2.13 `pbx_line`: a number the company is called on (a main line or a campaign's
/// tracking number), what its calls mean and who owns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PbxLine {
    pub pbx_lineid: Uuid,
    /// The number dialled, E.164.
    pub did: String,
    pub name: Option<String>,
    /// Owner of calls, callbacks and leads from the line: a user id or internal e-mail.
    pub owner: String,
    /// R-PBX-4: calls to the line are responses to this wave…
    pub campaignactivityid: Option<Uuid>,
    /// …or to this campaign's current phone campaign activity.
    pub campaignid: Option<Uuid>,
    /// R-PBX-5.
    pub create_leads: bool,
    pub min_answered_seconds: Option<i64>,
    pub lead_subject: Option<String>,
    /// Seeded from `[[pbx.lines]]` (and updated from it on each start).
    pub from_config: bool,
    pub createdon: DateTime<Utc>,
    pub modifiedon: DateTime<Utc>,
}

/// §2.13: a line names one wave or one campaign, not both, and has an owner.
pub fn check_line(l: &PbxLine) -> Result<(), super::error::RuleError> {
    use super::error::RuleError;
    if l.owner.trim().is_empty() {
        return Err(RuleError::new("R-PBX-4", "required_field", "owner is required"));
    }
    if l.campaignactivityid.is_some() && l.campaignid.is_some() {
        return Err(RuleError::new(
            "R-PBX-4",
            "campaign_or_activity",
            "a line points at a campaign activity or at a campaign (its current phone activity), not both",
        ));
    }
    if l.min_answered_seconds.is_some_and(|s| !(0..=86_400).contains(&s)) {
        return Err(RuleError::new("R-PBX-5", "invalid_value", "min_answered_seconds must be 0..86400"));
    }
    Ok(())
}

/// What the CRM knows of a caller, for a PBX that asks while the phone rings: the one
/// record the number matches, and the extension of that record's owner (who should take
/// the call).
#[derive(Debug, Clone, PartialEq)]
pub struct CallerCard {
    /// The record the number belongs to.
    pub record: EntityRef,
    pub name: String,
    pub owner_extension: Option<String>,
}

/// One call, normalised: the issue's `CallRecord`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub provider: String,
    pub call_id: String,
    pub direction: Direction,
    /// The external party's number, normalised (R-DUP-2).
    #[serde(skip)]
    pub external: Phone,
    /// The raw external number as the provider sent it.
    pub external_raw: Option<String>,
    /// The dialled number in E.164, if any.
    pub did: Option<String>,
    /// A second number naming the line (Mango's line behind a tracking number), E.164.
    pub line: Option<String>,
    pub extension: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: i64,
    pub disposition: Disposition,
    pub recording: Option<String>,
    /// Closed by the timeout: the final event never came.
    pub timed_out: bool,
}

impl CallRecord {
    pub fn answered(&self) -> bool {
        self.disposition == Disposition::Answered
    }

    fn number_text(&self) -> String {
        match &self.external {
            Phone::External(p) => p.e164.clone(),
            Phone::None => "a withheld number".into(),
            Phone::Internal(x) => format!("extension {x}"),
            Phone::Unparsable(raw) => raw.clone(),
        }
    }
}

/// A campaign wave a tracking number belongs to (R-PBX-4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaveRef {
    pub activity_id: Uuid,
    pub campaign_id: Uuid,
    pub owner: Uuid,
}

/// The configured line the call came in on (DOMAIN `pbx_line`).
#[derive(Debug, Clone, PartialEq)]
pub struct LineInfo {
    pub owner: Uuid,
    pub wave: Option<WaveRef>,
    pub create_leads: bool,
    pub min_answered_secs: i64,
    pub lead_subject: String,
}

/// Everything the rules need besides the record.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub line: Option<LineInfo>,
    /// Owner of the activity: the extension's user, else the line owner, else the default.
    pub owner: Option<Uuid>,
    /// R-DUP-3 on the external number.
    pub party: MatchOutcome,
    /// The activity an earlier pass created for this call (re-processing after a late event).
    pub existing: Option<Activity>,
    /// Another open callback for the same number (no second callback for repeat misses).
    pub open_callback: Option<Uuid>,
    /// R-PBX-6: the open phone calls with a due date for this number (callbacks and
    /// call-list calls) an answered call closes.
    pub open_calls: Vec<OpenCall>,
    /// R-RS-2: this caller already responded to this wave.
    pub response_exists: bool,
    pub callback_sla: Duration,
    pub lead_source: i32,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    /// Ids for the activity, a lead and a response, if created.
    pub ids: [Uuid; 3],
}

/// R-PBX-3 [DESIGN, revised]: who owns the activity of a call. A missed inbound call's
/// callback goes to the caller's own account manager — the enabled owner of the one record
/// the number matched (`party_owner`) — else to the line's owner, else the extension's
/// user; other calls to the extension's user, else the line owner.
pub fn call_owner(
    inbound_missed: bool,
    party_owner: Option<Uuid>,
    line_owner: Option<Uuid>,
    extension_user: Option<Uuid>,
) -> Option<Uuid> {
    if inbound_missed { party_owner.or(line_owner).or(extension_user) } else { extension_user.or(line_owner) }
}

/// An open phone call with a due date for the caller's number (R-PBX-3 callback, R-QC-2
/// call-list call).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenCall {
    pub id: Uuid,
    /// When it came to be: the missed call's end for a callback, the distribution for a
    /// call-list call. Only a call after this closes it.
    pub since: DateTime<Utc>,
}

/// R-PBX-6: an open call completed by an answered call.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub activity_id: Uuid,
    pub statuscode: i32,
    pub actualend: DateTime<Utc>,
    /// The line appended to its description, naming the call that closed it.
    pub line: String,
}

/// R-PBX-6: the open calls for the number that this call closes: every one that came to be
/// before it, if it was answered, in either direction; 2 Made when we called, 4 Received
/// when the customer got through.
pub fn plan_closures(
    rec: &CallRecord,
    open: &[OpenCall],
    own: Option<Uuid>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<Closure> {
    if !rec.answered() || rec.direction == Direction::Internal || rec.external.e164().is_none() {
        return Vec::new();
    }
    let at = rec.answered_at.or(rec.started_at).or(rec.ended_at).unwrap_or(now);
    let end = rec.ended_at.unwrap_or(at);
    let inbound = rec.direction == Direction::Inbound;
    open.iter()
        .filter(|o| Some(o.id) != own && o.since < at)
        .map(|o| Closure {
            activity_id: o.id,
            statuscode: if inbound { 4 } else { 2 },
            actualend: end,
            line: format!(
                "Completed by the answered {} call {} ({}) at {}.",
                if inbound { "incoming" } else { "outgoing" },
                rec.call_id,
                rec.provider,
                at.with_timezone(&tz).format("%Y-%m-%d %H:%M")
            ),
        })
        .collect()
}

/// What to write for a call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallPlan {
    /// Nothing to record in the CRM (internal call, or no owner can be found).
    Skip(String),
    Apply(Box<CallWrites>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallWrites {
    /// The phone-call activity; `is_new` says insert or update.
    pub activity: Activity,
    pub is_new: bool,
    pub parties: Vec<ActivityParty>,
    pub lead: Option<Lead>,
    pub response: Option<CampaignResponse>,
    /// R-PBX-6: open calls this call completes.
    pub closes: Vec<Closure>,
    /// R-PBX-3: a line for the open callback of the number (a repeat miss).
    pub note_on: Option<(Uuid, String)>,
}

impl CallWrites {
    pub fn created(&self) -> Vec<EntityRef> {
        let mut v = Vec::new();
        if self.is_new {
            v.push(EntityRef::new(EntityKind::Phonecall, self.activity.activityid));
        }
        if let Some(l) = &self.lead {
            v.push(EntityRef::new(EntityKind::Lead, l.leadid));
        }
        if let Some(r) = &self.response {
            v.push(EntityRef::new(EntityKind::Campaignresponse, r.activityid));
        }
        v
    }
}

/// R-PBX-2..5: decides the records a call makes.
pub fn plan_call(rec: &CallRecord, ctx: &CallContext) -> CallPlan {
    if rec.direction == Direction::Internal || matches!(rec.external, Phone::Internal(_)) {
        return CallPlan::Skip("internal call".into());
    }
    let Some(owner) = ctx.owner else {
        return CallPlan::Skip(format!(
            "no owner: the DID {} has no configured line and extension {} no user",
            rec.did.as_deref().unwrap_or("-"),
            rec.extension.as_deref().unwrap_or("-")
        ));
    };
    let inbound = rec.direction == Direction::Inbound;
    let number = rec.number_text();
    let e164 = rec.external.e164().map(str::to_string);
    let party = ctx.party.unique().filter(|p| p.kind.is_party());
    let t = ctx.now;

    // R-PBX-5: a lead only for an answered, long enough inbound call from a real, unknown number.
    let lead = match (&ctx.line, &e164) {
        (Some(line), Some(num))
            if ctx.existing.is_none()
                && inbound
                && line.create_leads
                && rec.answered()
                && rec.duration_secs >= line.min_answered_secs
                && ctx.party == MatchOutcome::None =>
        {
            Some(
                Lead {
                    leadid: ctx.ids[1],
                    subject: line.lead_subject.chars().take(300).collect(),
                    lastname: format!("Caller {num}"),
                    telephone1: Some(num.clone()),
                    leadsourcecode: Some(ctx.lead_source),
                    leadqualitycode: 2,
                    campaignid: line.wave.map(|w| w.campaign_id),
                    description: Some(format!(
                        "Created from {} call {} to {}.",
                        rec.provider,
                        rec.call_id,
                        rec.did.as_deref().unwrap_or("-")
                    )),
                    ..Default::default()
                }
                .stamped(line.owner, EntityKind::Systemuser, t, None),
            )
        }
        _ => None,
    };
    let regarding = party.or(lead.as_ref().map(|l| EntityRef::new(EntityKind::Lead, l.leadid)));

    // R-PBX-2 / R-PBX-3: the activity and its state.
    let missed = inbound && !rec.answered();
    let callable = e164.is_some();
    let is_callback = missed
        && callable
        && ctx.open_callback.is_none_or(|id| ctx.existing.as_ref().is_some_and(|e| e.activityid == id));
    let (statecode, statuscode) = match (inbound, rec.answered(), is_callback) {
        (_, _, true) => (0, 1),
        (true, _, false) => (1, 4),
        (false, _, false) => (1, 2),
    };
    let subject = match (inbound, rec.answered()) {
        (true, true) => format!("Incoming call from {number}"),
        (true, false) if is_callback => format!("Missed call from {number}: call back"),
        (true, false) => format!("Missed call from {number}"),
        (false, true) => format!("Outgoing call to {number}"),
        (false, false) => format!("Outgoing call to {number} (not answered)"),
    };
    let mut notes = vec![format!(
        "{:?} {} call via {} ({}), {}",
        rec.disposition,
        if inbound { "inbound" } else { "outbound" },
        rec.provider,
        rec.call_id,
        if rec.answered() { format!("talk time {} s", rec.duration_secs) } else { "not answered".into() }
    )];
    if let Some(d) = &rec.did {
        notes.push(format!("Dialled number: {d}"));
    }
    if let Some(x) = &rec.extension {
        notes.push(format!("Extension: {x}"));
    }
    if let Some(r) = &rec.recording {
        notes.push(format!("Recording: {r}"));
    }
    if missed && !callable {
        notes.push("No callback: the caller's number is withheld or unreadable.".into());
    }
    // R-PBX-3: a repeat miss is noted on the open callback, with its time.
    let mut note_on = None;
    if missed && callable && !is_callback {
        if let Some(id) = ctx.open_callback {
            notes.push(format!("A callback for this number is already open: {id}."));
            let at = rec.started_at.or(rec.ended_at).unwrap_or(t).with_timezone(&ctx.tz);
            note_on = Some((
                id,
                format!("Missed again at {} (call {} via {}).", at.format("%Y-%m-%d %H:%M"), rec.call_id, rec.provider),
            ));
        }
    }
    if let MatchOutcome::Ambiguous(c) = &ctx.party {
        notes.push(format!("The number matches {} records; not linked (see dup candidates).", c.len()));
    }
    if rec.timed_out {
        notes.push("Closed by timeout: the provider's final event never arrived.".into());
    }
    let received = rec.ended_at.or(rec.started_at).unwrap_or(t);
    let mut activity = Activity {
        activityid: ctx.ids[0],
        activitytypecode: EntityKind::Phonecall,
        subject: Some(subject.chars().take(200).collect()),
        description: Some(notes.join("\n")),
        regardingobjectid: regarding.map(|r| r.id),
        regardingobjectidtype: regarding.map(|r| r.kind),
        actualstart: rec.started_at,
        actualend: rec.ended_at,
        actualdurationminutes: Some(duration_minutes(rec.duration_secs)),
        directioncode: Some(!inbound),
        phonenumber: e164.clone().or(rec.external_raw.clone()),
        scheduledend: is_callback.then(|| received + ctx.callback_sla),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None);
    activity.statecode = statecode;
    activity.statuscode = statuscode;

    // Re-processing after a late event (a recording, a final event after the timeout):
    // patch what the event adds and leave the rest as people may have edited it.
    let is_new = ctx.existing.is_none();
    if let Some(old) = &ctx.existing {
        let mut a = old.clone();
        a.actualstart = a.actualstart.or(rec.started_at);
        a.actualend = rec.ended_at.or(a.actualend);
        a.actualdurationminutes = Some(duration_minutes(rec.duration_secs)).max(a.actualdurationminutes);
        if let Some(r) = &rec.recording {
            let d = a.description.get_or_insert_with(String::new);
            if !d.contains(r.as_str()) {
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(&format!("Recording: {r}"));
            }
        }
        // Who took the call may be known only from a late event (the answer by an extension
        // arriving after the hangup): while no person has edited the activity (people's
        // edits set `modifiedby`), its owner follows the call's facts.
        if old.modifiedby.is_none() {
            a.ownerid = owner;
        }
        // Our own open callback closes if the call turns out to have been answered.
        if a.statecode == 0 && inbound && rec.answered() {
            a.statecode = 1;
            a.statuscode = 4;
        }
        a.modifiedon = t;
        activity = a;
    }

    // activityparty: the customer side (record or raw number) and the owner.
    let customer = ActivityParty {
        participationtypemask: if inbound { 1 } else { 2 },
        party: party.or(regarding),
        addressused: Some(e164.clone().unwrap_or(number.clone())),
    };
    let user = ActivityParty {
        participationtypemask: if inbound { 2 } else { 1 },
        party: Some(EntityRef::new(EntityKind::Systemuser, owner)),
        addressused: rec.extension.clone(),
    };
    let parties = vec![customer, user];

    // R-PBX-4 + R-RS-2/3: a response for a tracking number, once per caller per wave.
    let response = match ctx.line.as_ref().and_then(|l| l.wave) {
        Some(w) if inbound && is_new && !ctx.response_exists => {
            let customer = party.or(lead.as_ref().map(|l| EntityRef::new(EntityKind::Lead, l.leadid)));
            let converted = lead.is_some();
            let mut r = CampaignResponse {
                activityid: ctx.ids[2],
                subject: format!("Call to the campaign number from {number}").chars().take(200).collect(),
                regardingobjectid: w.campaign_id,
                regardingobjectidtype: EntityKind::Campaign,
                originatingactivityid: Some(activity.activityid),
                originatingactivityidtype: Some(EntityKind::Phonecall),
                campaignactivityid: Some(w.activity_id),
                customerid: customer.map(|c| c.id),
                customeridtype: customer.map(|c| c.kind),
                telephone: e164.clone().or(rec.external_raw.clone()),
                lastname: lead.as_ref().map(|l| l.lastname.clone()),
                responsecode: 1,
                channeltypecode: Some(2),
                receivedon: Some(received.with_timezone(&ctx.tz).date_naive()),
                ..Default::default()
            }
            .stamped(w.owner, EntityKind::Systemuser, t, None);
            if converted {
                // R-RS-3 interested_unknown_only: the unknown caller's response converts (a).
                r.statecode = 1;
                r.statuscode = 2;
            }
            Some(r)
        }
        _ => None,
    };
    let lead = lead.map(|mut l| {
        l.relatedobjectid = response.as_ref().map(|r| r.activityid);
        l
    });
    let closes = plan_closures(rec, &ctx.open_calls, Some(activity.activityid), ctx.tz, t);
    let note_on = note_on.filter(|_| is_new);
    CallPlan::Apply(Box::new(CallWrites { activity, is_new, parties, lead, response, closes, note_on }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rec(direction: Direction, disposition: Disposition, number: &str, secs: i64) -> CallRecord {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        CallRecord {
            provider: "generic".into(),
            call_id: "c1".into(),
            direction,
            external: Phone::parse(number, "RU"),
            external_raw: Some(number.into()),
            did: Some("+74951234567".into()),
            line: None,
            extension: Some("101".into()),
            started_at: Some(start),
            answered_at: (disposition == Disposition::Answered).then_some(start),
            ended_at: Some(start + Duration::seconds(secs.max(5))),
            duration_secs: secs,
            disposition,
            recording: None,
            timed_out: false,
        }
    }

    fn ctx(line: Option<LineInfo>, party: MatchOutcome) -> CallContext {
        CallContext {
            line,
            owner: Some(Uuid::from_u128(1)),
            party,
            existing: None,
            open_callback: None,
            open_calls: Vec::new(),
            response_exists: false,
            callback_sla: Duration::hours(2),
            lead_source: 100_000_001,
            tz: chrono_tz::Europe::Moscow,
            now: Utc.with_ymd_and_hms(2026, 11, 27, 9, 5, 0).unwrap(),
            ids: [Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12)],
        }
    }

    fn line(create_leads: bool, wave: bool) -> LineInfo {
        LineInfo {
            owner: Uuid::from_u128(2),
            wave: wave.then_some(WaveRef {
                activity_id: Uuid::from_u128(50),
                campaign_id: Uuid::from_u128(51),
                owner: Uuid::from_u128(3),
            }),
            create_leads,
            min_answered_secs: 10,
            lead_subject: "Call to the main line".into(),
        }
    }

    fn apply(p: CallPlan) -> CallWrites {
        match p {
            CallPlan::Apply(w) => *w,
            CallPlan::Skip(r) => panic!("skipped: {r}"),
        }
    }

    #[test]
    fn r_pbx_2_answered_calls_are_completed_received_or_made() {
        let known = MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)));
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Answered, "8 916 123-45-67", 61),
            &ctx(None, known.clone()),
        ));
        assert_eq!((w.activity.statecode, w.activity.statuscode), (1, 4));
        assert_eq!(w.activity.actualdurationminutes, Some(2));
        assert_eq!(w.activity.phonenumber.as_deref(), Some("+79161234567"));
        assert_eq!(w.activity.directioncode, Some(false));
        assert_eq!(w.activity.regardingobjectid, Some(Uuid::from_u128(7)));
        assert!(w.lead.is_none());
        let w =
            apply(plan_call(&rec(Direction::Outbound, Disposition::Answered, "+79161234567", 30), &ctx(None, known)));
        assert_eq!((w.activity.statecode, w.activity.statuscode), (1, 2));
        assert_eq!(w.activity.directioncode, Some(true));
    }

    #[test]
    fn r_pbx_3_missed_inbound_becomes_an_open_callback_due_after_the_sla() {
        let r = rec(Direction::Inbound, Disposition::Missed, "+79161234567", 0);
        let w = apply(plan_call(&r, &ctx(Some(line(true, false)), MatchOutcome::None)));
        assert_eq!((w.activity.statecode, w.activity.statuscode), (0, 1));
        assert_eq!(w.activity.scheduledend, Some(r.ended_at.unwrap() + Duration::hours(2)));
        assert!(w.lead.is_none(), "a missed call makes no lead");
        // Withheld numbers cannot be called back.
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Missed, "anonymous", 0),
            &ctx(None, MatchOutcome::None),
        ));
        assert_eq!(w.activity.statecode, 1);
        assert!(w.activity.scheduledend.is_none());
        // A second miss while a callback is open makes no second callback.
        let mut c = ctx(None, MatchOutcome::None);
        c.open_callback = Some(Uuid::from_u128(99));
        let w = apply(plan_call(&r, &c));
        assert_eq!(w.activity.statecode, 1);
        assert!(w.activity.description.unwrap().contains("already open"));
        // An outbound call nobody answered is no callback.
        let w = apply(plan_call(
            &rec(Direction::Outbound, Disposition::Busy, "+79161234567", 0),
            &ctx(None, MatchOutcome::None),
        ));
        assert_eq!((w.activity.statecode, w.activity.statuscode), (1, 2));
    }

    #[test]
    fn r_pbx_5_lead_only_for_answered_long_unknown_real_numbers() {
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Answered, "+79161234567", 30),
            &ctx(Some(line(true, false)), MatchOutcome::None),
        ));
        let lead = w.lead.unwrap();
        assert_eq!(lead.lastname, "Caller +79161234567");
        assert_eq!(lead.telephone1.as_deref(), Some("+79161234567"));
        assert_eq!(lead.leadsourcecode, Some(100_000_001));
        assert_eq!(w.activity.regardingobjectid, Some(lead.leadid));
        for (r, l, why) in [
            (rec(Direction::Inbound, Disposition::Answered, "+79161234567", 5), line(true, false), "too short"),
            (
                rec(Direction::Inbound, Disposition::Answered, "+79161234567", 30),
                line(false, false),
                "line makes no leads",
            ),
            (rec(Direction::Inbound, Disposition::Answered, "anonymous", 30), line(true, false), "withheld"),
            (rec(Direction::Outbound, Disposition::Answered, "+79161234567", 30), line(true, false), "outbound"),
        ] {
            assert!(apply(plan_call(&r, &ctx(Some(l), MatchOutcome::None))).lead.is_none(), "{why}");
        }
        let amb = MatchOutcome::Ambiguous(vec![
            EntityRef::new(EntityKind::Contact, Uuid::from_u128(1)),
            EntityRef::new(EntityKind::Lead, Uuid::from_u128(2)),
        ]);
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Answered, "+79161234567", 30),
            &ctx(Some(line(true, false)), amb),
        ));
        assert!(w.lead.is_none() && w.activity.regardingobjectid.is_none(), "ambiguous: no guess, no lead");
        assert!(
            matches!(
                plan_call(&rec(Direction::Inbound, Disposition::Answered, "102", 30), &ctx(None, MatchOutcome::None)),
                CallPlan::Skip(_)
            ),
            "extensions are internal"
        );
    }

    #[test]
    fn r_pbx_4_tracking_number_makes_one_response_per_caller_per_wave() {
        let known = MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)));
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Answered, "+79161234567", 30),
            &ctx(Some(line(true, true)), known),
        ));
        let r = w.response.unwrap();
        assert_eq!((r.regardingobjectid, r.campaignactivityid), (Uuid::from_u128(51), Some(Uuid::from_u128(50))));
        assert_eq!((r.channeltypecode, r.responsecode, r.statecode), (Some(2), 1, 0));
        assert_eq!(r.originatingactivityid, Some(w.activity.activityid));
        assert_eq!(r.customerid, Some(Uuid::from_u128(7)));
        assert_eq!(r.ownerid, Uuid::from_u128(3), "owned by the wave owner");
        // An unknown caller: the lead comes through the response, converted (R-RS-3).
        let w = apply(plan_call(
            &rec(Direction::Inbound, Disposition::Answered, "+79161234567", 30),
            &ctx(Some(line(true, true)), MatchOutcome::None),
        ));
        let (lead, r) = (w.lead.unwrap(), w.response.unwrap());
        assert_eq!((r.customerid, r.statecode), (Some(lead.leadid), 1));
        assert_eq!((lead.relatedobjectid, lead.campaignid), (Some(r.activityid), Some(Uuid::from_u128(51))));
        let mut c = ctx(Some(line(true, true)), MatchOutcome::None);
        c.response_exists = true;
        assert!(
            apply(plan_call(&rec(Direction::Inbound, Disposition::Missed, "+79161234567", 0), &c)).response.is_none()
        );
    }

    #[test]
    fn reprocessing_updates_the_same_activity_and_respects_a_closed_callback() {
        let r = rec(Direction::Inbound, Disposition::Missed, "+79161234567", 0);
        let first = apply(plan_call(&r, &ctx(None, MatchOutcome::None)));
        let mut done = first.activity.clone();
        done.statecode = 1;
        done.statuscode = 2;
        let mut c = ctx(None, MatchOutcome::None);
        c.existing = Some(done.clone());
        c.ids = [Uuid::from_u128(20), Uuid::from_u128(21), Uuid::from_u128(22)];
        let mut late = r.clone();
        late.recording = Some("mango:rec1".into());
        let w = apply(plan_call(&late, &c));
        assert!(!w.is_new);
        assert_eq!(w.activity.activityid, first.activity.activityid);
        assert_eq!((w.activity.statecode, w.activity.statuscode), (1, 2), "a closed callback stays closed");
        assert!(w.activity.description.unwrap().contains("mango:rec1"));
    }

    #[test]
    fn r_pbx_3_a_late_answer_gives_the_call_to_whoever_took_it_unless_a_person_edited_it() {
        // The hangup came first: nobody known to have answered, the line's owner has it.
        let r = rec(Direction::Inbound, Disposition::Answered, "+79161234567", 95);
        let mut c = ctx(None, MatchOutcome::None);
        c.owner = Some(Uuid::from_u128(2));
        let first = apply(plan_call(&r, &c)).activity;
        assert_eq!(first.ownerid, Uuid::from_u128(2));
        // Then the answer by extension 101 (user 5).
        let mut c = ctx(None, MatchOutcome::None);
        c.owner = Some(Uuid::from_u128(5));
        c.existing = Some(first.clone());
        assert_eq!(apply(plan_call(&r, &c)).activity.ownerid, Uuid::from_u128(5));
        // A person reassigned it in between: theirs stands.
        let mut edited = first;
        edited.modifiedby = Some(Uuid::from_u128(9));
        c.existing = Some(edited);
        assert_eq!(apply(plan_call(&r, &c)).activity.ownerid, Uuid::from_u128(2));
    }

    #[test]
    fn r_pbx_3_revised_the_callback_goes_to_the_account_manager() {
        let (manager, line_owner, ext) =
            (Some(Uuid::from_u128(70)), Some(Uuid::from_u128(71)), Some(Uuid::from_u128(72)));
        assert_eq!(call_owner(true, manager, line_owner, ext), manager);
        assert_eq!(call_owner(true, None, line_owner, ext), line_owner);
        assert_eq!(call_owner(true, None, None, ext), ext);
        // Answered and outbound calls stay with whoever took them.
        assert_eq!(call_owner(false, manager, line_owner, ext), ext);
        assert_eq!(call_owner(false, manager, line_owner, None), line_owner);
    }

    #[test]
    fn r_pbx_6_an_answered_call_completes_the_open_callback() {
        let missed_at = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap();
        let cb = OpenCall { id: Uuid::from_u128(90), since: missed_at };
        // We call back (outbound, answered): Made, with the call named in the line.
        let mut back = rec(Direction::Outbound, Disposition::Answered, "+79161234567", 95);
        let mut c = ctx(None, MatchOutcome::None);
        c.open_calls = vec![cb];
        let w = apply(plan_call(&back, &c));
        assert_eq!(w.closes.len(), 1);
        let cl = &w.closes[0];
        assert_eq!((cl.activity_id, cl.statuscode), (cb.id, 2));
        assert_eq!(cl.actualend, back.ended_at.unwrap());
        assert!(cl.line.contains("answered outgoing call") && cl.line.contains(&back.call_id), "{}", cl.line);
        // The customer gets through to us first: Received.
        let inbound = rec(Direction::Inbound, Disposition::Answered, "+79161234567", 40);
        assert_eq!(apply(plan_call(&inbound, &c)).closes[0].statuscode, 4);
        // A call that was not answered, or came before the callback existed, closes nothing.
        assert!(
            apply(plan_call(&rec(Direction::Outbound, Disposition::Missed, "+79161234567", 0), &c)).closes.is_empty()
        );
        c.open_calls = vec![OpenCall { since: back.started_at.unwrap() + Duration::minutes(1), ..cb }];
        assert!(apply(plan_call(&back, &c)).closes.is_empty());
        // The call's own activity is never closed by itself.
        back.disposition = Disposition::Answered;
        c.open_calls = vec![OpenCall { id: c.ids[0], since: missed_at }];
        assert!(apply(plan_call(&back, &c)).closes.is_empty());
    }

    #[test]
    fn r_pbx_3_a_repeat_miss_is_noted_on_the_open_callback() {
        let r = rec(Direction::Inbound, Disposition::Missed, "+79161234567", 0);
        let mut c = ctx(Some(line(false, false)), MatchOutcome::None);
        c.open_callback = Some(Uuid::from_u128(90));
        let w = apply(plan_call(&r, &c));
        assert_eq!(w.activity.statecode, 1, "no second callback");
        let (id, line) = w.note_on.expect("a note on the open one");
        assert_eq!(id, Uuid::from_u128(90));
        assert!(line.starts_with("Missed again at 2026-11-27 ") && line.contains("(call c1 via generic)"), "{line}");
    }
}
