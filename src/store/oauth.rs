//! OAuth 2.0 grants (issue 17): one row per account, tokens already sealed by `oauth::seal`.
//! A refresh that rotates the refresh token saves the new one in the same statement that
//! records the refresh, so a crash can never leave only a spent token behind.

use chrono::{DateTime, Utc};

use super::db::{Engine, Exec, Row, Tx};
use super::{Result, Store};

/// A grant held while it is refreshed. On PostgreSQL its row stays locked (`FOR UPDATE`)
/// until `record_refresh`, `record_error` or drop, so of several daemons one calls the token
/// endpoint and the others, once it is done, read its result. SQLite has one daemon (and a
/// write transaction there would stop every other writer for the HTTP call): nothing is held.
pub struct HeldGrant {
    tx: Option<Tx>,
    store: Store,
    pub grant: Option<OAuthGrant>,
}

/// A stored grant. The token fields hold sealed text; only `oauth` opens them.
#[derive(Debug, Clone)]
pub struct OAuthGrant {
    pub account: String,
    pub provider: String,
    pub scopes: String,
    pub refresh_token: String,
    pub access_token: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "account, provider, scopes, refresh_token, access_token, access_expires_at, created_at, \
    last_refresh_at, last_error";

fn grant_from_row(r: &Row) -> Result<OAuthGrant> {
    Ok(OAuthGrant {
        account: r.get("account")?,
        provider: r.get("provider")?,
        scopes: r.get("scopes")?,
        refresh_token: r.get("refresh_token")?,
        access_token: r.get("access_token")?,
        access_expires_at: r.get("access_expires_at")?,
        created_at: r.get("created_at")?,
        last_refresh_at: r.get("last_refresh_at")?,
        last_error: r.get("last_error")?,
    })
}

impl Store {
    /// Saves a new sign-in, replacing any earlier grant of the account.
    pub async fn save_oauth_grant(&self, g: &OAuthGrant) -> Result<()> {
        self.db
            .clone()
            .execute(
                &format!(
                    "INSERT INTO oauth_grant ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (account) DO UPDATE SET provider = excluded.provider, scopes = excluded.scopes, \
                     refresh_token = excluded.refresh_token, access_token = excluded.access_token, \
                     access_expires_at = excluded.access_expires_at, created_at = excluded.created_at, \
                     last_refresh_at = excluded.last_refresh_at, last_error = excluded.last_error"
                ),
                vec![
                    g.account.clone().into(),
                    g.provider.clone().into(),
                    g.scopes.clone().into(),
                    g.refresh_token.clone().into(),
                    g.access_token.clone().into(),
                    g.access_expires_at.into(),
                    g.created_at.into(),
                    g.last_refresh_at.into(),
                    g.last_error.clone().into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The grant, held for a refresh (see [`HeldGrant`]).
    pub async fn hold_oauth_grant(&self, account: &str) -> Result<HeldGrant> {
        if self.db.engine() == Engine::Sqlite {
            return Ok(HeldGrant { tx: None, store: self.clone(), grant: self.oauth_grant(account).await? });
        }
        let mut tx = self.db.begin().await?;
        let rows = tx
            .fetch_all(
                &format!("SELECT {COLUMNS} FROM oauth_grant WHERE account = $1 FOR UPDATE"),
                vec![account.into()],
            )
            .await?;
        let grant = rows.first().map(grant_from_row).transpose()?;
        Ok(HeldGrant { tx: Some(tx), store: self.clone(), grant })
    }

    pub async fn oauth_grant(&self, account: &str) -> Result<Option<OAuthGrant>> {
        let rows = self
            .db
            .clone()
            .fetch_all(&format!("SELECT {COLUMNS} FROM oauth_grant WHERE account = $1"), vec![account.into()])
            .await?;
        rows.first().map(grant_from_row).transpose()
    }

    pub async fn oauth_grants(&self) -> Result<Vec<OAuthGrant>> {
        let rows =
            self.db.clone().fetch_all(&format!("SELECT {COLUMNS} FROM oauth_grant ORDER BY account"), vec![]).await?;
        rows.iter().map(grant_from_row).collect()
    }

    pub async fn delete_oauth_grant(&self, account: &str) -> Result<bool> {
        let n = self.db.clone().execute("DELETE FROM oauth_grant WHERE account = $1", vec![account.into()]).await?;
        Ok(n == 1)
    }

    /// Claims the day's alert about `account` (none in the last `every`): true for the one
    /// caller that may send it. `unclaim_oauth_alert` gives it back if the send fails.
    pub async fn claim_oauth_alert(&self, account: &str, now: DateTime<Utc>, every: chrono::Duration) -> Result<bool> {
        let n = self
            .db
            .clone()
            .execute(
                "INSERT INTO oauth_alert (account, alerted_at) VALUES ($1, $2) ON CONFLICT (account) \
                 DO UPDATE SET alerted_at = excluded.alerted_at WHERE oauth_alert.alerted_at <= $3",
                vec![account.into(), now.into(), (now - every).into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn unclaim_oauth_alert(&self, account: &str, claimed_at: DateTime<Utc>) -> Result<()> {
        self.db
            .clone()
            .execute(
                "DELETE FROM oauth_alert WHERE account = $1 AND alerted_at = $2",
                vec![account.into(), claimed_at.into()],
            )
            .await?;
        Ok(())
    }
}

impl HeldGrant {
    async fn run(&mut self, sql: &str, args: Vec<super::Value>) -> Result<u64> {
        match self.tx.as_mut() {
            Some(tx) => tx.execute(sql, args).await,
            None => self.store.db.clone().execute(sql, args).await,
        }
    }

    async fn finish(self) -> Result<()> {
        match self.tx {
            Some(tx) => tx.commit().await,
            None => Ok(()),
        }
    }

    /// Records a refresh: the new access token, and the rotated refresh token when the
    /// provider sent one — in one statement, so the rotation is never lost. Only applies while
    /// the grant still holds `spent` (the refresh token used): a concurrent sign-in wins.
    pub async fn record_refresh(
        mut self,
        account: &str,
        spent: &str,
        refresh_token: &str,
        access_token: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .run(
                "UPDATE oauth_grant SET refresh_token = $1, access_token = $2, access_expires_at = $3, \
                 last_refresh_at = $4, last_error = NULL WHERE account = $5 AND refresh_token = $6",
                vec![
                    refresh_token.into(),
                    access_token.into(),
                    expires_at.into(),
                    now.into(),
                    account.into(),
                    spent.into(),
                ],
            )
            .await?;
        self.finish().await?;
        Ok(n == 1)
    }

    /// Records why the grant cannot be used (revoked, expired), shown by `inflow oauth status`
    /// — unless the grant no longer holds `spent` (a new sign-in meanwhile): false then.
    pub async fn record_error(mut self, account: &str, spent: &str, error: &str) -> Result<bool> {
        let n = self
            .run(
                "UPDATE oauth_grant SET last_error = $1, access_token = NULL WHERE account = $2 AND refresh_token = $3",
                vec![error.into(), account.into(), spent.into()],
            )
            .await?;
        self.finish().await?;
        Ok(n == 1)
    }
}
