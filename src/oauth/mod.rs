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

use crate::config::{OAuthConfig, OAuthProvider};
use crate::store::{OAuthGrant, Store};
use seal::Sealer;

/// The account name of the `[smtp]` relay's grant (`inflow oauth login smtp`).
pub const RELAY_ACCOUNT: &str = "smtp";

/// The accounts that sign in with OAuth: every enabled `auth = "oauth2"` mailbox by name,
/// and `smtp` when the relay does.
pub fn accounts(cfg: &crate::config::Config) -> Vec<String> {
    use crate::config::MailAuth;
    let mut out: Vec<String> =
        cfg.mailboxes.iter().filter(|m| m.enabled && m.auth == MailAuth::Oauth2).map(|m| m.name.clone()).collect();
    if cfg.smtp.host.is_some() && cfg.smtp.auth == MailAuth::Oauth2 {
        out.push(RELAY_ACCOUNT.to_string());
    }
    out
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
                vec![
                    "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "https://outlook.office.com/SMTP.Send",
                    "offline_access",
                ],
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
    /// The provider or the network failed for now: try again later.
    #[error("token endpoint: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(String),
}

fn http() -> Result<oauth2::reqwest::Client, OAuthError> {
    oauth2::reqwest::Client::builder()
        // RFC 6749 endpoints answer directly; a redirect would send credentials elsewhere.
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| OAuthError::Unavailable(e.to_string()))
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
            (dead, format!("{what}{detail}"))
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

/// Access tokens for the accounts of one database.
pub struct Tokens {
    store: Store,
    sealer: Sealer,
}

/// Refresh this long before the access token expires (a long IDLE reconnects with a fresh one).
const AHEAD: i64 = 300;

impl Tokens {
    pub async fn new(store: Store) -> Result<Tokens, OAuthError> {
        let secret =
            store.instance_secret("oauth_seal", Utc::now()).await.map_err(|e| OAuthError::Store(e.to_string()))?;
        Ok(Tokens { store, sealer: Sealer::new(&secret) })
    }

    /// A valid access token for `account`: the stored one while it has more than five minutes
    /// left (and `fresh` is false), else a refreshed one.
    pub async fn access_token(&self, account: &str, c: &OAuthConfig, fresh: bool) -> Result<String, OAuthError> {
        let now = Utc::now();
        let g = self
            .store
            .oauth_grant(account)
            .await
            .map_err(|e| OAuthError::Store(e.to_string()))?
            .ok_or_else(|| OAuthError::NoGrant(account.to_string()))?;
        if let Some(why) = &g.last_error {
            return Err(OAuthError::Expired { account: account.into(), why: why.clone() });
        }
        if !fresh
            && let (Some(t), Some(exp)) = (&g.access_token, g.access_expires_at)
            && exp - Duration::seconds(AHEAD) > now
            && let Some(t) = self.sealer.open(account, t)
        {
            return Ok(t);
        }
        self.refresh(account, c, &g, now).await
    }

    async fn refresh(
        &self,
        account: &str,
        c: &OAuthConfig,
        g: &OAuthGrant,
        now: DateTime<Utc>,
    ) -> Result<String, OAuthError> {
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
                if dead {
                    self.store.record_oauth_error(account, &why).await.map_err(|x| OAuthError::Store(x.to_string()))?;
                    return Err(OAuthError::Expired { account: account.into(), why });
                }
                return Err(OAuthError::Unavailable(why));
            }
        };
        let access = t.access_token().secret().clone();
        let expires = expiry(now, &t);
        // A rotated refresh token replaces the spent one in the same statement.
        let next = t.refresh_token().map(|r| r.secret().clone()).unwrap_or(refresh);
        let saved = self
            .store
            .record_oauth_refresh(
                account,
                &g.refresh_token,
                &self.sealer.seal(account, &next),
                &self.sealer.seal(account, &access),
                expires,
                now,
            )
            .await
            .map_err(|x| OAuthError::Store(x.to_string()))?;
        if !saved {
            tracing::info!(account, "the OAuth grant changed while refreshing (a new sign-in): using the new token");
        }
        Ok(access)
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
        self.store.save_oauth_grant(&g).await.map_err(|x| OAuthError::Store(x.to_string()))
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
    fn xoauth2_initial_response() {
        assert_eq!(xoauth2("sales@contoso.com", "tok"), "user=sales@contoso.com\x01auth=Bearer tok\x01\x01");
    }
}
