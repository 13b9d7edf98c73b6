//! Campaign response conversion (§3.3), a composite the daemon makes atomic, and R-RS-4.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::{CampaignResponse, Lead};
use super::error::{RuleError, refuse, refuse_conflict};
use super::lead::{OPEN as LEAD_OPEN, QualifyParams};
use super::types::{EntityKind, EntityRef};

/// The §3.3 options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "option", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConvertOption {
    /// a) a new lead from the response's fields.
    NewLead,
    /// b) an existing lead; a closed lead fails unless `reactivate`.
    ExistingLead {
        lead_id: Uuid,
        #[serde(default)]
        reactivate: bool,
    },
    /// c) a new customer: account and/or contact (deduped), optionally an opportunity.
    NewCustomer {
        create_account: bool,
        create_contact: bool,
        #[serde(default)]
        create_opportunity: bool,
    },
    /// d) close (statecode 1/2) or cancel (statecode 2/3) only.
    Close {
        #[serde(default)]
        cancel: bool,
    },
}

/// What conversion does; the store applies it in one transaction.
#[derive(Debug, Clone)]
pub enum ConvertPlan {
    /// a): create this lead, link it as the response's customer, close the response.
    NewLead { lead: Lead, response: CampaignResponse },
    /// b): update the lead (links, maybe reactivated), close the response.
    ExistingLead { lead: Lead, response: CampaignResponse },
    /// c): qualify a transient lead built from the response (dedupe + link-or-create), then
    /// close the response with the resulting customer. The store runs `lead::plan_qualify`
    /// on `proto_lead` with `params` and does not persist the proto lead.
    NewCustomer { proto_lead: Lead, params: QualifyParams, response: CampaignResponse },
    /// d)
    Close { response: CampaignResponse },
}

/// R-RS-4: closed and canceled responses are immutable; conversion only from Open.
pub fn check_open(resp: &CampaignResponse) -> Result<(), RuleError> {
    if resp.statecode != 0 {
        return refuse_conflict("R-RS-4", "response_not_open", "closed and canceled responses are read-only");
    }
    Ok(())
}

fn closed(
    resp: &CampaignResponse,
    customer: Option<EntityRef>,
    now: DateTime<Utc>,
    actor: Option<Uuid>,
) -> CampaignResponse {
    let mut r = resp.clone();
    if let Some(c) = customer {
        r.customerid = Some(c.id);
        r.customeridtype = Some(c.kind);
    }
    r.statecode = 1;
    r.statuscode = 2;
    r.modifiedon = now;
    r.modifiedby = actor;
    r
}

/// The responder's lastname for a new lead (R-LD-1 requires one): the response's lastname,
/// else the e-mail local part, else the phone number.
fn responder_lastname(resp: &CampaignResponse) -> Option<String> {
    resp.lastname
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            resp.emailaddress.as_deref().and_then(|e| e.split('@').next()).map(str::to_string).filter(|s| !s.is_empty())
        })
        .or_else(|| resp.telephone.clone().filter(|s| !s.trim().is_empty()))
        .map(|s| s.chars().take(50).collect())
}

/// A lead carrying the responder's data (§3.3 a; the transient lead of option c).
fn lead_from_response(
    resp: &CampaignResponse,
    campaign: Option<Uuid>,
    facts: &ConvertFacts<'_>,
) -> Result<Lead, RuleError> {
    let Some(lastname) = responder_lastname(resp) else {
        return refuse("R-LD-1", "required_field", "the response has no last name, e-mail or phone to name a lead by");
    };
    Ok(Lead {
        leadid: facts.new_lead_id,
        subject: resp.subject.clone(),
        firstname: resp.firstname.clone(),
        lastname,
        companyname: resp.companyname.clone(),
        emailaddress1: resp.emailaddress.clone(),
        telephone1: resp.telephone.clone(),
        fax: resp.fax.clone(),
        campaignid: campaign,
        leadqualitycode: 2,
        ..Default::default()
    }
    .stamped(resp.ownerid, resp.owneridtype, facts.now, facts.actor))
}

/// Facts conversion needs besides the response.
pub struct ConvertFacts<'a> {
    /// The target lead for option b).
    pub existing_lead: Option<&'a Lead>,
    pub new_lead_id: Uuid,
    pub leadsourcecode: Option<i32>,
    pub now: DateTime<Utc>,
    pub actor: Option<Uuid>,
}

/// §3.3: plans a conversion.
pub fn plan_convert(
    resp: &CampaignResponse,
    option: &ConvertOption,
    facts: &ConvertFacts<'_>,
) -> Result<ConvertPlan, RuleError> {
    check_open(resp)?;
    let campaign = (resp.regardingobjectidtype == EntityKind::Campaign).then_some(resp.regardingobjectid);
    let now = facts.now;
    match option {
        ConvertOption::NewLead => {
            let mut lead = lead_from_response(resp, campaign, facts)?;
            lead.relatedobjectid = Some(resp.activityid);
            lead.leadsourcecode = facts.leadsourcecode;
            let response = closed(resp, Some(EntityRef::new(EntityKind::Lead, lead.leadid)), now, facts.actor);
            Ok(ConvertPlan::NewLead { lead, response })
        }
        ConvertOption::ExistingLead { lead_id, reactivate } => {
            let Some(lead) = facts.existing_lead.filter(|l| l.leadid == *lead_id) else {
                return refuse_conflict("§3.3", "lead_not_found", format!("lead {lead_id} does not exist"));
            };
            let mut lead = lead.clone();
            if lead.statecode != LEAD_OPEN {
                if !reactivate {
                    return refuse_conflict(
                        "§3.3",
                        "lead_closed",
                        "the lead is closed; pass reactivate=true to reopen it",
                    );
                }
                let (s, st) = super::lead::reactivate(&lead)?;
                lead.statecode = s;
                lead.statuscode = st;
            }
            if lead.relatedobjectid.is_none() {
                lead.relatedobjectid = Some(resp.activityid);
            }
            if lead.campaignid.is_none() {
                lead.campaignid = campaign;
            }
            lead.modifiedon = now;
            lead.modifiedby = facts.actor;
            let response = closed(resp, Some(EntityRef::new(EntityKind::Lead, lead.leadid)), now, facts.actor);
            Ok(ConvertPlan::ExistingLead { lead, response })
        }
        ConvertOption::NewCustomer { create_account, create_contact, create_opportunity } => {
            if !create_account && !create_contact {
                return refuse("§3.3", "nothing_to_create", "a new customer needs an account, a contact or both");
            }
            let proto_lead = lead_from_response(resp, campaign, facts)?;
            let params = QualifyParams {
                create_account: *create_account,
                create_contact: *create_contact,
                create_opportunity: *create_opportunity,
                source_campaign_id: campaign,
                ..Default::default()
            };
            Ok(ConvertPlan::NewCustomer { proto_lead, params, response: resp.clone() })
        }
        ConvertOption::Close { cancel } => {
            let mut r = closed(resp, None, now, facts.actor);
            if *cancel {
                r.statecode = 2;
                r.statuscode = 3;
            }
            Ok(ConvertPlan::Close { response: r })
        }
    }
}

/// After option c): the response closes with the account (preferred) or contact as customer.
pub fn close_with_customer(
    resp: &CampaignResponse,
    customer: Option<EntityRef>,
    now: DateTime<Utc>,
    actor: Option<Uuid>,
) -> CampaignResponse {
    closed(resp, customer, now, actor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn resp() -> CampaignResponse {
        CampaignResponse {
            activityid: Uuid::from_u128(7),
            subject: "Re: Autumn offer".into(),
            regardingobjectid: Uuid::from_u128(70),
            regardingobjectidtype: EntityKind::Campaign,
            firstname: Some("Olga".into()),
            lastname: Some("Sidorova".into()),
            emailaddress: Some("olga@example.com".into()),
            responsecode: 1,
            statecode: 0,
            statuscode: 1,
            ownerid: Uuid::from_u128(99),
            ..Default::default()
        }
    }

    fn facts(l: Option<&Lead>) -> ConvertFacts<'_> {
        ConvertFacts {
            existing_lead: l,
            new_lead_id: Uuid::from_u128(8),
            leadsourcecode: Some(100_000_000),
            now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            actor: None,
        }
    }

    #[test]
    fn s3_3_a_new_lead_carries_campaign_and_response() {
        let ConvertPlan::NewLead { lead, response } =
            plan_convert(&resp(), &ConvertOption::NewLead, &facts(None)).unwrap()
        else {
            panic!()
        };
        assert_eq!(lead.campaignid, Some(Uuid::from_u128(70)));
        assert_eq!(lead.relatedobjectid, Some(Uuid::from_u128(7)));
        assert_eq!(lead.lastname, "Sidorova");
        assert_eq!(lead.emailaddress1.as_deref(), Some("olga@example.com"));
        assert_eq!((response.statecode, response.statuscode), (1, 2));
        assert_eq!(response.customerid, Some(lead.leadid));
    }

    #[test]
    fn s3_3_b_closed_lead_needs_reactivate() {
        let mut l = Lead {
            leadid: Uuid::from_u128(3),
            statecode: 2,
            statuscode: 4,
            subject: "x".into(),
            lastname: "y".into(),
            ..Default::default()
        };
        let opt = ConvertOption::ExistingLead { lead_id: l.leadid, reactivate: false };
        assert_eq!(plan_convert(&resp(), &opt, &facts(Some(&l))).unwrap_err().code, "lead_closed");
        let opt = ConvertOption::ExistingLead { lead_id: l.leadid, reactivate: true };
        let ConvertPlan::ExistingLead { lead, .. } = plan_convert(&resp(), &opt, &facts(Some(&l))).unwrap() else {
            panic!()
        };
        assert_eq!((lead.statecode, lead.statuscode), (0, 1));
        assert_eq!(lead.relatedobjectid, Some(Uuid::from_u128(7)));
        // Existing links are kept.
        l.statecode = 0;
        l.statuscode = 1;
        l.campaignid = Some(Uuid::from_u128(1));
        let ConvertPlan::ExistingLead { lead, .. } = plan_convert(&resp(), &opt, &facts(Some(&l))).unwrap() else {
            panic!()
        };
        assert_eq!(lead.campaignid, Some(Uuid::from_u128(1)));
    }

    #[test]
    fn s3_3_d_close_or_cancel() {
        let ConvertPlan::Close { response } =
            plan_convert(&resp(), &ConvertOption::Close { cancel: true }, &facts(None)).unwrap()
        else {
            panic!()
        };
        assert_eq!((response.statecode, response.statuscode), (2, 3));
    }

    #[test]
    fn r_rs_4_only_open_responses_convert() {
        let mut r = resp();
        r.statecode = 1;
        r.statuscode = 2;
        assert_eq!(plan_convert(&r, &ConvertOption::NewLead, &facts(None)).unwrap_err().rule, "R-RS-4");
    }

    #[test]
    fn s3_3_c_builds_a_qualify_of_a_transient_lead() {
        let opt = ConvertOption::NewCustomer { create_account: false, create_contact: true, create_opportunity: false };
        let ConvertPlan::NewCustomer { proto_lead, params, .. } = plan_convert(&resp(), &opt, &facts(None)).unwrap()
        else {
            panic!()
        };
        assert!(params.create_contact && !params.create_account);
        assert_eq!(params.source_campaign_id, Some(Uuid::from_u128(70)));
        assert_eq!(proto_lead.lastname, "Sidorova");
        let none =
            ConvertOption::NewCustomer { create_account: false, create_contact: false, create_opportunity: true };
        assert_eq!(plan_convert(&resp(), &none, &facts(None)).unwrap_err().code, "nothing_to_create");
    }
}
