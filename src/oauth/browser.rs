//! The browser sign-in (RFC 6749 §4.1 authorization code with PKCE, RFC 7636) for a server
//! with no browser of its own (RFC 8252 loopback redirect): `inflow oauth login` prints the
//! address to open, listens on 127.0.0.1 for the provider's redirect, and also reads the
//! redirected address pasted into the terminal — the browser is usually on another machine,
//! where 127.0.0.1 is not this server, so its page fails to load but its address bar holds
//! the code. Whichever arrives first with the right `state` wins. Google allows the Gmail
//! scope only on this flow.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use oauth2::{AuthUrl, AuthorizationCode, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use tokio::sync::mpsc;

use super::{OAuthError, Tokens, client, describe, endpoints, http};
use crate::config::{OAuthConfig, OAuthProvider};

/// How long the sign-in waits for the person.
const WAIT: Duration = Duration::from_secs(15 * 60);

/// What came back from the provider, read from a redirect's query.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Code(String),
    /// The provider's `error` and `error_description` (consent refused, wrong redirect URI…).
    Refused(String),
    /// Not from this sign-in (another attempt's `state`), or no code and no error.
    Unrelated,
}

/// Reads a redirect: the whole pasted address, or just its query.
fn read_answer(text: &str, state: &str) -> Answer {
    let text = text.trim();
    let query = match text.split_once('?') {
        Some((_, q)) => q,
        None => text,
    };
    let query = query.split('#').next().unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(state) {
        return Answer::Unrelated;
    }
    if let Some(e) = get("error") {
        let d = get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        return Answer::Refused(format!("{e}{d}"));
    }
    match get("code") {
        Some(c) if !c.is_empty() => Answer::Code(c.to_string()),
        _ => Answer::Unrelated,
    }
}

/// The redirect address registered with the provider. Microsoft's portal offers
/// `http://localhost` for desktop apps; Google asks for `http://127.0.0.1`. Both ignore the
/// port when matching a loopback address (RFC 8252 §7.3).
fn redirect_uri(provider: OAuthProvider, port: u16) -> String {
    match provider {
        OAuthProvider::Microsoft => format!("http://localhost:{port}"),
        _ => format!("http://127.0.0.1:{port}"),
    }
}

const PAGE: &str = "<!doctype html><meta charset=utf-8><title>inflow</title>\
    <p>inflow received the sign-in. You can close this tab and go back to the terminal.</p>";

async fn redirected(State(tx): State<mpsc::Sender<String>>, RawQuery(q): RawQuery) -> Html<&'static str> {
    if let Some(q) = q {
        let _ = tx.send(q).await;
    }
    Html(PAGE)
}

/// The terminal's lines, read on a thread of their own: a blocking read of stdin on the
/// runtime's blocking pool would keep the process from exiting after the sign-in until the
/// terminal sends another line.
pub fn paste_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Tokens {
    /// The browser sign-in: tells the person what to open (`say`), takes the code from the
    /// loopback redirect or from `pasted` (lines typed into the terminal; see `paste_lines`),
    /// and stores the grant. `port` 0
    /// picks a free one; a fixed port suits an SSH tunnel (`ssh -L PORT:127.0.0.1:PORT`).
    pub async fn browser_login(
        &self,
        account: &str,
        c: &OAuthConfig,
        port: u16,
        mut pasted: mpsc::Receiver<String>,
        say: impl Fn(&str),
    ) -> Result<(), OAuthError> {
        let e = endpoints(c).map_err(OAuthError::Config)?;
        let Some(auth_url) = e.authorization_url.clone() else {
            return Err(OAuthError::Config("provider = \"generic\" needs authorization_url for --browser".into()));
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|x| OAuthError::Config(format!("cannot listen on 127.0.0.1:{port} for the redirect: {x}")))?;
        let port = listener.local_addr().map_err(|x| OAuthError::Config(x.to_string()))?.port();
        let redirect = redirect_uri(c.provider, port);
        let client = client(c, e.token_url.clone())?
            .set_auth_uri(AuthUrl::new(auth_url).map_err(|x| OAuthError::Config(x.to_string()))?)
            .set_redirect_uri(RedirectUrl::new(redirect.clone()).map_err(|x| OAuthError::Config(x.to_string()))?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(e.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if c.provider == OAuthProvider::Google {
            // A refresh token only with offline access, and again on a repeated sign-in only
            // when the consent screen is shown.
            request = request.add_extra_param("access_type", "offline").add_extra_param("prompt", "consent");
        }
        let (url, state) = request.url();

        let (tx, mut rx) = mpsc::channel::<String>(4);
        let app = axum::Router::new().fallback(redirected).with_state(tx.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        // Microsoft's redirect names localhost, which a browser may reach over IPv6.
        let v6 = match tokio::net::TcpListener::bind(("::1", port)).await {
            Ok(l) => {
                let app = axum::Router::new().fallback(redirected).with_state(tx.clone());
                Some(tokio::spawn(async move { axum::serve(l, app).await }))
            }
            Err(_) => None,
        };
        let reader = tokio::spawn(async move {
            while let Some(line) = pasted.recv().await {
                if !line.trim().is_empty() && tx.send(line).await.is_err() {
                    break;
                }
            }
        });
        say(&format!(
            "To sign in '{account}', open this address in a browser and sign in:\n\n{url}\n\n\
             The browser is then sent to {redirect}/?code=… . On this machine (or through \
             `ssh -L {port}:127.0.0.1:{port}`) that page tells you it is done. If the page \
             does not load, copy the whole address from the browser's address bar and paste it here:"
        ));
        let answer = tokio::time::timeout(WAIT, async {
            while let Some(text) = rx.recv().await {
                match read_answer(&text, state.secret()) {
                    Answer::Unrelated => say("that address is not from this sign-in (its state differs); waiting"),
                    a => return Some(a),
                }
            }
            None
        })
        .await;
        server.abort();
        reader.abort();
        if let Some(v6) = v6 {
            v6.abort();
        }
        let code = match answer {
            Err(_) => {
                return Err(OAuthError::Unavailable(format!("no sign-in within {} minutes", WAIT.as_secs() / 60)));
            }
            Ok(None) => return Err(OAuthError::Unavailable("the sign-in was not completed".into())),
            Ok(Some(Answer::Refused(why))) => {
                let hint = super::explain(&why).map(|h| format!(" — {h}")).unwrap_or_default();
                return Err(OAuthError::Unavailable(format!("the provider refused: {why}{hint}")));
            }
            Ok(Some(Answer::Code(code))) => code,
            Ok(Some(Answer::Unrelated)) => unreachable!("skipped above"),
        };
        let t = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http()?)
            .await
            .map_err(|x| OAuthError::Unavailable(format!("the code was not accepted: {}", describe(&x).1)))?;
        self.save_grant(account, c, &e.scopes, &t).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_redirect_is_read_only_with_this_sign_ins_state() {
        let url = "http://127.0.0.1:8765/?state=s1&code=4%2F0Ab&scope=https%3A%2F%2Fmail.google.com%2F";
        assert_eq!(read_answer(url, "s1"), Answer::Code("4/0Ab".into()));
        assert_eq!(read_answer("  state=s1&code=abc  ", "s1"), Answer::Code("abc".into()), "a bare query");
        assert_eq!(read_answer(url, "s2"), Answer::Unrelated, "another attempt's state");
        assert_eq!(read_answer("http://127.0.0.1:8765/favicon.ico", "s1"), Answer::Unrelated);
        assert_eq!(
            read_answer(
                "http://localhost:1/?error=access_denied&error_description=AADSTS65004%3A+consent+declined&state=s1",
                "s1"
            ),
            Answer::Refused("access_denied: AADSTS65004: consent declined".into())
        );
    }

    #[test]
    fn loopback_redirects_as_each_provider_registers_them() {
        assert_eq!(redirect_uri(OAuthProvider::Microsoft, 8765), "http://localhost:8765");
        assert_eq!(redirect_uri(OAuthProvider::Google, 8765), "http://127.0.0.1:8765");
    }
}
