//! Campaign rules: status transitions ([DESIGN] §2.7), cost roll-up (R-WV-6), response
//! rate (R-WV-7) and the wave preconditions (R-WV-1).

use super::entities::{Campaign, CampaignActivity, MarketingList};
use super::error::{RuleError, refuse, refuse_conflict};
use super::types::Money;

/// `channeltypecode` of an e-mail campaign activity: the ones sent as waves (R-WV-1).
pub const CHANNEL_EMAIL: i32 = 7;

pub const PROPOSED: i32 = 0;
pub const READY_TO_LAUNCH: i32 = 1;
pub const LAUNCHED: i32 = 2;
pub const COMPLETED: i32 = 3;
pub const CANCELED: i32 = 4;
pub const SUSPENDED: i32 = 5;

/// [DESIGN] §2.7: Proposed → Ready To Launch → Launched → Completed; any of those → Canceled;
/// Launched ↔ Suspended. All are statuses of the Active state.
pub fn check_status_change(from: i32, to: i32) -> Result<(), RuleError> {
    let ok = matches!(
        (from, to),
        (PROPOSED, READY_TO_LAUNCH)
            | (READY_TO_LAUNCH, LAUNCHED)
            | (LAUNCHED, COMPLETED)
            | (PROPOSED | READY_TO_LAUNCH | LAUNCHED | SUSPENDED, CANCELED)
            | (LAUNCHED, SUSPENDED)
            | (SUSPENDED, LAUNCHED)
    ) || from == to;
    if ok {
        Ok(())
    } else {
        refuse_conflict("§2.7", "invalid_campaign_transition", format!("campaign status {from} cannot change to {to}"))
    }
}

/// R-WV-6: (totalcampaignactivityactualcost, totalactualcost) from the activities' actual
/// costs and the campaign's othercost.
pub fn rollup(
    activity_costs: impl IntoIterator<Item = Option<Money>>,
    othercost: Option<Money>,
) -> Result<(Money, Money), RuleError> {
    let overflow = || RuleError::new("R-WV-6", "cost_overflow", "campaign cost total is out of range");
    let mut total = Money::ZERO;
    for c in activity_costs.into_iter().flatten() {
        total = total.checked_add(c).ok_or_else(overflow)?;
    }
    let actual = total.checked_add(othercost.unwrap_or_default()).ok_or_else(overflow)?;
    Ok((total, actual))
}

/// R-WV-6: budget variance = budgetedcost − totalactualcost; negative means over budget.
pub fn variance(c: &Campaign) -> Option<Money> {
    c.budgetedcost.and_then(|b| b.checked_sub(c.totalactualcost.unwrap_or_default()))
}

/// [DESIGN] R-WV-6: the campaign is flagged when actual cost exceeds the budget.
pub fn over_budget(c: &Campaign) -> bool {
    variance(c).is_some_and(|v| v.minor() < 0)
}

/// R-WV-6b: the change took the campaign over its budget (it was not over before).
pub fn crossed_over_budget(before: &Campaign, after: &Campaign) -> bool {
    !over_budget(before) && over_budget(after)
}

/// R-WV-7: responses ÷ successfully sent, as a percentage, if anything was sent.
pub fn response_rate(responses: i64, sent: i64) -> Option<f64> {
    (sent > 0).then(|| responses as f64 * 100.0 / sent as f64)
}

/// R-WV-1: a wave (e-mail campaign activity) may be distributed.
pub fn check_wave_preconditions(
    campaign: &Campaign,
    wave: &CampaignActivity,
    targets: &[MarketingList],
    campaign_list_ids: &[uuid::Uuid],
) -> Result<(), RuleError> {
    if campaign.statecode != 0 || !matches!(campaign.statuscode, READY_TO_LAUNCH | LAUNCHED) {
        return refuse_conflict(
            "R-WV-1",
            "campaign_not_launched",
            "the campaign must be Active and Ready To Launch or Launched",
        );
    }
    if wave.statecode != 0 {
        return refuse_conflict("R-WV-1", "wave_not_open", "the campaign activity is not Open");
    }
    if !matches!(wave.channeltypecode, Some(7 | 8)) {
        return refuse(
            "R-WV-1",
            "wave_not_email",
            "only e-mail campaign activities (channel 7 or 8) are sent as waves",
        );
    }
    if targets.is_empty() {
        return refuse("R-WV-1", "wave_without_lists", "the campaign activity has no target list");
    }
    for l in targets {
        if l.statecode != 0 {
            return refuse_conflict("R-WV-1", "list_inactive", format!("list '{}' is inactive", l.listname));
        }
        if !campaign_list_ids.contains(&l.listid) {
            return refuse(
                "R-WV-1",
                "list_not_in_campaign",
                format!("list '{}' is not linked to the campaign", l.listname),
            );
        }
    }
    Ok(())
}

/// §2.7 campaignitem: lists are linked to a campaign that is still Active and neither
/// Completed nor Canceled; only Active lists are linked.
pub fn check_link_lists(campaign: &Campaign, lists: &[MarketingList]) -> Result<(), RuleError> {
    if campaign.statecode != 0 || matches!(campaign.statuscode, COMPLETED | CANCELED) {
        return refuse_conflict(
            "§2.7",
            "campaign_closed",
            "lists are linked to an active campaign that is not completed or canceled",
        );
    }
    if let Some(l) = lists.iter().find(|l| l.statecode != 0) {
        return refuse_conflict("§2.7", "list_inactive", format!("list '{}' is inactive", l.listname));
    }
    Ok(())
}

/// §2.8: a list a campaign activity targets stays linked to its campaign (the wave's lists
/// are a subset of the campaign's), so it is unlinked from the wave first. `used_by` are the
/// campaign activities that target it.
pub fn check_unlink_list(list: &MarketingList, used_by: &[uuid::Uuid]) -> Result<(), RuleError> {
    match used_by.first() {
        Some(w) => refuse_conflict(
            "§2.8",
            "list_in_use",
            format!("list '{}' is a target of campaign activity {w}; remove it there first", list.listname),
        ),
        None => Ok(()),
    }
}

/// §2.8 / R-WV-2: a campaign activity's target lists change while it is Open and its wave
/// (if any) has not started: the member set is frozen at the start. Every new target must
/// be one of the campaign's lists.
pub fn check_target_lists(
    activity: &CampaignActivity,
    wave_started: bool,
    new_targets: &[MarketingList],
    campaign_list_ids: &[uuid::Uuid],
) -> Result<(), RuleError> {
    if activity.statecode != 0 {
        return refuse_conflict("§2.8", "activity_closed", "closed and canceled campaign activities are read-only");
    }
    if wave_started {
        return refuse_conflict("R-WV-2", "wave_already_started", "the wave has started: its member set is frozen");
    }
    if let Some(l) = new_targets.iter().find(|l| !campaign_list_ids.contains(&l.listid)) {
        return refuse(
            "§2.8",
            "list_not_in_campaign",
            format!("list '{}' is not linked to the campaign; link it to the campaign first", l.listname),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_campaign_status_transitions() {
        assert!(check_status_change(PROPOSED, READY_TO_LAUNCH).is_ok());
        assert!(check_status_change(LAUNCHED, SUSPENDED).is_ok());
        assert!(check_status_change(SUSPENDED, LAUNCHED).is_ok());
        assert!(check_status_change(READY_TO_LAUNCH, CANCELED).is_ok());
        assert!(check_status_change(PROPOSED, LAUNCHED).is_err());
        assert!(check_status_change(COMPLETED, LAUNCHED).is_err());
        assert!(check_status_change(CANCELED, PROPOSED).is_err());
    }

    #[test]
    fn r_wv_6_rollup_and_variance() {
        let (acts, total) = rollup([Some(Money(10_000)), None, Some(Money(2_550))], Some(Money(1_000))).unwrap();
        assert_eq!((acts, total), (Money(12_550), Money(13_550)));
        let c = Campaign { budgetedcost: Some(Money(13_000)), totalactualcost: Some(total), ..Default::default() };
        assert_eq!(variance(&c), Some(Money(-550)));
        assert!(over_budget(&c));
        assert!(rollup([Some(Money(i64::MAX)), Some(Money(1))], None).is_err());
        // R-WV-6b: told once per crossing.
        let under =
            Campaign { budgetedcost: Some(Money(13_000)), totalactualcost: Some(Money(12_000)), ..Default::default() };
        assert!(crossed_over_budget(&under, &c));
        assert!(!crossed_over_budget(&c, &c), "still over is no new crossing");
        assert!(!crossed_over_budget(&c, &under));
    }

    #[test]
    fn r_wv_7_response_rate() {
        assert_eq!(response_rate(5, 200), Some(2.5));
        assert_eq!(response_rate(5, 0), None);
    }

    #[test]
    fn r_wv_1_preconditions() {
        let list = MarketingList { listid: uuid::Uuid::from_u128(1), listname: "L".into(), ..Default::default() };
        let mut c = Campaign { statuscode: LAUNCHED, ..Default::default() };
        let w = CampaignActivity { channeltypecode: Some(7), ..Default::default() };
        assert!(check_wave_preconditions(&c, &w, std::slice::from_ref(&list), &[list.listid]).is_ok());
        assert_eq!(
            check_wave_preconditions(&c, &w, std::slice::from_ref(&list), &[]).unwrap_err().code,
            "list_not_in_campaign"
        );
        assert_eq!(check_wave_preconditions(&c, &w, &[], &[]).unwrap_err().code, "wave_without_lists");
        let phone = CampaignActivity { channeltypecode: Some(1), ..Default::default() };
        assert_eq!(
            check_wave_preconditions(&c, &phone, std::slice::from_ref(&list), &[list.listid]).unwrap_err().code,
            "wave_not_email"
        );
        c.statuscode = PROPOSED;
        assert_eq!(
            check_wave_preconditions(&c, &w, std::slice::from_ref(&list), &[list.listid]).unwrap_err().code,
            "campaign_not_launched"
        );
    }

    #[test]
    fn section_2_8_wave_lists_are_campaign_lists() {
        let l1 =
            MarketingList { listid: uuid::Uuid::from_u128(1), listname: "Клиенты".into(), ..Default::default() };
        let l2 = MarketingList {
            listid: uuid::Uuid::from_u128(2), listname: "Выставка".into(), ..Default::default()
        };
        let wave = CampaignActivity { channeltypecode: Some(7), ..Default::default() };
        assert!(check_target_lists(&wave, false, std::slice::from_ref(&l1), &[l1.listid]).is_ok());
        assert_eq!(
            check_target_lists(&wave, false, std::slice::from_ref(&l2), &[l1.listid]).unwrap_err().code,
            "list_not_in_campaign"
        );
        assert_eq!(
            check_target_lists(&wave, true, std::slice::from_ref(&l1), &[l1.listid]).unwrap_err().code,
            "wave_already_started"
        );
        let closed = CampaignActivity { statecode: 1, ..wave.clone() };
        assert_eq!(check_target_lists(&closed, false, &[], &[]).unwrap_err().code, "activity_closed");
        assert_eq!(check_unlink_list(&l1, &[uuid::Uuid::from_u128(9)]).unwrap_err().code, "list_in_use");
        assert!(check_unlink_list(&l1, &[]).is_ok());
    }

    #[test]
    fn section_2_7_lists_link_to_open_campaigns_only() {
        let l = MarketingList { listname: "L".into(), ..Default::default() };
        assert!(
            check_link_lists(&Campaign { statuscode: PROPOSED, ..Default::default() }, std::slice::from_ref(&l))
                .is_ok()
        );
        assert_eq!(
            check_link_lists(&Campaign { statuscode: COMPLETED, ..Default::default() }, std::slice::from_ref(&l))
                .unwrap_err()
                .code,
            "campaign_closed"
        );
        let inactive = MarketingList { statecode: 1, ..l };
        assert_eq!(check_link_lists(&Campaign::default(), &[inactive]).unwrap_err().code, "list_inactive");
    }
}
