//! The CRM operations of DOMAIN §3 and §4.8, each one transaction: gather facts, let a
//! `crm` rule decide, apply the decision.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::{Exec, Tx};
use super::ops::{self, DupCandidate};
use super::records::{get, insert, load, update};
use super::{Result, Store, StoreError};
use crate::crm::entities::{
    Account, Campaign, CampaignActivity, CampaignResponse, Contact, Lead, MarketingList, Record,
};
use crate::crm::lead::{self, QualifyFacts, QualifyParams, QualifyPlan, Slot};
use crate::crm::matching::MatchOutcome;
use crate::crm::normalize::account_name_key;
use crate::crm::response::{self, ConvertFacts, ConvertOption, ConvertPlan};
use crate::crm::{EmailAddress, EntityKind, EntityRef, Phone, RuleError};

/// Whether a manual create runs the duplicate rules (R-DUP-4) and refuses on a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    CheckDuplicates,
    IgnoreDuplicates,
}

/// The outcome of a set of dedupe rule hits, as a match.
fn outcome(mut hits: Vec<EntityRef>) -> MatchOutcome {
    hits.sort();
    hits.dedup();
    match hits.len() {
        0 => MatchOutcome::None,
        1 => MatchOutcome::Unique(hits[0]),
        _ => MatchOutcome::Ambiguous(hits),
    }
}

impl Store {
    fn email_key(&self, raw: Option<&str>) -> Option<String> {
        raw.and_then(|e| EmailAddress::parse_with(e, &self.norm.email_rules).ok()).map(|e| e.as_str().to_string())
    }

    pub(crate) fn phone_key(&self, raw: Option<&str>) -> Option<String> {
        raw.and_then(|p| Phone::parse(p, &self.norm.default_region).e164().map(str::to_string))
    }

    /// R-DUP-4 "Accounts with the same e-mail" + "Accounts with the same name" (active only).
    async fn account_duplicates(
        &self,
        ex: &mut impl Exec,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Vec<EntityRef>> {
        let mut hits = Vec::new();
        if let Some(e) = self.email_key(email) {
            hits.extend(ops::field_matches(ex, EntityKind::Account, "emailaddress1", &e, Some(0)).await?);
        }
        if let Some(n) = name.and_then(account_name_key) {
            hits.extend(ops::field_matches(ex, EntityKind::Account, "name", &n, Some(0)).await?);
        }
        Ok(hits)
    }

    /// R-DUP-4 "Contacts with the same e-mail" / "same business phone", and
    /// "Lead ↔ Contact same e-mail" (active contacts only).
    async fn contact_duplicates(
        &self,
        ex: &mut impl Exec,
        email: Option<&str>,
        telephone1: Option<&str>,
    ) -> Result<Vec<EntityRef>> {
        let mut hits = Vec::new();
        if let Some(e) = self.email_key(email) {
            hits.extend(ops::field_matches(ex, EntityKind::Contact, "emailaddress1", &e, Some(0)).await?);
        }
        if let Some(p) = self.phone_key(telephone1) {
            hits.extend(ops::field_matches(ex, EntityKind::Contact, "telephone1", &p, Some(0)).await?);
        }
        Ok(hits)
    }

    /// R-DUP-4 for a new lead: open leads with the same e-mail, and contacts with it.
    async fn lead_duplicates(&self, ex: &mut impl Exec, email: Option<&str>) -> Result<Vec<EntityRef>> {
        let mut hits = Vec::new();
        if let Some(e) = self.email_key(email) {
            hits.extend(ops::field_matches(ex, EntityKind::Lead, "emailaddress1", &e, Some(0)).await?);
            hits.extend(ops::field_matches(ex, EntityKind::Contact, "emailaddress1", &e, Some(0)).await?);
        }
        Ok(hits)
    }

    fn refuse_duplicates(kind: &str, mut hits: Vec<EntityRef>) -> Result<()> {
        hits.sort();
        hits.dedup();
        if hits.is_empty() {
            return Ok(());
        }
        Err(RuleError::conflict(
            "R-DUP-4",
            "duplicate_found",
            format!("possible duplicates of this {kind} exist; pass ?duplicates=allow to create anyway"),
        )
        .with_candidates(hits)
        .into())
    }

    /// Creates a lead (R-LD-1, R-LD-4; R-DUP-4 unless ignored).
    pub async fn create_lead(&self, lead: &Lead, mode: CreateMode) -> Result<Lead> {
        lead::validate(lead, &self.custom_lead_sources)?;
        let mut tx = self.db.begin().await?;
        if mode == CreateMode::CheckDuplicates {
            let hits = self.lead_duplicates(&mut tx, lead.emailaddress1.as_deref()).await?;
            Self::refuse_duplicates("lead", hits)?;
        }
        insert(&mut tx, self, lead).await?;
        let out = load(&mut tx, lead.leadid).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Creates a contact (lastname required; R-DUP-4 unless ignored).
    pub async fn create_contact(&self, c: &Contact, mode: CreateMode) -> Result<Contact> {
        crate::crm::error::require("lastname", Some(&c.lastname), "§2.3")?;
        crate::crm::error::check_len("lastname", Some(&c.lastname), 50)?;
        let mut tx = self.db.begin().await?;
        if mode == CreateMode::CheckDuplicates {
            let hits = self.contact_duplicates(&mut tx, c.emailaddress1.as_deref(), c.telephone1.as_deref()).await?;
            Self::refuse_duplicates("contact", hits)?;
        }
        insert(&mut tx, self, c).await?;
        let out = load(&mut tx, c.contactid).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Creates an account (name required; R-DUP-4 unless ignored).
    pub async fn create_account(&self, a: &Account, mode: CreateMode) -> Result<Account> {
        crate::crm::error::require("name", Some(&a.name), "§2.2")?;
        crate::crm::error::check_len("name", Some(&a.name), 160)?;
        let mut tx = self.db.begin().await?;
        if mode == CreateMode::CheckDuplicates {
            let hits = self.account_duplicates(&mut tx, Some(&a.name), a.emailaddress1.as_deref()).await?;
            Self::refuse_duplicates("account", hits)?;
        }
        insert(&mut tx, self, a).await?;
        let out = load(&mut tx, a.accountid).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Updates an Open lead (R-LD-2), keeping its state.
    pub async fn update_lead(&self, after: &Lead) -> Result<Lead> {
        lead::validate(after, &self.custom_lead_sources)?;
        let mut tx = self.db.begin().await?;
        let before: Lead = load(&mut tx, after.leadid).await?;
        lead::check_update(&before, after)?;
        let out = update(&mut tx, self, after).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn plan_qualify_in(
        &self,
        tx: &mut Tx,
        lead: &Lead,
        params: &QualifyParams,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<QualifyPlan> {
        let account_match = if params.create_account && lead.parentaccountid.is_none() {
            outcome(self.account_duplicates(tx, lead.companyname.as_deref(), lead.emailaddress1.as_deref()).await?)
        } else {
            MatchOutcome::None
        };
        let contact_match = if params.create_contact && lead.parentcontactid.is_none() {
            outcome(self.contact_duplicates(tx, lead.emailaddress1.as_deref(), lead.telephone1.as_deref()).await?)
        } else {
            MatchOutcome::None
        };
        let facts = QualifyFacts {
            account_match,
            contact_match,
            new_ids: [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
            actor,
            now,
            default_currency: self.default_currency.clone(),
        };
        Ok(lead::plan_qualify(lead, params, &facts)?)
    }

    /// Checks that an explicitly linked record exists (a lookup must point somewhere).
    async fn check_exists<R: Record>(tx: &mut Tx, id: Uuid) -> Result<()> {
        load::<R>(tx, id).await.map(|_| ())
    }

    async fn apply_qualify(&self, tx: &mut Tx, plan: &QualifyPlan) -> Result<()> {
        match &plan.account {
            Slot::Create(a) => insert(tx, self, a).await?,
            Slot::Link(id) => Self::check_exists::<Account>(tx, *id).await?,
            Slot::Untouched => {}
        }
        match &plan.contact {
            Slot::Create(c) => insert(tx, self, c).await?,
            Slot::Link(id) => Self::check_exists::<Contact>(tx, *id).await?,
            Slot::Untouched => {}
        }
        if let Some(o) = &plan.opportunity {
            match o.customeridtype {
                Some(EntityKind::Account) if !matches!(plan.account, Slot::Create(_)) => {
                    Self::check_exists::<Account>(tx, o.customerid.unwrap_or_default()).await?
                }
                Some(EntityKind::Contact) if !matches!(plan.contact, Slot::Create(_)) => {
                    Self::check_exists::<Contact>(tx, o.customerid.unwrap_or_default()).await?
                }
                _ => {}
            }
            insert(tx, self, o).await?;
        }
        Ok(())
    }

    /// QualifyLead (§3.1) in one transaction. Returns the qualified lead and the records created.
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn qualify_lead(
        &self,
        id: Uuid,
        params: &QualifyParams,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(Lead, Vec<EntityRef>)> {
        let mut tx = self.db.begin().await?;
        let lead: Lead = load(&mut tx, id).await?;
        let plan = self.plan_qualify_in(&mut tx, &lead, params, actor, now).await?;
        self.apply_qualify(&mut tx, &plan).await?;
        let out = update(&mut tx, self, &plan.lead).await?;
        tx.commit().await?;
        Ok((out, plan.created()))
    }

    /// Disqualify (§3.2): status ∈ {4, 5, 6, 7}, reason kept in `qualificationcomments`.
    pub async fn disqualify_lead(
        &self,
        id: Uuid,
        status: Option<i32>,
        reason: Option<&str>,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Lead> {
        crate::crm::error::check_len("reason", reason, 2000)?;
        let mut tx = self.db.begin().await?;
        let mut l: Lead = load(&mut tx, id).await?;
        let has_opp = tx
            .fetch_optional(
                "SELECT opportunityid FROM opportunity WHERE originatingleadid = $1 LIMIT 1",
                vec![id.into()],
            )
            .await?
            .is_some();
        let (s, st) = lead::disqualify(&l, has_opp, status)?;
        l.statecode = s;
        l.statuscode = st;
        if let Some(r) = reason {
            l.qualificationcomments = Some(r.to_string());
        }
        l.modifiedon = now;
        l.modifiedby = actor;
        let out = update(&mut tx, self, &l).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Reactivate (§3.2): back to Open / New; qualify's links stay.
    pub async fn reactivate_lead(&self, id: Uuid, actor: Option<Uuid>, now: DateTime<Utc>) -> Result<Lead> {
        let mut tx = self.db.begin().await?;
        let mut l: Lead = load(&mut tx, id).await?;
        let (s, st) = lead::reactivate(&l)?;
        l.statecode = s;
        l.statuscode = st;
        l.modifiedon = now;
        l.modifiedby = actor;
        let out = update(&mut tx, self, &l).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Converts a campaign response (§3.3) in one transaction. Returns the response as
    /// stored and the records created.
    /// A new lead runs the duplicate rules like every other create (R-LD-3, R-DUP-4) unless
    /// `mode` says to create it anyway.
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn convert_response(
        &self,
        id: Uuid,
        option: &ConvertOption,
        leadsourcecode: Option<i32>,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
        mode: CreateMode,
    ) -> Result<(CampaignResponse, Vec<EntityRef>)> {
        let mut tx = self.db.begin().await?;
        let resp: CampaignResponse = load(&mut tx, id).await?;
        let existing = match option {
            ConvertOption::ExistingLead { lead_id, .. } => get::<Lead>(&mut tx, *lead_id).await?,
            _ => None,
        };
        let facts =
            ConvertFacts { existing_lead: existing.as_ref(), new_lead_id: Uuid::new_v4(), leadsourcecode, now, actor };
        let plan = response::plan_convert(&resp, option, &facts)?;
        let (response, created) = match plan {
            ConvertPlan::NewLead { lead, response } => {
                lead::validate(&lead, &self.custom_lead_sources)?;
                if mode == CreateMode::CheckDuplicates {
                    let hits = self.lead_duplicates(&mut tx, lead.emailaddress1.as_deref()).await?;
                    Self::refuse_duplicates("lead", hits)?;
                }
                insert(&mut tx, self, &lead).await?;
                (response, vec![EntityRef::new(EntityKind::Lead, lead.leadid)])
            }
            ConvertPlan::ExistingLead { lead, response } => {
                update(&mut tx, self, &lead).await?;
                (response, vec![])
            }
            ConvertPlan::NewCustomer { proto_lead, params, response } => {
                let plan =
                    self.plan_qualify_in(&mut tx, &proto_lead, &params, actor, now).await?.without_originating_lead();
                self.apply_qualify(&mut tx, &plan).await?;
                let customer = plan
                    .lead
                    .parentaccountid
                    .map(|id| EntityRef::new(EntityKind::Account, id))
                    .or(plan.lead.parentcontactid.map(|id| EntityRef::new(EntityKind::Contact, id)));
                (response::close_with_customer(&response, customer, now, actor), plan.created())
            }
            ConvertPlan::Close { response } => (response, vec![]),
        };
        let out = update(&mut tx, self, &response).await?;
        tx.commit().await?;
        Ok((out, created))
    }

    /// Recomputes a campaign's cost totals (R-WV-6) inside `tx`.
    async fn rollup_in(&self, tx: &mut Tx, campaign_id: Uuid, now: DateTime<Utc>) -> Result<Campaign> {
        let mut c: Campaign = load(tx, campaign_id).await?;
        let before = c.clone();
        let rows = tx
            .fetch_all("SELECT actualcost FROM campaignactivity WHERE regardingobjectid = $1", vec![campaign_id.into()])
            .await?;
        let costs =
            rows.iter().map(|r| r.get::<Option<crate::crm::Money>>("actualcost")).collect::<Result<Vec<_>>>()?;
        let (acts, total) = crate::crm::campaign::rollup(costs, c.othercost)?;
        c.totalcampaignactivityactualcost = Some(acts);
        c.totalactualcost = Some(total);
        let out = update(tx, self, &c).await?;
        self.note_budget_crossing(tx, &before, &out, now).await?;
        Ok(out)
    }

    /// R-WV-6b: when a campaign's actual cost goes over its budget, its owner is told once
    /// (a history line the alerts scan turns into a notice); dropping back under and crossing
    /// again tells them again.
    async fn note_budget_crossing(
        &self,
        tx: &mut Tx,
        before: &Campaign,
        after: &Campaign,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if crate::crm::campaign::crossed_over_budget(before, after) {
            let summary = format!(
                "Over budget: actual cost {} exceeds the budget {}",
                after.totalactualcost.unwrap_or_default(),
                after.budgetedcost.unwrap_or_default()
            );
            super::deals::add_history(
                tx,
                EntityRef::new(EntityKind::Campaign, after.campaignid),
                now,
                None,
                "over_budget",
                &summary,
            )
            .await?;
        }
        Ok(())
    }

    /// A campaign changed by PATCH (its budget, say): R-WV-6b's crossing is checked.
    pub async fn update_campaign(&self, after: &Campaign, now: DateTime<Utc>) -> Result<Campaign> {
        let mut tx = self.db.begin().await?;
        let before: Campaign = load(&mut tx, after.campaignid).await?;
        let out = update(&mut tx, self, after).await?;
        self.note_budget_crossing(&mut tx, &before, &out, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Changes a campaign's status ([DESIGN] §2.7 transitions).
    pub async fn set_campaign_status(
        &self,
        id: Uuid,
        to: i32,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        let mut tx = self.db.begin().await?;
        let mut c: Campaign = load(&mut tx, id).await?;
        crate::crm::campaign::check_status_change(c.statuscode, to)?;
        c.statuscode = to;
        c.modifiedon = now;
        c.modifiedby = actor;
        let out = update(&mut tx, self, &c).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Creates a campaign activity and rolls its cost up to the campaign (R-WV-6).
    pub async fn create_campaign_activity(&self, a: &CampaignActivity) -> Result<CampaignActivity> {
        crate::crm::error::require("subject", Some(&a.subject), "§2.8")?;
        let mut tx = self.db.begin().await?;
        load::<Campaign>(&mut tx, a.regardingobjectid).await?;
        insert(&mut tx, self, a).await?;
        self.rollup_in(&mut tx, a.regardingobjectid, a.modifiedon).await?;
        let out = load(&mut tx, a.activityid).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Changes a campaign activity's actual cost and recomputes the campaign (R-WV-6).
    pub async fn set_campaign_activity_cost(
        &self,
        id: Uuid,
        actualcost: Option<crate::crm::Money>,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        let mut tx = self.db.begin().await?;
        let mut a: CampaignActivity = load(&mut tx, id).await?;
        if a.statecode != 0 {
            return Err(RuleError::conflict(
                "§2.8",
                "activity_closed",
                "closed and canceled campaign activities are read-only",
            )
            .into());
        }
        a.actualcost = actualcost;
        a.modifiedon = now;
        update(&mut tx, self, &a).await?;
        let c = self.rollup_in(&mut tx, a.regardingobjectid, now).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// Changes a campaign's othercost and recomputes its totals (R-WV-6).
    pub async fn set_campaign_othercost(
        &self,
        id: Uuid,
        othercost: Option<crate::crm::Money>,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        let mut tx = self.db.begin().await?;
        let mut c: Campaign = load(&mut tx, id).await?;
        c.othercost = othercost;
        c.modifiedon = now;
        update(&mut tx, self, &c).await?;
        let c = self.rollup_in(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// The members of a list: static rows, or a dynamic list's criteria evaluated now.
    pub async fn list_members(&self, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<EntityRef>> {
        list_members_in(&mut self.db.clone(), list_id, now).await
    }

    /// AddListMembersList (§2.6): static, unlocked, active lists only; every member must be
    /// an existing record of the list's member type. Returns how many were new.
    pub async fn add_list_members(&self, list_id: Uuid, members: &[Uuid], now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.db.begin().await?;
        let l: MarketingList = load(&mut tx, list_id).await?;
        if l.isdynamic {
            return Err(RuleError::conflict(
                "§2.6",
                "list_dynamic",
                "a dynamic list has no stored members; change its query instead",
            )
            .into());
        }
        if l.lockstatus {
            return Err(
                RuleError::conflict("§2.6", "list_locked", "the list is locked: no members can be added").into()
            );
        }
        if l.statecode != 0 {
            return Err(RuleError::conflict("§2.6", "list_inactive", "an inactive list is read-only").into());
        }
        let kind = crate::crm::criteria::member_kind(l.createdfromcode)
            .ok_or_else(|| StoreError::Decode("bad createdfromcode".into()))?;
        let (table, key) = kind.table();
        let mut added = 0;
        for m in members {
            let exists = tx
                .fetch_optional(&format!("SELECT {key} FROM {table} WHERE {key} = $1"), vec![(*m).into()])
                .await?
                .is_some();
            if !exists {
                return Err(RuleError::new(
                    "§2.6",
                    "member_type_mismatch",
                    format!("{m} is not an existing {kind}: all list members must be of the list's member type"),
                )
                .into());
            }
            added += tx
                .execute(
                    "INSERT INTO listmember (listid, entityid, entitytype, createdon) VALUES ($1, $2, $3, $4) \
                        ON CONFLICT (listid, entityid) DO NOTHING",
                    vec![list_id.into(), (*m).into(), kind.into(), now.into()],
                )
                .await?;
        }
        refresh_member_count(&mut tx, list_id).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Removes members from a static, unlocked list.
    pub async fn remove_list_members(&self, list_id: Uuid, members: &[Uuid]) -> Result<u64> {
        let mut tx = self.db.begin().await?;
        let l: MarketingList = load(&mut tx, list_id).await?;
        if l.isdynamic || l.lockstatus || l.statecode != 0 {
            return Err(RuleError::conflict(
                "§2.6",
                "list_not_editable",
                "only active, unlocked static lists change members",
            )
            .into());
        }
        let mut removed = 0;
        for m in members {
            removed += tx
                .execute(
                    "DELETE FROM listmember WHERE listid = $1 AND entityid = $2",
                    vec![list_id.into(), (*m).into()],
                )
                .await?;
        }
        refresh_member_count(&mut tx, list_id).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// CopyDynamicListToStatic (§2.6): a locked static snapshot of a dynamic list's members.
    pub async fn copy_dynamic_to_static(
        &self,
        list_id: Uuid,
        new_id: Uuid,
        actor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<MarketingList> {
        let mut tx = self.db.begin().await?;
        let src: MarketingList = load(&mut tx, list_id).await?;
        if !src.isdynamic {
            return Err(RuleError::conflict(
                "§2.6",
                "list_not_dynamic",
                "only a dynamic list can be copied to a static one",
            )
            .into());
        }
        let members = list_members_in(&mut tx, list_id, now).await?;
        let copy = MarketingList {
            listid: new_id,
            listname: format!("{} ({})", src.listname, now.format("%Y-%m-%d %H:%M")).chars().take(128).collect(),
            isdynamic: false,
            query: None,
            lockstatus: true,
            membercount: Some(members.len() as i32),
            createdon: now,
            modifiedon: now,
            createdby: actor,
            modifiedby: actor,
            versionnumber: 1,
            ..src.clone()
        };
        insert(&mut tx, self, &copy).await?;
        for m in &members {
            tx.execute(
                "INSERT INTO listmember (listid, entityid, entitytype, createdon) VALUES ($1, $2, $3, $4)",
                vec![new_id.into(), m.id.into(), m.kind.into(), now.into()],
            )
            .await?;
        }
        let out = load(&mut tx, new_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// R-DUP-3 plus the review queue: a match; an ambiguous one is recorded as a dup_candidate.
    pub async fn match_or_queue(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
        source_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<MatchOutcome> {
        let m = self.match_party(email, phone).await?;
        if let MatchOutcome::Ambiguous(c) = &m {
            let (subject_type, subject_value) = match (self.email_key(email), self.phone_key(phone)) {
                (Some(e), _) => ("email", e),
                (None, Some(p)) => ("phone", p),
                (None, None) => return Ok(m),
            };
            self.record_dup_candidate(&DupCandidate {
                id: Uuid::new_v4(),
                rule: "R-DUP-3".into(),
                subject_type: subject_type.into(),
                subject_value,
                source_ref: source_ref.into(),
                candidates: c.clone(),
                status: crate::crm::status::CandidateStatus::Open,
                created_at: now,
            })
            .await?;
        }
        Ok(m)
    }
}

pub(crate) async fn refresh_member_count(tx: &mut Tx, list_id: Uuid) -> Result<()> {
    tx.execute(
        "UPDATE list SET membercount = (SELECT COUNT(*) FROM listmember WHERE listid = $1), versionnumber = \
            versionnumber + 1 WHERE listid = $1",
        vec![list_id.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn list_members_in(ex: &mut impl Exec, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<EntityRef>> {
    let l: MarketingList = load(ex, list_id).await?;
    let kind = crate::crm::criteria::member_kind(l.createdfromcode)
        .ok_or_else(|| StoreError::Decode("bad createdfromcode".into()))?;
    if l.isdynamic {
        let doc = l.query.clone().unwrap_or(serde_json::Value::Null);
        let criteria = crate::crm::criteria::parse(kind, &doc)?;
        let (sql, args) = super::criteria::compile_members_query(&criteria, ex.engine(), now);
        let rows = ex.fetch_all(&sql, args).await?;
        rows.iter().map(|r| Ok(EntityRef::new(kind, r.get("id")?))).collect()
    } else {
        let rows = ex
            .fetch_all("SELECT entityid FROM listmember WHERE listid = $1 ORDER BY entityid", vec![list_id.into()])
            .await?;
        rows.iter().map(|r| Ok(EntityRef::new(kind, r.get("entityid")?))).collect()
    }
}

/// What an import does with a row the duplicate rules (R-DUP-4) match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportDuplicates {
    /// Leave the row out and report the records it matched.
    Skip,
    /// A unique matching contact: create the lead linked to it (parentcontactid, and the
    /// contact's account as parentaccountid). A matching open lead: leave the row out.
    Link,
}

/// What happened to each row of an import.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    pub created: Vec<(u64, Uuid)>,
    /// (line, new lead, the contact it was linked to)
    pub linked: Vec<(u64, Uuid, Uuid)>,
    /// (line, the records it duplicates)
    pub duplicates: Vec<(u64, Vec<EntityRef>)>,
    pub errors: Vec<(u64, String)>,
    /// False when row errors rolled the whole import back.
    pub committed: bool,
}

impl Store {
    /// Imports leads in one transaction: each row is validated (R-LD-1, R-LD-4), checked
    /// against the duplicate rules — including rows earlier in the same file — and inserted.
    /// Any row error rolls everything back unless `skip_bad_rows`. `progress` is told how
    /// many rows are done.
    pub async fn import_leads(
        &self,
        rows: &[crate::crm::lead::ImportRow],
        dups: ImportDuplicates,
        skip_bad_rows: bool,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<ImportReport> {
        let mut tx = self.db.begin().await?;
        let mut rep = ImportReport::default();
        for (i, row) in rows.iter().enumerate() {
            progress(i as u64 + 1);
            let mut lead = row.lead.clone();
            if let Err(e) = lead::validate(&lead, &self.custom_lead_sources) {
                rep.errors.push((row.line, e.to_string()));
                continue;
            }
            if let Some(c) = lead.campaignid {
                if get::<Campaign>(&mut tx, c).await?.is_none() {
                    rep.errors.push((row.line, format!("campaignid {c}: no such campaign")));
                    continue;
                }
            }
            let mut hits = self.lead_duplicates(&mut tx, lead.emailaddress1.as_deref()).await?;
            hits.sort();
            hits.dedup();
            let contacts: Vec<&EntityRef> = hits.iter().filter(|h| h.kind == EntityKind::Contact).collect();
            let leads = hits.iter().any(|h| h.kind == EntityKind::Lead);
            let mut linked_to = None;
            if !hits.is_empty() {
                if dups == ImportDuplicates::Link && !leads && contacts.len() == 1 {
                    let c: Contact = load(&mut tx, contacts[0].id).await?;
                    lead.parentcontactid = Some(c.contactid);
                    if c.parentcustomeridtype == Some(EntityKind::Account) {
                        lead.parentaccountid = c.parentcustomerid;
                    }
                    linked_to = Some(c.contactid);
                } else {
                    rep.duplicates.push((row.line, hits));
                    continue;
                }
            }
            insert(&mut tx, self, &lead)
                .await
                .map_err(|e| StoreError::AtLine { line: row.line, source: Box::new(e) })?;
            match linked_to {
                Some(c) => rep.linked.push((row.line, lead.leadid, c)),
                None => rep.created.push((row.line, lead.leadid)),
            }
        }
        if rep.errors.is_empty() || skip_bad_rows {
            tx.commit().await?;
            rep.committed = true;
        }
        Ok(rep)
    }
}
