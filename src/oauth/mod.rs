//! OAuth 2.0 sign-in for mailboxes (issue 17): provider presets, the grant a one-time
//! `inflow oauth login` stores, access tokens refreshed ahead of expiry with the rotated
//! refresh token saved at once, and the SASL XOAUTH2 string IMAP sends.
//!
//! Tokens never reach a log or the API: they are sealed (`seal`) before the store sees them.

mod browser;
pub use browser::paste_lines;
pub mod seal;

use chrono::{DateTime, Duration, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};

use crate::config::{OAuthConfig, OAuthGrantType, OAuthProvider, SaslMechanism};
use crate::store::{OAuthGrant, Store};
use seal::Sealer;

/// The account name of the `[smtp]` relay's grant (`inflow oauth login smtp`).
pub const RELAY_ACCOUNT: &str = "smtp";

/// An account that signs in with OAuth: an enabled `auth = "oauth2"` mailbox, by name, or
/// `smtp` for the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// App-only (client credentials): nobody signs in; the app's secret is the credential.
    pub app_only: bool,
}

impl Account {
    /// What the operator does when the account cannot sign in.
    pub fn fix(&self) -> String {
        if self.app_only {
            format!("put a valid client secret for '{}' in its client_secret_file and restart inflow", self.name)
        } else {
            format!("inflow oauth login {}", self.name)
        }
    }
}

pub fn accounts(cfg: &crate::config::Config) -> Vec<Account> {
    use crate::config::MailAuth;
    let app_only = |o: &Option<OAuthConfig>| o.as_ref().is_some_and(|o| o.grant == OAuthGrantType::ClientCredentials);
    let mut out: Vec<Account> = cfg
        .mailboxes
        .iter()
        .filter(|m| m.enabled && m.auth == MailAuth::Oauth2)
        .map(|m| Account { name: m.name.clone(), app_only: app_only(&m.oauth) })
        .collect();
    if cfg.smtp.host.is_some() && cfg.smtp.auth == MailAuth::Oauth2 {
        out.push(Account { name: RELAY_ACCOUNT.to_string(), app_only: app_only(&cfg.smtp.oauth) });
    }
    out
}

/// Of `accounts`, those that cannot sign in now, with why: a person never signed in, or the
/// provider said the grant (or the app's secret) is dead. An app-only account without a row
/// has simply not asked for its first token yet.
pub async fn trouble(store: &Store, accounts: &[Account]) -> Result<Vec<(Account, String)>, crate::store::StoreError> {
    if accounts.is_empty() {
        return Ok(vec![]);
    }
    let grants = store.oauth_grants().await?;
    Ok(accounts
        .iter()
        .filter_map(|a| match grants.iter().find(|g| g.account == a.name) {
            None if a.app_only => None,
            None => Some((a.clone(), "never signed in".to_string())),
            Some(g) => g.last_error.clone().map(|e| (a.clone(), e)),
        })
        .collect())
}

/// Where a provider's endpoints are and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub token_url: String,
    /// The authorization-code sign-in in a browser (RFC 6749 §4.1 with PKCE).
    pub authorization_url: Option<String>,
    /// RFC 8628 device authorization; None where the provider refuses these scopes on it.
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
}

/// The endpoints and scopes of a configured client: the preset's, with any override.
pub fn endpoints(c: &OAuthConfig) -> Result<Endpoints, String> {
    let (auth, token, device, scopes): (Option<String>, Option<String>, Option<String>, Vec<&str>) = match c.provider {
        OAuthProvider::Microsoft => {
            let tenant = c.tenant.as_deref().unwrap_or("organizations");
            if tenant.is_empty() || !tenant.chars().all(|ch| ch.is_ascii_alphanumeric() || ".-".contains(ch)) {
                return Err(format!("tenant '{tenant}' is not a tenant id or domain"));
            }
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            (
                Some(format!("{base}/authorize")),
                Some(format!("{base}/token")),
                Some(format!("{base}/devicecode")),
                match c.grant {
                    // App-only: the app's permissions as granted by the admin (IMAP.AccessAsApp,
                    // SMTP.SendAsApp), asked for as one resource.
                    OAuthGrantType::ClientCredentials => vec!["https://outlook.office365.com/.default"],
                    OAuthGrantType::Delegated => vec![
                        "https://outlook.office.com/IMAP.AccessAsUser.All",
                        "https://outlook.office.com/SMTP.Send",
                        "offline_access",
                    ],
                },
            )
        }
        // Google's device flow does not allow the Gmail scope.
        OAuthProvider::Google => (
            Some("https://accounts.google.com/o/oauth2/v2/auth".into()),
            Some("https://oauth2.googleapis.com/token".into()),
            None,
            vec!["https://mail.google.com/"],
        ),
        OAuthProvider::Generic => (None, None, None, vec![]),
    };
    let token_url = c.token_url.clone().or(token).ok_or("provider = \"generic\" needs token_url")?;
    let device_url = c.device_url.clone().or(device);
    let authorization_url = c.authorization_url.clone().or(auth);
    for u in std::iter::once(&token_url).chain(device_url.iter()).chain(authorization_url.iter()) {
        let ok = u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost");
        if !ok {
            return Err(format!("'{u}' must be an https:// URL (plain http only to localhost)"));
        }
    }
    let scopes = if c.scopes.is_empty() { scopes.into_iter().map(String::from).collect() } else { c.scopes.clone() };
    if scopes.is_empty() {
        return Err("provider = \"generic\" needs scopes".into());
    }
    Ok(Endpoints { token_url, authorization_url, device_url, scopes })
}

/// The SASL XOAUTH2 initial response (Google's and Microsoft's format).
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// The SASL mechanism's name and initial response for `user` at `host:port`: XOAUTH2, or
/// RFC 7628 OAUTHBEARER (a GS2 header naming the user, then host, port and the token).
pub fn sasl(m: SaslMechanism, user: &str, host: &str, port: u16, token: &str) -> (&'static str, String) {
    match m {
        SaslMechanism::Xoauth2 => ("XOAUTH2", xoauth2(user, token)),
        SaslMechanism::Oauthbearer => {
            // RFC 5801 §4: ',' and '=' in the authzid are escaped.
            let user = user.replace('=', "=3D").replace(',', "=2C");
            ("OAUTHBEARER", format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"))
        }
    }
}

/// What a client answers to the server's error challenge so that it ends the exchange with
/// its refusal: nothing for XOAUTH2, a lone %x01 for OAUTHBEARER (RFC 7628 §3.2.3).
pub fn sasl_abort(m: SaslMechanism) -> &'static str {
    match m {
        SaslMechanism::Xoauth2 => "",
        SaslMechanism::Oauthbearer => "\x01",
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("no OAuth grant for '{0}': sign in once with `inflow oauth login {0}`")]
    NoGrant(String),
    /// The grant is dead (revoked, expired, password changed): someone must sign in again.
    #[error(
        "the OAuth grant for '{account}' no longer works ({why}): sign in again with `inflow oauth login {account}`"
    )]
    Expired { account: String, why: String },
    /// An app-only account's secret or permissions were refused: the operator must act.
    #[error(
        "the app-only sign-in of '{account}' was refused ({why}): check the app's client secret (client_secret_file) \
         and its mailbox permissions, then restart inflow"
    )]
    AppRefused { account: String, why: String },
    /// The provider or the network failed for now: try again later.
    #[error("token endpoint: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl OAuthError {
    /// Only a person can fix it (sign in, a new secret, the configuration): waiting will not.
    pub fn needs_person(&self) -> bool {
        matches!(
            self,
            OAuthError::NoGrant(_) | OAuthError::Expired { .. } | OAuthError::AppRefused { .. } | OAuthError::Config(_)
        )
    }
}

fn http() -> Result<oauth2::reqwest::Client, OAuthError> {
    oauth2::reqwest::Client::builder()
        // RFC 6749 endpoints answer directly; a redirect would send credentials elsewhere.
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| OAuthError::Unavailable(e.to_string()))
}

/// What the operator does about a provider's error, from the codes in its text: Microsoft's
/// AADSTS numbers and Google's error names (their published meanings).
pub fn explain(text: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        (
            "AADSTS50011",
            "the redirect URI is not registered: add http://localhost under \"Mobile and desktop applications\"",
        ),
        ("AADSTS90002", "no such tenant: check `tenant`"),
        ("AADSTS700016", "no app with this client id in the tenant: check `client_id` and `tenant`"),
        ("AADSTS7000215", "the client secret is wrong: use the secret's Value, not its ID"),
        ("AADSTS7000222", "the client secret has expired: create a new one in the app registration"),
        ("AADSTS7000218", "a client secret is required: add client_secret_file, or allow public client flows"),
        ("AADSTS65001", "consent is missing: an admin must grant the app's API permissions"),
        ("AADSTS70011", "a scope is not valid for this app"),
        ("AADSTS700082", "the sign-in expired after inactivity: sign in again"),
        ("AADSTS50173", "the sign-in was revoked (a password change): sign in again"),
        ("AADSTS50076", "multi-factor authentication is required: sign in again"),
        (
            "AADSTS53003",
            "a Conditional Access policy blocked the sign-in (device sign-in may be blocked: try --browser)",
        ),
        ("redirect_uri_mismatch", "the redirect URI does not match: use an OAuth client of type \"Desktop app\""),
        ("org_internal", "the consent screen is \"Internal\": sign in with an account of that Workspace"),
        ("admin_policy_enforced", "the Workspace admin does not allow this app"),
    ];
    KNOWN.iter().find(|(code, _)| text.contains(code)).map(|(_, words)| *words)
}

/// Words for a token endpoint's error, from its JSON (`error`, `error_description`).
fn describe<E: std::error::Error>(e: &RequestTokenError<E, oauth2::basic::BasicErrorResponse>) -> (bool, String) {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let dead = matches!(r.error(), BasicErrorResponseType::InvalidGrant);
            let what = match r.error() {
                BasicErrorResponseType::InvalidClient => "the client id or secret is wrong".to_string(),
                BasicErrorResponseType::InvalidScope => "a scope was refused".to_string(),
                BasicErrorResponseType::UnauthorizedClient => "the app is not allowed this grant".to_string(),
                other => other.to_string(),
            };
            let detail = r.error_description().map(|d| format!(": {d}")).unwrap_or_default();
            let hint = explain(&format!("{} {}", r.error(), r.error_description().map_or("", |d| d.as_str())))
                .map(|h| format!(" — {h}"))
                .unwrap_or_default();
            (dead, format!("{what}{detail}{hint}"))
        }
        RequestTokenError::Request(e) => (false, format!("request failed: {e}")),
        RequestTokenError::Parse(e, _) => (false, format!("unreadable answer: {e}")),
        RequestTokenError::Other(e) => (false, e.clone()),
    }
}

/// The client for a configured app: its id, its secret when it has one (sent in the request
/// body, which every provider accepts), and the token endpoint.
fn client(
    c: &OAuthConfig,
    token_url: String,
) -> Result<BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>, OAuthError> {
    let client = BasicClient::new(ClientId::new(c.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(token_url).map_err(|x| OAuthError::Config(x.to_string()))?);
    Ok(match &c.client_secret {
        Some(s) => client.set_client_secret(ClientSecret::new(s.clone())),
        None => client,
    })
}

/// When a just-issued access token expires (an hour when the provider does not say).
fn expiry(now: DateTime<Utc>, t: &oauth2::basic::BasicTokenResponse) -> DateTime<Utc> {
    now + t.expires_in().and_then(|d| Duration::from_std(d).ok()).unwrap_or(Duration::seconds(3600))
}

/// Until when a token that expires at `exp` is used: up to five minutes before its end, or,
/// for a provider whose tokens live less than ten minutes, half its remaining life — never a
/// time already past, which would make a session sign in again at once, in a loop.
fn use_until(now: DateTime<Utc>, exp: DateTime<Utc>) -> DateTime<Utc> {
    let left = exp - now;
    if left > Duration::seconds(2 * AHEAD) { exp - Duration::seconds(AHEAD) } else { now + left / 2 }
}

/// The token source of a mailbox worker or the relay: built at the first OAuth sign-in (it
/// reads, or first writes, the sealing key) and kept for every reconnect after.
pub struct LazyTokens {
    store: Store,
    /// `[oauth] key_file`'s key (None: the database's own).
    key: Option<String>,
    cell: tokio::sync::OnceCell<Tokens>,
}

impl LazyTokens {
    pub fn new(store: Store, key: Option<String>) -> LazyTokens {
        LazyTokens { store, key, cell: tokio::sync::OnceCell::new() }
    }

    pub async fn get(&self) -> Result<&Tokens, OAuthError> {
        self.cell.get_or_try_init(|| Tokens::new(self.store.clone(), self.key.as_deref())).await
    }
}

/// Access tokens for the accounts of one database.
pub struct Tokens {
    store: Store,
    sealer: Sealer,
    /// One refresh at a time through this value.
    refreshing: tokio::sync::Mutex<()>,
}

/// Refresh this long before the access token expires (a long IDLE reconnects with a fresh one).
const AHEAD: i64 = 300;

impl Tokens {
    /// The tokens of `store`, sealed with `key` (`[oauth] key_file`) or, without one, with a
    /// key generated once and kept in the database.
    pub async fn new(store: Store, key: Option<&str>) -> Result<Tokens, OAuthError> {
        let secret = match key {
            Some(k) => k.trim().to_string(),
            None => store.instance_secret("oauth_seal", Utc::now()).await?,
        };
        Ok(Tokens { store, sealer: Sealer::new(&secret), refreshing: tokio::sync::Mutex::new(()) })
    }

    /// The grant's stored access token and its expiry, while it has more than the margin left.
    fn stored(&self, account: &str, g: &OAuthGrant, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
        let (t, exp) = (g.access_token.as_ref()?, g.access_expires_at?);
        if exp - Duration::seconds(AHEAD) <= now {
            return None;
        }
        self.sealer.open(account, t).map(|t| (t, exp))
    }

    /// A valid access token for `account`: the stored one while it has more than five minutes
    /// left (and `fresh` is false), else a refreshed one.
    pub async fn access_token(&self, account: &str, c: &OAuthConfig, fresh: bool) -> Result<String, OAuthError> {
        self.access_token_until(account, c, fresh).await.map(|(t, _)| t)
    }

    /// [`Tokens::access_token`] with the time to stop using it: its expiry less the margin
    /// (a session that outlives its token — a long IDLE — reconnects with a fresh one then).
    pub async fn access_token_until(
        &self,
        account: &str,
        c: &OAuthConfig,
        fresh: bool,
    ) -> Result<(String, DateTime<Utc>), OAuthError> {
        let now = Utc::now();
        let ahead = |(t, exp): (String, DateTime<Utc>)| (t, use_until(Utc::now(), exp));
        if c.grant == OAuthGrantType::ClientCredentials {
            return self.app_token(account, c, fresh, now).await.map(ahead);
        }
        let g = self.store.oauth_grant(account).await?.ok_or_else(|| OAuthError::NoGrant(account.to_string()))?;
        if let Some(why) = &g.last_error {
            return Err(OAuthError::Expired { account: account.into(), why: why.clone() });
        }
        if !fresh && let Some(t) = self.stored(account, &g, now) {
            return Ok(ahead(t));
        }
        self.refresh(account, c, &g, now).await.map(ahead)
    }

    /// A refresh, one at a time: in this process (the relay's sessions share one `Tokens`)
    /// and, on PostgreSQL, across daemons (the grant's row is held). A caller that waited
    /// finds the grant changed since it read `seen` and uses the token the other one got,
    /// so a rotating provider never sees a spent refresh token (which some take as theft
    /// and answer by revoking the grant).
    async fn refresh(
        &self,
        account: &str,
        c: &OAuthConfig,
        seen: &OAuthGrant,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), OAuthError> {
        let store = OAuthError::Store;
        let _turn = self.refreshing.lock().await;
        let held = self.store.hold_oauth_grant(account).await.map_err(store)?;
        let Some(g) = held.grant.clone() else { return Err(OAuthError::NoGrant(account.to_string())) };
        if let Some(why) = &g.last_error {
            return Err(OAuthError::Expired { account: account.into(), why: why.clone() });
        }
        if (g.access_token != seen.access_token || g.refresh_token != seen.refresh_token)
            && let Some(t) = self.stored(account, &g, Utc::now())
        {
            return Ok(t);
        }
        let e = endpoints(c).map_err(OAuthError::Config)?;
        let refresh = self.sealer.open(account, &g.refresh_token).ok_or_else(|| OAuthError::Expired {
            account: account.into(),
            why: "the stored token does not open with this instance's key".into(),
        })?;
        let client = client(c, e.token_url)?;
        let http = http()?;
        let rt = RefreshToken::new(refresh.clone());
        let answer = client.exchange_refresh_token(&rt).request_async(&http).await;
        let t = match answer {
            Ok(t) => t,
            Err(err) => {
                let (dead, why) = describe(&err);
                if !dead {
                    return Err(OAuthError::Unavailable(why));
                }
                if held.record_error(account, &g.refresh_token, &why).await.map_err(store)? {
                    return Err(OAuthError::Expired { account: account.into(), why });
                }
                return Err(OAuthError::Unavailable("the grant changed while refreshing (a new sign-in)".into()));
            }
        };
        // The provider has answered: a crash from here to the commit loses its new tokens; the
        // stored refresh token (spent, if the provider rotates) is still the one on record.
        crate::failpoint::hit("oauth-after-refresh");
        let access = t.access_token().secret().clone();
        let expires = expiry(now, &t);
        // A rotated refresh token replaces the spent one in the same statement.
        let next = t.refresh_token().map(|r| r.secret().clone()).unwrap_or(refresh);
        let saved = held
            .record_refresh(
                account,
                &g.refresh_token,
                &self.sealer.seal(account, &next),
                &self.sealer.seal(account, &access),
                expires,
                now,
            )
            .await
            .map_err(store)?;
        if !saved {
            tracing::info!(account, "the OAuth grant changed while refreshing (a new sign-in): using the new token");
        }
        Ok((access, expires))
    }

    /// App-only (client credentials): the stored token while it lasts, else a new one for the
    /// app's secret. The outcome is kept in the account's grant row like a person's: a secret
    /// refused (expired — Entra secrets last at most two years —, wrong, or the app not
    /// allowed) is `last_error`, which /healthz and the daily alert report; unlike a dead
    /// refresh token it is tried again at each connection, since the fix is a new secret file.
    async fn app_token(
        &self,
        account: &str,
        c: &OAuthConfig,
        fresh: bool,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), OAuthError> {
        let store = OAuthError::Store;
        let g = self.store.oauth_grant(account).await.map_err(store)?;
        if !fresh
            && let Some(g) = &g
            && g.last_error.is_none()
            && let Some(t) = self.stored(account, g, now)
        {
            return Ok(t);
        }
        let e = endpoints(c).map_err(OAuthError::Config)?;
        let answer = client(c, e.token_url)?
            .exchange_client_credentials()
            .add_scopes(e.scopes.iter().cloned().map(Scope::new))
            .request_async(&http()?)
            .await;
        let mut row = OAuthGrant {
            account: account.into(),
            provider: format!("{:?}", c.provider).to_lowercase(),
            scopes: e.scopes.join(" "),
            // No refresh token in this grant: the secret is the long-lived credential.
            refresh_token: String::new(),
            access_token: None,
            access_expires_at: None,
            created_at: g.as_ref().map_or(now, |g| g.created_at),
            last_refresh_at: Some(now),
            last_error: None,
        };
        match answer {
            Ok(t) => {
                let expires = expiry(now, &t);
                row.access_token = Some(self.sealer.seal(account, t.access_token().secret()));
                row.access_expires_at = Some(expires);
                self.store.save_oauth_grant(&row).await.map_err(store)?;
                Ok((t.access_token().secret().clone(), expires))
            }
            Err(err) => {
                let (_, why) = describe(&err);
                if let RequestTokenError::ServerResponse(_) = err {
                    // The provider said no: the operator must act (new secret, consent).
                    row.last_error = Some(why.clone());
                    self.store.save_oauth_grant(&row).await.map_err(store)?;
                    return Err(OAuthError::AppRefused { account: account.into(), why });
                }
                Err(OAuthError::Unavailable(why))
            }
        }
    }

    /// RFC 8628 sign-in: asks for a device code, tells the person what to open and type
    /// (`say`), waits for the approval and stores the grant.
    pub async fn device_login(&self, account: &str, c: &OAuthConfig, say: impl Fn(&str)) -> Result<(), OAuthError> {
        let e = endpoints(c).map_err(OAuthError::Config)?;
        let Some(device_url) = e.device_url.clone() else {
            return Err(OAuthError::Config(
                "this provider does not offer device sign-in for these scopes (Google refuses the Gmail scope on it): \
                 use the browser sign-in (inflow oauth login NAME --browser)"
                    .into(),
            ));
        };
        let client = client(c, e.token_url)?.set_device_authorization_url(
            DeviceAuthorizationUrl::new(device_url).map_err(|x| OAuthError::Config(x.to_string()))?,
        );
        let http = http()?;
        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scopes(e.scopes.iter().cloned().map(Scope::new))
            .request_async(&http)
            .await
            .map_err(|x| OAuthError::Unavailable(describe(&x).1))?;
        say(&format!(
            "To sign in '{account}', open {} and enter the code {}",
            details.verification_uri().as_str(),
            details.user_code().secret()
        ));
        let t = client
            .exchange_device_access_token(&details)
            .request_async(&http, tokio::time::sleep, None)
            .await
            .map_err(|x| match x {
                RequestTokenError::ServerResponse(r) => {
                    OAuthError::Unavailable(format!("sign-in not completed: {}", r.error()))
                }
                other => OAuthError::Unavailable(other.to_string()),
            })?;
        self.save_grant(account, c, &e.scopes, &t).await
    }

    /// Stores what a sign-in returned: the refresh token (required) and the first access token.
    async fn save_grant(
        &self,
        account: &str,
        c: &OAuthConfig,
        scopes: &[String],
        t: &oauth2::basic::BasicTokenResponse,
    ) -> Result<(), OAuthError> {
        let Some(refresh) = t.refresh_token() else {
            return Err(OAuthError::Config(match c.provider {
                OAuthProvider::Google => "Google sent no refresh token: sign in again (inflow asks for offline access \
                                          with consent, so this means the consent screen was skipped)"
                    .into(),
                _ => "the provider sent no refresh token: add the offline_access scope (Microsoft)".into(),
            }));
        };
        let now = Utc::now();
        let expires = expiry(now, t);
        let g = OAuthGrant {
            account: account.into(),
            provider: format!("{:?}", c.provider).to_lowercase(),
            scopes: scopes.join(" "),
            refresh_token: self.sealer.seal(account, refresh.secret()),
            access_token: Some(self.sealer.seal(account, t.access_token().secret())),
            access_expires_at: Some(expires),
            created_at: now,
            last_refresh_at: None,
            last_error: None,
        };
        self.store.save_oauth_grant(&g).await.map_err(OAuthError::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_the_providers_endpoints_and_scopes() {
        let ms = OAuthConfig { client_id: "c".into(), ..Default::default() };
        let e = endpoints(&ms).unwrap();
        assert_eq!(e.token_url, "https://login.microsoftonline.com/organizations/oauth2/v2.0/token");
        assert_eq!(
            e.device_url.as_deref(),
            Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode")
        );
        assert!(e.scopes.contains(&"offline_access".to_string()));
        assert!(e.scopes.contains(&"https://outlook.office.com/IMAP.AccessAsUser.All".to_string()));
        let tenant = OAuthConfig { tenant: Some("contoso.onmicrosoft.com".into()), ..ms.clone() };
        assert!(endpoints(&tenant).unwrap().token_url.contains("/contoso.onmicrosoft.com/"));
        let bad = OAuthConfig { tenant: Some("a/../b".into()), ..ms.clone() };
        assert!(endpoints(&bad).is_err());
        let g = OAuthConfig { provider: OAuthProvider::Google, ..ms.clone() };
        let e = endpoints(&g).unwrap();
        assert_eq!(e.scopes, vec!["https://mail.google.com/"]);
        assert_eq!(e.device_url, None, "Google refuses the Gmail scope on its device flow");
        let generic = OAuthConfig { provider: OAuthProvider::Generic, ..ms.clone() };
        assert!(endpoints(&generic).unwrap_err().contains("token_url"));
        let plain =
            OAuthConfig { token_url: Some("http://idp.example/token".into()), scopes: vec!["x".into()], ..generic };
        assert!(endpoints(&plain).unwrap_err().contains("https"), "no tokens over plain http to another host");
    }

    #[test]
    fn a_token_is_used_until_five_minutes_before_its_end_or_half_a_short_life() {
        let now = Utc::now();
        assert_eq!(use_until(now, now + Duration::hours(1)), now + Duration::minutes(55));
        assert_eq!(use_until(now, now + Duration::seconds(200)), now + Duration::seconds(100));
        assert_eq!(use_until(now, now + Duration::seconds(4)), now + Duration::seconds(2));
    }

    #[test]
    fn provider_errors_are_put_in_words() {
        let ms = "AADSTS7000222: The provided client secret keys for app '…' are expired.";
        assert!(explain(ms).unwrap().contains("expired"));
        assert!(
            explain("invalid_request AADSTS50011: The redirect URI … does not match").unwrap().contains("redirect")
        );
        assert!(explain("redirect_uri_mismatch").unwrap().contains("Desktop app"));
        assert_eq!(explain("invalid_grant: something new"), None);
    }

    #[test]
    fn xoauth2_initial_response() {
        assert_eq!(xoauth2("sales@contoso.com", "tok"), "user=sales@contoso.com\x01auth=Bearer tok\x01\x01");
    }
}
