//! A real Dovecot IMAP server per test (Debian `dovecot-imapd`, installed by
//! scripts/test-services.sh): its own config, passwd-file users and Maildirs in a temp dir,
//! on a free loopback port. Stopped (and its children with it) when dropped. Also a small
//! IMAP client for the test side (APPEND, counts, flags) over async-imap.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::net::TcpStream;

pub const PASSWORD: &str = "secret";

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Implicit-TLS port, when started with TLS.
    pub tls_port: Option<u16>,
    /// Dovecot's submission server (SMTP with AUTH, relaying to an SMTP sink), when started
    /// with one.
    pub submission_port: Option<u16>,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot with users `sales`, `news` and `other` (password [`PASSWORD`]).
    /// With a second passdb that checks XOAUTH2/OAUTHBEARER tokens against `introspection_url`
    /// (RFC 7662, POST), as Dovecot does in front of an OAuth 2.0 provider.
    pub fn start_oauth(introspection_url: &str) -> Dovecot {
        Self::start_with(false, Some(introspection_url), None)
    }

    /// [`Dovecot::start_oauth`] plus Dovecot's submission server on `submission_port`: SMTP
    /// AUTH XOAUTH2/OAUTHBEARER checked by the same oauth2 passdb, mail relayed to the SMTP
    /// server on `relay_port` (Debian `dovecot-submissiond`).
    pub fn start_oauth_submission(introspection_url: &str, relay_port: u16) -> Dovecot {
        Self::start_with(false, Some(introspection_url), Some(relay_port))
    }

    pub fn start() -> Dovecot {
        Self::start_opts(false)
    }

    /// Starts Dovecot with STARTTLS on the plain port and implicit TLS on `tls_port`, with a
    /// self-signed certificate for 127.0.0.1 (its PEM is [`Dovecot::ca_file`]).
    pub fn start_tls() -> Dovecot {
        Self::start_opts(true)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_opts(tls: bool) -> Dovecot {
        Self::start_with(tls, None, None)
    }

    fn start_with(tls: bool, introspection_url: Option<&str>, relay_port: Option<u16>) -> Dovecot {
        let dir = tempfile::Builder::new().prefix("dv").tempdir_in("/tmp").expect("temp dir");
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tls_port = tls.then(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let submission_port =
            relay_port.map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let submission = match (relay_port, submission_port) {
            (Some(relay), Some(sub)) => format!(
                "hostname = localhost\nsubmission_relay_host = 127.0.0.1\nsubmission_relay_port = {relay}\n\
                 submission_relay_ssl = no\nservice submission-login {{\n  inet_listener submission {{\n    \
                 address = 127.0.0.1\n    port = {sub}\n  }}\n}}\n"
            ),
            _ => String::new(),
        };
        let protocols = if relay_port.is_some() { "imap submission" } else { "imap" };
        let ssl = if tls {
            crate::helpers::private_ca_and_cert(d);
            format!("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n", d = d.display())
        } else {
            "ssl = no\n".to_string()
        };
        std::fs::write(
            d.join("passwd"),
            ["sales", "news", "other"].map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n")).concat(),
        )
        .unwrap();
        // Only with the oauth2 passdb: limiting passwd-file to PLAIN/LOGIN also hides it from
        // doveadm's user lookups (set_uidvalidity), which the password-only tests need.
        let password_mechanisms = if introspection_url.is_some() { "  mechanisms = plain login\n" } else { "" };
        let (mechanisms, oauth_passdb) = match introspection_url {
            Some(url) => {
                std::fs::write(
                    d.join("oauth2.conf"),
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\n\
                        username_attribute = username\nactive_attribute = active\nactive_value = true\n\
                        force_introspection = yes\n"
                    ),
                )
                .unwrap();
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = \
                            {}/oauth2.conf\n}}\n",
                        d.display()
                    ),
                )
            }
            None => ("plain login", String::new()),
        };
        let conf = format!(
            r#"protocols = {protocols}
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
{ssl}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
first_valid_uid = 1
passdb {{
  driver = passwd-file
{password_mechanisms}  args = scheme=PLAIN username_format=%u {d}/passwd
}}
{oauth_passdb}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
{submission}service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#,
            d = d.display(),
            imaps = tls_port.unwrap_or(0),
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let st = Command::new("chown").args(["-R", "dovecot:dovecot"]).arg(d.join("home")).status().expect("chown");
        assert!(st.success(), "chown home to dovecot");
        let mut dv = Dovecot { dir, port, tls_port, submission_port, child: None };
        dv.run();
        dv
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn run(&mut self) {
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.conf())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dovecot (scripts/test-services.sh installs dovecot-imapd)");
        self.child = Some(child);
        // Ready when the login port accepts connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for port in std::iter::once(self.port).chain(self.submission_port) {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "dovecot did not listen on {port}: {}", self.log());
                std::thread::sleep(Duration::from_millis(20)); // poll interval
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM to the master, which stops its children) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "dovecot still listening after stop");
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Sets a folder's UIDVALIDITY (what a server-side folder rebuild does).
    pub fn set_uidvalidity(&self, user: &str, folder: &str, v: u32) {
        let out = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(["mailbox", "update", "-u", user, "--uid-validity", &v.to_string(), folder])
            .output()
            .expect("doveadm");
        assert!(out.status.success(), "doveadm: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `[[mailboxes]]` TOML for a user of this server.
    pub fn mailbox_toml(&self, name: &str, user: &str, password: &str, extra: &str) -> String {
        format!(
            "[[mailboxes]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n\
                user = \"{user}\"\npassword = \"{password}\"\nfolder = \"INBOX\"\nmax_backoff_secs = 2\n{extra}\n",
            self.port
        )
    }

    pub async fn client(&self, user: &str) -> async_imap::Session<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut c = async_imap::Client::new(tcp);
        c.read_response().await.unwrap().expect("greeting");
        c.login(user, PASSWORD).await.map_err(|(e, _)| e).expect("login")
    }

    /// APPENDs raw messages to a folder (created if missing).
    pub async fn append(&self, user: &str, folder: &str, msgs: &[Vec<u8>]) {
        let mut s = self.client(user).await;
        let _ = s.create(folder).await;
        for m in msgs {
            s.append(folder, None, None, m).await.expect("append");
        }
        s.logout().await.unwrap();
    }

    /// (uid, flags) of the messages in a folder; empty if the folder does not exist.
    pub async fn messages(&self, user: &str, folder: &str) -> Vec<(u32, Vec<String>)> {
        let mut s = self.client(user).await;
        let Ok(mb) = s.examine(folder).await else { return Vec::new() };
        let mut out = Vec::new();
        if mb.exists > 0 {
            let fetched: Vec<_> = s.uid_fetch("1:*", "(UID FLAGS)").await.unwrap().try_collect().await.unwrap();
            for f in &fetched {
                out.push((f.uid.unwrap(), f.flags().map(|fl| format!("{fl:?}")).collect()));
            }
        }
        s.logout().await.unwrap();
        out.sort();
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

/// A fixture from fixtures/mail.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A simple new inquiry with a given Message-ID and sender.
pub fn inquiry(id: &str, from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: sales@crm.example.com\r\nSubject: {subject}\r\n\
        Date: Fri, 27 Nov 2026 10:00:00 +0300\r\nMessage-ID: <{id}>\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}
