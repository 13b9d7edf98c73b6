//! `statecode`/`statuscode` pairs (DOMAIN §0, §2): every statuscode belongs to exactly one
//! statecode; a state change with no statuscode takes the state's default.

use super::error::{RuleError, refuse, refuse_conflict};
use super::types::EntityKind;

/// One state: its code, name, allowed statuscodes and default statuscode.
#[derive(Debug)]
pub struct StateDef {
    pub code: i32,
    pub name: &'static str,
    pub statuses: &'static [i32],
    pub default: i32,
}

macro_rules! states {
    ($($code:expr, $name:expr, [$($s:expr),*], $def:expr);* $(;)?) => {
        &[$(StateDef { code: $code, name: $name, statuses: &[$($s),*], default: $def }),*]
    };
}

/// The state model of each entity type (DOMAIN §2).
pub fn model(kind: EntityKind) -> &'static [StateDef] {
    match kind {
        EntityKind::Account | EntityKind::Contact => states![0, "Active", [1], 1; 1, "Inactive", [2], 2],
        EntityKind::Systemuser | EntityKind::Team => states![0, "Active", [1], 1],
        EntityKind::Lead => states![0, "Open", [1, 2], 1; 1, "Qualified", [3], 3; 2, "Disqualified", [4, 5, 6, 7], 4],
        EntityKind::Opportunity => states![0, "Open", [1, 2], 1; 1, "Won", [3], 3; 2, "Lost", [4, 5], 4],
        EntityKind::List => states![0, "Active", [0], 0; 1, "Inactive", [1], 1],
        EntityKind::Campaign => states![0, "Active", [0, 1, 2, 3, 4, 5], 0; 1, "Inactive", [6], 6],
        EntityKind::Campaignactivity => {
            states![0, "Open", [0, 1, 4, 5, 6], 1; 1, "Closed", [2], 2; 2, "Canceled", [3], 3]
        }
        EntityKind::Campaignresponse => states![0, "Open", [1], 1; 1, "Closed", [2], 2; 2, "Canceled", [3], 3],
        EntityKind::Bulkoperation => states![0, "Open", [1, 2], 1; 1, "Closed", [3, 4], 4; 2, "Canceled", [5], 5],
        EntityKind::Task => states![0, "Open", [2, 3, 4, 7], 2; 1, "Completed", [5], 5; 2, "Canceled", [6], 6],
        EntityKind::Phonecall => states![0, "Open", [1], 1; 1, "Completed", [2, 4], 2; 2, "Canceled", [3], 3],
        EntityKind::Email => states![0, "Open", [1, 8], 1; 1, "Completed", [2, 3, 4, 6, 7], 2; 2, "Canceled", [5], 5],
        EntityKind::Appointment => {
            states![0, "Open", [1, 2], 1; 1, "Completed", [3], 3; 2, "Canceled", [4], 4; 3, "Scheduled", [5, 6], 5]
        }
        EntityKind::Letter => states![0, "Open", [1, 2], 2; 1, "Completed", [3, 4], 4; 2, "Canceled", [5], 5],
        EntityKind::Fax => states![0, "Open", [1], 1; 1, "Completed", [2, 3, 4], 2; 2, "Canceled", [5], 5],
        EntityKind::Opportunityclose => states![0, "Open", [1], 1; 1, "Completed", [2], 2; 2, "Canceled", [3], 3],
    }
}

/// Resolves a (state, optional status) pair: checks the status belongs to the state, or
/// picks the state's default (DOMAIN §0).
pub fn resolve(kind: EntityKind, state: i32, status: Option<i32>) -> Result<(i32, i32), RuleError> {
    let Some(def) = model(kind).iter().find(|d| d.code == state) else {
        return refuse_conflict("§0", "invalid_state", format!("{kind} has no statecode {state}"));
    };
    match status {
        None => Ok((state, def.default)),
        Some(s) if def.statuses.contains(&s) => Ok((state, s)),
        Some(s) => refuse(
            "§0",
            "invalid_status",
            format!("{kind} statuscode {s} does not belong to state {} ({})", state, def.name),
        ),
    }
}

/// The state a status belongs to, if the status exists for the entity.
pub fn state_of(kind: EntityKind, status: i32) -> Option<i32> {
    model(kind).iter().find(|d| d.statuses.contains(&status)).map(|d| d.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_belongs_to_exactly_one_state() {
        for kind in EntityKind::ALL {
            let mut seen = std::collections::HashSet::new();
            for def in model(kind) {
                assert!(def.statuses.contains(&def.default), "{kind} state {} default", def.code);
                for s in def.statuses {
                    assert!(seen.insert(*s), "{kind} status {s} in two states");
                }
            }
        }
    }

    #[test]
    fn default_status_is_taken_when_none_given() {
        assert_eq!(resolve(EntityKind::Lead, 2, None).unwrap(), (2, 4));
        assert_eq!(resolve(EntityKind::Task, 0, None).unwrap(), (0, 2));
        assert_eq!(resolve(EntityKind::Lead, 1, Some(4)).unwrap_err().code, "invalid_status");
        assert_eq!(resolve(EntityKind::Lead, 9, None).unwrap_err().code, "invalid_state");
        // §8.7: Completed (6) is an Open status of a campaign activity.
        assert_eq!(state_of(EntityKind::Campaignactivity, 6), Some(0));
        // §8.7: Failed (8) is an Open status of an e-mail; Pending Send (6) is Completed.
        assert_eq!(state_of(EntityKind::Email, 8), Some(0));
        assert_eq!(state_of(EntityKind::Email, 6), Some(1));
    }
}
