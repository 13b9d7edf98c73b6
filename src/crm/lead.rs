//! Lead rules: required fields (R-LD-1), editability (R-LD-2), picklists (R-LD-4), and the
//! state transitions of §2.4/§3.1/§3.2: QualifyLead, Disqualify, Reactivate.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::entities::{Account, Contact, Lead, Opportunity};
use super::error::{RuleError, check_len, refuse, refuse_conflict, require};
use super::matching::MatchOutcome;
use super::normalize::account_name_key;
use super::types::{EntityKind, EntityRef};

pub const OPEN: i32 = 0;
pub const QUALIFIED: i32 = 1;
pub const DISQUALIFIED: i32 = 2;

/// R-LD-1, R-LD-4 and the String(n) limits of §2.4, checked on every create and update.
/// `custom_sources` are the configured `leadsourcecode` values ≥ 100000000.
pub fn validate(lead: &Lead, custom_sources: &[i32]) -> Result<(), RuleError> {
    require("subject", Some(&lead.subject), "R-LD-1")?;
    require("lastname", Some(&lead.lastname), "R-LD-1")?;
    check_len("subject", Some(&lead.subject), 300)?;
    check_len("lastname", Some(&lead.lastname), 50)?;
    check_len("firstname", lead.firstname.as_deref(), 50)?;
    check_len("companyname", lead.companyname.as_deref(), 100)?;
    check_len("jobtitle", lead.jobtitle.as_deref(), 100)?;
    for e in [&lead.emailaddress1, &lead.emailaddress2, &lead.emailaddress3] {
        check_len("emailaddress", e.as_deref(), 100)?;
    }
    check_len("mobilephone", lead.mobilephone.as_deref(), 20)?;
    check_len("fax", lead.fax.as_deref(), 50)?;
    check_len("qualificationcomments", lead.qualificationcomments.as_deref(), 2000)?;
    check_len("description", lead.description.as_deref(), 2000)?;
    if !(1..=3).contains(&lead.leadqualitycode) {
        return refuse(
            "R-LD-4",
            "invalid_rating",
            format!("leadqualitycode {} is not 1 Hot, 2 Warm or 3 Cold", lead.leadqualitycode),
        );
    }
    if let Some(src) = lead.leadsourcecode {
        let ok = (1..=10).contains(&src) || (src >= 100_000_000 && custom_sources.contains(&src));
        if !ok {
            return refuse(
                "R-LD-4",
                "invalid_source",
                format!("leadsourcecode {src} is neither 1..10 nor a configured custom value"),
            );
        }
    }
    if let Some(code) = lead.industrycode {
        if !(1..=33).contains(&code) {
            return refuse("§2.4", "invalid_industry", format!("industrycode {code} is not 1..33"));
        }
    }
    if let Some(r) = lead.revenue {
        if r.minor() < 0 || r.minor() > 100_000_000_000_000 * 100 {
            return refuse("§2.4", "invalid_revenue", "revenue must be within 0..1e14");
        }
    }
    if let Some(p) = lead.purchasetimeframe {
        if !(0..=4).contains(&p) {
            return refuse("§2.4", "invalid_purchasetimeframe", format!("purchasetimeframe {p} is not 0..4"));
        }
    }
    super::state::resolve(EntityKind::Lead, lead.statecode, Some(lead.statuscode))?;
    Ok(())
}

/// R-LD-2: only Open leads are editable; state changes go through §3.1/§3.2 only.
pub fn check_update(before: &Lead, after: &Lead) -> Result<(), RuleError> {
    if before.statecode != OPEN {
        return refuse_conflict("R-LD-2", "lead_closed", "a closed lead is read-only; reactivate it first");
    }
    if after.statecode != before.statecode {
        return refuse_conflict(
            "R-LD-2",
            "state_change_not_allowed",
            "lead state changes only through qualify, disqualify or reactivate",
        );
    }
    // Within Open, status moves freely between 1 New and 2 Contacted.
    super::state::resolve(EntityKind::Lead, OPEN, Some(after.statuscode)).map(|_| ())
}

/// The new (statecode, statuscode) after Disqualify (§3.2).
pub fn disqualify(lead: &Lead, has_opportunity: bool, status: Option<i32>) -> Result<(i32, i32), RuleError> {
    if lead.statecode != OPEN {
        return refuse_conflict("§3.2", "lead_not_open", "only an Open lead can be disqualified");
    }
    if has_opportunity || lead.qualifyingopportunityid.is_some() {
        return refuse_conflict(
            "§3.2",
            "lead_has_opportunity",
            "a lead with an associated opportunity cannot be disqualified",
        );
    }
    super::state::resolve(EntityKind::Lead, DISQUALIFIED, status)
}

/// The new (statecode, statuscode) after Reactivate (§3.2): Qualified or Disqualified → Open/New.
/// [DESIGN] Qualify's account, contact and opportunity stay linked.
pub fn reactivate(lead: &Lead) -> Result<(i32, i32), RuleError> {
    if lead.statecode == OPEN {
        return refuse_conflict("§3.2", "lead_already_open", "the lead is already Open");
    }
    Ok((OPEN, 1))
}

/// QualifyLead parameters (§3.1).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualifyParams {
    pub create_account: bool,
    pub create_contact: bool,
    pub create_opportunity: bool,
    pub opportunity_currency_id: Option<String>,
    /// An existing account or contact to attach the opportunity to.
    pub opportunity_customer: Option<EntityRef>,
    pub source_campaign_id: Option<Uuid>,
    /// Must belong to Qualified: 3.
    pub status: Option<i32>,
}

/// What qualify does with the account or contact slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot<T> {
    Untouched,
    Link(Uuid),
    Create(T),
}

impl<T> Slot<T> {
    fn id(&self, created: impl Fn(&T) -> Uuid) -> Option<Uuid> {
        match self {
            Slot::Untouched => None,
            Slot::Link(id) => Some(*id),
            Slot::Create(t) => Some(created(t)),
        }
    }
}

/// The decision QualifyLead makes; the store applies it in one transaction.
#[derive(Debug, Clone)]
pub struct QualifyPlan {
    pub account: Slot<Account>,
    pub contact: Slot<Contact>,
    pub opportunity: Option<Opportunity>,
    /// The lead as it is after qualify.
    pub lead: Lead,
}

impl QualifyPlan {
    /// §3.3 c: a response converted straight into a new customer qualifies a lead that is
    /// never stored, so what it creates points at no originating lead (a lookup to a record
    /// that does not exist would be a dangling reference).
    pub fn without_originating_lead(mut self) -> QualifyPlan {
        if let Slot::Create(a) = &mut self.account {
            a.originatingleadid = None;
        }
        if let Slot::Create(c) = &mut self.contact {
            c.originatingleadid = None;
        }
        if let Some(o) = &mut self.opportunity {
            o.originatingleadid = None;
        }
        self
    }

    pub fn created(&self) -> Vec<EntityRef> {
        let mut v = Vec::new();
        if let Slot::Create(a) = &self.account {
            v.push(EntityRef::new(EntityKind::Account, a.accountid));
        }
        if let Slot::Create(c) = &self.contact {
            v.push(EntityRef::new(EntityKind::Contact, c.contactid));
        }
        if let Some(o) = &self.opportunity {
            v.push(EntityRef::new(EntityKind::Opportunity, o.opportunityid));
        }
        v
    }
}

/// The facts QualifyLead needs besides the lead: dedupe outcomes (§4.8) for the account and
/// the contact it would create, fresh ids, who acts and when.
#[derive(Debug, Clone)]
pub struct QualifyFacts {
    pub account_match: MatchOutcome,
    pub contact_match: MatchOutcome,
    pub new_ids: [Uuid; 3],
    pub actor: Option<Uuid>,
    pub now: DateTime<Utc>,
    pub default_currency: String,
}

/// QualifyLead (§3.1): links existing account/contact instead of creating duplicates,
/// creates what is asked for, and moves the lead to Qualified.
pub fn plan_qualify(lead: &Lead, params: &QualifyParams, facts: &QualifyFacts) -> Result<QualifyPlan, RuleError> {
    if lead.statecode != OPEN {
        return refuse_conflict(
            "§3.1",
            "lead_not_open",
            "only an Open lead can be qualified; reactivate a closed lead first",
        );
    }
    let (_, status) = super::state::resolve(EntityKind::Lead, QUALIFIED, params.status)?;
    let now = facts.now;

    // 2. Account: an explicit link on the lead wins; then a unique dedupe hit; else create.
    let account = if !params.create_account {
        match lead.parentaccountid {
            Some(id) => Slot::Link(id),
            None => Slot::Untouched,
        }
    } else if let Some(id) = lead.parentaccountid {
        Slot::Link(id)
    } else {
        match &facts.account_match {
            MatchOutcome::Unique(r) => Slot::Link(r.id),
            MatchOutcome::Ambiguous(c) => {
                return Err(RuleError::conflict(
                    "R-DUP-3",
                    "ambiguous_duplicate",
                    "several existing accounts match this lead; link one with parentaccountid",
                )
                .with_candidates(c.clone()));
            }
            MatchOutcome::None => {
                let Some(name) = lead.companyname.as_deref().filter(|n| account_name_key(n).is_some()) else {
                    return refuse("§3.1", "companyname_required", "companyname is required to create an account");
                };
                Slot::Create(
                    Account {
                        accountid: facts.new_ids[0],
                        name: name.trim().to_string(),
                        emailaddress1: lead.emailaddress1.clone(),
                        telephone1: lead.telephone1.clone(),
                        fax: lead.fax.clone(),
                        address1_line1: lead.address1_line1.clone(),
                        address1_city: lead.address1_city.clone(),
                        address1_postalcode: lead.address1_postalcode.clone(),
                        address1_country: lead.address1_country.clone(),
                        industrycode: lead.industrycode,
                        revenue: lead.revenue,
                        numberofemployees: lead.numberofemployees,
                        originatingleadid: Some(lead.leadid),
                        ..Default::default()
                    }
                    .stamped(lead.ownerid, lead.owneridtype, now, facts.actor),
                )
            }
        }
    };
    let account_id = account.id(|a| a.accountid);

    // 3. Contact: same order; linked to the account when there is one.
    let contact = if !params.create_contact {
        match lead.parentcontactid {
            Some(id) => Slot::Link(id),
            None => Slot::Untouched,
        }
    } else if let Some(id) = lead.parentcontactid {
        Slot::Link(id)
    } else {
        match &facts.contact_match {
            MatchOutcome::Unique(r) => Slot::Link(r.id),
            MatchOutcome::Ambiguous(c) => {
                return Err(RuleError::conflict(
                    "R-DUP-3",
                    "ambiguous_duplicate",
                    "several existing contacts match this lead; link one with parentcontactid",
                )
                .with_candidates(c.clone()));
            }
            MatchOutcome::None => Slot::Create(
                Contact {
                    contactid: facts.new_ids[1],
                    firstname: lead.firstname.clone(),
                    lastname: lead.lastname.clone(),
                    jobtitle: lead.jobtitle.clone(),
                    emailaddress1: lead.emailaddress1.clone(),
                    telephone1: lead.telephone1.clone(),
                    mobilephone: lead.mobilephone.clone(),
                    address1_line1: lead.address1_line1.clone(),
                    address1_city: lead.address1_city.clone(),
                    address1_postalcode: lead.address1_postalcode.clone(),
                    address1_country: lead.address1_country.clone(),
                    parentcustomerid: account_id,
                    parentcustomeridtype: account_id.map(|_| EntityKind::Account),
                    originatingleadid: Some(lead.leadid),
                    ..Default::default()
                }
                .stamped(lead.ownerid, lead.owneridtype, now, facts.actor),
            ),
        }
    };
    let contact_id = contact.id(|c| c.contactid);
    // [DESIGN] A newly created account gets the contact as its primary contact.
    let account = match (account, contact_id) {
        (Slot::Create(mut a), Some(cid)) => {
            a.primarycontactid = Some(cid);
            Slot::Create(a)
        }
        (a, _) => a,
    };

    // 4. Opportunity: customer = explicit, else account, else contact; none → fail.
    let opportunity = if params.create_opportunity {
        let customer = params
            .opportunity_customer
            .or(account_id.map(|id| EntityRef::new(EntityKind::Account, id)))
            .or(contact_id.map(|id| EntityRef::new(EntityKind::Contact, id)));
        let Some(customer) = customer else {
            return refuse(
                "§3.1",
                "opportunity_customer_required",
                "an opportunity needs a customer: create or link an account or contact, or pass opportunity_customer",
            );
        };
        if !matches!(customer.kind, EntityKind::Account | EntityKind::Contact) {
            return refuse("§3.1", "invalid_customer", "the opportunity customer must be an account or a contact");
        }
        Some(
            Opportunity {
                opportunityid: facts.new_ids[2],
                name: lead.subject.clone(),
                customerid: Some(customer.id),
                customeridtype: Some(customer.kind),
                parentaccountid: account_id,
                parentcontactid: contact_id,
                originatingleadid: Some(lead.leadid),
                campaignid: params.source_campaign_id.or(lead.campaignid),
                estimatedvalue: lead.estimatedamount,
                estimatedclosedate: lead.estimatedclosedate,
                purchasetimeframe: lead.purchasetimeframe,
                budgetamount: lead.budgetamount,
                opportunityratingcode: lead.leadqualitycode,
                transactioncurrencyid: Some(
                    params.opportunity_currency_id.clone().unwrap_or_else(|| facts.default_currency.clone()),
                ),
                ..Default::default()
            }
            .stamped(lead.ownerid, lead.owneridtype, now, facts.actor),
        )
    } else {
        None
    };

    // 5. The lead: links set, state Qualified.
    let mut after = lead.clone();
    after.parentaccountid = account_id.or(lead.parentaccountid);
    after.parentcontactid = contact_id.or(lead.parentcontactid);
    if let Some(o) = &opportunity {
        after.qualifyingopportunityid = Some(o.opportunityid);
    }
    if after.customerid.is_none() {
        if let Some(id) = account_id {
            after.customerid = Some(id);
            after.customeridtype = Some(EntityKind::Account);
        } else if let Some(id) = contact_id {
            after.customerid = Some(id);
            after.customeridtype = Some(EntityKind::Contact);
        }
    }
    after.statecode = QUALIFIED;
    after.statuscode = status;
    after.modifiedon = now;
    after.modifiedby = facts.actor;
    Ok(QualifyPlan { account, contact, opportunity, lead: after })
}

/// One row of a lead import (`inflow import leads`): its 1-based line in the file and the
/// lead it makes.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub lead: Lead,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn lead() -> Lead {
        Lead {
            leadid: Uuid::from_u128(1),
            subject: "Need 40 licences".into(),
            lastname: "Petrov".into(),
            firstname: Some("Ivan".into()),
            companyname: Some("ООО Ромашка".into()),
            emailaddress1: Some("ivan@romashka.ru".into()),
            leadqualitycode: 2,
            statecode: 0,
            statuscode: 1,
            ownerid: Uuid::from_u128(99),
            estimatedamount: Some(crate::crm::Money(5_000_000)),
            ..Default::default()
        }
    }

    fn facts(a: MatchOutcome, c: MatchOutcome) -> QualifyFacts {
        QualifyFacts {
            account_match: a,
            contact_match: c,
            new_ids: [Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12)],
            actor: None,
            now: Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap(),
            default_currency: "RUB".into(),
        }
    }

    fn all() -> QualifyParams {
        QualifyParams { create_account: true, create_contact: true, create_opportunity: true, ..Default::default() }
    }

    #[test]
    fn r_ld_1_subject_and_lastname_required() {
        let mut l = lead();
        l.lastname = " ".into();
        assert_eq!(validate(&l, &[]).unwrap_err().rule, "R-LD-1");
        let mut l = lead();
        l.subject.clear();
        assert_eq!(validate(&l, &[]).unwrap_err().rule, "R-LD-1");
        assert!(validate(&lead(), &[]).is_ok());
    }

    #[test]
    fn r_ld_4_rating_and_source_values() {
        let mut l = lead();
        l.leadqualitycode = 4;
        assert_eq!(validate(&l, &[]).unwrap_err().code, "invalid_rating");
        let mut l = lead();
        l.leadsourcecode = Some(100_000_000);
        assert_eq!(validate(&l, &[]).unwrap_err().rule, "R-LD-4");
        assert!(validate(&l, &[100_000_000]).is_ok());
        l.leadsourcecode = Some(11);
        assert!(validate(&l, &[100_000_000]).is_err());
    }

    #[test]
    fn r_ld_2_closed_lead_is_read_only() {
        let mut closed = lead();
        closed.statecode = DISQUALIFIED;
        closed.statuscode = 4;
        assert_eq!(check_update(&closed, &closed).unwrap_err().rule, "R-LD-2");
        let open = lead();
        let mut contacted = open.clone();
        contacted.statuscode = 2;
        assert!(check_update(&open, &contacted).is_ok());
        let mut sneaky = open.clone();
        sneaky.statecode = QUALIFIED;
        sneaky.statuscode = 3;
        assert_eq!(check_update(&open, &sneaky).unwrap_err().code, "state_change_not_allowed");
    }

    #[test]
    fn s3_1_qualify_creates_account_contact_opportunity() {
        let plan = plan_qualify(&lead(), &all(), &facts(MatchOutcome::None, MatchOutcome::None)).unwrap();
        let Slot::Create(a) = &plan.account else { panic!("account") };
        let Slot::Create(c) = &plan.contact else { panic!("contact") };
        let o = plan.opportunity.as_ref().unwrap();
        assert_eq!(a.name, "ООО Ромашка");
        assert_eq!(a.originatingleadid, Some(Uuid::from_u128(1)));
        assert_eq!(a.primarycontactid, Some(c.contactid));
        assert_eq!(c.parentcustomerid, Some(a.accountid));
        assert_eq!(o.customerid, Some(a.accountid));
        assert_eq!(o.estimatedvalue, Some(crate::crm::Money(5_000_000)));
        assert_eq!(o.name, "Need 40 licences");
        assert_eq!((plan.lead.statecode, plan.lead.statuscode), (1, 3));
        assert_eq!(plan.lead.qualifyingopportunityid, Some(o.opportunityid));
        assert_eq!(plan.created().len(), 3);
    }

    #[test]
    fn s3_1_qualify_links_existing_records_instead_of_duplicating() {
        let acc = EntityRef::new(EntityKind::Account, Uuid::from_u128(500));
        let con = EntityRef::new(EntityKind::Contact, Uuid::from_u128(501));
        let plan = plan_qualify(&lead(), &all(), &facts(MatchOutcome::Unique(acc), MatchOutcome::Unique(con))).unwrap();
        assert_eq!(plan.account, Slot::Link(acc.id));
        assert_eq!(plan.contact, Slot::Link(con.id));
        assert_eq!(plan.created().len(), 1, "only the opportunity is new");
        assert_eq!(plan.lead.parentaccountid, Some(acc.id));
    }

    #[test]
    fn r_dup_3_ambiguous_match_refuses_with_candidates() {
        let c = vec![
            EntityRef::new(EntityKind::Account, Uuid::from_u128(1)),
            EntityRef::new(EntityKind::Account, Uuid::from_u128(2)),
        ];
        let err =
            plan_qualify(&lead(), &all(), &facts(MatchOutcome::Ambiguous(c.clone()), MatchOutcome::None)).unwrap_err();
        assert_eq!((err.rule, err.code), ("R-DUP-3", "ambiguous_duplicate"));
        assert_eq!(err.candidates, c);
        // An explicit link on the lead resolves the ambiguity.
        let mut l = lead();
        l.parentaccountid = Some(Uuid::from_u128(2));
        let plan = plan_qualify(&l, &all(), &facts(MatchOutcome::Ambiguous(c), MatchOutcome::None)).unwrap();
        assert_eq!(plan.account, Slot::Link(Uuid::from_u128(2)));
    }

    #[test]
    fn s3_1_account_needs_companyname_and_opportunity_needs_customer() {
        let mut l = lead();
        l.companyname = None;
        let err = plan_qualify(&l, &all(), &facts(MatchOutcome::None, MatchOutcome::None)).unwrap_err();
        assert_eq!(err.code, "companyname_required");
        let only_opp = QualifyParams { create_opportunity: true, ..Default::default() };
        let err = plan_qualify(&lead(), &only_opp, &facts(MatchOutcome::None, MatchOutcome::None)).unwrap_err();
        assert_eq!(err.code, "opportunity_customer_required");
    }

    #[test]
    fn s3_1_only_open_leads_qualify_and_status_must_be_qualified() {
        let mut l = lead();
        l.statecode = DISQUALIFIED;
        l.statuscode = 4;
        assert_eq!(
            plan_qualify(&l, &all(), &facts(MatchOutcome::None, MatchOutcome::None)).unwrap_err().code,
            "lead_not_open"
        );
        let p = QualifyParams { status: Some(4), ..all() };
        assert_eq!(
            plan_qualify(&lead(), &p, &facts(MatchOutcome::None, MatchOutcome::None)).unwrap_err().code,
            "invalid_status"
        );
    }

    #[test]
    fn s3_2_disqualify_rules() {
        assert_eq!(disqualify(&lead(), false, Some(6)).unwrap(), (2, 6));
        assert_eq!(disqualify(&lead(), false, None).unwrap(), (2, 4));
        assert_eq!(disqualify(&lead(), true, Some(5)).unwrap_err().code, "lead_has_opportunity");
        assert_eq!(disqualify(&lead(), false, Some(3)).unwrap_err().code, "invalid_status");
        let mut q = lead();
        q.statecode = QUALIFIED;
        q.statuscode = 3;
        assert_eq!(disqualify(&q, false, None).unwrap_err().code, "lead_not_open");
    }

    #[test]
    fn s3_2_reactivate_rules() {
        let mut q = lead();
        q.statecode = QUALIFIED;
        q.statuscode = 3;
        assert_eq!(reactivate(&q).unwrap(), (0, 1));
        assert_eq!(reactivate(&lead()).unwrap_err().code, "lead_already_open");
    }
}
