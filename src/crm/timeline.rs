//! The history of relations with a client (R-DEAL-1, deCard §6): every record and activity
//! about an opportunity, account, contact or lead as one list, oldest first. Pure: the store
//! gathers the records, this turns each into an item people read and orders them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::entities::{Activity, CampaignResponse, Lead, Opportunity};
use super::labels;
use super::state;
use super::types::{EntityKind, EntityRef};

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub when: DateTime<Utc>,
    /// lead, opportunity, email, phonecall, task, …, campaignresponse, or a history kind
    /// (stage, won, lost, reopened, act).
    pub kind: String,
    pub subject: String,
    /// The user who did it or owns it.
    pub who: Option<Uuid>,
    pub who_name: Option<String>,
    /// The record's state as people name it (Open, Completed, Won …), if it has one.
    pub state: Option<String>,
    /// The record the item is, as an API path.
    pub link: String,
    pub id: Uuid,
    /// Which record of the timeline it is about (the account's contact, the opportunity …).
    pub about: EntityRef,
    /// incoming / outgoing, for e-mails and calls.
    pub direction: Option<String>,
    /// A call's recording.
    pub recording: Option<String>,
    /// One more line: how a lead arrived, a response's code, a completion time.
    pub detail: Option<String>,
    /// An open activity's due time, and when a closed one was closed (the times the detail
    /// names, for a reader that writes them in its own zone and language).
    pub due: Option<DateTime<Utc>>,
    pub closed: Option<DateTime<Utc>>,
}

fn state_name(kind: EntityKind, statecode: i32) -> Option<String> {
    state::model(kind).iter().find(|d| d.code == statecode).map(|d| d.name.to_string())
}

/// The API path of a record.
pub fn link(r: EntityRef) -> String {
    format!("/api/v1/{}/{}", r.kind.set(), r.id)
}

/// A record's creation: the lead and how it came (its source), the opportunity, a contact
/// or account joining the client.
pub fn created(
    about: EntityRef,
    subject: String,
    when: DateTime<Utc>,
    owner: Uuid,
    statecode: i32,
    detail: Option<String>,
) -> Item {
    Item {
        when,
        kind: about.kind.as_str().to_string(),
        subject,
        who: Some(owner),
        who_name: None,
        state: state_name(about.kind, statecode),
        link: link(about),
        id: about.id,
        about,
        direction: None,
        recording: None,
        detail,
        due: None,
        closed: None,
    }
}

/// How a lead arrived, in words: its source and the first line the daemon wrote about it.
pub fn lead_item(l: &Lead) -> Item {
    let source = l.leadsourcecode.and_then(|c| labels::picklist("lead", "leadsourcecode", i64::from(c)));
    let origin = l.description.as_deref().and_then(|d| d.lines().next()).filter(|d| d.starts_with("Created from"));
    let detail = match (source, origin) {
        (Some(s), Some(o)) => Some(format!("Source: {s}. {o}")),
        (Some(s), None) => Some(format!("Source: {s}")),
        (None, Some(o)) => Some(o.to_string()),
        (None, None) => None,
    };
    let name = format!("{}{}", l.firstname.as_deref().map(|f| format!("{f} ")).unwrap_or_default(), l.lastname);
    created(
        EntityRef::new(EntityKind::Lead, l.leadid),
        format!("{} — {name}", l.subject),
        l.createdon,
        l.ownerid,
        l.statecode,
        detail,
    )
}

pub fn opportunity_item(o: &Opportunity) -> Item {
    let value = o.estimatedvalue.map(|v| format!("Estimated {v}"));
    created(
        EntityRef::new(EntityKind::Opportunity, o.opportunityid),
        o.name.clone(),
        o.createdon,
        o.ownerid,
        o.statecode,
        value,
    )
}

/// An activity: when it happened (a call's start, a mail's sending, else its creation),
/// its state, direction and recording; for closed ones, when they were closed.
pub fn activity_item(a: &Activity, about: EntityRef) -> Item {
    let kind = a.activitytypecode;
    let direction = match (kind, a.directioncode) {
        (EntityKind::Email | EntityKind::Phonecall, Some(true)) => Some("outgoing".to_string()),
        (EntityKind::Email | EntityKind::Phonecall, Some(false)) => Some("incoming".to_string()),
        _ => None,
    };
    let recording = a
        .description
        .as_deref()
        .and_then(|d| d.lines().find_map(|l| l.strip_prefix("Recording: ")).map(|r| r.trim().to_string()));
    let state = state_name(kind, a.statecode);
    let detail = match (a.statecode, a.actualend) {
        (1 | 2, Some(end)) if kind != EntityKind::Opportunityclose => Some(format!(
            "{} {}",
            state.as_deref().unwrap_or("Closed"),
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        _ if kind == EntityKind::Opportunityclose => a.description.clone(),
        _ => a.scheduledend.map(|d| format!("Due {}", d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
    };
    Item {
        when: a.actualstart.or(a.senton).unwrap_or(a.createdon),
        kind: kind.as_str().to_string(),
        subject: a.subject.clone().unwrap_or_default(),
        who: Some(a.ownerid),
        who_name: None,
        state,
        link: link(EntityRef::new(kind, a.activityid)),
        id: a.activityid,
        about,
        direction,
        recording,
        detail,
        due: (a.statecode == 0).then_some(a.scheduledend).flatten(),
        closed: (matches!(a.statecode, 1 | 2) && kind != EntityKind::Opportunityclose).then_some(a.actualend).flatten(),
    }
}

pub fn response_item(r: &CampaignResponse, about: EntityRef) -> Item {
    let code = labels::picklist("campaignresponse", "responsecode", i64::from(r.responsecode)).map(str::to_string);
    Item {
        when: r.createdon,
        kind: "campaignresponse".into(),
        subject: r.subject.clone(),
        who: Some(r.ownerid),
        who_name: None,
        state: state_name(EntityKind::Campaignresponse, r.statecode),
        link: link(EntityRef::new(EntityKind::Campaignresponse, r.activityid)),
        id: r.activityid,
        about,
        direction: Some("incoming".into()),
        recording: None,
        detail: code,
        due: None,
        closed: None,
    }
}

/// A history line (`record_history`): a stage change, win, loss, reopening or the Act.
pub fn history_item(
    id: Uuid,
    about: EntityRef,
    at: DateTime<Utc>,
    actor: Option<Uuid>,
    kind: &str,
    summary: &str,
) -> Item {
    Item {
        when: at,
        kind: kind.to_string(),
        subject: summary.to_string(),
        who: actor,
        who_name: None,
        state: None,
        link: link(about),
        id,
        about,
        direction: None,
        recording: None,
        detail: None,
        due: None,
        closed: None,
    }
}

/// Oldest first; at the same instant a record before what happened to it, then by id, so
/// pages are stable. Each item once (an activity regarding one record and naming another
/// appears once).
pub fn order(mut items: Vec<Item>) -> Vec<Item> {
    let rank = |i: &Item| match i.kind.as_str() {
        "lead" | "account" | "contact" | "opportunity" => 0,
        _ => 1,
    };
    items.sort_by(|a, b| {
        a.when.cmp(&b.when).then(rank(a).cmp(&rank(b))).then(a.id.cmp(&b.id)).then(a.kind.cmp(&b.kind))
    });
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert((i.id, i.kind.clone(), i.when)));
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn r_deal_1_items_say_when_what_who_state_and_link() {
        let lead = Lead {
            leadid: Uuid::from_u128(1),
            subject: "Заявка с выставки".into(),
            lastname: "Сидоров".into(),
            firstname: Some("Пётр".into()),
            leadsourcecode: Some(7),
            ..Default::default()
        }
        .stamped(Uuid::from_u128(9), EntityKind::Systemuser, at(8), None);
        let li = lead_item(&lead);
        assert_eq!(
            (li.kind.as_str(), li.subject.as_str(), li.state.as_deref()),
            ("lead", "Заявка с выставки — Пётр Сидоров", Some("Open"))
        );
        assert_eq!(li.detail.as_deref(), Some("Source: Trade Show"));
        assert_eq!(li.link, format!("/api/v1/leads/{}", lead.leadid));

        let about = EntityRef::new(EntityKind::Lead, lead.leadid);
        let mut call = Activity {
            activityid: Uuid::from_u128(2),
            activitytypecode: EntityKind::Phonecall,
            subject: Some("Incoming call".into()),
            directioncode: Some(false),
            actualstart: Some(at(7)),
            actualend: Some(at(7)),
            description: Some("Answered inbound call\nRecording: https://pbx.example.com/r/1.wav".into()),
            ..Default::default()
        }
        .stamped(Uuid::from_u128(9), EntityKind::Systemuser, at(9), None);
        call.statecode = 1;
        call.statuscode = 4;
        let ci = activity_item(&call, about);
        assert_eq!(
            (ci.when, ci.direction.as_deref(), ci.recording.as_deref(), ci.state.as_deref()),
            (at(7), Some("incoming"), Some("https://pbx.example.com/r/1.wav"), Some("Completed"))
        );
        assert_eq!(ci.link, format!("/api/v1/activities/{}", call.activityid));

        let stage = history_item(
            Uuid::from_u128(3),
            EntityRef::new(EntityKind::Opportunity, Uuid::from_u128(4)),
            at(10),
            None,
            "stage",
            "Stage: 0 Qualify → 2 Propose",
        );
        // Oldest first: the call that brought the lead comes before the lead it made.
        let items = order(vec![stage.clone(), li.clone(), ci.clone(), ci.clone()]);
        assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![call.activityid, lead.leadid, stage.id]);
    }
}
