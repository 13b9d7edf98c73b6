//! Party matching (R-DUP-3) and sender resolution (R-EM-4): given the hits the store found at
//! each precedence step, pick the first step with hits; one hit links, several are ambiguous
//! (a dup_candidate, never an auto-link).

use serde::{Deserialize, Serialize};

use super::types::{EntityKind, EntityRef};

/// The result of matching one address or number against the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "records", rename_all = "snake_case")]
pub enum MatchOutcome {
    None,
    Unique(EntityRef),
    Ambiguous(Vec<EntityRef>),
}

impl MatchOutcome {
    pub fn unique(&self) -> Option<EntityRef> {
        match self {
            MatchOutcome::Unique(r) => Some(*r),
            _ => None,
        }
    }
}

/// One candidate the store found, with what the precedence needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub record: EntityRef,
    /// statecode of the record (contacts/accounts: 0 Active; leads: 0 Open, 1 Qualified, 2 Disqualified).
    pub statecode: i32,
    /// E-mail or phone hit.
    pub by_phone: bool,
}

/// R-DUP-3's steps, in order. Each step is a predicate over hits.
const STEPS: [(EntityKind, bool, Option<i32>); 8] = [
    (EntityKind::Contact, false, Some(0)), // 1. active contact by e-mail
    (EntityKind::Lead, false, Some(0)),    // 2. lead by e-mail: Open,
    (EntityKind::Lead, false, Some(2)),    //    then Disqualified,
    (EntityKind::Lead, false, Some(1)),    //    then Qualified
    (EntityKind::Account, false, Some(0)), // 3. active account by e-mail
    (EntityKind::Contact, true, None),     // 4. contact by phone
    (EntityKind::Lead, true, None),        // 5. lead by phone
    (EntityKind::Account, true, None),     // 6. account by phone
];

/// The first step with hits decides: one record links, several are ambiguous.
fn first_step(hits: &[Hit], steps: impl IntoIterator<Item = (EntityKind, Option<bool>, Option<i32>)>) -> MatchOutcome {
    for (kind, by_phone, state) in steps {
        let mut at_step: Vec<EntityRef> = hits
            .iter()
            .filter(|h| {
                h.record.kind == kind
                    && by_phone.is_none_or(|p| h.by_phone == p)
                    && state.is_none_or(|s| h.statecode == s)
            })
            .map(|h| h.record)
            .collect();
        at_step.sort();
        at_step.dedup();
        match at_step.len() {
            0 => continue,
            1 => return MatchOutcome::Unique(at_step[0]),
            _ => return MatchOutcome::Ambiguous(at_step),
        }
    }
    MatchOutcome::None
}

/// R-DUP-3: first unique hit wins; several hits at the same step are ambiguous.
pub fn resolve(hits: &[Hit]) -> MatchOutcome {
    first_step(hits, STEPS.iter().map(|(k, p, s)| (*k, Some(*p), *s)))
}

/// R-EM-4 sender resolution, after the internal-user check: active contacts, then leads in
/// any state, then active accounts, each by e-mail. Exactly one match at the first step with
/// hits links; more is ambiguous.
pub fn resolve_sender(hits: &[Hit]) -> MatchOutcome {
    first_step(
        hits,
        [
            (EntityKind::Contact, Some(false), Some(0)),
            (EntityKind::Lead, Some(false), None),
            (EntityKind::Account, Some(false), Some(0)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hit(kind: EntityKind, n: u128, state: i32, by_phone: bool) -> Hit {
        Hit { record: EntityRef::new(kind, Uuid::from_u128(n)), statecode: state, by_phone }
    }

    #[test]
    fn r_dup_3_contact_by_email_beats_everything() {
        let hits = [
            hit(EntityKind::Lead, 1, 0, false),
            hit(EntityKind::Contact, 2, 0, false),
            hit(EntityKind::Account, 3, 0, true),
        ];
        assert_eq!(resolve(&hits), MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(2))));
    }

    #[test]
    fn r_dup_3_inactive_contact_is_skipped_and_leads_go_open_first() {
        let hits = [
            hit(EntityKind::Contact, 2, 1, false),
            hit(EntityKind::Lead, 5, 1, false),
            hit(EntityKind::Lead, 6, 2, false),
        ];
        // No active contact; no open lead; a disqualified lead beats a qualified one.
        assert_eq!(resolve(&hits).unique().unwrap().id, Uuid::from_u128(6));
    }

    #[test]
    fn r_dup_3_two_hits_at_one_step_are_ambiguous() {
        let hits = [
            hit(EntityKind::Contact, 1, 0, true),
            hit(EntityKind::Contact, 2, 0, true),
            hit(EntityKind::Lead, 3, 0, true),
        ];
        match resolve(&hits) {
            MatchOutcome::Ambiguous(v) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
        // The same record hit twice (telephone1 and mobilephone) is one hit.
        let hits = [hit(EntityKind::Contact, 1, 0, true), hit(EntityKind::Contact, 1, 0, true)];
        assert!(matches!(resolve(&hits), MatchOutcome::Unique(_)));
    }

    #[test]
    fn r_dup_3_phone_steps_after_email_steps() {
        let hits = [hit(EntityKind::Contact, 1, 0, true), hit(EntityKind::Account, 9, 0, false)];
        assert_eq!(resolve(&hits).unique().unwrap().kind, EntityKind::Account);
        assert_eq!(resolve(&[]), MatchOutcome::None);
    }

    #[test]
    fn r_em_4_leads_in_any_state_before_accounts() {
        let hits = [hit(EntityKind::Lead, 1, 1, false), hit(EntityKind::Account, 2, 0, false)];
        assert_eq!(resolve_sender(&hits).unique().unwrap().kind, EntityKind::Lead);
        let hits = [hit(EntityKind::Lead, 1, 1, false), hit(EntityKind::Lead, 2, 2, false)];
        assert!(matches!(resolve_sender(&hits), MatchOutcome::Ambiguous(_)));
    }
}
