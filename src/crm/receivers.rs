//! Known receivers' own answers (R-EM-8). Large mailbox providers word their refusals in
//! their own codes ("AUP#CDRBL", "OFR006_102", "5.4.312 DNS query failed"), published in
//! their postmaster pages; read by the generic phrases, those codes give the wrong reason.
//! Each receiver here is one entry: the hosts that identify it (the recipient's domain, the
//! remote MTA, or the MTA that wrote the report) and the rule that reads its answers.
//!
//! Sources: Sisimai's per-receiver modules (BSD-2-Clause, `sisimai/go-sisimai` `rhost/`),
//! which collect the providers' published codes and whose reason vocabulary inflow uses;
//! where a provider publishes an error-code page, its entry links to it. The entries are
//! written here from those tables, not translated code.

use super::bounce::Reason;

/// Where a failure was reported: the hosts that may name a known receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hosts<'a> {
    /// The recipient address's domain.
    pub domain: Option<&'a str>,
    /// The receiving MTA that refused (DSN `Remote-MTA`, or "host mx.example[ip]" in a text).
    pub remote: Option<&'a str>,
    /// The MTA that wrote the report (DSN `Reporting-MTA`).
    pub reporting: Option<&'a str>,
}

/// What a receiver's rule reads: the answer (lower-cased, one space per run of whitespace),
/// the enhanced status and the reply code, and the SMTP command it answered.
pub struct Answer<'a> {
    pub text: &'a str,
    pub status: Option<&'a str>,
    pub reply_code: Option<&'a str>,
    pub command: Option<&'a str>,
}

struct Receiver {
    /// Host names or suffixes (a leading dot) that identify the receiver.
    hosts: &'static [&'static str],
    read: fn(&Answer<'_>) -> Option<Reason>,
}

const RECEIVERS: &[Receiver] = &[
    Receiver { hosts: &[".mail.aol.com", ".mx.aol.com"], read: aol },
    Receiver { hosts: &["cox.net"], read: cox },
    Receiver { hosts: &[".laposte.net", ".orange.fr", ".wanadoo.fr"], read: france_ptt },
    Receiver { hosts: &["googlemail.com"], read: google_workspace },
    Receiver { hosts: &[".ezweb.ne.jp", "msmx.au.com"], read: kddi },
    Receiver { hosts: &[".messagelabs.com"], read: messagelabs },
    Receiver {
        hosts: &[".prod.outlook.com", ".protection.outlook.com", ".onmicrosoft.com", ".exchangelabs.com"],
        read: microsoft,
    },
    Receiver { hosts: &[".mimecast.com"], read: mimecast },
    Receiver { hosts: &["mfsmax.docomo.ne.jp"], read: ntt_docomo },
    Receiver { hosts: &[".hotmail.com"], read: outlook_com },
    Receiver { hosts: &["charter.net"], read: spectrum },
    Receiver { hosts: &[".yahoodns.net"], read: yahoo },
];

/// The reason a known receiver's own answer gives, or None (an unknown receiver, or an
/// answer its table does not know). The recipient's domain is tried first, then the remote
/// MTA, then the reporting MTA.
pub fn reason(hosts: &Hosts<'_>, answer: &Answer<'_>) -> Option<Reason> {
    if answer.text.is_empty() {
        return None;
    }
    let by_domain = |d: &str| {
        // "docomo.ne.jp" names "mfsmax.docomo.ne.jp"; a bare top-level domain names nobody.
        if !d.contains('.') {
            return None;
        }
        RECEIVERS.iter().find(|r| {
            r.hosts.iter().any(|h| {
                let h = h.trim_start_matches('.');
                h == d
                    || h.strip_suffix(d).is_some_and(|rest| rest.ends_with('.'))
                    || d.strip_suffix(h).is_some_and(|rest| rest.ends_with('.'))
            })
        })
    };
    let by_host = |host: &str| {
        RECEIVERS.iter().find(|r| {
            r.hosts.iter().any(|h| match h.strip_prefix('.') {
                Some(suffix) => host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.')),
                None => host == *h || host.strip_suffix(h).is_some_and(|rest| rest.ends_with('.')),
            })
        })
    };
    let lower = |s: Option<&str>| s.map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase());
    let receiver = lower(hosts.domain)
        .and_then(|d| by_domain(&d))
        .or_else(|| lower(hosts.remote).and_then(|h| by_host(&h)))
        .or_else(|| lower(hosts.reporting).and_then(|h| by_host(&h)))?;
    (receiver.read)(answer)
}

/// The first reason whose phrases the text contains.
fn phrases(text: &str, table: &[(Reason, &[&str])]) -> Option<Reason> {
    table.iter().find(|(_, ps)| ps.iter().any(|p| text.contains(p))).map(|(r, _)| *r)
}

/// AOL (run by Yahoo since 2015).
fn aol(a: &Answer<'_>) -> Option<Reason> {
    phrases(
        a.text,
        &[
            (Reason::HostUnknown, &["host or domain name not found"]),
            (Reason::NotAccept, &["type=mx: malformed or unexpected name server reply"]),
        ],
    )
}

/// Cox: "AUP#CODE" (https://www.cox.com/residential/support/email-error-codes.html).
fn cox(a: &Answer<'_>) -> Option<Reason> {
    let code = a.text.split("aup#").nth(1).map(|rest| rest.split(|c: char| c.is_whitespace()).next().unwrap_or(""));
    if let Some(code) = code {
        let r = match code {
            "cxbl" | "cdrbl" => Some(Reason::Blocked),
            c if c.starts_with("ipbl") => Some(Reason::Blocked),
            c if c.starts_with("urlbl") => Some(Reason::SpamDetected),
            "cxdns" => Some(Reason::RequirePtr),
            "cxsndr" => Some(Reason::AuthFailure),
            "cxsmtp" => Some(Reason::Rejected),
            "cxcnct" | "cxmxrt" => Some(Reason::TooManyConn),
            "cxthrt" | "cxmj" => Some(Reason::SecurityError),
            _ => None,
        };
        if r.is_some() {
            return r;
        }
    }
    phrases(
        a.text,
        &[
            (Reason::Blocked, &["cox too many bad commands from", "too many invalid recipients"]),
            (Reason::RequirePtr, &["dns check failure - try again later", "rejected - no rdns"]),
            (Reason::PolicyViolation, &["esmtp no data before greeting", "attachment extension is forbidden"]),
            (Reason::Rejected, &["sender rejected"]),
            (Reason::SystemError, &["esmtp server temporarily not available"]),
            (
                Reason::TooManyConn,
                &["too many sessions from", "requested action aborted: try again later", "message threshold exceeded"],
            ),
            (Reason::UserUnknown, &["recipient rejected"]),
        ],
    )
}

/// Orange, Wanadoo and La Poste: "OFR006_102", "LPN007_510", "OUK_513" — the last three
/// digits name the cause (https://postmaster.orange.fr/, "Codes d'erreur").
fn france_ptt(a: &Answer<'_>) -> Option<Reason> {
    let text = a.text.replace('_', "-");
    let code = ["lpnaaa", "lpn", "ofr", "ouk"].iter().find_map(|label| {
        let at = text.rfind(label)?;
        let word = text[at..].split(|c: char| c.is_whitespace() || c == ']' || c == ')').next().unwrap_or("");
        let digits: String = word.chars().rev().take_while(char::is_ascii_digit).collect();
        (digits.len() >= 3).then(|| digits.chars().rev().collect::<String>())
    });
    if let Some(code) = code {
        let r = match &code[code.len() - 3..] {
            "101" | "102" | "103" | "510" | "999" => Some(Reason::Blocked),
            "104" => Some(Reason::TooManyConn),
            "305" | "402" => Some(Reason::SecurityError),
            "401" | "517" => Some(Reason::AuthFailure),
            "403" | "405" | "415" | "421" => Some(Reason::Rejected),
            "416" => Some(Reason::UserUnknown),
            "417" => Some(Reason::MailboxFull),
            "420" | "426" => Some(Reason::Suspend),
            "505" => Some(Reason::SystemError),
            "506" => Some(Reason::SpamDetected),
            "514" => Some(Reason::MesgTooBig),
            "630" => Some(Reason::PolicyViolation),
            _ => None,
        };
        if r.is_some() {
            return r;
        }
    }
    phrases(&text, &[(Reason::AuthFailure, &["spf/dns de votre nom de domaine"])])
}

/// Google Workspace groups and forwarding (googlemail.com).
fn google_workspace(a: &Answer<'_>) -> Option<Reason> {
    let class = a.status.or(a.reply_code).and_then(|s| s.chars().next());
    if a.text.contains("null mx") {
        return Some(Reason::NotAccept);
    }
    if a.text.contains("because the address couldn't be found") {
        return Some(Reason::UserUnknown);
    }
    let nx = a.text.contains("responded with code nxdomain") || a.text.contains("domain name not found");
    match class {
        Some('5') if nx => Some(Reason::HostUnknown),
        _ if nx || a.text.contains(" had no relevant answers.") => Some(Reason::NetworkError),
        _ => None,
    }
}

/// au (KDDI): "550 <addr>: User unknown" is the address; "550 : User unknown" (no address)
/// is the receiver's filter refusing the sender.
fn kddi(a: &Answer<'_>) -> Option<Reason> {
    if a.text.contains("550 : user unknown") {
        Some(Reason::Filtered)
    } else if a.text.contains(">: user unknown") {
        Some(Reason::UserUnknown)
    } else {
        None
    }
}

/// Broadcom (Symantec) Email Security.cloud, formerly MessageLabs.
fn messagelabs(a: &Answer<'_>) -> Option<Reason> {
    phrases(
        a.text,
        &[
            (Reason::SecurityError, &["please turn on smtp authentication in your mail client"]),
            (Reason::UserUnknown, &["542 ", " rejected", "no such user"]),
        ],
    )
}

/// Exchange Online: status code and words (https://learn.microsoft.com/exchange/
/// mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online).
fn microsoft(a: &Answer<'_>) -> Option<Reason> {
    let status = a.status?;
    const TABLE: &[(&str, Reason, &str)] = &[
        ("4.7.26", Reason::AuthFailure, "must pass either spf or dkim validation"),
        ("5.7.23", Reason::AuthFailure, "sender policy framework violation"),
        ("5.7.509", Reason::AuthFailure, "does not pass dmarc verification"),
        ("4.7.650", Reason::BadReputation, "rate limited due to ip reputation"),
        ("5.7.25", Reason::Blocked, "must have a reverse dns record"),
        ("5.7.506", Reason::Blocked, "access denied, bad helo"),
        ("5.7.507", Reason::Blocked, "access denied, rejected by recipient"),
        ("5.7.510", Reason::Blocked, "does not accept email over ipv6"),
        ("5.7.511", Reason::Blocked, "access denied, banned sender"),
        ("5.7.513", Reason::Blocked, "using customer block list"),
        ("5.7.1", Reason::Blocked, "part of their network is on our block list"),
        ("5.6.11", Reason::ContentError, "invalid characters"),
        ("5.5.6", Reason::ContentError, "invalid message content"),
        ("5.2.3", Reason::ExceedLimit, "message too large for this recipient"),
        ("4.4.7", Reason::Expired, "message expired"),
        ("5.4.300", Reason::Expired, "message expired"),
        ("5.4.316", Reason::Expired, "message expired"),
        ("5.2.2", Reason::MailboxFull, "mailbox full"),
        ("5.3.4", Reason::MesgTooBig, "message size exceeds fixed maximum message size"),
        ("5.4.4", Reason::NetworkError, "nonexistentdomain; nonexistent domain"),
        ("5.4.6", Reason::NetworkError, "hop count exceeded"),
        ("4.4.312", Reason::NetworkError, "dns query failed"),
        ("5.4.312", Reason::NetworkError, "dns query failed"),
        ("4.4.316", Reason::NetworkError, "connection refused"),
        ("5.4.316", Reason::NetworkError, "connection refused"),
        ("5.4.14", Reason::NetworkError, "routing loop detected"),
        ("5.7.1", Reason::NoRelaying, "unable to relay"),
        ("5.7.64", Reason::NoRelaying, "relay access denied"),
        ("4.3.2", Reason::NotAccept, "system not accepting network messages"),
        ("4.4.4", Reason::NotAccept, "hosted tenant which has no mail-enabled subscriptions"),
        ("5.1.7", Reason::Rejected, "invalid address"),
        ("5.1.8", Reason::Rejected, "access denied, bad outbound sender"),
        ("5.7.1", Reason::Rejected, "delivery not authorized"),
        ("5.7.12", Reason::Rejected, "sender was not authenticated by organization"),
        ("5.7.133", Reason::Rejected, "sender not authenticated for group"),
        ("5.7.134", Reason::Rejected, "sender was not authenticated for mailbox"),
        ("5.7.750", Reason::Rejected, "client blocked from sending from unregistered domains"),
        ("5.7.3", Reason::SecurityError, "cannot achieve exchange server authentication"),
        ("5.7.57", Reason::SecurityError, "client was not authenticated to send anonymous mail"),
        ("5.2.1", Reason::SpamDetected, "content filter agent quarantined this message"),
        ("5.2.121", Reason::Speeding, "per hour message receive limit from specific sender exceeded"),
        ("5.2.122", Reason::Speeding, "per hour message receive limit exceeded"),
        ("5.7.508", Reason::Speeding, "has exceeded permitted limits within"),
        ("5.7.504", Reason::Suspend, "recipient address rejected: access denied"),
        ("5.7.505", Reason::Suspend, "access denied, banned recipient"),
        ("5.2.1", Reason::Suspend, "mailbox cannot be accessed"),
        ("5.3.5", Reason::SystemError, "system incorrectly configured"),
        ("5.2.4", Reason::SystemError, "mailing list expansion problem"),
        ("5.2.14", Reason::SystemError, "misconfigured forwarding address"),
        ("4.3.1", Reason::SystemFull, "insufficient system resources"),
        ("4.5.3", Reason::TooManyConn, "too many recipients"),
        ("5.5.3", Reason::TooManyConn, "too many recipients"),
        ("4.7.652", Reason::TooManyConn, "exceeded the maximum number of connections"),
        ("5.1.1", Reason::UserUnknown, "recipnotfound; not found"),
        ("5.1.10", Reason::UserUnknown, "recipient not found"),
        ("5.4.1", Reason::UserUnknown, "recipient address rejected: access denied"),
        ("5.1.351", Reason::UserUnknown, "remote server returned unknown recipient or mailbox unavailable"),
    ];
    TABLE.iter().find(|(s, _, words)| *s == status && a.text.contains(words)).map(|(_, r, _)| *r)
}

/// Mimecast: reply code and words
/// (https://community.mimecast.com/s/article/email-security-cloud-gateway-mimecast-smtp-error-codes).
fn mimecast(a: &Answer<'_>) -> Option<Reason> {
    let code = a.reply_code?;
    const TABLE: &[(&str, Reason, &str)] = &[
        ("550", Reason::AuthFailure, "sender invalid - envelope rejected"),
        ("550", Reason::BadReputation, "local ct ip reputation"),
        ("421", Reason::Blocked, "sender address blocked"),
        ("451", Reason::Blocked, "ip temporarily blacklisted"),
        ("554", Reason::MesgTooBig, "maximum email size exceeded"),
        ("554", Reason::NetworkError, "mail loop detected"),
        ("451", Reason::NoRelaying, "open relay"),
        ("451", Reason::NotAccept, "account inbounds disabled"),
        ("550", Reason::PolicyViolation, "anti-spoofing policy"),
        ("554", Reason::PolicyViolation, "host network not allowed"),
        ("550", Reason::Rejected, "envelope blocked"),
        ("550", Reason::Rejected, "block policy for envelope from address"),
        ("535", Reason::SecurityError, "incorrect authentication data"),
        ("550", Reason::SecurityError, "submitter failed to authenticate"),
        ("452", Reason::TooManyConn, "too many recipients"),
        ("501", Reason::UserUnknown, "invalid address"),
        ("550", Reason::UserUnknown, "invalid recipient"),
        ("554", Reason::VirusDetected, "email rejected due to security policies"),
    ];
    TABLE.iter().find(|(c, _, words)| *c == code && a.text.contains(words)).map(|(_, r, _)| *r)
}

/// NTT docomo: a generic 5.0.0 is the address at RCPT TO and the receiver's refusal of the
/// message after DATA.
fn ntt_docomo(a: &Answer<'_>) -> Option<Reason> {
    match a.status {
        Some("5.1.1") => return Some(Reason::UserUnknown),
        Some("5.2.0") => return Some(Reason::Filtered),
        _ => {}
    }
    let r = phrases(
        a.text,
        &[
            (Reason::MailboxFull, &["552 too much mail data"]),
            (Reason::TooManyConn, &["552 too many recipients"]),
            (Reason::SyntaxError, &["503 bad sequence of commands", "504 command parameter not implemented"]),
        ],
    );
    if r.is_some() {
        return r;
    }
    match (a.status, a.command) {
        (Some("5.0.0"), Some("RCPT")) => Some(Reason::UserUnknown),
        (Some("5.0.0"), Some("DATA")) => Some(Reason::Rejected),
        // docomo refuses after the whole message with a 550 that names the recipient.
        (Some("5.0.0"), None) if a.text.contains("550 unknown user") => Some(Reason::Rejected),
        _ => None,
    }
}

/// Outlook.com consumer mailboxes (hotmail.com).
fn outlook_com(a: &Answer<'_>) -> Option<Reason> {
    phrases(
        a.text,
        &[
            (Reason::HostUnknown, &["could not be delivered to the recipient because the domain is not reachable"]),
            (Reason::UserUnknown, &["requested action not taken: mailbox unavailable"]),
        ],
    )
}

/// Spectrum (Charter): "AUP#In-1310", four digits in ranges
/// (https://www.spectrum.net/support/internet/understanding-email-error-codes).
fn spectrum(a: &Answer<'_>) -> Option<Reason> {
    let rest = a.text.split("aup#").nth(1)?;
    let digits: String = rest.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    let code: u16 = digits.parse().ok().filter(|_| digits.len() == 4)?;
    Some(match code {
        1000 | 1200..=1250 => Reason::Blocked,
        1010..=1080 | 1500 | 1520 => Reason::Rejected,
        1090 => Reason::SystemError,
        1100..=1150 => Reason::RequirePtr,
        1160..=1190 | 1560 => Reason::PolicyViolation,
        1260 => Reason::NetworkError,
        1300..=1340 => Reason::TooManyConn,
        1350..=1490 | 1540 | 1550 | 1580 => Reason::Speeding,
        1530 => Reason::MesgTooBig,
        _ => return None,
    })
}

/// Yahoo (https://senders.yahooinc.com/smtp-error-codes/).
fn yahoo(a: &Answer<'_>) -> Option<Reason> {
    phrases(
        a.text,
        &[
            (Reason::AuthFailure, &["yahoo requires all senders to authenticate with either spf or dkim"]),
            (
                Reason::Blocked,
                &[" because the ip is in spamhaus's list;", "not accepted from ip addresses on spamhaus xbl"],
            ),
            (Reason::NoRelaying, &["relaying denied for "]),
            (Reason::NotCompliantRfc, &["headers are not rfc compliant"]),
            (Reason::PolicyViolation, &["not accepted for policy reasons"]),
            // TSS04: Yahoo defers the sender's mail after complaints.
            (
                Reason::Rejected,
                &[
                    "temporarily deferred due to unexpected volume or user complaints",
                    "due to unresolvable rfc.5321 domain",
                    " will be permanently deferred",
                ],
            ),
            (Reason::Speeding, &["user is receiving mail too quickly"]),
            (Reason::Suspend, &[" is no longer valid.", "this mailbox is disabled"]),
            (Reason::SyntaxError, &["syntax error in parameters or arguments"]),
            (Reason::TooManyConn, &["max message per connection reached"]),
            (Reason::UserUnknown, &["dd this user doesn't have a ", "mailbox not found"]),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        domain: &str,
        remote: Option<&str>,
        status: Option<&str>,
        code: Option<&str>,
        text: &str,
    ) -> Option<Reason> {
        let text = text.to_lowercase();
        reason(
            &Hosts { domain: Some(domain), remote, reporting: None },
            &Answer { text: &text, status, reply_code: code, command: None },
        )
    }

    #[test]
    fn r_em_8_known_receivers_read_by_their_own_codes() {
        assert_eq!(
            read("cox.net", None, Some("5.1.0"), Some("550"), "550 5.1.0 <x@y> sender rejected. AUP#CDRBL"),
            Some(Reason::Blocked)
        );
        assert_eq!(
            read("charter.net", None, Some("5.1.0"), Some("550"), "sender rejected. AUP#In-1310"),
            Some(Reason::TooManyConn)
        );
        assert_eq!(
            read("orange.fr", Some("smtp-in.orange.fr"), None, Some("550"), "Client host blocked. OFR006_102 Ref"),
            Some(Reason::Blocked)
        );
        assert_eq!(
            read(
                "client.example",
                Some("mx01.mail.protection.outlook.com"),
                Some("5.4.312"),
                None,
                "550 5.4.312 Message expired, DNS query failed"
            ),
            Some(Reason::NetworkError)
        );
        assert_eq!(
            read("ezweb.ne.jp", None, Some("5.0.0"), Some("550"), "-> 550 : User unknown"),
            Some(Reason::Filtered)
        );
        assert_eq!(
            read("ezweb.ne.jp", None, Some("5.0.0"), Some("550"), "550 <a@ezweb.ne.jp>: User unknown"),
            Some(Reason::UserUnknown)
        );
    }

    #[test]
    fn r_em_8_a_receiver_is_named_by_whole_labels_only() {
        // "notcox.net" is not Cox, and "yahoo.com" mail through an unknown MX is not read by
        // Yahoo's table.
        assert_eq!(read("notcox.net", None, None, Some("550"), "AUP#CDRBL"), None);
        assert_eq!(read("mail.cox.net", None, None, Some("550"), "AUP#CDRBL"), Some(Reason::Blocked));
        assert_eq!(
            read(
                "yahoo.com",
                None,
                Some("4.7.0"),
                Some("421"),
                "[TSS04] temporarily deferred due to unexpected volume or user complaints"
            ),
            None
        );
        assert_eq!(read("jp", None, None, Some("550"), "550 : user unknown"), None);
    }
}
