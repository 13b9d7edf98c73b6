//! The audit of writes through the API and the CLI.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::db::Exec;
use crate::store::{Result, Store};

/// One write through the API, as the audit keeps it.
#[derive(Debug, Clone)]
pub struct ApiWrite {
    pub user: Uuid,
    pub role: String,
    pub token_name: String,
    pub method: String,
    /// The route's template (`/api/v1/leads/{id}`) and the path as called.
    pub route: String,
    pub path: String,
    pub status: u16,
}

impl Store {
    /// Appends a write to the audit (`GET /api/v1/ops/audit`).
    pub async fn record_api_write(&self, w: &ApiWrite, now: DateTime<Utc>) -> Result<()> {
        self.db
            .clone()
            .execute(
                "INSERT INTO api_audit (id, at, systemuserid, role, token_name, method, route, path, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    Uuid::now_v7().into(),
                    now.into(),
                    w.user.into(),
                    w.role.clone().into(),
                    w.token_name.clone().into(),
                    w.method.clone().into(),
                    w.route.clone().into(),
                    w.path.clone().into(),
                    i64::from(w.status).into(),
                ],
            )
            .await?;
        Ok(())
    }
}
