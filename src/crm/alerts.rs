//! Overdue activities and their escalation (R-TASK-1..6): which notifications are due at
//! `now`, to whom, grouped into one digest per recipient. Pure: the caller loads the
//! overdue activities and the users, and passes the clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use super::types::{EntityKind, EntityRef};

/// An open activity past its due instant (R-TASK-1), as the scan found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverdueItem {
    pub kind: EntityKind,
    pub id: Uuid,
    pub subject: String,
    pub owner: Uuid,
    pub owner_type: EntityKind,
    /// The due instant (DateOnly due dates already moved to 23:59:59.999 in the org zone).
    pub due: DateTime<Utc>,
    pub regarding: Option<EntityRef>,
}

/// What the escalation needs to know about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNode {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub disabled: bool,
    pub manager: Option<Uuid>,
}

/// Escalation settings.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// R-TASK-3: the manager is told this long after the due instant.
    pub delay: Duration,
    /// R-TASK-4: the highest level (1 = owner then manager).
    pub max_level: u32,
    /// R-TASK-3: who is told when nobody is found up the chain.
    pub fallback: Option<String>,
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Recipient {
    pub address: String,
    /// None for the fallback address or a team contact.
    pub user: Option<Uuid>,
}

/// One notification to send: an item at a level, to a recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub item: OverdueItem,
    pub level: u32,
    pub recipient: Recipient,
}

/// R-TASK-3: the `level`-th enabled manager above `owner` (level ≥ 1), walking past
/// disabled or missing managers, with a cycle guard. None when the chain ends first.
pub fn manager_at(owner: Uuid, level: u32, users: &HashMap<Uuid, UserNode>) -> Option<&UserNode> {
    let mut seen = HashSet::from([owner]);
    let mut cur = users.get(&owner)?.manager;
    let mut found = 0;
    while let Some(id) = cur {
        if !seen.insert(id) {
            return None; // a cycle in parentsystemuserid
        }
        let u = users.get(&id)?;
        if !u.disabled && u.email.is_some() {
            found += 1;
            if found == level {
                return Some(u);
            }
        }
        cur = u.manager;
    }
    None
}

/// The recipient of `item` at `level`: the owner at 0 (if enabled, with an address), the
/// level-th manager above; the fallback address when the chain runs out (level ≥ 1).
pub fn recipient(
    item: &OverdueItem,
    level: u32,
    users: &HashMap<Uuid, UserNode>,
    team_contact: Option<&str>,
    esc: &Escalation,
) -> Option<Recipient> {
    if item.owner_type == EntityKind::Team {
        // [DESIGN] a team-owned activity notifies the team contact (no manager chain).
        return (level == 0).then(|| team_contact.map(|a| Recipient { address: a.to_string(), user: None })).flatten();
    }
    if level == 0 {
        return users
            .get(&item.owner)
            .filter(|u| !u.disabled)
            .and_then(|u| u.email.clone().map(|address| Recipient { address, user: Some(u.id) }));
    }
    match manager_at(item.owner, level, users) {
        Some(m) => Some(Recipient { address: m.email.clone().unwrap_or_default(), user: Some(m.id) }),
        None => esc.fallback.clone().map(|address| Recipient { address, user: None }),
    }
}

/// The notices due at `now` for these overdue items: level 0 at detection (R-TASK-2; a
/// disabled owner goes straight to level 1), level L ≥ 1 once `due + L × delay` has passed
/// (R-TASK-3/4). The caller drops those already in notification_log (R-TASK-5).
pub fn due_notices(
    items: &[OverdueItem],
    now: DateTime<Utc>,
    users: &HashMap<Uuid, UserNode>,
    teams: &HashMap<Uuid, String>,
    esc: &Escalation,
) -> Vec<Notice> {
    let mut out = Vec::new();
    for item in items {
        if item.due >= now {
            continue; // R-TASK-1: not overdue yet
        }
        let team = teams.get(&item.owner).map(String::as_str);
        let owner_reachable = recipient(item, 0, users, team, esc).is_some();
        for level in 0..=esc.max_level {
            let at = item.due + esc.delay * level as i32;
            let straight_to_one = level == 1 && !owner_reachable && item.owner_type != EntityKind::Team;
            if now < at && !straight_to_one {
                continue;
            }
            if level == 0 && !owner_reachable {
                continue;
            }
            if let Some(r) = recipient(item, level, users, team, esc) {
                out.push(Notice { item: item.clone(), level, recipient: r });
            }
        }
    }
    out
}

/// Working hours in the org zone: minutes since midnight [start, end) on working days.
#[derive(Debug, Clone)]
pub struct WorkingHours {
    pub start_min: u32,
    pub end_min: u32,
    pub days: Vec<Weekday>,
    pub tz: Tz,
}

impl WorkingHours {
    /// Notifications go out only inside working hours; outside, they wait (R-TASK quiet hours).
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let m = local.hour() * 60 + local.minute();
        self.days.contains(&local.weekday()) && m >= self.start_min && m < self.end_min
    }
}

/// Parses `mon`..`sun`.
pub fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// One line of a digest.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DigestLine {
    pub kind: EntityKind,
    pub id: Uuid,
    pub subject: String,
    pub due: String,
    pub overdue_hours: i64,
    pub level: u32,
    pub regarding: Option<String>,
    pub link: String,
}

/// Something new for a person, told in their next digest (R-LD-6 a lead the daemon made for
/// them, R-ACT-2 an activity given to them, R-WV-6b their campaign over budget).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotice {
    /// The record or history line it is about (its notification key).
    pub id: Uuid,
    /// new_lead, assigned, over_budget.
    pub kind: String,
    pub about: super::EntityRef,
    pub recipient: Uuid,
    pub at: DateTime<Utc>,
    pub text: String,
}

/// A notice as a digest shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NoticeLine {
    pub kind: String,
    pub text: String,
    pub link: String,
}

/// The level a notice is claimed at in the notification log (below the escalation levels,
/// so the escalation views never count it).
pub const NOTICE_LEVEL: i32 = -1;

/// The digest line of a notice.
pub fn notice_line(n: &PendingNotice, link_base: &str) -> NoticeLine {
    let what = match n.kind.as_str() {
        "new_lead" => format!("New lead for you: {}", n.text),
        "assigned" => format!("Assigned to you: {} ({})", n.text, n.about.kind),
        "over_budget" => n.text.clone(),
        _ => n.text.clone(),
    };
    NoticeLine {
        kind: n.kind.clone(),
        text: what,
        link: format!("{}{}", link_base.trim_end_matches('/'), super::timeline::link(n.about)),
    }
}

/// The lines of one owner in a digest.
#[derive(Debug, Clone, Serialize)]
pub struct DigestGroup {
    pub owner: String,
    pub lines: Vec<DigestLine>,
}

/// The digest line of one notice.
pub fn line(n: &Notice, now: DateTime<Utc>, tz: Tz, link_base: &str) -> DigestLine {
    DigestLine {
        kind: n.item.kind,
        id: n.item.id,
        subject: n.item.subject.clone(),
        due: n.item.due.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        overdue_hours: (now - n.item.due).num_hours(),
        level: n.level,
        regarding: n.item.regarding.map(|r| r.to_string()),
        link: format!("{}/api/v1/activities/{}", link_base.trim_end_matches('/'), n.item.id),
    }
}

/// One recipient's digest: groups by owner (by name), each oldest first.
pub fn digest(
    notices: &[&Notice],
    users: &HashMap<Uuid, UserNode>,
    now: DateTime<Utc>,
    tz: Tz,
    link_base: &str,
) -> Vec<DigestGroup> {
    let mut by_owner: BTreeMap<String, Vec<&Notice>> = BTreeMap::new();
    for n in notices {
        let owner = users.get(&n.item.owner).map(|u| u.name.clone()).unwrap_or_else(|| n.item.owner.to_string());
        by_owner.entry(owner).or_default().push(n);
    }
    by_owner
        .into_iter()
        .map(|(owner, mut ns)| {
            ns.sort_by_key(|n| (n.item.due, n.item.id));
            DigestGroup { owner, lines: ns.into_iter().map(|n| line(n, now, tz, link_base)).collect() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn u(n: u128, manager: Option<u128>, disabled: bool) -> UserNode {
        UserNode {
            id: Uuid::from_u128(n),
            name: format!("user{n}"),
            email: Some(format!("u{n}@acme.ru")),
            disabled,
            manager: manager.map(Uuid::from_u128),
        }
    }

    fn users(list: Vec<UserNode>) -> HashMap<Uuid, UserNode> {
        list.into_iter().map(|u| (u.id, u)).collect()
    }

    fn item(owner: u128, due: DateTime<Utc>) -> OverdueItem {
        OverdueItem {
            kind: EntityKind::Task,
            id: Uuid::from_u128(1000 + owner),
            subject: "Call back".into(),
            owner: Uuid::from_u128(owner),
            owner_type: EntityKind::Systemuser,
            due,
            regarding: None,
        }
    }

    fn esc(max: u32) -> Escalation {
        Escalation { delay: Duration::hours(24), max_level: max, fallback: Some("crm-admin@acme.ru".into()) }
    }

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn r_task_1_not_overdue_until_the_due_instant_has_passed() {
        let us = users(vec![u(1, None, false)]);
        assert!(due_notices(&[item(1, t(0))], t(0), &us, &HashMap::new(), &esc(1)).is_empty());
        assert_eq!(
            due_notices(&[item(1, t(0))], t(0) + Duration::milliseconds(1), &us, &HashMap::new(), &esc(1)).len(),
            1
        );
    }

    #[test]
    fn r_task_2_and_3_owner_first_then_manager_after_the_delay() {
        let us = users(vec![u(1, Some(2), false), u(2, None, false)]);
        let n = due_notices(&[item(1, t(0))], t(1), &us, &HashMap::new(), &esc(1));
        assert_eq!(
            n.iter().map(|n| (n.level, n.recipient.address.as_str())).collect::<Vec<_>>(),
            vec![(0, "u1@acme.ru")]
        );
        let n = due_notices(&[item(1, t(0))], t(25), &us, &HashMap::new(), &esc(1));
        assert_eq!(
            n.iter().map(|n| (n.level, n.recipient.address.as_str())).collect::<Vec<_>>(),
            vec![(0, "u1@acme.ru"), (1, "u2@acme.ru")]
        );
    }

    #[test]
    fn r_task_3_chain_walks_past_disabled_and_missing_managers() {
        // 1 → 2 (disabled) → 3; 4 → 99 (missing)
        let us = users(vec![u(1, Some(2), false), u(2, Some(3), true), u(3, None, false), u(4, Some(99), false)]);
        assert_eq!(manager_at(Uuid::from_u128(1), 1, &us).unwrap().id, Uuid::from_u128(3));
        assert!(manager_at(Uuid::from_u128(4), 1, &us).is_none());
        let n = due_notices(&[item(4, t(0))], t(30), &us, &HashMap::new(), &esc(1));
        assert_eq!(
            n[1].recipient,
            Recipient { address: "crm-admin@acme.ru".into(), user: None },
            "nobody found → fallback"
        );
    }

    #[test]
    fn r_task_3_cycle_guard() {
        let us = users(vec![u(1, Some(2), false), u(2, Some(1), true)]);
        assert!(manager_at(Uuid::from_u128(1), 1, &us).is_none());
        let us = users(vec![u(1, Some(2), true), u(2, Some(3), true), u(3, Some(1), true)]);
        assert!(manager_at(Uuid::from_u128(1), 1, &us).is_none());
    }

    #[test]
    fn r_task_2_disabled_owner_goes_straight_to_level_1() {
        let us = users(vec![u(1, Some(2), true), u(2, None, false)]);
        let n = due_notices(&[item(1, t(0))], t(1), &us, &HashMap::new(), &esc(1));
        assert_eq!(
            n.iter().map(|n| (n.level, n.recipient.address.as_str())).collect::<Vec<_>>(),
            vec![(1, "u2@acme.ru")]
        );
    }

    #[test]
    fn r_task_4_further_levels_walk_up() {
        let us = users(vec![u(1, Some(2), false), u(2, Some(3), false), u(3, None, false)]);
        let n = due_notices(&[item(1, t(0))], t(49), &us, &HashMap::new(), &esc(2));
        assert_eq!(
            n.iter().map(|n| n.recipient.address.as_str()).collect::<Vec<_>>(),
            vec!["u1@acme.ru", "u2@acme.ru", "u3@acme.ru"]
        );
    }

    #[test]
    fn team_owned_activities_notify_the_team_contact() {
        let mut i = item(7, t(0));
        i.owner_type = EntityKind::Team;
        let teams = HashMap::from([(Uuid::from_u128(7), "sales-team@acme.ru".to_string())]);
        let n = due_notices(&[i], t(30), &HashMap::new(), &teams, &esc(1));
        assert_eq!(n.iter().map(|n| n.recipient.address.as_str()).collect::<Vec<_>>(), vec!["sales-team@acme.ru"]);
    }

    #[test]
    fn working_hours_in_the_org_zone() {
        let wh = WorkingHours {
            start_min: 9 * 60,
            end_min: 18 * 60,
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            tz: chrono_tz::Europe::Moscow,
        };
        // Monday 2026-11-23 06:00 UTC = 09:00 MSK: inside; 05:59 UTC = 08:59: outside.
        assert!(wh.contains(Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap()));
        assert!(!wh.contains(Utc.with_ymd_and_hms(2026, 11, 23, 5, 59, 0).unwrap()));
        assert!(!wh.contains(Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).unwrap()), "18:00 MSK is closed");
        assert!(!wh.contains(Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()), "Saturday");
    }

    #[test]
    fn digest_groups_by_owner_oldest_first() {
        let us = users(vec![u(1, Some(3), false), u(2, Some(3), false), u(3, None, false)]);
        let mk = |owner: u128, id: u128, due: DateTime<Utc>| Notice {
            item: OverdueItem { id: Uuid::from_u128(id), ..item(owner, due) },
            level: 1,
            recipient: Recipient { address: "u3@acme.ru".into(), user: Some(Uuid::from_u128(3)) },
        };
        let ns = [mk(2, 10, t(-5)), mk(1, 11, t(-1)), mk(1, 12, t(-9))];
        let refs: Vec<&Notice> = ns.iter().collect();
        let d = digest(&refs, &us, t(0), chrono_tz::Europe::Moscow, "https://crm.acme.ru");
        assert_eq!(d.iter().map(|g| g.owner.as_str()).collect::<Vec<_>>(), vec!["user1", "user2"]);
        assert_eq!(d[0].lines.iter().map(|l| l.id).collect::<Vec<_>>(), vec![Uuid::from_u128(12), Uuid::from_u128(11)]);
        assert_eq!(d[0].lines[0].overdue_hours, 9);
        assert!(d[0].lines[0].link.ends_with(&Uuid::from_u128(12).to_string()));
    }
}
