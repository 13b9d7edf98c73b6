//! Quick campaigns and distributions (R-QC-1, R-QC-2): reads the members of the lists with
//! the facts the exclusions need, lets `crm::quick` plan the run, and writes the
//! bulkoperation, its activities and their parties in one transaction.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::{Exec, Tx, Value};
use super::records::{get, insert, insert_many, insert_rows, load, update};
use super::rules::list_members_in;
use super::waves::{WaveRow, WaveSchedule};
use super::{Result, Store};
use crate::crm::entities::{BulkOperation, Campaign, CampaignActivity, MarketingList, SystemUser};
use crate::crm::quick::{self, QuickParams, RunPlan, RunSettings, Target};
use crate::crm::{EntityKind, EntityRef, RuleError};

/// The facts of members (any mix of types), in the order given.
async fn targets_of(store: &Store, ex: &mut impl Exec, members: &[EntityRef]) -> Result<Vec<Target>> {
    let mut found = std::collections::HashMap::new();
    for kind in [EntityKind::Account, EntityKind::Contact, EntityKind::Lead] {
        let ids: Vec<Uuid> = members.iter().filter(|m| m.kind == kind).map(|m| m.id).collect();
        let (table, key) = kind.table();
        let (mobile, name) = match kind {
            EntityKind::Account => ("NULL", "t.name"),
            _ => ("t.mobilephone", "COALESCE(t.firstname || ' ', '') || t.lastname"),
        };
        for chunk in ids.chunks(200) {
            let ph = super::records::placeholders(chunk.len(), 1);
            let sql = format!(
                "SELECT t.{key} AS id, t.statecode, t.ownerid, COALESCE(u.isdisabled, TRUE) AS disabled, \
                    t.telephone1, {mobile} AS mobile, \
                   t.donotphone, t.donotpostalmail, t.donotfax, {name} AS name \
                 FROM {table} t LEFT JOIN systemuser u ON u.systemuserid = t.ownerid WHERE t.{key} IN ({})",
                ph
            );
            for r in ex.fetch_all(&sql, chunk.iter().map(|i| Value::from(*i)).collect()).await? {
                let phone = store
                    .phone_key(r.get::<Option<String>>("telephone1")?.as_deref())
                    .or(store.phone_key(r.get::<Option<String>>("mobile")?.as_deref()));
                let id: Uuid = r.get("id")?;
                found.insert(
                    id,
                    Target {
                        party: EntityRef::new(kind, id),
                        name: r.get::<Option<String>>("name")?.unwrap_or_default(),
                        statecode: r.get("statecode")?,
                        owner: r.get("ownerid")?,
                        owner_enabled: !r.get::<bool>("disabled")?,
                        phone,
                        donotphone: r.get("donotphone")?,
                        donotpostalmail: r.get("donotpostalmail")?,
                        donotfax: r.get("donotfax")?,
                    },
                );
            }
        }
    }
    Ok(members.iter().filter_map(|m| found.remove(&m.id)).collect())
}

/// Writes a planned run: the bulkoperation, the activities, and for each the member it is
/// with (To) and its owner (From).
async fn apply_run(store: &Store, tx: &mut Tx, plan: &RunPlan) -> Result<()> {
    insert(tx, store, &plan.bulk).await?;
    insert_many(tx, store, &plan.activities).await?;
    let mut parties: Vec<Vec<Value>> = Vec::with_capacity(plan.parties.len() * 2);
    for ((id, party, address), a) in plan.parties.iter().zip(&plan.activities) {
        parties.push(vec![(*id).into(), 2i32.into(), party.id.into(), party.kind.into(), address.clone().into()]);
        parties.push(vec![
            (*id).into(),
            1i32.into(),
            a.ownerid.into(),
            EntityKind::Systemuser.into(),
            Value::Text(None),
        ]);
    }
    insert_rows(
        tx,
        "activityparty (activityid, participationtypemask, partyid, partyidtype, addressused)",
        &parties,
        "",
    )
    .await?;
    Ok(())
}

/// What a run did, for the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    pub bulkoperation: BulkOperation,
    pub created: usize,
    pub excluded: std::collections::BTreeMap<String, i64>,
    /// An e-mail quick campaign's wave (scheduled): its members, exclusions and sends are
    /// counted when it starts, in the wave and the bulkoperation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<WaveRow>,
}

impl Store {
    /// R-QC-1: a quick campaign over one list: one activity per member. E-mail (`mail`, its
    /// checked schedule, whose id is ignored) goes through the wave sender: the quick
    /// campaign's bulkoperation and a wave sharing its id are written here; the sender
    /// freezes the members at the start and sends each address once.
    #[tracing::instrument(level = "debug", skip_all, fields(%list_id))]
    pub async fn quick_campaign(
        &self,
        list_id: Uuid,
        p: &QuickParams,
        mail: Option<&WaveSchedule>,
        actor: Uuid,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<RunOutcome> {
        let kind = quick::check_params(p)?;
        let mut tx = self.db.begin().await?;
        let mut list: MarketingList = load(&mut tx, list_id).await?;
        quick::check_list(&list)?;
        if let Some(o) = p.ownerid {
            if get::<SystemUser>(&mut tx, o).await?.is_none_or(|u| u.isdisabled) {
                return Err(
                    RuleError::new("R-QC-1", "unknown_owner", format!("ownerid {o} is not an enabled user")).into()
                );
            }
        }
        let bulk = BulkOperation {
            activityid: Uuid::now_v7(),
            operationtypecode: 7,
            createdrecordtypecode: quick::created_record_code(kind),
            regardingobjectid: list_id,
            regardingobjectidtype: EntityKind::List,
            subject: Some(p.subject.chars().take(200).collect()),
            ..Default::default()
        }
        .stamped(actor, EntityKind::Systemuser, now, Some(actor));
        if kind == EntityKind::Email {
            // Its e-mails are the quick campaign's owner's (the wave's sender).
            let bulk = BulkOperation { ownerid: p.ownerid.unwrap_or(actor), ..bulk };
            let Some(mail) = mail else {
                return Err(RuleError::new("R-QC-1", "use_a_wave", "an e-mail quick campaign needs its message").into());
            };
            insert(&mut tx, self, &bulk).await?;
            super::waves::insert_wave(&mut tx, &WaveSchedule { activity_id: bulk.activityid, ..mail.clone() }, now)
                .await?;
            // The wave's run is the quick campaign itself, from the start: a cancel before
            // the start closes it too.
            tx.execute("UPDATE wave SET bulkoperationid = $1 WHERE activityid = $1", vec![bulk.activityid.into()])
                .await?;
            let wave = super::waves::wave_in(&mut tx, bulk.activityid).await?;
            tx.commit().await?;
            return Ok(RunOutcome { bulkoperation: bulk, created: 0, excluded: Default::default(), wave: Some(wave) });
        }
        let members = list_members_in(&mut tx, list_id, now).await?;
        let targets = targets_of(self, &mut tx, &members).await?;
        let settings = RunSettings {
            kind,
            subject: p.subject.clone(),
            description: p.description.clone(),
            due: p.due,
            owner: p.ownerid,
            fallback_owner: actor,
            ignore_inactive: p.ignore_inactive.unwrap_or(list.ignoreinactivelistmembers),
            skip_opted_out: true,
            regarding: EntityRef::new(EntityKind::Bulkoperation, bulk.activityid),
            already: HashSet::new(),
        };
        let plan = quick::plan_run(bulk, targets, &settings, Uuid::now_v7, now);
        apply_run(self, &mut tx, &plan).await?;
        list.lastusedon = Some(now.with_timezone(&tz).date_naive());
        list.modifiedon = now;
        update(&mut tx, self, &list).await?;
        tx.commit().await?;
        Ok(RunOutcome { created: plan.activities.len(), excluded: plan.excluded, bulkoperation: plan.bulk, wave: None })
    }

    /// R-QC-2: distributes a campaign activity whose channel is not e-mail: one open
    /// activity per member of its target lists (a call list for Phone), owned by the
    /// member's owner, due at its `scheduledend`. Run again, it adds only new members.
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn distribute_campaign_activity(
        &self,
        id: Uuid,
        actor: Uuid,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<RunOutcome> {
        let mut tx = self.db.begin().await?;
        let mut ca: CampaignActivity = load(&mut tx, id).await?;
        let campaign: Campaign = load(&mut tx, ca.regardingobjectid).await?;
        let list_ids: Vec<Uuid> = tx
            .fetch_all(
                "SELECT listid FROM campaignactivityitem WHERE campaignactivityid = $1 ORDER BY listid",
                vec![id.into()],
            )
            .await?
            .iter()
            .map(|r| r.get("listid"))
            .collect::<Result<_>>()?;
        let mut lists = Vec::new();
        for l in &list_ids {
            lists.push(load::<MarketingList>(&mut tx, *l).await?);
        }
        let linked: Vec<Uuid> = tx
            .fetch_all("SELECT listid FROM campaignitem WHERE campaignid = $1", vec![campaign.campaignid.into()])
            .await?
            .iter()
            .map(|r| r.get("listid"))
            .collect::<Result<_>>()?;
        let kind = quick::check_distribution(&campaign, &ca, &lists, &linked)?;
        let mut members = Vec::new();
        for l in &list_ids {
            members.extend(list_members_in(&mut tx, *l, now).await?);
        }
        let targets = targets_of(self, &mut tx, &members).await?;
        let already: HashSet<Uuid> = tx
            .fetch_all(
                "SELECT p.partyid FROM activity a JOIN activityparty p ON p.activityid = a.activityid WHERE \
                    a.regardingobjectid = $1 AND a.activitytypecode = $2 AND p.participationtypemask = 2",
                vec![id.into(), kind.into()],
            )
            .await?
            .iter()
            .map(|r| r.get("partyid"))
            .collect::<Result<_>>()?;
        let bulk = BulkOperation {
            activityid: Uuid::now_v7(),
            operationtypecode: 4,
            createdrecordtypecode: quick::created_record_code(kind),
            regardingobjectid: id,
            regardingobjectidtype: EntityKind::Campaignactivity,
            subject: Some(ca.subject.clone()),
            ..Default::default()
        }
        .stamped(actor, EntityKind::Systemuser, now, Some(actor));
        let settings = RunSettings {
            kind,
            subject: ca.subject.clone(),
            description: ca.description.clone(),
            due: ca.scheduledend.map(|d| crate::crm::activity::date_only_due(d, tz)),
            owner: None,
            fallback_owner: ca.ownerid,
            ignore_inactive: ca.ignoreinactivelistmembers,
            skip_opted_out: true,
            regarding: EntityRef::new(EntityKind::Campaignactivity, id),
            already,
        };
        let plan = quick::plan_run(bulk, targets, &settings, Uuid::now_v7, now);
        apply_run(self, &mut tx, &plan).await?;
        // R-WV-5: the campaign activity ran; its members and lists were used today.
        let today = now.with_timezone(&tz).date_naive();
        ca.actualstart = ca.actualstart.or(Some(today));
        ca.actualend = Some(today);
        ca.statuscode = 6;
        ca.modifiedon = now;
        update(&mut tx, self, &ca).await?;
        for l in &list_ids {
            tx.execute("UPDATE list SET lastusedon = $1 WHERE listid = $2", vec![today.into(), (*l).into()]).await?;
        }
        for kind in [EntityKind::Account, EntityKind::Contact, EntityKind::Lead] {
            let (table, key) = kind.table();
            let ids: Vec<Uuid> = plan.parties.iter().filter(|(_, p, _)| p.kind == kind).map(|(_, p, _)| p.id).collect();
            for chunk in ids.chunks(200) {
                let ph = super::records::placeholders(chunk.len(), 2);
                let mut args: Vec<Value> = vec![today.into()];
                args.extend(chunk.iter().map(|i| Value::from(*i)));
                tx.execute(&format!("UPDATE {table} SET lastusedincampaign = $1 WHERE {key} IN ({})", ph), args)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(RunOutcome { created: plan.activities.len(), excluded: plan.excluded, bulkoperation: plan.bulk, wave: None })
    }
}
