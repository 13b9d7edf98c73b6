//! Review of duplicate candidates (R-DUP-5): merge the records of a candidate into one, or
//! dismiss the candidate for good. One transaction each: the survivor takes the other's
//! empty fields, its activities, responses, list memberships, deals and contact points; the
//! other is deactivated with a pointer to the survivor.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use uuid::Uuid;

use super::db::{Exec, Tx};
use super::deals::add_history;
use super::records::{load, update};
use super::{Result, Store, StoreError};
use crate::crm::entities::{Account, Contact, Lead, Record};
use crate::crm::merge;
use crate::crm::status::CandidateStatus;
use crate::crm::{EntityKind, EntityRef, RuleError};

/// The reference columns that name a party, per table: each follows the survivor.
const REFERENCES: &[(&str, &str)] = &[
    ("activity", "regardingobjectid"),
    ("activityparty", "partyid"),
    ("campaignresponse", "customerid"),
    ("opportunity", "customerid"),
    ("opportunity", "parentaccountid"),
    ("opportunity", "parentcontactid"),
    ("opportunity", "originatingleadid"),
    ("contact", "parentcustomerid"),
    ("contact", "originatingleadid"),
    ("account", "primarycontactid"),
    ("account", "parentaccountid"),
    ("account", "originatingleadid"),
    ("lead", "parentaccountid"),
    ("lead", "parentcontactid"),
    ("lead", "customerid"),
];

/// Loads a dup candidate row in `tx`.
async fn candidate_in(tx: &mut Tx, id: Uuid) -> Result<(Vec<EntityRef>, CandidateStatus)> {
    let row = tx
        .fetch_optional("SELECT candidates, status FROM dup_candidate WHERE id = $1", vec![id.into()])
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: "dup_candidate", id: id.to_string() })?;
    let cands: Vec<EntityRef> = serde_json::from_str(&row.get::<String>("candidates")?).map_err(StoreError::decode)?;
    Ok((cands, row.get("status")?))
}

fn check_open(status: CandidateStatus) -> Result<()> {
    if status != CandidateStatus::Open {
        return Err(RuleError::conflict(
            "R-DUP-5",
            "candidate_resolved",
            format!("this candidate is {status} already"),
        )
        .into());
    }
    Ok(())
}

/// Merges `other` into `keep` (same type `R`): fills, retires, moves the references.
async fn merge_pair<R: Record>(
    store: &Store,
    tx: &mut Tx,
    keep: Uuid,
    other: Uuid,
    actor: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let a: R = load(tx, keep).await?;
    let b: R = load(tx, other).await?;
    let (Json::Object(mut am), Json::Object(bm)) =
        (serde_json::to_value(&a).map_err(StoreError::decode)?, serde_json::to_value(&b).map_err(StoreError::decode)?)
    else {
        return Err(StoreError::decode("record is not an object"));
    };
    if bm.get("masterid").is_some_and(|m| !m.is_null()) {
        return Err(RuleError::conflict(
            "R-DUP-5",
            "already_merged",
            format!("{} {other} was merged already", R::KIND),
        )
        .into());
    }
    let filled = merge::fill(&mut am, &bm, R::KEY);
    am.insert("modifiedon".into(), serde_json::to_value(now).map_err(StoreError::decode)?);
    am.insert("modifiedby".into(), serde_json::to_value(actor).map_err(StoreError::decode)?);
    let (state, status) = merge::retired_state(R::KIND);
    let mut bm = bm;
    bm.insert("statecode".into(), state.into());
    bm.insert("statuscode".into(), status.into());
    bm.insert("masterid".into(), Json::String(keep.to_string()));
    bm.insert("modifiedon".into(), serde_json::to_value(now).map_err(StoreError::decode)?);
    let b2: R = serde_json::from_value(Json::Object(bm)).map_err(StoreError::decode)?;
    update(tx, store, &b2).await?;
    let a2: R = serde_json::from_value(Json::Object(am)).map_err(StoreError::decode)?;
    update(tx, store, &a2).await?;
    // A merged-away record is never matched again (R-DUP-3 reads contact points): its
    // addresses and numbers belong to the survivor now.
    tx.execute("DELETE FROM contact_point WHERE entityid = $1", vec![other.into()]).await?;
    for (table, col) in REFERENCES {
        tx.execute(&format!("UPDATE {table} SET {col} = $1 WHERE {col} = $2"), vec![keep.into(), other.into()]).await?;
    }
    if R::KIND == EntityKind::Lead {
        // R-LD-5: the survivor had the other's activities all along (moving them keeps their
        // `modifiedon`, which PostgreSQL's roll-up reads).
        tx.execute(
            "UPDATE lead SET lastactivityon = (SELECT MAX(lastactivityon) FROM lead WHERE leadid IN ($1, $2)) \
             WHERE leadid = $3",
            vec![keep.into(), other.into(), keep.into()],
        )
        .await?;
    }
    // List memberships: the survivor joins the other's lists (once), the other leaves them.
    let lists: Vec<Uuid> = tx
        .fetch_all("SELECT listid FROM listmember WHERE entityid = $1", vec![other.into()])
        .await?
        .iter()
        .map(|r| r.get("listid"))
        .collect::<Result<_>>()?;
    tx.execute(
        "INSERT INTO listmember (listid, entityid, entitytype, createdon) SELECT listid, $1, entitytype, $2 \
            FROM listmember WHERE entityid = $3 ON CONFLICT (listid, entityid) DO NOTHING",
        vec![keep.into(), now.into(), other.into()],
    )
    .await?;
    tx.execute("DELETE FROM listmember WHERE entityid = $1", vec![other.into()]).await?;
    for l in lists {
        super::rules::refresh_member_count(tx, l).await?;
    }
    let summary = if filled.is_empty() {
        format!("Merged {other} into this record")
    } else {
        format!("Merged {other} into this record; took {}", filled.join(", "))
    };
    add_history(tx, EntityRef::new(R::KIND, keep), now, actor, "merged", &summary).await?;
    Ok(filled)
}

/// The outcome of a merge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeOutcome {
    pub survivor: EntityRef,
    pub merged: Vec<EntityRef>,
    /// Fields the survivor took from the others.
    pub filled: Vec<String>,
}

impl Store {
    /// R-DUP-5 merge: `survivor` keeps its values; `merge` (default: the other candidates
    /// of its type) are merged into it.
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn merge_dup_candidate(
        &self,
        id: Uuid,
        survivor: Uuid,
        only: Option<&[Uuid]>,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<MergeOutcome> {
        let mut tx = self.db.begin().await?;
        let (cands, status) = candidate_in(&mut tx, id).await?;
        check_open(status)?;
        let (keep, others) = merge::pick(&cands, survivor, only)?;
        let mut filled = Vec::new();
        for o in &others {
            let f = match keep.kind {
                EntityKind::Contact => merge_pair::<Contact>(self, &mut tx, keep.id, o.id, actor, now).await?,
                EntityKind::Account => merge_pair::<Account>(self, &mut tx, keep.id, o.id, actor, now).await?,
                _ => merge_pair::<Lead>(self, &mut tx, keep.id, o.id, actor, now).await?,
            };
            filled.extend(f);
        }
        tx.execute("UPDATE dup_candidate SET status = 'merged' WHERE id = $1", vec![id.into()]).await?;
        tx.commit().await?;
        filled.sort();
        filled.dedup();
        Ok(MergeOutcome { survivor: keep, merged: others, filled })
    }

    /// R-DUP-5 dismiss: the candidate is ignored, and none of its pairs is proposed again.
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn dismiss_dup_candidate(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let (cands, status) = candidate_in(&mut tx, id).await?;
        check_open(status)?;
        for (i, a) in cands.iter().enumerate() {
            for b in &cands[i + 1..] {
                let (x, y) = if a.id < b.id { (a.id, b.id) } else { (b.id, a.id) };
                tx.execute(
                    "INSERT INTO dup_dismissed (a, b, dismissed_at) VALUES ($1, $2, $3) ON CONFLICT (a, b) DO NOTHING",
                    vec![x.into(), y.into(), now.into()],
                )
                .await?;
            }
        }
        tx.execute("UPDATE dup_candidate SET status = 'ignored' WHERE id = $1", vec![id.into()]).await?;
        tx.commit().await
    }
}

/// Whether a person dismissed every pair of these records (then they are not proposed again).
pub(crate) async fn all_pairs_dismissed(ex: &mut impl Exec, cands: &[EntityRef]) -> Result<bool> {
    for (i, a) in cands.iter().enumerate() {
        for b in &cands[i + 1..] {
            let (x, y) = if a.id < b.id { (a.id, b.id) } else { (b.id, a.id) };
            if ex
                .fetch_optional("SELECT a FROM dup_dismissed WHERE a = $1 AND b = $2", vec![x.into(), y.into()])
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
    }
    Ok(cands.len() > 1)
}
