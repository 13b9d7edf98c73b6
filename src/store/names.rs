//! Names beside ids (issue 18 §9): the display name of records a lookup points at, for
//! grouped views and record lists, read in one statement per record type and page.

use std::collections::{HashMap, HashSet};

use serde_json::Value as Json;
use uuid::Uuid;

use super::db::Exec;
use super::{Result, Store};
use crate::crm::EntityKind;
use crate::crm::labels::{self, Lookup};

/// The name expression of a record type (portable SQL: `||` with NULL is NULL on both
/// engines, hence the COALESCE).
fn name_expr(kind: EntityKind) -> &'static str {
    use EntityKind::*;
    match kind {
        Systemuser => "COALESCE(fullname, lastname)",
        Contact | Lead => "COALESCE(firstname || ' ', '') || lastname",
        Team | Account | Opportunity | Campaign => "name",
        List => "listname",
        Campaignactivity | Campaignresponse => "subject",
        Bulkoperation | Task | Phonecall | Email | Appointment | Letter | Fax | Opportunityclose => {
            "COALESCE(subject, '')"
        }
    }
}

/// Record types a typed lookup is tried against when only its id is known (group keys).
const ANY_TARGET: [EntityKind; 8] = [
    EntityKind::Campaign,
    EntityKind::Account,
    EntityKind::Contact,
    EntityKind::Lead,
    EntityKind::Opportunity,
    EntityKind::Campaignactivity,
    EntityKind::Bulkoperation,
    EntityKind::Systemuser,
];

/// Names of records of one type by id.
pub(crate) async fn names_of(ex: &mut impl Exec, kind: EntityKind, ids: &[Uuid]) -> Result<HashMap<Uuid, String>> {
    let (table, key) = kind.table();
    let expr = name_expr(kind);
    let mut out = HashMap::new();
    for chunk in ids.chunks(200) {
        let ph = super::records::placeholders(chunk.len(), 1);
        let sql = format!("SELECT {key} AS id, {expr} AS name FROM {table} WHERE {key} IN ({})", ph);
        for r in ex.fetch_all(&sql, chunk.iter().map(|id| (*id).into()).collect()).await? {
            if let Some(name) = r.get::<Option<String>>("name")? {
                out.insert(r.get("id")?, name);
            }
        }
    }
    Ok(out)
}

fn uuid_of(v: &Json) -> Option<Uuid> {
    v.as_str().and_then(|s| s.parse().ok())
}

impl Store {
    /// The label of each group key of `table.col`: a picklist's option name, or the name of
    /// the record a lookup key points at. Keys with neither get none.
    pub(crate) async fn group_labels(&self, table: &str, col: &str, keys: &[Json]) -> Result<Vec<Option<String>>> {
        if let Some(l) = labels::lookup(table, col) {
            let ids: Vec<Uuid> = keys.iter().filter_map(uuid_of).collect::<HashSet<_>>().into_iter().collect();
            let kinds: Vec<EntityKind> = match l {
                Lookup::To(k) => vec![k],
                Lookup::Typed(_) => ANY_TARGET.to_vec(),
            };
            let mut db = self.db.clone();
            let mut names = HashMap::new();
            for k in kinds {
                let missing: Vec<Uuid> = ids.iter().filter(|i| !names.contains_key(*i)).copied().collect();
                if missing.is_empty() {
                    break;
                }
                names.extend(names_of(&mut db, k, &missing).await?);
            }
            return Ok(keys.iter().map(|k| uuid_of(k).and_then(|id| names.get(&id).cloned())).collect());
        }
        Ok(keys.iter().map(|k| k.as_i64().and_then(|c| labels::picklist(table, col, c)).map(str::to_string)).collect())
    }

    /// The display names of these records, by id (one statement per record type).
    pub async fn names(&self, refs: &[crate::crm::EntityRef]) -> Result<HashMap<Uuid, String>> {
        let mut by_kind: HashMap<EntityKind, Vec<Uuid>> = HashMap::new();
        for r in refs {
            by_kind.entry(r.kind).or_default().push(r.id);
        }
        let mut db = self.db.clone();
        let mut out = HashMap::new();
        for (k, ids) in by_kind {
            out.extend(names_of(&mut db, k, &ids).await?);
        }
        Ok(out)
    }

    /// Adds `<col>_name` beside every lookup of `table` in these records (JSON objects).
    pub async fn add_lookup_names(&self, table: &str, items: &mut [Json]) -> Result<()> {
        let Some(first) = items.first().and_then(Json::as_object) else { return Ok(()) };
        let cols: Vec<(String, Lookup)> =
            first.keys().filter_map(|c| labels::lookup(table, c).map(|l| (c.clone(), l))).collect();
        // Which ids of which type to name.
        let mut wanted: HashMap<EntityKind, HashSet<Uuid>> = HashMap::new();
        let kind_at = |item: &Json, l: Lookup| -> Option<EntityKind> {
            match l {
                Lookup::To(k) => Some(k),
                Lookup::Typed(tc) => item.get(tc).and_then(Json::as_str).and_then(|s| s.parse().ok()),
            }
        };
        for item in items.iter() {
            for (c, l) in &cols {
                if let (Some(id), Some(k)) = (item.get(c).and_then(uuid_of), kind_at(item, *l)) {
                    wanted.entry(k).or_default().insert(id);
                }
            }
        }
        let mut db = self.db.clone();
        let mut names: HashMap<(EntityKind, Uuid), String> = HashMap::new();
        for (k, ids) in wanted {
            let ids: Vec<Uuid> = ids.into_iter().collect();
            for (id, n) in names_of(&mut db, k, &ids).await? {
                names.insert((k, id), n);
            }
        }
        for item in items.iter_mut() {
            let mut add = Vec::new();
            for (c, l) in &cols {
                let name = match (item.get(c).and_then(uuid_of), kind_at(item, *l)) {
                    (Some(id), Some(k)) => names.get(&(k, id)).cloned(),
                    _ => None,
                };
                add.push((format!("{c}_name"), name.map(Json::String).unwrap_or(Json::Null)));
            }
            if let Some(obj) = item.as_object_mut() {
                obj.extend(add);
            }
        }
        Ok(())
    }
}
