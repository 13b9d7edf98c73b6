//! Opportunities (DOMAIN §2.5, R-OPP-1): direct creation, stage and probability changes,
//! win, lose, reopen, and the deCard Act (`deal_closed_on`, §6). Pure: the store loads the
//! opportunity and applies the plan, its `opportunityclose` activity and history entries in
//! one transaction.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::{Activity, Opportunity};
use super::error::{RuleError, check_len, refuse, refuse_conflict, require};
use super::types::{EntityKind, EntityRef, Money};

pub const OPEN: i32 = 0;
pub const WON: i32 = 1;
pub const LOST: i32 = 2;

/// §2.5 sales stages.
pub fn stage_name(stage: i32) -> &'static str {
    match stage {
        0 => "Qualify",
        1 => "Develop",
        2 => "Propose",
        3 => "Close",
        _ => "?",
    }
}

/// R-OPP-1: what a new opportunity must carry: a topic, a customer that is an account or a
/// contact, a stage of §2.5 and a probability of 0..100.
pub fn validate(o: &Opportunity) -> Result<(), RuleError> {
    require("name", Some(&o.name), "R-OPP-1")?;
    check_len("name", Some(&o.name), 300)?;
    match (o.customerid, o.customeridtype) {
        (Some(_), Some(EntityKind::Account | EntityKind::Contact)) => {}
        (Some(_), Some(other)) => {
            return refuse("R-OPP-1", "invalid_customer", format!("customeridtype: account or contact, not {other}"));
        }
        _ => {
            return refuse(
                "R-OPP-1",
                "missing_field",
                "customerid and customeridtype (account or contact) are required",
            );
        }
    }
    check_fields(o)
}

fn check_fields(o: &Opportunity) -> Result<(), RuleError> {
    if o.salesstage.is_some_and(|s| !(0..=3).contains(&s)) {
        return refuse("R-OPP-1", "invalid_stage", "salesstage: 0 Qualify, 1 Develop, 2 Propose, 3 Close");
    }
    if o.closeprobability.is_some_and(|p| !(0..=100).contains(&p)) {
        return refuse("R-OPP-1", "invalid_probability", "closeprobability: 0 to 100");
    }
    if ![1, 2, 3].contains(&o.opportunityratingcode) {
        return refuse("R-OPP-1", "invalid_rating", "opportunityratingcode: 1 Hot, 2 Warm, 3 Cold");
    }
    if o.estimatedvalue.is_some_and(|v| v.minor() < 0) {
        return refuse("R-OPP-1", "invalid_value", "estimatedvalue cannot be negative");
    }
    Ok(())
}

/// R-OPP-1: a change by PATCH. Won and lost opportunities are read-only until reopened;
/// the customer and the originating lead are fixed once set. Returns the history lines the
/// change writes (stage and probability changes).
pub fn check_update(before: &Opportunity, after: &Opportunity) -> Result<Vec<String>, RuleError> {
    if before.statecode != OPEN {
        return refuse_conflict(
            "R-OPP-1",
            "opportunity_closed",
            "won and lost opportunities are read-only until reopened",
        );
    }
    if before.originatingleadid != after.originatingleadid {
        return refuse("§2.5", "read_only_field", "originatingleadid is fixed once the opportunity exists");
    }
    if before.deal_closed_on != after.deal_closed_on {
        return refuse_conflict("R-OPP-1", "deal_not_won", "deal_closed_on is set on a won opportunity (close-deal)");
    }
    if after.customerid.is_none() || !matches!(after.customeridtype, Some(EntityKind::Account | EntityKind::Contact)) {
        return refuse("R-OPP-1", "missing_field", "an opportunity keeps a customer (account or contact)");
    }
    require("name", Some(&after.name), "R-OPP-1")?;
    check_fields(after)?;
    let mut lines = Vec::new();
    if before.salesstage != after.salesstage {
        let name = |s: Option<i32>| s.map(|s| format!("{s} {}", stage_name(s))).unwrap_or_else(|| "none".into());
        lines.push(format!("Stage: {} → {}", name(before.salesstage), name(after.salesstage)));
    }
    if before.closeprobability != after.closeprobability {
        let p = |v: Option<i32>| v.map(|v| format!("{v}%")).unwrap_or_else(|| "none".into());
        lines.push(format!("Probability: {} → {}", p(before.closeprobability), p(after.closeprobability)));
    }
    Ok(lines)
}

/// Body of the win action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WinParams {
    /// Default: `estimatedvalue`.
    pub actualvalue: Option<Money>,
    /// Default: today in the org time zone.
    pub actualclosedate: Option<NaiveDate>,
    pub description: Option<String>,
}

/// Body of the lose action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoseParams {
    /// 4 Canceled (default) or 5 Out-Sold.
    pub statuscode: Option<i32>,
    pub reason: Option<String>,
    pub actualclosedate: Option<NaiveDate>,
}

/// A close decision: the opportunity after it, the `opportunityclose` activity to write
/// (None on reopen) and the history line.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosePlan {
    pub opportunity: Opportunity,
    pub close: Option<Activity>,
    pub history: String,
}

fn close_activity(
    o: &Opportunity,
    id: Uuid,
    subject: String,
    description: Option<String>,
    actor: Uuid,
    now: DateTime<Utc>,
) -> Activity {
    let mut a = Activity {
        activityid: id,
        activitytypecode: EntityKind::Opportunityclose,
        subject: Some(subject.chars().take(200).collect()),
        description,
        regardingobjectid: Some(o.opportunityid),
        regardingobjectidtype: Some(EntityKind::Opportunity),
        actualend: Some(now),
        ..Default::default()
    }
    .stamped(actor, EntityKind::Systemuser, now, Some(actor));
    // [MS] the Win/Lose messages create the opportunityclose activity already completed.
    a.statecode = 1;
    a.statuscode = 2;
    a
}

fn money_text(m: Option<Money>) -> String {
    m.map(|m| m.to_string()).unwrap_or_else(|| "no value".into())
}

/// R-OPP-1 Win: state 1 / status 3 Won, `actualvalue` (default `estimatedvalue`),
/// `actualclosedate` (default `today`), a completed "Won: …" opportunityclose.
pub fn plan_win(
    o: &Opportunity,
    p: &WinParams,
    today: NaiveDate,
    close_id: Uuid,
    actor: Uuid,
    now: DateTime<Utc>,
) -> Result<ClosePlan, RuleError> {
    if o.statecode != OPEN {
        return refuse_conflict("R-OPP-1", "opportunity_closed", "only an open opportunity is won; reopen it first");
    }
    check_len("description", p.description.as_deref(), 2000)?;
    let value = p.actualvalue.or(o.estimatedvalue);
    if value.is_some_and(|v| v.minor() < 0) {
        return refuse("R-OPP-1", "invalid_value", "actualvalue cannot be negative");
    }
    let mut out = o.clone();
    out.statecode = WON;
    out.statuscode = 3;
    out.actualvalue = value;
    out.actualclosedate = Some(p.actualclosedate.unwrap_or(today));
    out.closeprobability = Some(100);
    out.modifiedon = now;
    out.modifiedby = Some(actor);
    let close = close_activity(o, close_id, format!("Won: {}", o.name), p.description.clone(), actor, now);
    Ok(ClosePlan { history: format!("Won, {}", money_text(value)), opportunity: out, close: Some(close) })
}

/// R-OPP-1 Lose: state 2 / status 4 Canceled or 5 Out-Sold, with a reason, and a completed
/// "Lost: …" opportunityclose.
pub fn plan_lose(
    o: &Opportunity,
    p: &LoseParams,
    today: NaiveDate,
    close_id: Uuid,
    actor: Uuid,
    now: DateTime<Utc>,
) -> Result<ClosePlan, RuleError> {
    if o.statecode != OPEN {
        return refuse_conflict("R-OPP-1", "opportunity_closed", "only an open opportunity is lost; reopen it first");
    }
    check_len("reason", p.reason.as_deref(), 2000)?;
    let status = p.statuscode.unwrap_or(4);
    if status != 4 && status != 5 {
        return refuse("R-OPP-1", "invalid_status", "statuscode: 4 Canceled or 5 Out-Sold");
    }
    let mut out = o.clone();
    out.statecode = LOST;
    out.statuscode = status;
    out.actualvalue = None;
    out.actualclosedate = Some(p.actualclosedate.unwrap_or(today));
    out.closeprobability = Some(0);
    out.modifiedon = now;
    out.modifiedby = Some(actor);
    let how = if status == 5 { "Out-Sold" } else { "Canceled" };
    let reason = p.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let close = close_activity(
        o,
        close_id,
        format!("Lost: {}", o.name),
        Some(format!("{how}{}", reason.map(|r| format!(": {r}")).unwrap_or_default())),
        actor,
        now,
    );
    Ok(ClosePlan {
        history: format!("Lost ({how}){}", reason.map(|r| format!(": {r}")).unwrap_or_default()),
        opportunity: out,
        close: Some(close),
    })
}

/// R-OPP-1 Reopen: a won or lost opportunity back to Open / In Progress; the close facts
/// and the Act go with it.
pub fn plan_reopen(o: &Opportunity, actor: Uuid, now: DateTime<Utc>) -> Result<ClosePlan, RuleError> {
    if o.statecode == OPEN {
        return refuse_conflict("R-OPP-1", "opportunity_open", "the opportunity is open already");
    }
    let mut out = o.clone();
    out.statecode = OPEN;
    out.statuscode = 1;
    out.actualvalue = None;
    out.actualclosedate = None;
    out.deal_closed_on = None;
    out.modifiedon = now;
    out.modifiedby = Some(actor);
    Ok(ClosePlan { opportunity: out, close: None, history: "Reopened".into() })
}

/// §6 / R-OPP-1: the Act (`deal_closed_on`) is set on a won opportunity; the deal is then
/// complete. `None` clears it.
pub fn plan_close_deal(
    o: &Opportunity,
    on: Option<NaiveDate>,
    actor: Uuid,
    now: DateTime<Utc>,
) -> Result<ClosePlan, RuleError> {
    if o.statecode != WON {
        return refuse_conflict("R-OPP-1", "deal_not_won", "the Act is signed on a won opportunity");
    }
    let mut out = o.clone();
    out.deal_closed_on = on;
    out.modifiedon = now;
    out.modifiedby = Some(actor);
    let history = match on {
        Some(d) => format!("Act signed {d}: the deal is complete"),
        None => "Act withdrawn".into(),
    };
    Ok(ClosePlan { opportunity: out, close: None, history })
}

/// The customer of an opportunity as a reference.
pub fn customer(o: &Opportunity) -> Option<EntityRef> {
    o.customerid.zip(o.customeridtype).map(|(id, k)| EntityRef::new(k, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
    }
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()
    }
    const ME: Uuid = Uuid::from_u128(5);

    fn opp() -> Opportunity {
        Opportunity {
            opportunityid: Uuid::from_u128(1),
            name: "Поставка 40 ноутбуков".into(),
            customerid: Some(Uuid::from_u128(2)),
            customeridtype: Some(EntityKind::Account),
            estimatedvalue: Some(Money(1_200_000_00)),
            salesstage: Some(0),
            opportunityratingcode: 2,
            ..Default::default()
        }
        .stamped(ME, EntityKind::Systemuser, now(), Some(ME))
    }

    #[test]
    fn r_opp_1_create_needs_name_and_account_or_contact() {
        assert!(validate(&opp()).is_ok());
        assert_eq!(validate(&Opportunity { customerid: None, ..opp() }).unwrap_err().code, "missing_field");
        assert_eq!(
            validate(&Opportunity { customeridtype: Some(EntityKind::Lead), ..opp() }).unwrap_err().code,
            "invalid_customer"
        );
        assert_eq!(validate(&Opportunity { name: " ".into(), ..opp() }).unwrap_err().code, "required_field");
        assert_eq!(validate(&Opportunity { salesstage: Some(4), ..opp() }).unwrap_err().code, "invalid_stage");
        assert_eq!(
            validate(&Opportunity { closeprobability: Some(101), ..opp() }).unwrap_err().code,
            "invalid_probability"
        );
    }

    #[test]
    fn r_opp_1_stage_changes_are_kept() {
        let o = opp();
        let after = Opportunity { salesstage: Some(2), closeprobability: Some(60), ..o.clone() };
        assert_eq!(
            check_update(&o, &after).unwrap(),
            vec!["Stage: 0 Qualify → 2 Propose".to_string(), "Probability: none → 60%".to_string()]
        );
        assert!(check_update(&o, &Opportunity { description: Some("x".into()), ..o.clone() }).unwrap().is_empty());
        assert_eq!(
            check_update(&o, &Opportunity { originatingleadid: Some(Uuid::from_u128(3)), ..o.clone() })
                .unwrap_err()
                .code,
            "read_only_field"
        );
    }

    #[test]
    fn r_opp_1_win_defaults_value_and_date_and_writes_the_close() {
        let plan = plan_win(&opp(), &WinParams::default(), today(), Uuid::from_u128(9), ME, now()).unwrap();
        let o = &plan.opportunity;
        assert_eq!((o.statecode, o.statuscode), (1, 3));
        assert_eq!(o.actualvalue, Some(Money(1_200_000_00)));
        assert_eq!(o.actualclosedate, Some(today()));
        let c = plan.close.unwrap();
        assert_eq!(c.activitytypecode, EntityKind::Opportunityclose);
        assert_eq!((c.statecode, c.statuscode), (1, 2));
        assert_eq!(c.subject.as_deref(), Some("Won: Поставка 40 ноутбуков"));
        assert_eq!(c.regardingobjectid, Some(o.opportunityid));
        // Won is read-only until reopened.
        assert_eq!(check_update(o, o).unwrap_err().code, "opportunity_closed");
        assert_eq!(
            plan_lose(o, &LoseParams::default(), today(), Uuid::nil(), ME, now()).unwrap_err().code,
            "opportunity_closed"
        );
    }

    #[test]
    fn r_opp_1_lose_with_reason_then_reopen() {
        let p =
            LoseParams { statuscode: Some(5), reason: Some("competitor was cheaper".into()), actualclosedate: None };
        let plan = plan_lose(&opp(), &p, today(), Uuid::from_u128(9), ME, now()).unwrap();
        assert_eq!((plan.opportunity.statecode, plan.opportunity.statuscode), (2, 5));
        assert_eq!(plan.close.as_ref().unwrap().description.as_deref(), Some("Out-Sold: competitor was cheaper"));
        assert_eq!(plan.history, "Lost (Out-Sold): competitor was cheaper");
        assert_eq!(
            plan_lose(&opp(), &LoseParams { statuscode: Some(3), ..p.clone() }, today(), Uuid::nil(), ME, now())
                .unwrap_err()
                .code,
            "invalid_status"
        );
        let back = plan_reopen(&plan.opportunity, ME, now()).unwrap().opportunity;
        assert_eq!((back.statecode, back.statuscode, back.actualclosedate), (0, 1, None));
        assert_eq!(plan_reopen(&back, ME, now()).unwrap_err().code, "opportunity_open");
    }

    #[test]
    fn r_opp_1_the_act_is_for_won_deals() {
        assert_eq!(plan_close_deal(&opp(), Some(today()), ME, now()).unwrap_err().code, "deal_not_won");
        let won = plan_win(&opp(), &WinParams::default(), today(), Uuid::nil(), ME, now()).unwrap().opportunity;
        let done = plan_close_deal(&won, Some(today()), ME, now()).unwrap();
        assert_eq!(done.opportunity.deal_closed_on, Some(today()));
        assert_eq!(done.history, "Act signed 2026-12-07: the deal is complete");
        let reopened = plan_reopen(&done.opportunity, ME, now()).unwrap().opportunity;
        assert_eq!(reopened.deal_closed_on, None);
    }
}
