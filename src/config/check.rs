//! The semantic checks serde cannot express, and reading the `*_file` secrets: every
//! problem is collected with its key path.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

impl Config {
    /// Semantic checks that serde cannot express; every problem is collected.
    pub(super) fn validate(&self, out: &mut Vec<ConfigProblem>) {
        let mut bad = |path: String, message: String| out.push(ConfigProblem { path, line: None, message });
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bad("database.url".into(), format!("'{url}' must start with sqlite:// or postgres://"));
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections".into(), "must be at least 1".into());
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            bad("http.listen".into(), format!("'{}' is not an address like 127.0.0.1:8080", self.http.listen));
        }
        for (i, p) in self.http.trusted_proxies.iter().enumerate() {
            if crate::http::client::parse_proxy(p).is_none() {
                bad(format!("http.trusted_proxies[{i}]"), format!("'{p}' is not an IP address or CIDR range"));
            }
        }
        if self.http.body_limit_bytes < 1024 {
            bad("http.body_limit_bytes".into(), "must be at least 1024".into());
        }
        if self.org.timezone.parse::<chrono_tz::Tz>().is_err() {
            bad(
                "org.timezone".into(),
                format!("'{}' is not an IANA time zone (e.g. Europe/Moscow)", self.org.timezone),
            );
        }
        if self.org.default_phone_region.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_err() {
            bad(
                "org.default_phone_region".into(),
                format!("'{}' is not a phone region (e.g. RU, UA)", self.org.default_phone_region),
            );
        }
        if !matches!(self.org.locale.as_str(), "ru" | "en") {
            bad("org.locale".into(), format!("'{}': the console speaks ru or en", self.org.locale));
        }
        if self.console.session_hours == 0 || self.console.session_hours > 24 * 30 {
            bad("console.session_hours".into(), "must be 1 to 720".into());
        }
        if self.console.sign_in_attempts_per_minute == 0 {
            bad("console.sign_in_attempts_per_minute".into(), "must be at least 1".into());
        }
        for (i, c) in self.org.custom_lead_sources.iter().enumerate() {
            if *c < 100_000_000 {
                bad(format!("org.custom_lead_sources[{i}]"), format!("{c}: custom values start at 100000000 (R-LD-4)"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.mailboxes.iter().enumerate() {
            let p = |k: &str| format!("mailboxes[{i}].{k}");
            if m.name.trim().is_empty() {
                bad(p("name"), "is required".into());
            } else if !names.insert(m.name.clone()) {
                bad(p("name"), format!("'{}' is used by another mailbox", m.name));
            }
            if m.host.trim().is_empty() {
                bad(p("host"), "is required".into());
            }
            if m.user.trim().is_empty() {
                bad(p("user"), "is required".into());
            }
            if m.owner.trim().is_empty() {
                bad(p("owner"), "is required (a systemuser id or internal e-mail)".into());
            }
            match (m.auth, &m.password, &m.password_file) {
                (MailAuth::Password, None, None) if m.enabled => {
                    bad(p("password_file"), "a password or password_file is required".into())
                }
                (MailAuth::Password, Some(_), Some(_)) => {
                    bad(p("password"), "set password or password_file, not both".into())
                }
                // A password never goes near an OAuth path.
                (MailAuth::Oauth2, Some(_), _) | (MailAuth::Oauth2, _, Some(_)) => bad(
                    p("password"),
                    "auth = \"oauth2\" signs in with a token: remove password and password_file".into(),
                ),
                _ => {}
            }
            check_oauth(m.auth, m.oauth.as_ref(), "[mailboxes.oauth]", &p, &mut bad);
            if m.auth == MailAuth::Oauth2 && m.name == crate::oauth::RELAY_ACCOUNT {
                bad(p("name"), "'smtp' names the relay's OAuth grant: give the mailbox another name".into());
            }
            if m.batch_size == 0 || m.batch_size > 1000 {
                bad(p("batch_size"), "must be between 1 and 1000".into());
            }
            if m.lease_secs < 10 {
                bad(p("lease_secs"), "must be at least 10".into());
            }
            if m.poll_interval_secs == 0 {
                bad(p("poll_interval_secs"), "must be at least 1".into());
            }
            if m.sender_hourly_limit == 0 {
                bad(p("sender_hourly_limit"), "must be at least 1".into());
            }
            if m.tls == TlsMode::Plain && !is_loopback(&m.host) {
                bad(p("tls"), format!("plain IMAP is allowed only to a loopback address, not '{}'", m.host));
            }
            if m.filter > 3 {
                bad(p("filter"), format!("{} is not 0..3 (R-EM-2)", m.filter));
            }
            if m.poll_interval_secs == 0 {
                bad(p("poll_interval_secs"), "must be at least 1".into());
            }
        }
        for (i, l) in self.pbx.lines.iter().enumerate() {
            if crate::crm::Phone::parse(&l.did, &self.org.default_phone_region).e164().is_none() {
                bad(format!("pbx.lines[{i}].did"), format!("'{}' is not a phone number", l.did));
            }
            if l.owner.trim().is_empty() {
                bad(format!("pbx.lines[{i}].owner"), "is required".into());
            }
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                bad(
                    format!("api.tokens[{i}].sha256"),
                    "must be 64 lowercase hex digits (the SHA-256 of the token)".into(),
                );
            }
            if !["admin", "marketer", "viewer"].contains(&t.role.as_str()) {
                bad(format!("api.tokens[{i}].role"), format!("'{}' is not admin, marketer or viewer", t.role));
            }
        }
        if self.api.stale_lead_days == 0 {
            bad("api.stale_lead_days".into(), "must be at least 1".into());
        }
        if self.pbx.sweep_interval_secs == 0 {
            bad("pbx.sweep_interval_secs".into(), "must be at least 1".into());
        }
        if self.pbx.body_limit_bytes < 1024 {
            bad("pbx.body_limit_bytes".into(), "must be at least 1024".into());
        }
        for (name, z) in
            self.pbx.zadarma.iter().map(|z| ("zadarma", z)).chain(self.pbx.novofon.iter().map(|z| ("novofon", z)))
        {
            if z.secret_file.is_none() {
                bad(
                    format!("pbx.{name}.secret_file"),
                    "is required: the notifications are signed with the account's API secret".into(),
                );
            }
            if let Some(tz) = &z.timezone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    bad(format!("pbx.{name}.timezone"), format!("'{tz}' is not an IANA time zone"));
                }
            }
        }
        for m in &self.pbx.mango {
            if m.api_key.trim().is_empty() {
                bad("pbx.mango.api_key".into(), "is required".into());
            }
            if m.api_salt_file.is_none() {
                bad("pbx.mango.api_salt_file".into(), "is required: Mango signs events with the API salt".into());
            }
        }
        for t in &self.pbx.twilio {
            if t.auth_token_file.is_none() {
                bad("pbx.twilio.auth_token_file".into(), "is required".into());
            }
            if t.public_base_url.is_none() && self.org.public_base_url.is_none() {
                bad(
                    "pbx.twilio.public_base_url".into(),
                    "is required (or org.public_base_url): Twilio signs the exact URL it calls".into(),
                );
            }
        }
        if self.pbx.placetel.iter().any(|p| p.secret_file.is_none()) {
            bad(
                "pbx.placetel.secret_file".into(),
                "is required: set a shared secret in Placetel's external API settings and put it here".into(),
            );
        }
        for g in &self.pbx.sipgate {
            if g.public_url.is_none() && self.org.public_base_url.is_none() {
                bad(
                    "pbx.sipgate.public_url".into(),
                    "is required (or org.public_base_url): sipgate is told where to send answer and hangup".into(),
                );
            }
            if let Some(k) = g.public_key.as_deref() {
                if crate::ingest::pbx::sipgate::rsa_key_from_pem(k).is_err() {
                    bad("pbx.sipgate.public_key_file".into(), "is not a PEM public key".into());
                }
            }
        }
        if self.pbx.itoolabs.iter().any(|c| c.crm_token_file.is_none()) {
            bad(
                "pbx.itoolabs.crm_token_file".into(),
                "is required: the PBX sends the CRM token set in its cabinet with every request".into(),
            );
        }
        for (i, a) in self.pbx.asterisk.iter().enumerate() {
            if a.username.trim().is_empty() || a.secret_file.is_none() {
                bad(
                    format!("pbx.asterisk[{i}]"),
                    "needs username and secret_file: a manager.conf user with read = cdr".into(),
                );
            }
            if let Some(tz) = a.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.asterisk[{i}].timezone"), format!("'{tz}' is not an IANA time zone"));
            }
        }
        for (i, c) in self.pbx.cdr_table.iter().enumerate() {
            if !(c.url.starts_with("mysql://") || c.url.starts_with("mariadb://")) {
                bad(format!("pbx.cdr_table[{i}].url"), "must be mysql://USER@HOST:PORT/DATABASE".into());
            }
            if c.table.is_empty() || !c.table.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                bad(format!("pbx.cdr_table[{i}].table"), "must be a plain table name (letters, digits, _)".into());
            }
            if let Some(tz) = c.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.cdr_table[{i}].timezone"), format!("'{tz}' is not an IANA time zone"));
            }
            if c.poll_interval_secs == 0 || c.longest_call_secs == 0 {
                bad(format!("pbx.cdr_table[{i}]"), "poll_interval_secs and longest_call_secs must be above 0".into());
            }
        }
        for (name, u) in self.pbx.uis.iter().map(|u| ("uis", u)).chain(self.pbx.yeastar.iter().map(|u| ("yeastar", u)))
        {
            if u.token_file.is_none() {
                bad(
                    format!("pbx.{name}.token_file"),
                    "is required: the provider signs nothing, so its URLs carry this token".into(),
                );
            }
            if let Some(tz) = u.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.{name}.timezone"), format!("'{tz}' is not an IANA time zone"));
            }
        }
        for (name, c) in [("cti", &self.pbx.cti), ("sipuni", &self.pbx.sipuni), ("3cx", &self.pbx.threecx)] {
            if c.iter().any(|c| c.token_file.is_none()) {
                bad(
                    format!("pbx.{name}.token_file"),
                    "is required: the provider signs nothing, so its URL carries this token".into(),
                );
            }
        }
        for g in &self.pbx.generic {
            if g.token_file.is_none() && g.hmac_secret_file.is_none() {
                bad(
                    "pbx.generic.token_file".into(),
                    "set token_file or hmac_secret_file: unauthenticated call events are refused".into(),
                );
            }
        }
        if let Some(host) = &self.smtp.host {
            if self.smtp.tls == TlsMode::Plain && !is_loopback(host) {
                bad("smtp.tls".into(), format!("plain SMTP is allowed only to a loopback address, not '{host}'"));
            }
            match &self.smtp.from {
                None => bad("smtp.from".into(), "is required when smtp.host is set".into()),
                Some(f) if crate::crm::EmailAddress::parse(f).is_err() => {
                    bad("smtp.from".into(), format!("'{f}' is not an e-mail address"))
                }
                _ => {}
            }
            if self.smtp.password.is_some() && self.smtp.password_file.is_some() {
                bad("smtp.password".into(), "set password or password_file, not both".into());
            }
            if self.smtp.auth == MailAuth::Oauth2 {
                if self.smtp.password.is_some() || self.smtp.password_file.is_some() {
                    bad(
                        "smtp.password".into(),
                        "auth = \"oauth2\" signs in with a token: remove password and password_file".into(),
                    );
                }
                if self.smtp.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    bad("smtp.user".into(), "auth = \"oauth2\" needs the mailbox address that sends".into());
                }
            }
            check_oauth(self.smtp.auth, self.smtp.oauth.as_ref(), "[smtp.oauth]", &|k| format!("smtp.{k}"), &mut bad);
        }
        if self.waves.max_attempts == 0 {
            bad("waves.max_attempts".into(), "must be at least 1".into());
        }
        let dkim = [
            self.waves.dkim_domain.is_some(),
            self.waves.dkim_selector.is_some(),
            self.waves.dkim_private_key_file.is_some(),
        ];
        if dkim.iter().any(|x| *x) && !dkim.iter().all(|x| *x) {
            bad(
                "waves.dkim_domain".into(),
                "DKIM needs dkim_domain, dkim_selector and dkim_private_key_file together".into(),
            );
        }
        if dkim_algorithm(&self.waves.dkim_algorithm).is_none() {
            bad("waves.dkim_algorithm".into(), format!("'{}' must be rsa or ed25519", self.waves.dkim_algorithm));
        }
        if self.waves.batch_size == 0 || self.waves.batch_size > 10_000 {
            bad("waves.batch_size".into(), "must be between 1 and 10000".into());
        }
        if self.waves.expansion_chunk == 0 {
            bad("waves.expansion_chunk".into(), "must be at least 1".into());
        }
        if self.waves.claim_lease_secs < 1 {
            bad("waves.claim_lease_secs".into(), "must be at least 1".into());
        }
        if self.waves.poll_interval_ms < 10 {
            bad("waves.poll_interval_ms".into(), "must be at least 10".into());
        }
        if self.waves.rate_per_minute == Some(0) {
            bad("waves.rate_per_minute".into(), "must be at least 1 (leave it unset for no limit)".into());
        }
        for (k, v) in [
            ("waves.bounce_address", &self.waves.bounce_address),
            ("waves.unsubscribe_mailto", &self.waves.unsubscribe_mailto),
        ] {
            if let Some(a) = v {
                if crate::crm::EmailAddress::parse(a).is_err() {
                    bad(k.into(), format!("'{a}' is not an e-mail address"));
                }
            }
        }
        let si = self.alerts.scan_interval_secs;
        let divides = |unit: u64| si > 0 && (if si < unit { unit.is_multiple_of(si) } else { si.is_multiple_of(unit) });
        if !(si < 60 && divides(60)
            || (60..3600).contains(&si) && si.is_multiple_of(60) && 3600u64.is_multiple_of(si)
            || si >= 3600 && si.is_multiple_of(3600) && 86_400u64.is_multiple_of(si))
        {
            bad(
                "alerts.scan_interval_secs".into(),
                format!("{si} must divide a minute (e.g. 30), an hour (e.g. 300) or a day (e.g. 7200)"),
            );
        }
        for (k, t) in [
            ("alerts.subject_template", &self.alerts.subject_template),
            ("alerts.body_template", &self.alerts.body_template),
        ] {
            if let Some(t) = t {
                let mut env = minijinja::Environment::new();
                if let Err(e) = env.add_template("t", t) {
                    bad(k.into(), format!("template error: {e}"));
                }
            }
        }
        if parse_working_hours(&self.alerts.working_hours).is_none() {
            bad("alerts.working_hours".into(), format!("'{}' is not HH:MM-HH:MM", self.alerts.working_hours));
        }
        for (i, d) in self.alerts.working_days.iter().enumerate() {
            if !["mon", "tue", "wed", "thu", "fri", "sat", "sun"].contains(&d.as_str()) {
                bad(format!("alerts.working_days[{i}]"), format!("'{d}' is not mon..sun"));
            }
        }
        for (i, k) in self.alerts.kinds.iter().enumerate() {
            if !["task", "phonecall", "campaignactivity", "campaignresponse", "email", "appointment"]
                .contains(&k.as_str())
            {
                bad(format!("alerts.kinds[{i}]"), format!("'{k}' cannot be overdue (R-TASK-1)"));
            }
        }
        if let Some(f) = &self.alerts.fallback_address {
            if crate::crm::EmailAddress::parse(f).is_err() {
                bad("alerts.fallback_address".into(), format!("'{f}' is not an e-mail address"));
            }
        }
    }

    /// Reads every `*_file` secret. Relative paths are looked up in `$CREDENTIALS_DIRECTORY`
    /// (systemd `LoadCredential=`) when it is set.
    pub(super) fn read_secrets(&mut self, env: &BTreeMap<String, String>, out: &mut Vec<ConfigProblem>) {
        let cred_dir = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let mut read = |path: String, file: &Option<PathBuf>| -> Option<String> {
            let f = file.as_ref()?;
            let full = match (&cred_dir, f.is_relative()) {
                (Some(d), true) => d.join(f),
                _ => f.clone(),
            };
            match std::fs::read_to_string(&full) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        out.push(ConfigProblem {
                            path,
                            line: None,
                            message: format!("secret file {} is empty", full.display()),
                        });
                        None
                    } else {
                        Some(s)
                    }
                }
                Err(e) => {
                    out.push(ConfigProblem {
                        path,
                        line: None,
                        message: format!("cannot read secret file {}: {e}", full.display()),
                    });
                    None
                }
            }
        };
        if let Some(p) = read("database.password_file".into(), &self.database.password_file) {
            self.database.password = Some(p);
        }
        for (i, m) in self.mailboxes.iter_mut().enumerate().filter(|(_, m)| m.enabled) {
            if let Some(p) = read(format!("mailboxes[{i}].password_file"), &m.password_file) {
                m.password = Some(p);
            }
            if let Some(o) = m.oauth.as_mut() {
                o.client_secret = read(format!("mailboxes[{i}].oauth.client_secret_file"), &o.client_secret_file);
            }
        }
        for z in self.pbx.zadarma.iter_mut() {
            z.secret = read("pbx.zadarma.secret_file".into(), &z.secret_file);
        }
        for z in self.pbx.novofon.iter_mut() {
            z.secret = read("pbx.novofon.secret_file".into(), &z.secret_file);
        }
        for m in self.pbx.mango.iter_mut() {
            m.api_salt = read("pbx.mango.api_salt_file".into(), &m.api_salt_file);
        }
        for t in self.pbx.twilio.iter_mut() {
            t.auth_token = read("pbx.twilio.auth_token_file".into(), &t.auth_token_file);
            t.dial_action_twiml = read("pbx.twilio.dial_action_twiml_file".into(), &t.dial_action_twiml_file);
        }
        for p in self.pbx.placetel.iter_mut() {
            p.secret = read("pbx.placetel.secret_file".into(), &p.secret_file);
        }
        for g in self.pbx.sipgate.iter_mut() {
            g.public_key = read("pbx.sipgate.public_key_file".into(), &g.public_key_file);
        }
        for c in self.pbx.cti.iter_mut() {
            c.token = read("pbx.cti.token_file".into(), &c.token_file);
        }
        for c in self.pbx.sipuni.iter_mut() {
            c.token = read("pbx.sipuni.token_file".into(), &c.token_file);
        }
        for (i, a) in self.pbx.asterisk.iter_mut().enumerate() {
            a.secret = read(format!("pbx.asterisk[{i}].secret_file"), &a.secret_file);
        }
        for (i, c) in self.pbx.cdr_table.iter_mut().enumerate() {
            c.password = read(format!("pbx.cdr_table[{i}].password_file"), &c.password_file);
        }
        for c in self.pbx.uis.iter_mut() {
            c.token = read("pbx.uis.token_file".into(), &c.token_file);
        }
        for c in self.pbx.yeastar.iter_mut() {
            c.token = read("pbx.yeastar.token_file".into(), &c.token_file);
        }
        for c in self.pbx.threecx.iter_mut() {
            c.token = read("pbx.3cx.token_file".into(), &c.token_file);
        }
        for c in self.pbx.itoolabs.iter_mut() {
            c.crm_token = read("pbx.itoolabs.crm_token_file".into(), &c.crm_token_file);
        }
        for g in self.pbx.generic.iter_mut() {
            g.token = read("pbx.generic.token_file".into(), &g.token_file);
            g.hmac_secret = read("pbx.generic.hmac_secret_file".into(), &g.hmac_secret_file);
        }
        self.oauth.key = read("oauth.key_file".into(), &self.oauth.key_file);
        if let Some(o) = self.smtp.oauth.as_mut() {
            o.client_secret = read("smtp.oauth.client_secret_file".into(), &o.client_secret_file);
        }
        if let Some(p) = read("smtp.password_file".into(), &self.smtp.password_file) {
            self.smtp.password = Some(p);
        }
        if let Some(p) = read("waves.unsubscribe_secret_file".into(), &self.waves.unsubscribe_secret_file) {
            self.waves.unsubscribe_secret = Some(p);
        }
        if let Some(k) = read("waves.dkim_private_key_file".into(), &self.waves.dkim_private_key_file) {
            match dkim_algorithm(&self.waves.dkim_algorithm).map(|a| lettre::message::dkim::DkimSigningKey::new(&k, a))
            {
                Some(Ok(_)) => self.waves.dkim_private_key = Some(k),
                Some(Err(e)) => out.push(ConfigProblem {
                    path: "waves.dkim_private_key_file".into(),
                    line: None,
                    message: format!("not a usable {} key: {e:?}", self.waves.dkim_algorithm),
                }),
                None => {}
            }
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The OAuth checks a mailbox and the relay share: `[… .oauth]` present exactly when
/// `auth = "oauth2"`, a client id, and endpoints that make sense.
fn check_oauth(
    auth: MailAuth,
    oauth: Option<&OAuthConfig>,
    section: &str,
    p: &dyn Fn(&str) -> String,
    bad: &mut impl FnMut(String, String),
) {
    match (auth, oauth) {
        (MailAuth::Oauth2, None) => {
            bad(p("oauth"), format!("auth = \"oauth2\" needs {section} with provider and client_id"))
        }
        (MailAuth::Oauth2, Some(o)) => {
            if o.client_id.trim().is_empty() {
                bad(p("oauth.client_id"), "is required (the app registration's client id)".into());
            }
            if o.grant == OAuthGrantType::ClientCredentials {
                if o.client_secret_file.is_none() {
                    bad(
                        p("oauth.client_secret_file"),
                        "grant = \"client_credentials\" signs in with the app's secret: name the file that holds it"
                            .into(),
                    );
                }
                if o.provider == OAuthProvider::Google {
                    bad(
                        p("oauth.grant"),
                        "Google has no client-credentials grant for mail: use the delegated \
                        sign-in (inflow oauth login NAME)"
                            .into(),
                    );
                }
            }
            if let Err(e) = crate::oauth::endpoints(o) {
                bad(p("oauth"), e);
            }
        }
        (MailAuth::Password, Some(_)) => {
            bad(p("oauth"), "is set but auth is \"password\": set auth = \"oauth2\" to use it".into())
        }
        (MailAuth::Password, None) => {}
    }
}
