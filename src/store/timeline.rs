//! Gathers a client's timeline (R-DEAL-1): the records that make up the client (an
//! account's contacts and opportunities, a deal's originating lead …), then every activity,
//! response and history line about them. `crm::timeline` turns them into ordered items.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::db::Exec;
use super::records::{from_row, load};
use super::{Result, Store};
use crate::crm::entities::{Account, Activity, CampaignResponse, Contact, Lead, Opportunity, Record};
use crate::crm::timeline::{self, Item};
use crate::crm::{EntityKind, EntityRef};

/// The most rows read per source: a client with more is paged from the newest this many.
const MAX_ROWS: i64 = 5000;

/// Records of `R` whose `col` is one of `ids`.
async fn where_in<R: Record>(ex: &mut impl Exec, col: &str, ids: &[Uuid]) -> Result<Vec<R>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cols: Vec<&str> = R::COLS.iter().map(|c| c.name).collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(200) {
        let ph = super::records::placeholders(chunk.len(), 1);
        let sql = format!(
            "SELECT {} FROM {} WHERE {col} IN ({}) ORDER BY createdon DESC LIMIT {MAX_ROWS}",
            cols.join(", "),
            R::TABLE,
            ph
        );
        for r in ex.fetch_all(&sql, chunk.iter().map(|i| (*i).into()).collect()).await? {
            out.push(from_row(&r)?);
        }
    }
    Ok(out)
}

/// The records a timeline covers, each once.
#[derive(Default)]
struct Members {
    refs: Vec<EntityRef>,
    leads: Vec<Lead>,
    opportunities: Vec<Opportunity>,
    contacts: Vec<Contact>,
    accounts: Vec<Account>,
}

impl Members {
    fn add(&mut self, r: EntityRef) -> bool {
        if self.refs.contains(&r) {
            return false;
        }
        self.refs.push(r);
        true
    }
    fn ids(&self) -> Vec<Uuid> {
        self.refs.iter().map(|r| r.id).collect()
    }
}

impl Store {
    async fn timeline_members(&self, ex: &mut impl Exec, root: EntityRef) -> Result<Members> {
        let mut m = Members::default();
        let mut leads_wanted: Vec<Uuid> = Vec::new();
        match root.kind {
            EntityKind::Opportunity => {
                let o: Opportunity = load(ex, root.id).await?;
                leads_wanted.extend(o.originatingleadid);
                m.add(root);
                m.opportunities.push(o);
            }
            EntityKind::Lead => {
                leads_wanted.push(root.id);
                for o in where_in::<Opportunity>(ex, "originatingleadid", &[root.id]).await? {
                    if m.add(EntityRef::new(EntityKind::Opportunity, o.opportunityid)) {
                        m.opportunities.push(o);
                    }
                }
            }
            EntityKind::Contact | EntityKind::Account => {
                let mut contacts: Vec<Contact> = Vec::new();
                if root.kind == EntityKind::Account {
                    let a: Account = load(ex, root.id).await?;
                    leads_wanted.extend(a.originatingleadid);
                    m.add(root);
                    m.accounts.push(a);
                    contacts = where_in::<Contact>(ex, "parentcustomerid", &[root.id]).await?;
                } else {
                    contacts.push(load(ex, root.id).await?);
                }
                for c in contacts {
                    leads_wanted.extend(c.originatingleadid);
                    if m.add(EntityRef::new(EntityKind::Contact, c.contactid)) {
                        m.contacts.push(c);
                    }
                }
                // Deals of the client, and the leads qualified into it.
                let ids = m.ids();
                let mut opps = where_in::<Opportunity>(ex, "customerid", &ids).await?;
                opps.extend(
                    where_in::<Opportunity>(
                        ex,
                        if root.kind == EntityKind::Account { "parentaccountid" } else { "parentcontactid" },
                        &[root.id],
                    )
                    .await?,
                );
                for o in opps {
                    leads_wanted.extend(o.originatingleadid);
                    if m.add(EntityRef::new(EntityKind::Opportunity, o.opportunityid)) {
                        m.opportunities.push(o);
                    }
                }
                let col = if root.kind == EntityKind::Account { "parentaccountid" } else { "parentcontactid" };
                leads_wanted.extend(where_in::<Lead>(ex, col, &[root.id]).await?.into_iter().map(|l| l.leadid));
            }
            other => {
                return Err(crate::crm::RuleError::new(
                    "R-DEAL-1",
                    "no_timeline",
                    format!("a {other} has no timeline"),
                )
                .into());
            }
        }
        let wanted: Vec<Uuid> = leads_wanted.into_iter().collect::<HashSet<_>>().into_iter().collect();
        let leads = where_in::<Lead>(ex, "leadid", &wanted).await?;
        if root.kind == EntityKind::Lead && leads.is_empty() {
            return Err(super::StoreError::NotFound { kind: "lead", id: root.id.to_string() });
        }
        for l in leads {
            if m.add(EntityRef::new(EntityKind::Lead, l.leadid)) {
                m.leads.push(l);
            }
        }
        Ok(m)
    }

    /// R-DEAL-1: the timeline of an opportunity, account, contact or lead, oldest first.
    #[tracing::instrument(level = "debug", skip_all, fields(%root))]
    pub async fn timeline(&self, root: EntityRef) -> Result<Vec<Item>> {
        let mut db = self.db.clone();
        let m = self.timeline_members(&mut db, root).await?;
        let ids = m.ids();
        let about_of: HashMap<Uuid, EntityRef> = m.refs.iter().map(|r| (r.id, *r)).collect();
        let mut items: Vec<Item> = Vec::new();
        items.extend(m.leads.iter().map(timeline::lead_item));
        items.extend(m.opportunities.iter().map(timeline::opportunity_item));
        for c in &m.contacts {
            let name = format!("{}{}", c.firstname.as_deref().map(|f| format!("{f} ")).unwrap_or_default(), c.lastname);
            items.push(timeline::created(
                EntityRef::new(EntityKind::Contact, c.contactid),
                name,
                c.createdon,
                c.ownerid,
                c.statecode,
                None,
            ));
        }
        for a in &m.accounts {
            items.push(timeline::created(
                EntityRef::new(EntityKind::Account, a.accountid),
                a.name.clone(),
                a.createdon,
                a.ownerid,
                a.statecode,
                None,
            ));
        }
        // Activities regarding a member, and those naming one as a party (wave e-mails,
        // inbound mail from a contact, calls with them).
        for a in where_in::<Activity>(&mut db, "regardingobjectid", &ids).await? {
            let about = a.regardingobjectid.and_then(|r| about_of.get(&r).copied()).unwrap_or(root);
            items.push(timeline::activity_item(&a, about));
        }
        let mut by_party: HashMap<Uuid, Uuid> = HashMap::new();
        for chunk in ids.chunks(200) {
            let ph = super::records::placeholders(chunk.len(), 1);
            let sql = format!(
                "SELECT DISTINCT activityid, partyid FROM activityparty WHERE partyid IN ({}) LIMIT {MAX_ROWS}",
                ph
            );
            for r in db.fetch_all(&sql, chunk.iter().map(|i| (*i).into()).collect()).await? {
                by_party.insert(r.get("activityid")?, r.get("partyid")?);
            }
        }
        let party_ids: Vec<Uuid> = by_party.keys().copied().collect();
        for a in where_in::<Activity>(&mut db, "activityid", &party_ids).await? {
            let about = by_party.get(&a.activityid).and_then(|p| about_of.get(p).copied()).unwrap_or(root);
            items.push(timeline::activity_item(&a, about));
        }
        for r in where_in::<CampaignResponse>(&mut db, "customerid", &ids).await? {
            let about = r.customerid.and_then(|c| about_of.get(&c).copied()).unwrap_or(root);
            items.push(timeline::response_item(&r, about));
        }
        for chunk in ids.chunks(200) {
            let ph = super::records::placeholders(chunk.len(), 1);
            let sql = format!(
                "SELECT id, entityid, at, actor, kind, summary FROM record_history WHERE entityid IN ({}) \
                    ORDER BY at LIMIT {MAX_ROWS}",
                ph
            );
            for r in db.fetch_all(&sql, chunk.iter().map(|i| (*i).into()).collect()).await? {
                let of: Uuid = r.get("entityid")?;
                let about = about_of.get(&of).copied().unwrap_or(root);
                // The creation of a record is its own item already.
                let kind: String = r.get("kind")?;
                if kind == "created" {
                    continue;
                }
                items.push(timeline::history_item(
                    r.get("id")?,
                    about,
                    r.get("at")?,
                    r.get("actor")?,
                    &kind,
                    &r.get::<String>("summary")?,
                ));
            }
        }
        let mut items = timeline::order(items);
        let users: Vec<Uuid> = items.iter().filter_map(|i| i.who).collect::<HashSet<_>>().into_iter().collect();
        let names = super::names::names_of(&mut db, EntityKind::Systemuser, &users).await?;
        for i in &mut items {
            i.who_name = i.who.and_then(|w| names.get(&w).cloned());
        }
        Ok(items)
    }
}
