//! The SMTP relay of `[smtp]`, one client for every sender (waves and alert digests): TCP
//! with TCP_NODELAY, implicit TLS or STARTTLS with the web PKI plus `smtp.tls_ca_file`,
//! EHLO, AUTH. Callers drive the session (the wave sender pipelines many messages on one;
//! `send_one` sends a single message and quits).

use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use crate::config::{Config, MailAuth, OAuthConfig, SaslMechanism, TlsMode};
use crate::oauth::{LazyTokens, RELAY_ACCOUNT};
use crate::store::Store;

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Unreachable, TLS, a refused password: try again later.
    #[error("{0}")]
    Failed(String),
    /// The relay's OAuth grant is missing or dead, or the relay refuses a fresh token: mail
    /// waits (nothing fails) until someone signs in again.
    #[error("{0}")]
    Auth(String),
}

impl From<String> for ConnectError {
    fn from(s: String) -> ConnectError {
        ConnectError::Failed(s)
    }
}

/// The relay's OAuth sign-in: whose mailbox sends, the client, and the token source.
struct RelayOAuth {
    user: String,
    config: OAuthConfig,
    tokens: LazyTokens,
}

/// Why a single send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 4xx, timeouts, connection trouble: try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// 5xx or a message that cannot be built: do not retry.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Where and how mail goes out (`[smtp]`): waves and alert digests use this one client.
#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
    /// Key of the relay's shared rate and back-off row.
    pub key: String,
    /// Roots for implicit TLS (the web PKI plus `smtp.tls_ca_file`).
    pub tls_config: Arc<tokio_rustls::rustls::ClientConfig>,
    /// `smtp.tls_ca_file` as PEM, added to lettre's roots for STARTTLS.
    pub ca_pem: Option<Vec<u8>>,
    /// `auth = "oauth2"`: SASL XOAUTH2 with the `smtp` grant instead of a password.
    oauth: Option<Arc<RelayOAuth>>,
}

impl Relay {
    /// The relay of `[smtp]` (None when no host is set); `store` holds its OAuth grant, sealed
    /// with `[oauth]`'s key.
    pub fn from_config(cfg: &Config, store: &Store) -> anyhow::Result<Option<Relay>> {
        let c = &cfg.smtp;
        let Some(host) = c.host.clone() else { return Ok(None) };
        let oauth = match (c.auth, &c.oauth) {
            (MailAuth::Oauth2, Some(o)) => Some(Arc::new(RelayOAuth {
                user: c.user.clone().unwrap_or_default(),
                config: o.clone(),
                tokens: LazyTokens::new(store.clone(), cfg.oauth.key.clone()),
            })),
            _ => None,
        };
        Ok(Some(Relay {
            oauth,
            tls_config: crate::tls::client_config(c.tls_ca_file.as_deref())?,
            ca_pem: c
                .tls_ca_file
                .as_ref()
                .map(|f| std::fs::read(f).map_err(|e| anyhow::anyhow!("smtp.tls_ca_file {}: {e}", f.display())))
                .transpose()?,
            key: format!("{host}:{}", c.port),
            port: c.port,
            tls: c.tls,
            credentials: match (c.auth, &c.user, &c.password) {
                (MailAuth::Password, Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
                _ => None,
            },
            timeout: Duration::from_secs(c.timeout_secs.max(1)),
            host,
        }))
    }

    /// Opens a session: TCP with TCP_NODELAY (lettre's own connect leaves Nagle on, and the
    /// body and its final "." are two writes: measured 90 msg/s over 4 sessions on loopback,
    /// each message waiting out a delayed ACK), implicit TLS or STARTTLS, EHLO, AUTH.
    #[tracing::instrument(level = "debug", skip_all, fields(relay = %self.host))]
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        let hello = ClientId::default();
        let at = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| format!("{at}: connect timed out"))?
            .map_err(|e| format!("{at}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = if self.tls == TlsMode::Implicit {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("'{}': {e}", self.host))?;
            let tls = tokio::time::timeout(
                self.timeout,
                tokio_rustls::TlsConnector::from(self.tls_config.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| format!("{at}: TLS handshake timed out"))?
            .map_err(|e| format!("{at}: TLS: {e}"))?;
            Box::new(TlsStream(tls))
        } else {
            Box::new(tcp)
        };
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(stream, &hello).await.map_err(|e| format!("{at}: {e}"))?;
        if self.tls == TlsMode::Starttls {
            let mut params = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca_pem {
                params = params.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_pem(pem)
                        .map_err(|e| format!("smtp.tls_ca_file: {e}"))?,
                );
            }
            let params = params.build().map_err(|e| e.to_string())?;
            conn.starttls(params, &hello).await.map_err(|e| format!("{at}: STARTTLS: {e}"))?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await.map_err(|e| format!("{at}: AUTH: {e}"))?;
        }
        if let Some(o) = &self.oauth {
            if let Err(e) = o.authenticate(&mut conn, &self.host, self.port, &at).await {
                let _ = conn.quit().await;
                return Err(e);
            }
        }
        Ok(conn)
    }
}

impl RelayOAuth {
    /// AUTH XOAUTH2 with the stored token; a refusal gets one refresh and one retry on the
    /// same session (a token revoked before its expiry), a second refusal is the answer.
    async fn authenticate(
        &self,
        conn: &mut AsyncSmtpConnection,
        host: &str,
        port: u16,
        at: &str,
    ) -> Result<(), ConnectError> {
        let tokens = self.tokens.get().await.map_err(|e| ConnectError::Failed(e.to_string()))?;
        let mut refused = String::new();
        for fresh in [false, true] {
            let token = match tokens.access_token(RELAY_ACCOUNT, &self.config, fresh).await {
                Ok(t) => t,
                Err(e) if e.needs_person() => return Err(ConnectError::Auth(e.to_string())),
                Err(e) => return Err(ConnectError::Failed(e.to_string())),
            };
            match sasl(conn, self.config.mechanism, &self.user, host, port, &token).await {
                Ok(()) => return Ok(()),
                Err(Refusal::Refused(text)) => refused = text,
                Err(Refusal::Broken(text)) => return Err(ConnectError::Failed(format!("{at}: AUTH: {text}"))),
            }
        }
        Err(ConnectError::Auth(format!(
            "{at} refused a freshly issued token for '{}' ({refused}): check that SMTP AUTH is allowed for this \
             mailbox and that the grant has the SMTP scope (inflow oauth login {RELAY_ACCOUNT})",
            self.user
        )))
    }
}

enum Refusal {
    /// 535 (or any 4xx/5xx): the token was not taken; the session is still usable.
    Refused(String),
    /// The connection failed.
    Broken(String),
}

/// A command line written as is.
struct Line(String);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `AUTH XOAUTH2` / `AUTH OAUTHBEARER` by hand: on a bad token the server answers 334 with an
/// error JSON and waits for the mechanism's abort answer before its 535 (Google's and
/// Microsoft's protocol, RFC 7628 §3.2.3). lettre's XOAUTH2 gives up at the 334 and leaves
/// the session mid-exchange, so a retry could not follow.
async fn sasl(
    conn: &mut AsyncSmtpConnection,
    m: SaslMechanism,
    user: &str,
    host: &str,
    port: u16,
    token: &str,
) -> Result<(), Refusal> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (name, initial) = crate::oauth::sasl(m, user, host, port, token);
    let refused = |e: lettre::transport::smtp::Error| {
        if e.is_permanent() || e.is_transient() {
            Refusal::Refused(e.to_string())
        } else {
            Refusal::Broken(e.to_string())
        }
    };
    let r = conn.command(Line(format!("AUTH {name} {}\r\n", b64.encode(initial)))).await.map_err(refused)?;
    if r.code().to_string() == "334" {
        let detail = r
            .message()
            .next()
            .and_then(|m| b64.decode(m.trim()).ok())
            .map(|j| String::from_utf8_lossy(&j).into_owned())
            .unwrap_or_default();
        let abort = match crate::oauth::sasl_abort(m) {
            "" => String::new(),
            a => b64.encode(a),
        };
        return match conn.command(Line(format!("{abort}\r\n"))).await {
            Ok(r) => Err(Refusal::Refused(format!("{} {detail}", r.code()))),
            Err(e) => Err(match refused(e) {
                Refusal::Refused(t) => Refusal::Refused(format!("{t} {detail}")),
                b => b,
            }),
        };
    }
    Ok(())
}

/// An implicit-TLS session as lettre's transport trait wants it.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl Relay {
    /// Sends one message on a session of its own (connect, MAIL/RCPT/DATA, QUIT): for the
    /// few messages that are not waves. A 5xx reply is permanent; anything else transient.
    pub async fn send_one(&self, message: &lettre::Message) -> Result<(), SendError> {
        let mut conn = self.connect().await.map_err(|e| SendError::Transient(e.to_string()))?;
        let sent = conn.send(message.envelope(), &message.formatted()).await;
        let _ = conn.quit().await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}
