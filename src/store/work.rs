//! Finishing the work inflow hands out (DOMAIN §4.9): complete, cancel and reopen an
//! activity (R-ACT-1), change one by PATCH and reassign it (R-ACT-2). Each is one
//! transaction: load, let `crm::work` decide, write.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::Exec;
use super::records::{load, update};
use super::{Result, Store};
use crate::crm::RuleError;
use crate::crm::entities::{Activity, SystemUser};
use crate::crm::work::{self, Actor, CloseAction, CloseParams};

/// The managers above `user`, nearest first (the escalation chain of §4.7), stopping at a
/// cycle.
pub(crate) async fn manager_chain(ex: &mut impl Exec, user: Uuid) -> Result<Vec<Uuid>> {
    let mut chain: Vec<Uuid> = Vec::new();
    let mut at = user;
    // A chain longer than this is a data error; the cycle guard below catches loops.
    for _ in 0..64 {
        let row = ex
            .fetch_optional("SELECT parentsystemuserid FROM systemuser WHERE systemuserid = $1", vec![at.into()])
            .await?;
        let Some(next) = row.map(|r| r.get::<Option<Uuid>>("parentsystemuserid")).transpose()?.flatten() else { break };
        if next == user || chain.contains(&next) {
            break;
        }
        chain.push(next);
        at = next;
    }
    Ok(chain)
}

/// Restarts an activity's escalation at level 0 (R-TASK-5): the notifications already
/// sent or given up for it are forgotten, so the next scan starts over. Pending rows stay:
/// a digest that holds them is being sent.
async fn restart_escalation(ex: &mut impl Exec, activity: Uuid) -> Result<()> {
    ex.execute("DELETE FROM notification_log WHERE activityid = $1 AND status <> 'pending'", vec![activity.into()])
        .await?;
    Ok(())
}

impl Store {
    /// R-ACT-1: completes, cancels or reopens a plain activity for `actor`, who must be its
    /// owner, above the owner in the manager chain, or an admin (reopen: admins only).
    #[tracing::instrument(level = "debug", skip_all, fields(%id))]
    pub async fn close_activity(
        &self,
        id: Uuid,
        action: CloseAction,
        p: &CloseParams,
        actor: Actor,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<Activity> {
        let mut tx = self.db.begin().await?;
        let a: Activity = load(&mut tx, id).await?;
        if !actor.admin && actor.user != a.ownerid {
            let chain = manager_chain(&mut tx, a.ownerid).await?;
            if !work::may_close(actor, a.ownerid, &chain) {
                return Err(RuleError::forbidden(
                    "R-ACT-1",
                    "not_your_activity",
                    "only the owner, a manager above the owner, or an admin finishes an activity",
                )
                .into());
            }
        }
        let after = work::plan_close(&a, action, p, actor, now, tz)?;
        let out = update(&mut tx, self, &after).await?;
        if action == CloseAction::Reopen {
            restart_escalation(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// R-ACT-1/R-ACT-2: a PATCH of an activity. Closed ones are read-only; a new owner must
    /// be an enabled user; a new owner or due date restarts the escalation.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_activity(&self, after: &Activity) -> Result<Activity> {
        self.change_activity(after, None).await
    }

    /// The same change made by `actor` from the console, who must be allowed to finish the
    /// activity (R-ACT-1: its owner, a manager above the owner, or an admin): people
    /// reschedule, reword and hand over their own work.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_activity_as(&self, after: &Activity, actor: Actor) -> Result<Activity> {
        self.change_activity(after, Some(actor)).await
    }

    async fn change_activity(&self, after: &Activity, actor: Option<Actor>) -> Result<Activity> {
        let mut tx = self.db.begin().await?;
        let before: Activity = load(&mut tx, after.activityid).await?;
        if let Some(actor) = actor
            && !actor.admin
            && actor.user != before.ownerid
            && !work::may_close(actor, before.ownerid, &manager_chain(&mut tx, before.ownerid).await?)
        {
            return Err(RuleError::forbidden(
                "R-ACT-1",
                "not_your_activity",
                "only the owner, a manager above the owner, or an admin changes an activity",
            )
            .into());
        }
        let enabled = match super::records::get::<SystemUser>(&mut tx, after.ownerid).await? {
            Some(u) => !u.isdisabled,
            None => false,
        };
        work::check_update(&before, after, enabled)?;
        let out = update(&mut tx, self, after).await?;
        if work::restarts_escalation(&before, &out) {
            restart_escalation(&mut tx, out.activityid).await?;
        }
        // R-ACT-2: the new owner hears of it in the next digest.
        if before.ownerid != out.ownerid && out.statecode == 0 {
            let of = crate::crm::EntityRef::new(out.activitytypecode, out.activityid);
            super::deals::add_history(
                &mut tx,
                of,
                out.modifiedon,
                out.modifiedby,
                "assigned",
                out.subject.as_deref().unwrap_or(""),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
