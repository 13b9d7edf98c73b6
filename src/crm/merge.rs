//! Review of duplicate candidates (R-DUP-5): which records of a candidate set may merge, and
//! what the surviving record looks like — it keeps its own values and fills only its empty
//! ones from the other. Pure: the store moves the references and writes both records.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{RuleError, refuse};
use super::types::{EntityKind, EntityRef};

/// Fields a merge never copies: keys, ownership, state, audit and version, the pointer
/// to the master, and the daemon's books.
const KEPT: &[&str] = &[
    "ownerid",
    "owneridtype",
    "statecode",
    "statuscode",
    "createdon",
    "createdby",
    "modifiedon",
    "modifiedby",
    "versionnumber",
    "masterid",
    "lastusedincampaign",
];

/// R-DUP-5: the survivor and the records merged into it, from a candidate set. The survivor
/// must be a candidate; `merge` (default: every other candidate of its type) must be
/// candidates of the same type, and only contacts, accounts and leads merge.
pub fn pick(
    candidates: &[EntityRef],
    survivor: Uuid,
    merge: Option<&[Uuid]>,
) -> Result<(EntityRef, Vec<EntityRef>), RuleError> {
    let Some(keep) = candidates.iter().find(|c| c.id == survivor).copied() else {
        return refuse("R-DUP-5", "not_a_candidate", format!("{survivor} is not one of this candidate's records"));
    };
    if !matches!(keep.kind, EntityKind::Contact | EntityKind::Account | EntityKind::Lead) {
        return refuse("R-DUP-5", "not_mergeable", format!("a {} is not merged", keep.kind));
    }
    let others: Vec<EntityRef> = match merge {
        None => candidates.iter().filter(|c| c.kind == keep.kind && c.id != survivor).copied().collect(),
        Some(ids) => {
            let mut v = Vec::new();
            for id in ids {
                match candidates.iter().find(|c| c.id == *id) {
                    None => {
                        return refuse(
                            "R-DUP-5",
                            "not_a_candidate",
                            format!("{id} is not one of this candidate's records"),
                        );
                    }
                    Some(c) if c.kind != keep.kind => {
                        return refuse(
                            "R-DUP-5",
                            "mixed_types",
                            format!("a {} does not merge into a {}", c.kind, keep.kind),
                        );
                    }
                    Some(c) if c.id == survivor => {
                        return refuse("R-DUP-5", "self_merge", "a record does not merge into itself");
                    }
                    Some(c) => v.push(*c),
                }
            }
            v
        }
    };
    if others.is_empty() {
        return refuse("R-DUP-5", "nothing_to_merge", format!("no other {} among the candidates", keep.kind));
    }
    Ok((keep, others))
}

fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// R-DUP-5: the survivor with its empty fields filled from `other` (both as the JSON of the
/// same record type). `key` is never copied. Returns the fields it filled.
pub fn fill(survivor: &mut Map<String, Value>, other: &Map<String, Value>, key: &str) -> Vec<String> {
    let mut filled = Vec::new();
    for (k, v) in other {
        if k == key || KEPT.contains(&k.as_str()) || empty(Some(v)) {
            continue;
        }
        // An opt-out on either record holds for the person (R-OPT-1): never lost by a merge.
        if k.starts_with("donot") && v == &Value::Bool(true) && survivor.get(k) != Some(&Value::Bool(true)) {
            survivor.insert(k.clone(), Value::Bool(true));
            filled.push(k.clone());
            continue;
        }
        if empty(survivor.get(k)) {
            survivor.insert(k.clone(), v.clone());
            filled.push(k.clone());
        }
    }
    filled
}

/// §2.2–2.4: the state a merged-away record is left in (deactivated, not deleted).
pub fn retired_state(kind: EntityKind) -> (i32, i32) {
    match kind {
        // Disqualified / Canceled.
        EntityKind::Lead => (2, 7),
        _ => (1, 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(n: u128) -> EntityRef {
        EntityRef::new(EntityKind::Contact, Uuid::from_u128(n))
    }

    #[test]
    fn r_dup_5_survivor_and_others_are_candidates_of_one_type() {
        let lead = EntityRef::new(EntityKind::Lead, Uuid::from_u128(9));
        let cands = [c(1), c(2), lead];
        let (keep, others) = pick(&cands, c(1).id, None).unwrap();
        assert_eq!((keep, others), (c(1), vec![c(2)]));
        assert_eq!(pick(&cands, Uuid::from_u128(5), None).unwrap_err().code, "not_a_candidate");
        assert_eq!(pick(&cands, c(1).id, Some(&[lead.id])).unwrap_err().code, "mixed_types");
        assert_eq!(pick(&cands, lead.id, None).unwrap_err().code, "nothing_to_merge");
        assert_eq!(pick(&cands, c(1).id, Some(&[c(1).id])).unwrap_err().code, "self_merge");
    }

    #[test]
    fn r_dup_5_the_survivor_keeps_its_values_and_fills_its_gaps() {
        let mut keep = json!({"contactid": "a", "lastname": "Сидоров", "emailaddress1": "petr@romashka.ru",
            "mobilephone": null, "jobtitle": "", "ownerid": "u1", "statecode": 0})
        .as_object()
        .unwrap()
        .clone();
        keep.insert("donotbulkemail".into(), json!(false));
        keep.insert("donotphone".into(), json!(false));
        let other = json!({"contactid": "b", "lastname": "Сидоров \
            П.", "emailaddress1": "p.sidorov@gmail.com", "mobilephone": "+79161234567", "jobtitle": "Директор",
                "ownerid": "u2", "statecode": 0, "donotbulkemail": true, "donotphone": false});
        let mut filled = fill(&mut keep, other.as_object().unwrap(), "contactid");
        filled.sort();
        assert_eq!(filled, ["donotbulkemail", "jobtitle", "mobilephone"]);
        assert_eq!(keep["donotbulkemail"], true, "an opt-out survives the merge");
        assert_eq!(keep["lastname"], "Сидоров");
        assert_eq!(keep["emailaddress1"], "petr@romashka.ru");
        assert_eq!(keep["mobilephone"], "+79161234567");
        assert_eq!((keep["contactid"].as_str(), keep["ownerid"].as_str()), (Some("a"), Some("u1")));
        assert_eq!(retired_state(EntityKind::Contact), (1, 2));
        assert_eq!(retired_state(EntityKind::Lead), (2, 7));
    }
}
