//! The API's bearer tokens: stored as SHA-256 only, with their role, expiry and last use.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::db::{Exec, Row};
use crate::store::{Result, Store};

/// An API bearer token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub systemuserid: Uuid,
    pub role: String,
    pub created_on: DateTime<Utc>,
    /// None: the token does not expire.
    pub expires_on: Option<DateTime<Utc>>,
    /// When a request last used it (to the minute).
    pub last_used_on: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, name, systemuserid, role, created_on, expires_on, last_used_on";

fn token_from_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.get("id")?,
        name: r.get("name")?,
        systemuserid: r.get("systemuserid")?,
        role: r.get("role")?,
        created_on: r.get("created_on")?,
        expires_on: r.get("expires_on")?,
        last_used_on: r.get("last_used_on")?,
    })
}

/// A token's last use is written at most this often (a busy client makes no write per request).
const LAST_USE_EVERY_MS: i64 = 60_000;

impl Store {
    /// Stores a token's hash; the clear token is never stored.
    pub async fn add_api_token(
        &self,
        name: &str,
        token_sha256: &str,
        user: Uuid,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiToken> {
        self.add_api_token_expiring(name, token_sha256, user, role, None, now).await
    }

    /// [`Store::add_api_token`] with an expiry.
    pub async fn add_api_token_expiring(
        &self,
        name: &str,
        token_sha256: &str,
        user: Uuid,
        role: &str,
        expires_on: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ApiToken> {
        let t = ApiToken {
            id: Uuid::now_v7(),
            name: name.into(),
            systemuserid: user,
            role: role.into(),
            created_on: now,
            expires_on,
            last_used_on: None,
        };
        insert_token(&mut self.db.clone(), &t, token_sha256).await?;
        Ok(t)
    }

    /// The live token with this hash (not revoked, not expired at `now`); records its use.
    pub async fn api_token_by_hash(&self, token_sha256: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_sha256 = $1 AND revoked_on IS NULL \
                     AND (expires_on IS NULL OR expires_on > $2)"
                ),
                vec![token_sha256.into(), now.into()],
            )
            .await?;
        let Some(t) = row.as_ref().map(token_from_row).transpose()? else { return Ok(None) };
        if t.last_used_on.is_none_or(|u| (now - u).num_milliseconds() >= LAST_USE_EVERY_MS) {
            self.db
                .clone()
                .execute(
                    "UPDATE api_token SET last_used_on = $2 WHERE id = $1 AND (last_used_on IS NULL OR \
                        last_used_on <= $3)",
                    vec![t.id.into(), now.into(), (now - chrono::Duration::milliseconds(LAST_USE_EVERY_MS)).into()],
                )
                .await?;
        }
        Ok(Some(t))
    }

    /// Revokes a token; returns whether one was live.
    pub async fn revoke_api_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        Ok(self
            .db
            .clone()
            .execute(
                "UPDATE api_token SET revoked_on = $2 WHERE id = $1 AND revoked_on IS NULL",
                vec![id.into(), now.into()],
            )
            .await?
            == 1)
    }

    /// Replaces a live token in one step: a new one with its name, user and role (and, if it
    /// expired on a term, the same term from now) takes its place, and it is revoked. None:
    /// no live token with this id.
    pub async fn rotate_api_token(&self, id: Uuid, token_sha256: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let mut tx = self.db.begin().await?;
        let row = tx
            .fetch_optional(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE id = $1 AND revoked_on IS NULL"),
                vec![id.into()],
            )
            .await?;
        let Some(old) = row.as_ref().map(token_from_row).transpose()? else { return Ok(None) };
        tx.execute("UPDATE api_token SET revoked_on = $2 WHERE id = $1", vec![id.into(), now.into()]).await?;
        let t = ApiToken {
            id: Uuid::now_v7(),
            created_on: now,
            expires_on: old.expires_on.map(|e| now + (e - old.created_on)),
            last_used_on: None,
            ..old
        };
        insert_token(&mut tx, &t, token_sha256).await?;
        tx.commit().await?;
        Ok(Some(t))
    }

    /// Live tokens (without their hashes), expired ones included (they show as such).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE revoked_on IS NULL ORDER BY created_on"),
                vec![],
            )
            .await?;
        rows.iter().map(token_from_row).collect()
    }
}

async fn insert_token(ex: &mut impl Exec, t: &ApiToken, token_sha256: &str) -> Result<()> {
    ex.execute(
        "INSERT INTO api_token (id, name, token_sha256, systemuserid, role, created_on, expires_on) VALUES \
            ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            t.id.into(),
            t.name.clone().into(),
            token_sha256.into(),
            t.systemuserid.into(),
            t.role.clone().into(),
            t.created_on.into(),
            t.expires_on.into(),
        ],
    )
    .await?;
    Ok(())
}
