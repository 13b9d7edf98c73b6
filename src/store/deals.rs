//! Opportunities as deals (R-OPP-1, deCard §6): direct creation, changes with their stage
//! history, win, lose, reopen and the Act, each one transaction with its `opportunityclose`
//! activity and its `record_history` line. The rules are in `crm::opportunity`.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::db::Exec;
use super::records::{get, insert, load, update};
use super::{Result, Store};
use crate::crm::entities::{Account, Contact, Opportunity};
use crate::crm::opportunity::{self, ClosePlan, LoseParams, WinParams};
use crate::crm::{EntityKind, EntityRef, RuleError};

/// Writes one line of a record's history (what its row no longer shows).
pub(crate) async fn add_history(
    ex: &mut impl Exec,
    of: EntityRef,
    at: DateTime<Utc>,
    actor: Option<Uuid>,
    kind: &str,
    summary: &str,
) -> Result<()> {
    ex.execute(
        "INSERT INTO record_history (id, entitytype, entityid, at, actor, kind, summary) VALUES ($1, $2, $3, \
            $4, $5, $6, $7)",
        vec![Uuid::now_v7().into(), of.kind.into(), of.id.into(), at.into(), actor.into(), kind.into(), summary.into()],
    )
    .await?;
    Ok(())
}

/// Which close action a plan came from, for the history's `kind`.
#[derive(Debug, Clone, Copy)]
pub enum DealAction {
    Win,
    Lose,
    Reopen,
    CloseDeal,
}

impl DealAction {
    fn kind(self) -> &'static str {
        match self {
            DealAction::Win => "won",
            DealAction::Lose => "lost",
            DealAction::Reopen => "reopened",
            DealAction::CloseDeal => "act",
        }
    }
}

impl Store {
    /// R-OPP-1: creates an opportunity directly; its customer must exist.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_opportunity(&self, o: &Opportunity) -> Result<Opportunity> {
        opportunity::validate(o)?;
        let mut tx = self.db.begin().await?;
        let exists = match opportunity::customer(o) {
            Some(EntityRef { kind: EntityKind::Account, id }) => get::<Account>(&mut tx, id).await?.is_some(),
            Some(EntityRef { kind: EntityKind::Contact, id }) => get::<Contact>(&mut tx, id).await?.is_some(),
            _ => false,
        };
        if !exists {
            return Err(RuleError::new(
                "R-OPP-1",
                "unknown_customer",
                "customerid names no account or contact of that type",
            )
            .into());
        }
        insert(&mut tx, self, o).await?;
        let of = EntityRef::new(EntityKind::Opportunity, o.opportunityid);
        let stage = o.salesstage.map(|s| format!(", stage {s} {}", opportunity::stage_name(s))).unwrap_or_default();
        add_history(&mut tx, of, o.createdon, o.createdby, "created", &format!("Opportunity opened{stage}")).await?;
        let out = load(&mut tx, o.opportunityid).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// R-OPP-1: a PATCH; open opportunities only, with stage and probability changes kept.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_opportunity(&self, after: &Opportunity) -> Result<Opportunity> {
        let mut tx = self.db.begin().await?;
        let before: Opportunity = load(&mut tx, after.opportunityid).await?;
        let lines = opportunity::check_update(&before, after)?;
        let out = update(&mut tx, self, after).await?;
        let of = EntityRef::new(EntityKind::Opportunity, out.opportunityid);
        for l in lines {
            add_history(&mut tx, of, out.modifiedon, out.modifiedby, "stage", &l).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn apply_deal_plan(&self, action: DealAction, plan: ClosePlan) -> Result<Opportunity> {
        let mut tx = self.db.begin().await?;
        let out = update(&mut tx, self, &plan.opportunity).await?;
        if let Some(close) = &plan.close {
            insert(&mut tx, self, close).await?;
        }
        let of = EntityRef::new(EntityKind::Opportunity, out.opportunityid);
        add_history(&mut tx, of, out.modifiedon, out.modifiedby, action.kind(), &plan.history).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// R-OPP-1 Win. `today` is the org's date (the default close date).
    pub async fn win_opportunity(
        &self,
        id: Uuid,
        p: &WinParams,
        actor: Uuid,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let o: Opportunity = load(&mut self.db.clone(), id).await?;
        let plan = opportunity::plan_win(&o, p, today, Uuid::now_v7(), actor, now)?;
        self.apply_deal_plan(DealAction::Win, plan).await
    }

    /// R-OPP-1 Lose.
    pub async fn lose_opportunity(
        &self,
        id: Uuid,
        p: &LoseParams,
        actor: Uuid,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let o: Opportunity = load(&mut self.db.clone(), id).await?;
        let plan = opportunity::plan_lose(&o, p, today, Uuid::now_v7(), actor, now)?;
        self.apply_deal_plan(DealAction::Lose, plan).await
    }

    /// R-OPP-1 Reopen.
    pub async fn reopen_opportunity(&self, id: Uuid, actor: Uuid, now: DateTime<Utc>) -> Result<Opportunity> {
        let o: Opportunity = load(&mut self.db.clone(), id).await?;
        self.apply_deal_plan(DealAction::Reopen, opportunity::plan_reopen(&o, actor, now)?).await
    }

    /// §6: the Act of a won deal (`None` withdraws it).
    pub async fn close_deal(
        &self,
        id: Uuid,
        on: Option<NaiveDate>,
        actor: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let o: Opportunity = load(&mut self.db.clone(), id).await?;
        self.apply_deal_plan(DealAction::CloseDeal, opportunity::plan_close_deal(&o, on, actor, now)?).await
    }
}
