//! Quick campaigns and call lists (R-QC-1, R-QC-2, §2.9, §3.5): one activity per member of
//! a marketing list (a quick campaign) or of a campaign activity's target lists (its
//! distribution), each counted in a bulkoperation with the members left out and why. Pure:
//! the store reads the members' facts and applies the plan in one transaction.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::{Activity, BulkOperation};
use super::error::{RuleError, check_len, refuse, refuse_conflict, require};
use super::types::{EntityKind, EntityRef};

/// §2.9 `createdrecordtypecode` of an activity type.
pub fn created_record_code(kind: EntityKind) -> Option<i32> {
    match kind {
        EntityKind::Phonecall => Some(1),
        EntityKind::Fax => Some(2),
        EntityKind::Letter => Some(3),
        EntityKind::Email => Some(4),
        EntityKind::Appointment => Some(5),
        _ => None,
    }
}

/// §2.10 mapping: the activity a campaign activity's channel creates per member. E-mail
/// channels are sent as waves (R-WV-*), "Other" creates nothing.
pub fn channel_activity(channeltypecode: Option<i32>) -> Option<EntityKind> {
    match channeltypecode {
        Some(1) => Some(EntityKind::Phonecall),
        Some(2) => Some(EntityKind::Appointment),
        Some(3 | 4) => Some(EntityKind::Letter),
        Some(5 | 6) => Some(EntityKind::Fax),
        _ => None,
    }
}

/// A list member with the facts the channel's exclusions need.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub party: EntityRef,
    pub name: String,
    pub statecode: i32,
    pub owner: Uuid,
    pub owner_enabled: bool,
    /// The first of telephone1 / mobilephone in E.164, if any parses.
    pub phone: Option<String>,
    pub donotphone: bool,
    pub donotpostalmail: bool,
    pub donotfax: bool,
}

/// What a person asks of a quick campaign.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickParams {
    /// phonecall, task, letter or email.
    pub activity: String,
    pub subject: String,
    pub description: Option<String>,
    /// Due (scheduledend) of each activity.
    pub due: Option<DateTime<Utc>>,
    /// Owner of every activity; default: each member's owner.
    pub ownerid: Option<Uuid>,
    /// Skip members who are not active (default true, as a list's `ignoreinactivelistmembers`).
    pub ignore_inactive: Option<bool>,
    /// E-mail only, as a wave's schedule: `subject` and `description` are the subject and
    /// text body templates, `html` the optional HTML body.
    pub html: Option<String>,
    /// The sender address (default: `smtp.from`).
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    /// Local "YYYY-MM-DD HH:MM" in `timezone` (default the org's), or an RFC 3339 instant;
    /// default now.
    pub start: Option<String>,
    pub timezone: Option<String>,
    pub rate_per_minute: Option<u32>,
}

impl QuickParams {
    /// The e-mail-only fields given (refused for other activity types).
    fn email_fields(&self) -> Vec<&'static str> {
        [
            ("html", self.html.is_some()),
            ("from", self.from.is_some()),
            ("from_name", self.from_name.is_some()),
            ("reply_to", self.reply_to.is_some()),
            ("start", self.start.is_some()),
            ("timezone", self.timezone.is_some()),
            ("rate_per_minute", self.rate_per_minute.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| f)
        .collect()
    }
}

/// The settings a run applies.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub kind: EntityKind,
    pub subject: String,
    pub description: Option<String>,
    pub due: Option<DateTime<Utc>>,
    /// The chosen owner of every activity, if any.
    pub owner: Option<Uuid>,
    /// Who falls back as owner when a member's owner is disabled.
    pub fallback_owner: Uuid,
    pub ignore_inactive: bool,
    /// R-OPT-1 for the channel (donotphone, donotpostalmail, donotfax).
    pub skip_opted_out: bool,
    /// What every activity regards (the bulkoperation for a quick campaign, the campaign
    /// activity for a distribution).
    pub regarding: EntityRef,
    /// Members that already have an activity of this run's source (a distribution run
    /// twice creates each member's call once).
    pub already: HashSet<Uuid>,
}

/// The run decided: the bulkoperation with its counts, the activities, and the parties
/// (the member each activity is with).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    pub bulk: BulkOperation,
    pub activities: Vec<Activity>,
    pub parties: Vec<(Uuid, EntityRef, Option<String>)>,
    pub excluded: BTreeMap<String, i64>,
}

/// R-QC-1: checks a quick campaign's request. E-mail goes through the wave sender: its
/// `description` is the message's text (required), and its due date is the wave's start.
pub fn check_params(p: &QuickParams) -> Result<EntityKind, RuleError> {
    require("subject", Some(&p.subject), "R-QC-1")?;
    check_len("subject", Some(&p.subject), 200)?;
    let kind = match p.activity.parse::<EntityKind>().ok() {
        Some(k @ (EntityKind::Phonecall | EntityKind::Task | EntityKind::Letter | EntityKind::Email)) => k,
        _ => return refuse("R-QC-1", "invalid_activity_type", "activity: phonecall, task, letter or email"),
    };
    if kind == EntityKind::Email {
        require("description", p.description.as_deref(), "R-QC-1")?;
        check_len("description", p.description.as_deref(), 100_000)?;
        // Its e-mails are the quick campaign's owner's (`ownerid`, default the caller), sent
        // to active members only, as every wave.
        if p.due.is_some() || p.ignore_inactive == Some(false) {
            return refuse(
                "R-QC-1",
                "not_for_email",
                "an e-mail quick campaign is sent to active members at its start: give start, not due or \
                    ignore_inactive",
            );
        }
    } else {
        check_len("description", p.description.as_deref(), 2000)?;
        if let Some(f) = p.email_fields().first() {
            return refuse("R-QC-1", "email_only_field", format!("{f} is for activity email only"));
        }
    }
    Ok(kind)
}

/// R-QC-1: a quick campaign runs over an active list.
pub fn check_list(list: &super::entities::MarketingList) -> Result<(), RuleError> {
    if list.statecode != 0 {
        return refuse_conflict("R-QC-1", "list_inactive", format!("list '{}' is inactive", list.listname));
    }
    Ok(())
}

/// R-QC-2 (with R-WV-1's preconditions): a campaign activity is distributed when its
/// campaign is Ready To Launch or Launched, it is Open, its channel creates an activity per
/// member (e-mail goes as a wave), and it has target lists, all active and linked to the
/// campaign. Returns the activity type it creates.
pub fn check_distribution(
    campaign: &super::entities::Campaign,
    ca: &super::entities::CampaignActivity,
    targets: &[super::entities::MarketingList],
    campaign_lists: &[Uuid],
) -> Result<EntityKind, RuleError> {
    use super::campaign::{LAUNCHED, READY_TO_LAUNCH};
    if campaign.statecode != 0 || !matches!(campaign.statuscode, READY_TO_LAUNCH | LAUNCHED) {
        return refuse_conflict(
            "R-QC-2",
            "campaign_not_launched",
            "the campaign must be Active and Ready To Launch or Launched",
        );
    }
    if ca.statecode != 0 {
        return refuse_conflict("R-QC-2", "activity_closed", "closed and canceled campaign activities are read-only");
    }
    let kind = match ca.channeltypecode {
        Some(7 | 8) => {
            return refuse("R-QC-2", "use_a_wave", "an e-mail campaign activity is sent as a wave: schedule it");
        }
        c => channel_activity(c).ok_or_else(|| {
            RuleError::new("R-QC-2", "nothing_to_distribute", "channel Other (or none) creates no activity per member")
        })?,
    };
    if targets.is_empty() {
        return refuse("R-QC-2", "wave_without_lists", "the campaign activity has no target list");
    }
    for l in targets {
        if l.statecode != 0 {
            return refuse_conflict("R-QC-2", "list_inactive", format!("list '{}' is inactive", l.listname));
        }
        if !campaign_lists.contains(&l.listid) {
            return refuse(
                "R-QC-2",
                "list_not_in_campaign",
                format!("list '{}' is not linked to the campaign", l.listname),
            );
        }
    }
    Ok(kind)
}

/// The reason a member gets no activity, if any (R-WV-3 and R-OPT-1 for the channel).
fn exclusion(t: &Target, s: &RunSettings) -> Option<&'static str> {
    // Active accounts and contacts, Open leads: statecode 0 either way.
    if s.ignore_inactive && t.statecode != 0 {
        return Some("inactive");
    }
    if s.already.contains(&t.party.id) {
        return Some("already_distributed");
    }
    match s.kind {
        EntityKind::Phonecall if s.skip_opted_out && t.donotphone => Some("donotphone"),
        EntityKind::Phonecall if t.phone.is_none() => Some("no_phone"),
        EntityKind::Letter if s.skip_opted_out && t.donotpostalmail => Some("donotpostalmail"),
        EntityKind::Fax if s.skip_opted_out && t.donotfax => Some("donotfax"),
        _ => None,
    }
}

/// R-QC-1 / R-QC-2: one open activity per distinct member that no exclusion keeps out.
/// Phone calls are outgoing, to the member's number, so the PBX's answered call closes
/// them (R-PBX-6). `ids` yields fresh ids (the bulkoperation's first).
pub fn plan_run(
    bulk: BulkOperation,
    targets: Vec<Target>,
    s: &RunSettings,
    mut ids: impl FnMut() -> Uuid,
    now: DateTime<Utc>,
) -> RunPlan {
    let mut seen = HashSet::new();
    let mut activities = Vec::new();
    let mut parties = Vec::new();
    let mut excluded: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    for t in targets {
        if !seen.insert(t.party) {
            continue;
        }
        total += 1;
        if let Some(reason) = exclusion(&t, s) {
            *excluded.entry(reason.to_string()).or_default() += 1;
            continue;
        }
        let owner = s.owner.unwrap_or(if t.owner_enabled { t.owner } else { s.fallback_owner });
        let id = ids();
        let mut a = Activity {
            activityid: id,
            activitytypecode: s.kind,
            subject: Some(s.subject.chars().take(200).collect()),
            description: s.description.clone(),
            regardingobjectid: Some(s.regarding.id),
            regardingobjectidtype: Some(s.regarding.kind),
            scheduledend: s.due,
            ..Default::default()
        }
        .stamped(owner, EntityKind::Systemuser, now, Some(s.fallback_owner));
        if s.kind == EntityKind::Phonecall {
            a.directioncode = Some(true);
            a.phonenumber = t.phone.clone();
        }
        parties.push((id, t.party, t.phone.clone()));
        activities.push(a);
    }
    let mut bulk = bulk;
    bulk.targetmemberscount = Some(total);
    bulk.successcount = Some(activities.len() as i32);
    bulk.failurecount = Some(0);
    bulk.statecode = 1;
    bulk.statuscode = 4;
    bulk.excluded = Some(serde_json::to_value(&excluded).unwrap_or_default());
    RunPlan { bulk, activities, parties, excluded }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
    }
    const ME: Uuid = Uuid::from_u128(1);
    const REP: Uuid = Uuid::from_u128(2);

    fn target(n: u128, phone: Option<&str>) -> Target {
        Target {
            party: EntityRef::new(EntityKind::Contact, Uuid::from_u128(100 + n)),
            name: format!("C{n}"),
            statecode: 0,
            owner: REP,
            owner_enabled: true,
            phone: phone.map(str::to_string),
            donotphone: false,
            donotpostalmail: false,
            donotfax: false,
        }
    }

    fn settings(kind: EntityKind) -> RunSettings {
        RunSettings {
            kind,
            subject: "Пригласить на выставку".into(),
            description: None,
            due: Some(now() + chrono::Duration::days(2)),
            owner: None,
            fallback_owner: ME,
            ignore_inactive: true,
            skip_opted_out: true,
            regarding: EntityRef::new(EntityKind::Bulkoperation, Uuid::from_u128(50)),
            already: HashSet::new(),
        }
    }

    fn bulk() -> BulkOperation {
        BulkOperation {
            activityid: Uuid::from_u128(50),
            operationtypecode: 7,
            createdrecordtypecode: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn r_qc_1_one_call_per_member_with_exclusions_by_reason() {
        let mut opted = target(3, Some("+79160000003"));
        opted.donotphone = true;
        let mut gone = target(4, Some("+79160000004"));
        gone.statecode = 1;
        let mut orphan = target(5, Some("+79160000005"));
        orphan.owner_enabled = false;
        let targets = vec![
            target(1, Some("+79160000001")),
            target(1, Some("+79160000001")),
            target(2, None),
            opted,
            gone,
            orphan,
        ];
        let mut n = 1000;
        let plan = plan_run(
            bulk(),
            targets,
            &settings(EntityKind::Phonecall),
            || {
                n += 1;
                Uuid::from_u128(n)
            },
            now(),
        );
        assert_eq!(plan.activities.len(), 2);
        let a = &plan.activities[0];
        assert_eq!(
            (a.activitytypecode, a.directioncode, a.phonenumber.as_deref(), a.statecode),
            (EntityKind::Phonecall, Some(true), Some("+79160000001"), 0)
        );
        assert_eq!(
            (a.ownerid, a.regardingobjectid),
            (REP, Some(Uuid::from_u128(50))),
            "the member's owner; regarding the run"
        );
        assert_eq!(plan.activities[1].ownerid, ME, "a disabled owner's member goes to whoever ran it");
        assert_eq!(
            plan.excluded,
            BTreeMap::from([("donotphone".to_string(), 1), ("inactive".to_string(), 1), ("no_phone".to_string(), 1)])
        );
        assert_eq!(
            (plan.bulk.targetmemberscount, plan.bulk.successcount, plan.bulk.statuscode),
            (Some(5), Some(2), 4),
            "a duplicate member counts once"
        );
    }

    #[test]
    fn r_qc_2_a_distribution_creates_each_members_call_once() {
        let mut s = settings(EntityKind::Phonecall);
        s.already.insert(Uuid::from_u128(101));
        s.owner = Some(ME);
        let plan = plan_run(
            bulk(),
            vec![target(1, Some("+79160000001")), target(2, Some("+79160000002"))],
            &s,
            Uuid::new_v4,
            now(),
        );
        assert_eq!(plan.activities.len(), 1);
        assert_eq!(plan.activities[0].ownerid, ME);
        assert_eq!(plan.excluded.get("already_distributed"), Some(&1));
    }

    #[test]
    fn r_qc_1_tasks_need_no_address_and_email_goes_as_a_wave() {
        let plan = plan_run(bulk(), vec![target(1, None)], &settings(EntityKind::Task), Uuid::new_v4, now());
        assert_eq!(plan.activities.len(), 1);
        let p = |a: &str| QuickParams { activity: a.into(), subject: "S".into(), ..Default::default() };
        assert_eq!(check_params(&p("email")).unwrap_err().code, "required_field", "an e-mail needs its text");
        let mail = QuickParams { description: Some("Hello {{ first_name }}".into()), ..p("email") };
        assert_eq!(check_params(&mail).unwrap(), EntityKind::Email);
        let due = QuickParams { due: Some(now()), ..mail.clone() };
        assert_eq!(check_params(&due).unwrap_err().code, "not_for_email", "an e-mail starts, it is not due");
        let stray = QuickParams { from: Some("news@acme.ru".into()), ..p("task") };
        assert_eq!(check_params(&stray).unwrap_err().code, "email_only_field");
        assert_eq!(check_params(&p("fax")).unwrap_err().code, "invalid_activity_type");
        assert_eq!(check_params(&p("letter")).unwrap(), EntityKind::Letter);
        assert_eq!(channel_activity(Some(1)), Some(EntityKind::Phonecall));
        assert_eq!(channel_activity(Some(7)), None);
    }
}
