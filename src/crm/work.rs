//! Closing the work people are given (DOMAIN §4.9, R-ACT-1 and R-ACT-2): who may complete,
//! cancel or reopen an activity, and the state each action leaves it in. Pure: the store
//! gathers the activity and the owner's manager chain, applies the returned record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::Activity;
use super::error::{RuleError, check_len, refuse, refuse_conflict, refuse_forbidden};
use super::state;
use super::types::EntityKind;

/// What a person does to an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseAction {
    Complete,
    Cancel,
    Reopen,
}

impl CloseAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseAction::Complete => "complete",
            CloseAction::Cancel => "cancel",
            CloseAction::Reopen => "reopen",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            CloseAction::Complete => "Completed",
            CloseAction::Cancel => "Canceled",
            CloseAction::Reopen => "Reopened",
        }
    }
}

/// The optional parts of a close request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseParams {
    /// Appended to `description` with the date and the action.
    pub note: Option<String>,
    /// A status of the target state other than the default (e.g. phonecall 4 Received).
    pub statuscode: Option<i32>,
    /// Phone calls: the outcome, "made" (we reached them), "received" (they reached us) or
    /// "voicemail" (a message was left; the call counts as made).
    pub outcome: Option<String>,
}

/// Who is acting and what they may do beyond their own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user: Uuid,
    pub admin: bool,
}

/// R-ACT-1: an activity is finished by its owner, a user above the owner in the manager
/// chain (`owner_managers`, nearest first), or an admin.
pub fn may_close(actor: Actor, owner: Uuid, owner_managers: &[Uuid]) -> bool {
    actor.admin || actor.user == owner || owner_managers.contains(&actor.user)
}

/// R-ACT-1 / §2.11: the (statecode, statuscode) an action leads to for a kind of activity.
/// Phone calls complete as 2 Made when outgoing, 4 Received when incoming.
pub fn target_status(kind: EntityKind, outgoing: Option<bool>, action: CloseAction) -> Result<(i32, i32), RuleError> {
    let pair = match (kind, action) {
        (_, CloseAction::Reopen) => return state::resolve(kind, 0, None),
        (EntityKind::Task, CloseAction::Complete) => (1, 5),
        (EntityKind::Task, CloseAction::Cancel) => (2, 6),
        (EntityKind::Phonecall, CloseAction::Complete) => (1, if outgoing == Some(false) { 4 } else { 2 }),
        (EntityKind::Phonecall, CloseAction::Cancel) => (2, 3),
        (EntityKind::Appointment, CloseAction::Complete) => (1, 3),
        (EntityKind::Appointment, CloseAction::Cancel) => (2, 4),
        (EntityKind::Letter, CloseAction::Complete) => (1, 4),
        (EntityKind::Letter, CloseAction::Cancel) => (2, 5),
        (EntityKind::Fax | EntityKind::Email, CloseAction::Complete) => (1, 2),
        (EntityKind::Fax | EntityKind::Email, CloseAction::Cancel) => (2, 5),
        (other, _) => return refuse("R-ACT-1", "not_closable", format!("a {other} is not closed this way")),
    };
    Ok(pair)
}

/// R-ACT-1: the activity after the action. Completed and canceled activities are read-only
/// (only reopen applies, and only for an admin); an open one cannot be reopened. The note
/// goes to the end of `description` as "Completed 2026-12-07: …"; `actualend` is now on
/// completion and cancellation and cleared on reopen.
pub fn plan_close(
    a: &Activity,
    action: CloseAction,
    p: &CloseParams,
    actor: Actor,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Result<Activity, RuleError> {
    check_len("note", p.note.as_deref(), 2000)?;
    match (action, a.statecode) {
        (CloseAction::Reopen, 0) => {
            return refuse_conflict(
                "R-ACT-1",
                "activity_open",
                "the activity is open; only a completed or canceled one is reopened",
            );
        }
        (CloseAction::Reopen, _) if !actor.admin => {
            return refuse_forbidden(
                "R-ACT-1",
                "reopen_needs_admin",
                "only an admin reopens a completed or canceled activity",
            );
        }
        (CloseAction::Complete | CloseAction::Cancel, s) if s != 0 => {
            return refuse_conflict(
                "R-ACT-1",
                "activity_closed",
                "completed and canceled activities are read-only; reopen it first",
            );
        }
        _ => {}
    }
    let kind = a.activitytypecode;
    let outcome = p.outcome.as_deref().map(str::trim).filter(|o| !o.is_empty());
    if outcome.is_some() && (kind != EntityKind::Phonecall || action != CloseAction::Complete) {
        return refuse("R-ACT-1", "outcome_not_applicable", "an outcome is given only when completing a phone call");
    }
    let (statecode, mut statuscode) = target_status(kind, a.directioncode, action)?;
    let mut voicemail = None;
    match outcome {
        None => {}
        Some("made") => statuscode = 2,
        Some("received") => statuscode = 4,
        Some("voicemail") => {
            statuscode = 2;
            voicemail = Some(true);
        }
        Some(other) => {
            return refuse(
                "R-ACT-1",
                "invalid_outcome",
                format!("outcome '{}': made, received or voicemail", other.chars().take(40).collect::<String>()),
            );
        }
    }
    if let Some(s) = p.statuscode {
        statuscode = state::resolve(kind, statecode, Some(s))?.1;
    }
    let mut out = a.clone();
    out.statecode = statecode;
    out.statuscode = statuscode;
    out.actualend = if action == CloseAction::Reopen { None } else { Some(now) };
    if let Some(v) = voicemail {
        out.leftvoicemail = Some(v);
    }
    if action == CloseAction::Complete && kind == EntityKind::Task {
        out.percentcomplete = Some(100);
    }
    let line = match p.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{} {}: {n}", action.verb(), now.with_timezone(&tz).format("%Y-%m-%d %H:%M")),
        None => format!("{} {}.", action.verb(), now.with_timezone(&tz).format("%Y-%m-%d %H:%M")),
    };
    out.description = Some(append_line(a.description.as_deref(), &line));
    out.modifiedon = now;
    out.modifiedby = Some(actor.user);
    Ok(out)
}

/// `text` with `line` on a line of its own at the end.
pub fn append_line(text: Option<&str>, line: &str) -> String {
    match text.map(str::trim_end).filter(|t| !t.is_empty()) {
        Some(t) => format!("{t}\n{line}"),
        None => line.to_string(),
    }
}

/// R-ACT-2 / R-TASK-5: whether a change of an activity restarts its escalation at level 0
/// (its owner or due date changed while it is open).
pub fn restarts_escalation(before: &Activity, after: &Activity) -> bool {
    after.statecode == 0 && (before.ownerid != after.ownerid || before.scheduledend != after.scheduledend)
}

/// R-ACT-1: fields a PATCH may not touch on a completed or canceled activity (all of them),
/// and who may own an open one.
pub fn check_update(before: &Activity, after: &Activity, new_owner_enabled: bool) -> Result<(), RuleError> {
    if before.statecode != 0 {
        return refuse_conflict(
            "R-ACT-1",
            "activity_closed",
            "completed and canceled activities are read-only; reopen it first",
        );
    }
    if before.activitytypecode != after.activitytypecode {
        return refuse("§2.11", "activity_type_fixed", "an activity's type is fixed once it exists");
    }
    if before.ownerid != after.ownerid && !new_owner_enabled {
        return refuse("R-ACT-2", "owner_disabled", "the new owner is not an enabled user");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, 30, 0).unwrap()
    }

    fn open(kind: EntityKind) -> Activity {
        Activity {
            activityid: Uuid::from_u128(1),
            activitytypecode: kind,
            subject: Some("Call back".into()),
            ..Default::default()
        }
        .stamped(Uuid::from_u128(7), EntityKind::Systemuser, t(), None)
    }

    const OWNER: Actor = Actor { user: Uuid::from_u128(7), admin: false };
    const MSK: chrono_tz::Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn r_act_1_owner_manager_chain_or_admin() {
        let owner = Uuid::from_u128(7);
        let boss = Uuid::from_u128(8);
        let stranger = Actor { user: Uuid::from_u128(9), admin: false };
        assert!(may_close(OWNER, owner, &[]));
        assert!(
            may_close(Actor { user: boss, admin: false }, owner, &[Uuid::from_u128(10), boss]),
            "a manager further up"
        );
        assert!(!may_close(stranger, owner, &[boss]));
        assert!(may_close(Actor { admin: true, ..stranger }, owner, &[]));
    }

    #[test]
    fn r_act_1_target_statuses_follow_section_2_11() {
        use CloseAction::*;
        let cases = [
            (EntityKind::Task, None, Complete, (1, 5)),
            (EntityKind::Task, None, Cancel, (2, 6)),
            (EntityKind::Phonecall, Some(true), Complete, (1, 2)),
            (EntityKind::Phonecall, Some(false), Complete, (1, 4)),
            (EntityKind::Phonecall, None, Cancel, (2, 3)),
            (EntityKind::Appointment, None, Complete, (1, 3)),
            (EntityKind::Appointment, None, Cancel, (2, 4)),
            (EntityKind::Letter, None, Complete, (1, 4)),
            (EntityKind::Letter, None, Cancel, (2, 5)),
            (EntityKind::Fax, None, Complete, (1, 2)),
            (EntityKind::Email, None, Cancel, (2, 5)),
            (EntityKind::Task, None, Reopen, (0, 2)),
            (EntityKind::Letter, None, Reopen, (0, 2)),
        ];
        for (kind, out, action, want) in cases {
            let got = target_status(kind, out, action).unwrap();
            assert_eq!(got, want, "{kind} {action:?}");
            // Every target is a valid pair of the state model.
            assert_eq!(state::resolve(kind, got.0, Some(got.1)).unwrap(), got);
        }
        assert_eq!(target_status(EntityKind::Lead, None, Complete).unwrap_err().code, "not_closable");
    }

    #[test]
    fn r_act_1_complete_appends_the_note_and_ends_now() {
        let mut a = open(EntityKind::Task);
        a.description = Some("Missed call from +79161234567".into());
        let done = plan_close(
            &a,
            CloseAction::Complete,
            &CloseParams { note: Some("called, sent the offer".into()), ..Default::default() },
            OWNER,
            t(),
            MSK,
        )
        .unwrap();
        assert_eq!((done.statecode, done.statuscode), (1, 5));
        assert_eq!(done.actualend, Some(t()));
        assert_eq!(done.percentcomplete, Some(100));
        assert_eq!(
            done.description.as_deref(),
            Some("Missed call from +79161234567\nCompleted 2026-12-07 12:30: called, sent the offer")
        );
        assert_eq!(done.modifiedby, Some(OWNER.user));
    }

    #[test]
    fn r_act_1_phone_outcomes() {
        let mut call = open(EntityKind::Phonecall);
        call.directioncode = Some(false);
        let p = |o: &str| CloseParams { outcome: Some(o.into()), ..Default::default() };
        assert_eq!(
            plan_close(&call, CloseAction::Complete, &CloseParams::default(), OWNER, t(), MSK).unwrap().statuscode,
            4,
            "incoming: Received"
        );
        assert_eq!(plan_close(&call, CloseAction::Complete, &p("made"), OWNER, t(), MSK).unwrap().statuscode, 2);
        let vm = plan_close(&call, CloseAction::Complete, &p("voicemail"), OWNER, t(), MSK).unwrap();
        assert_eq!((vm.statuscode, vm.leftvoicemail), (2, Some(true)));
        assert_eq!(
            plan_close(&call, CloseAction::Complete, &p("maybe"), OWNER, t(), MSK).unwrap_err().code,
            "invalid_outcome"
        );
        assert_eq!(
            plan_close(&open(EntityKind::Task), CloseAction::Complete, &p("made"), OWNER, t(), MSK).unwrap_err().code,
            "outcome_not_applicable"
        );
        assert_eq!(
            plan_close(
                &call,
                CloseAction::Cancel,
                &CloseParams { statuscode: Some(2), ..Default::default() },
                OWNER,
                t(),
                MSK
            )
            .unwrap_err()
            .code,
            "invalid_status"
        );
    }

    #[test]
    fn r_act_1_closed_is_read_only_and_reopen_is_for_admins() {
        let done =
            plan_close(&open(EntityKind::Task), CloseAction::Cancel, &CloseParams::default(), OWNER, t(), MSK).unwrap();
        assert_eq!((done.statecode, done.statuscode), (2, 6));
        assert_eq!(
            plan_close(&done, CloseAction::Complete, &CloseParams::default(), OWNER, t(), MSK).unwrap_err().code,
            "activity_closed"
        );
        assert_eq!(
            plan_close(&done, CloseAction::Reopen, &CloseParams::default(), OWNER, t(), MSK).unwrap_err().code,
            "reopen_needs_admin"
        );
        let admin = Actor { user: Uuid::from_u128(1), admin: true };
        let again = plan_close(&done, CloseAction::Reopen, &CloseParams::default(), admin, t(), MSK).unwrap();
        assert_eq!((again.statecode, again.statuscode, again.actualend), (0, 2, None));
        assert_eq!(
            plan_close(&again, CloseAction::Reopen, &CloseParams::default(), admin, t(), MSK).unwrap_err().code,
            "activity_open"
        );
        assert_eq!(check_update(&done, &done, true).unwrap_err().code, "activity_closed");
        // Each refusal says its kind: the state forbids (409), the caller may not (403).
        use crate::crm::error::Refusal;
        let kind = |a: &Activity, action, p: &CloseParams| plan_close(a, action, p, OWNER, t(), MSK).unwrap_err().kind;
        assert_eq!(kind(&done, CloseAction::Complete, &CloseParams::default()), Refusal::Conflict);
        assert_eq!(kind(&done, CloseAction::Reopen, &CloseParams::default()), Refusal::Forbidden);
        let long = CloseParams { note: Some("x".repeat(2001)), ..Default::default() };
        assert_eq!(kind(&open(EntityKind::Task), CloseAction::Cancel, &long), Refusal::Invalid);
    }

    #[test]
    fn r_act_2_reassignment_restarts_escalation() {
        let a = open(EntityKind::Task);
        let mut b = a.clone();
        b.ownerid = Uuid::from_u128(99);
        assert!(restarts_escalation(&a, &b));
        assert!(!restarts_escalation(&a, &a));
        assert_eq!(check_update(&a, &b, false).unwrap_err().code, "owner_disabled");
        assert!(check_update(&a, &b, true).is_ok());
    }
}
