//! Why a recipient bounced, and what that means for the address (DOMAIN §4.3, R-EM-8).
//!
//! The reason vocabulary is Sisimai's (libsisimai.org/en/reason), so figures can be compared
//! with the most widely used bounce analyser: a reason is derived from the enhanced status
//! code (RFC 3463), the SMTP reply code (RFC 5321) and the diagnostic text, vendor phrases
//! included. The text wins over a generic code ("550 5.1.1 mailbox full" is a full mailbox),
//! a specific code wins over silence. Hard (the address is dead, suppress it at once) follows
//! from the reason, never from the status class alone: a blocklisted sending IP says nothing
//! about the address.
//!
//! Pure: strings in, a [`Reason`] and a [`Severity`] out. The readers of the many bounce
//! formats live in `ingest/bounce.rs`; the store applies [`suppression`]'s verdict.

use std::sync::LazyLock;

pub use super::receivers::Hosts;
use super::receivers::{self, Answer};
use regex::{Regex, RegexSet};
use serde::{Serialize, Serializer};

/// Why a message could not be delivered to one recipient (Sisimai's reason names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    AuthFailure,
    BadReputation,
    Blocked,
    ContentError,
    Delivered,
    ExceedLimit,
    Expired,
    FailedStartTls,
    Feedback,
    Filtered,
    HasMoved,
    HostUnknown,
    MailboxFull,
    MailerError,
    MesgTooBig,
    NetworkError,
    NoRelaying,
    NotAccept,
    NotCompliantRfc,
    OnHold,
    PolicyViolation,
    RateLimited,
    Rejected,
    RequirePtr,
    SecurityError,
    SpamDetected,
    Speeding,
    Suspend,
    SyntaxError,
    SystemError,
    SystemFull,
    TooManyConn,
    Undefined,
    UserUnknown,
    Vacation,
    VirusDetected,
}

impl Reason {
    pub const ALL: [Reason; 36] = [
        Reason::AuthFailure,
        Reason::BadReputation,
        Reason::Blocked,
        Reason::ContentError,
        Reason::Delivered,
        Reason::ExceedLimit,
        Reason::Expired,
        Reason::FailedStartTls,
        Reason::Feedback,
        Reason::Filtered,
        Reason::HasMoved,
        Reason::HostUnknown,
        Reason::MailboxFull,
        Reason::MailerError,
        Reason::MesgTooBig,
        Reason::NetworkError,
        Reason::NoRelaying,
        Reason::NotAccept,
        Reason::NotCompliantRfc,
        Reason::OnHold,
        Reason::PolicyViolation,
        Reason::RateLimited,
        Reason::Rejected,
        Reason::RequirePtr,
        Reason::SecurityError,
        Reason::SpamDetected,
        Reason::Speeding,
        Reason::Suspend,
        Reason::SyntaxError,
        Reason::SystemError,
        Reason::SystemFull,
        Reason::TooManyConn,
        Reason::Undefined,
        Reason::UserUnknown,
        Reason::Vacation,
        Reason::VirusDetected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AuthFailure => "authfailure",
            Reason::BadReputation => "badreputation",
            Reason::Blocked => "blocked",
            Reason::ContentError => "contenterror",
            Reason::Delivered => "delivered",
            Reason::ExceedLimit => "exceedlimit",
            Reason::Expired => "expired",
            Reason::FailedStartTls => "failedstarttls",
            Reason::Feedback => "feedback",
            Reason::Filtered => "filtered",
            Reason::HasMoved => "hasmoved",
            Reason::HostUnknown => "hostunknown",
            Reason::MailboxFull => "mailboxfull",
            Reason::MailerError => "mailererror",
            Reason::MesgTooBig => "mesgtoobig",
            Reason::NetworkError => "networkerror",
            Reason::NoRelaying => "norelaying",
            Reason::NotAccept => "notaccept",
            Reason::NotCompliantRfc => "notcompliantrfc",
            Reason::OnHold => "onhold",
            Reason::PolicyViolation => "policyviolation",
            Reason::RateLimited => "ratelimited",
            Reason::Rejected => "rejected",
            Reason::RequirePtr => "requireptr",
            Reason::SecurityError => "securityerror",
            Reason::SpamDetected => "spamdetected",
            Reason::Speeding => "speeding",
            Reason::Suspend => "suspend",
            Reason::SyntaxError => "syntaxerror",
            Reason::SystemError => "systemerror",
            Reason::SystemFull => "systemfull",
            Reason::TooManyConn => "toomanyconn",
            Reason::Undefined => "undefined",
            Reason::UserUnknown => "userunknown",
            Reason::Vacation => "vacation",
            Reason::VirusDetected => "virusdetected",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How sure a bounce is that the address is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The address is dead (unknown user or domain, moved): suppress now.
    Hard,
    /// The message failed for a reason that may pass (full, blocked, policy, expired): count;
    /// suppress after `soft_bounce_limit`.
    Soft,
    /// "Delayed, still trying": recorded, not counted.
    Delayed,
}

/// One failed recipient as the bounce told it, before any judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis<'a> {
    /// RFC 3464 `Action` (failed, delayed, delivered, relayed, expanded), if any.
    pub action: Option<&'a str>,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: Option<&'a str>,
    /// SMTP reply code, e.g. `550`.
    pub reply_code: Option<&'a str>,
    /// The remote server's answer or the MTA's explanation.
    pub text: &'a str,
    /// The SMTP command the failure answered (`RCPT`, `MAIL`, `DATA`, `CONN`, …), if told.
    pub command: Option<&'a str>,
    /// The recipient's domain and the MTAs involved, which may name a known receiver.
    pub hosts: Hosts<'a>,
}

/// Phrases per reason, checked in this order on lower-cased text: the first that matches
/// wins. More specific reasons come first (a "user unknown" inside a long spam-block notice
/// is still the address), network and catch-all ones last.
static PHRASES: LazyLock<Vec<(Reason, Regex)>> = LazyLock::new(|| {
    let table: &[(Reason, &[&str])] = &[
        (
            Reason::Delivered,
            &[r"\bdelivered to (?:mailbox|the recipient)\b", r"\bmessage (?:was )?(?:successfully )?delivered\b"],
        ),
        (
            Reason::Rejected,
            &[
                concat!(
                    r"\bsender (?:address )?(?:rejected|refused|denied|blocked|verify failed|verification failed|",
                    r"not (?:allowed|permitted|authorized))\b",
                ),
                r"\b(?:domain of )?sender (?:address )?(?:domain )?(?:does not exist|not found|must exist|unknown)\b",
                r"\bpurported responsible address\b",
                r"\bdomain of sender address\b",
                r"\bbad sender\b",
                r"\benvelope sender\b.*\b(?:rejected|invalid|refused)\b",
                r"\b(?:mail from|return path)\b.*\b(?:rejected|refused|invalid|denied)\b",
                r"\bnot (?:allowed|permitted|authorized) to (?:post|send) to\b",
                r"\b(?:you|sender) (?:may not|do(?:es)? not) have (?:the )?permission to post\b",
                r"\bmay not have permission to post\b",
                r"\bgoogle groups?\b",
                r"\bgroups\.google\.com\b",
                r"グループにメッセージを投稿する権限",
                r"\breturn address\b.*\b(?:invalid|rejected)\b",
                r"\byour (?:e-?mail )?address (?:is|has been) (?:blocked|blacklisted|rejected)\b",
                r"\bsending to/from an address that has been blacklisted\b",
            ],
        ),
        (
            Reason::HasMoved,
            &[
                r"\bhas been replaced by\b",
                r"\b(?:address|user|mailbox) (?:has )?moved\b",
                r"\bno longer (?:at|with) this (?:address|company)\b.*\bnew address\b",
            ],
        ),
        (
            Reason::MailboxFull,
            &[
                r"mailbox (?:is )?full",
                r"mailbox (?:size )?(?:limit|quota) (?:exceeded|reached)",
                r"\bover ?quota\b",
                r"quota (?:exceeded|exceed|full|violation)",
                r"exceeded (?:the )?(?:storage|disk|mailbox)? ?(?:allocation|quota)",
                r"\binsufficient (?:disk|system) space\b.*\bmailbox\b",
                r"\bmailbox (?:has )?exceeded\b",
                r"\bmailbox (?:size )?exceeds\b",
                r"\bmailfolder is full\b",
                r"\buser (?:is )?over (?:the )?(?:quota|limit)\b",
                r"\bnot enough (?:storage|space)\b",
                r"\bfull mailbox\b",
                r"\bmail ?box (?:for user \S+ )?is full\b",
                r"\bhas exceeded (?:his|her|their|its) (?:storage|quota)",
                r"\b(?:recipient|user)'?s? mailbox (?:is )?(?:full|over)",
                r"\bmailbox over quota\b",
                r"\bdisk quota\b",
                r"\bstorage quota\b",
                r"\btoo much mail data\b",
            ],
        ),
        (
            Reason::MesgTooBig,
            &[
                r"\bline limit exceeded\b",
                r"message (?:size )?(?:too (?:big|large)|exceeds)",
                r"\bexceeds? (?:the )?(?:maximum|max|fixed)? ?(?:message )?size\b",
                r"size limit",
                r"\bmessage (?:is )?larger than\b",
                r"\bmessage length exceeds\b",
                r"\bmail size limit\b",
            ],
        ),
        (
            Reason::ExceedLimit,
            &[
                r"\bmessage too large for this recipient\b",
                r"\bexceeds? (?:the )?recipient'?s? (?:message )?size limit\b",
            ],
        ),
        (
            Reason::VirusDetected,
            &[r"\bvirus\b", r"\bmalware\b", r"\bmalicious\b", r"\binfected\b", r"\bworm\b.*\bdetected\b"],
        ),
        (
            Reason::SpamDetected,
            &[
                r"\bflagged as spam\b",
                r"\bspam classification\b",
                r"\bblacklisted url\b",
                r"\bspam\b(?: message)? (?:detected|rejected|content|score|not accepted)",
                r"\bdetected (?:as )?spam\b",
                r"\bclassified as (?:spam|bulk)\b",
                r"\blooks like spam\b",
                r"\bconsidered (?:as )?spam\b",
                r"\bidentified as spam\b",
                r"\bmessage (?:was |is )?(?:rejected )?(?:as |because it (?:is|was) )?(?:considered )?(?:spam|junk)\b",
                r"\bspam (?:filter|rule|policy)\b",
                r"\bspamassassin\b",
                r"\bprobable spam\b",
                r"\bsuspected spam\b",
                r"\bunsolicited (?:bulk |commercial )?(?:e-?mail|mail|message)\b",
                r"\bcontent (?:filter|rejected)\b.*\bspam\b",
                r"\bmessage content rejected\b",
                r"\bhigh probability of spam\b",
                r"\bspam score\b",
                r"\bbulk (?:e-?mail|mail)\b",
                r"\bjunk mail\b",
                r"\bspam\b",
            ],
        ),
        (
            Reason::NotAccept,
            &[
                r"\bcouldn'?t find (?:a|any) mail exchanger\b",
                r"\bno mx (?:or a )?(?:record|host)s?\b",
                r"\bno mx found for domain\b",
                r"\bindicated no smtp service\b",
                r"\bdoes not accept (?:e-?)?mail\b",
                r"\bdoesn'?t receive (?:e-?)?mail\b",
                r"\bdoes not accept (?:any )?(?:e-?)?mail\b",
                r"\bnull mx\b",
                r"\baccepts no mail\b",
                r"\bnot accepting (?:any )?(?:e-?)?mail\b",
                r"\bno mail (?:is )?accepted\b",
            ],
        ),
        (
            Reason::Suspend,
            &[
                concat!(
                    r"\b(?:account|mailbox|user|address|recipient)(?: \S+){0,2} (?:is |has been )?(?:temporarily |",
                    r"temporary |currently )?(?:suspended|disabled|deactivated|inactive|locked|frozen|blocked for|",
                    r"closed|expired)\b",
                ),
                r"\bsuspended (?:account|mailbox|user)\b",
                r"\b(?:recipient )?account is (?:blocked|inactive|bloque)\b",
                r"\b(?:account|user|mailbox)(?: that you tried to reach)? is inactive\b",
                r"\b(?:account|mailbox)\b.{0,40}\b(?:is|has been) (?:disabled|suspended|deactivated)\b",
                r"\bmailbox (?:is )?disabled\b",
                r"\bdisabled (?:account|mailbox|user|recipient)\b",
                r"\binactive (?:account|mailbox|user)\b",
                r"\bthis account has been (?:disabled|discontinued|suspended)\b",
                concat!(
                    r"\bmailbox (?:is )?(?:currently )?(?:unavailable|inactive|suspended|",
                    r"disabled)\b.*\b(?:suspend|disable|inactiv)",
                ),
                r"\baccount is not active\b",
                r"\bpaused\b",
                r"\bboite du destinataire archivee\b",
            ],
        ),
        (
            Reason::UserUnknown,
            &[
                r"\buser ?unknown\b",
                r"\bunknown (?:user|recipient|mailbox|local[- ]part|address|account|e-?mail address)\b",
                concat!(
                    r"\b(?:user|recipient|mailbox|address|account|addressee|e-?mail address|",
                    r"local[- ]part)(?: name)? (?:\S+ )?(?:does not|doesn'?t|did not) exist",
                ),
                concat!(
                    r"\b(?:no such|non-?existent|nonexistent|invalid) (?:user|recipient|mailbox|address|account|",
                    r"local[- ]part|person|e-?mail address)",
                ),
                concat!(
                    r"\b(?:user|recipient|mailbox|address|account)(?: address)? (?:is )?(?:unknown|invalid|",
                    r"not found|not valid|not listed|unavailable|unrouteable|not recognized)",
                ),
                r"\bno (?:such|valid) (?:user|recipient|mailbox|account)\b",
                r"\bno mailbox (?:here|found|by that name)\b",
                r"\baddress (?:not found|unknown|does not exist)\b",
                concat!(
                    r"\brecipient (?:address )?rejected: (?:user unknown|undeliverable address|unknown|",
                    r"access denied|invalid)",
                ),
                r"\bmailbox (?:not found|unavailable|not available|does not exist|is not available|inactive)\b",
                r"\baccount (?:not found|does not exist|has been deleted|is not available)\b",
                r"\bthe email account that you tried to reach does not exist\b",
                r"\bno such (?:user|mailbox|address) here\b",
                r"\bis not a valid (?:mailbox|user|recipient|e-?mail address)\b",
                r"\bnot (?:a )?(?:valid|known) (?:user|recipient|mailbox)\b",
                r"\bsorry, no mailbox here by that name\b",
                r"\brecipient not found\b",
                r"\binvalid recipient\b",
                r"\bnot listed in (?:the )?(?:domino directory|public name & address book|address book|directory)\b",
                r"\b(?:recipient )?address rejected\.(?:\s|$)",
                r"\bbad destination mailbox address\b",
                r"\bdestination (?:mailbox|address) (?:unavailable|invalid)\b",
                r"\bnot our customer\b",
                r"\bresolver\.adr\.recipnotfound\b",
                r"\brecipnotfound\b",
                r"\bno account by that name\b",
                r"\bthis user doesn'?t have a\b",
                r"\buser not found\b",
                r"\buser not exist\b",
                r"\binvalid (?:final delivery )?userid\b",
                r"\bunknown or illegal alias\b",
                r"\bis not a known user\b",
                r"\baddressee unknown\b",
                r"\brcpt to (?:is )?(?:invalid|unknown)\b",
                r"\brecipient (?:is )?not (?:exist|found|valid)\b",
                r"\bmailbox name (?:not allowed|invalid)\b",
                r"\bdelivery to the following recipients? failed\b.*permanently",
                r"\bno such address\b",
                r"\buser does not exist\b",
            ],
        ),
        (
            Reason::HostUnknown,
            &[
                r"\bhost (?:or domain name )?not found\b",
                r"\bthe account or domain may not exist\b",
                r"\bdomain is not reachable\b",
                r"\bunrouteable (?:address|mail domain)\b",
                r"(?:^|[\s<(])[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist\b",
                r"\bhost ?unknown\b",
                r"\bunknown (?:host|domain)\b",
                r"\bdomain (?:name )?(?:not found|does not exist|is not valid|unknown)",
                r"\bno (?:such|valid) (?:domain|host)\b",
                r"\bname or service not known\b",
                r"\bname server: \S+: host not found\b",
                r"\bunrouteable mail domain\b",
                r"\bdomain (?:\S+ )?(?:has no|does not have) (?:valid )?mx\b",
                r"\bno route to host\b.*\bdomain\b",
                r"\bnxdomain\b",
                r"\bdns (?:lookup|resolution) failed\b",
                r"\bhost (?:\S+ )?not found\b",
                r"\bunable to resolve\b",
                r"\ball relevant mx records point to non-existent hosts\b",
                r"\bcannot find your hostname\b",
                r"\bdomain (?:is )?(?:not|no longer) (?:hosted|served|in use)\b",
                r"\binvalid domain\b",
                r"\brecipient domain\b.*\b(?:not exist|unknown|invalid)",
            ],
        ),
        (
            Reason::NoRelaying,
            &[
                r"\bnot configured to relay\b",
                r"\b(?:e-?mail )?address is not verified\b",
                r"\brelay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed))\b",
                r"\bnot (?:permitted|allowed) to relay\b",
                r"\bunable to relay\b",
                r"\bno relaying\b",
                r"\brelay not permitted\b",
                r"\bwe do not relay\b",
                r"\bnot a gateway\b",
                r"\bcannot relay\b",
                r"\bthat domain isn'?t in my list of allowed rcpthosts\b",
                r"\brelaying denied\b",
                r"\brelay prohibited\b",
                r"\binsecure mail relay\b",
            ],
        ),
        (
            Reason::RequirePtr,
            &[
                r"\bmismatches client ip\b",
                // Exim's "service permits N unverifyable sending IPs" (sic).
                r"\bunverif(?:i|y)able sending ips?\b",
                r"\breverse dns (?:validation|lookup)\b.*\bfail",
                r"\bip name lookup failed\b",
                r"\bdoes not have a (?:\S+ )?ptr record\b",
                r"\b(?:no|missing|without) (?:ptr|reverse dns|rdns)\b",
                r"\breverse (?:dns|lookup) (?:failed|required|not|for)\b",
                r"\bptr record\b",
                r"\bcannot find your reverse hostname\b",
                r"\bclient host rejected: cannot find your (?:reverse )?hostname\b",
                r"\bunresolvable (?:ip|address|host)\b",
                r"\bhelo (?:host )?(?:not|does not) match\b",
                r"\bip (?:address )?(?:has no|without) (?:ptr|reverse)\b",
                r"\bno reverse\b",
                r"\brdns\b",
            ],
        ),
        (
            Reason::AuthFailure,
            &[
                r"\bunauthenticated e-?mail\b",
                r"\bauthentication information\b",
                r"\bfails? to pass (?:\S+ )?authentication\b",
                r"\bspf (?:check )?(?:fail|failed|failure|validation|hard ?fail|softfail)",
                r"\bdkim (?:check )?(?:fail|failed|failure|signature)",
                r"\bdmarc (?:policy|check|fail|failed|failure|validation|reject)",
                r"\bsender policy framework\b",
                r"\bspf\b.*\b(?:fail|reject|not (?:permitted|authorized))",
                r"\bauthentication (?:failed|failure|required)\b.*\b(?:spf|dkim|dmarc|sender)",
                r"\bnot (?:an )?(?:authorized|permitted) (?:sender|to send)\b",
                r"\bsender (?:domain )?not authenticated\b",
                r"\bdmarc\b",
                r"\bspf\b",
                r"\bdkim\b",
            ],
        ),
        (
            Reason::BadReputation,
            &[
                r"\b(?:ip|sender|domain) (?:address )?reputation\b",
                r"\bpoor (?:ip )?reputation\b",
                r"\breputation (?:of|is)\b",
                r"\blow reputation\b",
                r"\bbad reputation\b",
            ],
        ),
        (
            Reason::Blocked,
            &[
                r"\bnot accepting connections\b",
                r"\bno access from mail server\b",
                r"\binvalid ip for sending mail\b",
                r"\bserver refused to talk to me\b",
                r"\bconnection refused by\b",
                r"\bsmtp server of your isp\b",
                r"\buse your isp'?s (?:smtp|mail) server\b",
                concat!(
                    r"\b(?:ip|host|client|sender ip|your ip|connection)(?: address)?(?: \S+)? (?:is |has been |",
                    r"was )?(?:blocked|blacklisted|blocklisted|listed|banned|refused|rejected|denied)\b",
                ),
                concat!(
                    r"\b(?:blacklist|blocklist|black list|block list|dnsbl|rbl|spamhaus|spamcop|sorbs|",
                    r"barracudacentral|uceprotect)\b",
                ),
                r"\blisted (?:at|in|on|by)\b",
                r"\bclient host (?:\S+ )?(?:rejected|blocked)\b",
                r"\bconnection (?:refused|rejected|denied|blocked)\b",
                r"\baccess denied\b",
                r"\baccess denied\b.*\b(?:ip|host|client)\b",
                r"\b(?:your|the) (?:ip|server|host|network)\b.*\b(?:block|ban|den|refus|reject)",
                r"\bnot allowed to (?:connect|send)\b",
                r"\brejected due to (?:\S+ )?(?:ip|policy of this|local policy)\b",
                r"\bhas been temporarily rate limited\b.*\bip\b",
                r"\bdynamic (?:ip|address)\b",
                r"\bdialup\b",
                r"\bbanned\b",
                r"\bblocked\b",
                r"\bblacklisted\b",
                r"\bhost refused\b",
                r"\bservice (?:not )?(?:available|unavailable)\b.*\bclient\b",
            ],
        ),
        (
            Reason::Speeding,
            &[
                r"\breceiving mail at a rate\b",
                r"\btoo many (?:messages|mails|e-?mails|recipients) (?:in|per|from)\b",
                r"\b(?:sending|message|mail|messaging|receiving) rate (?:limit|exceeded)\b",
                r"\b(?:is|been|are) rate limited\b",
                r"\bslow down\b",
            ],
        ),
        (
            Reason::TooManyConn,
            &[
                r"\bconnection rate limit\b",
                r"\b(?:connection|ip) frequency limited\b",
                r"\btoo many recipients\b",
                r"\btoo many (?:concurrent |simultaneous |open )?(?:connections|sessions)\b",
                r"\bconnection (?:count|limit)\b",
                r"\bmaximum (?:number of )?connections\b",
            ],
        ),
        (
            Reason::NotCompliantRfc,
            &[
                r"\bmultiple (?:addresses in )?(?:from|to|subject|date|message-id):? (?:headers?|fields?)\b",
                r"\bmultiple addresses in (?:the )?from\b",
                r"\brfc ?5322\b",
                r"\bnot (?:rfc|standards?)[- ]compliant\b",
                r"\bmultiple (?:addresses in )?(?:from|to|subject|date|message-id) (?:headers?|fields?)\b",
                r"\bduplicate header\b",
                r"\bmalformed (?:header|message|mime)\b",
                r"\bheader (?:is )?(?:malformed|missing|invalid)\b",
                r"\bbare (?:lf|linefeed)\b",
            ],
        ),
        (
            Reason::ContentError,
            &[
                r"\bheaders? too (?:large|long|many)\b",
                r"\bcontent (?:error|rejected|not accepted)\b",
                r"\bmessage content\b",
                r"\bforbidden (?:attachment|content|file)\b",
                r"\battachment (?:type|not allowed|blocked|rejected)\b",
                r"\binvalid (?:mime|content|character)\b",
                r"\bunsupported (?:media|content|charset)\b",
                r"\bmessage (?:header|body) (?:error|contains)\b",
                r"\b8-?bit (?:data|characters)\b",
                r"\bline too long\b",
            ],
        ),
        (
            Reason::PolicyViolation,
            &[
                r"\bheader error\b",
                r"\bprotocol violation\b",
                r"\bhost network not allowed\b",
                r"\bcontent presents a potential\b",
                r"\bpolicy (?:violation|reasons?|rejection|rules)\b",
                r"\bviolat(?:es|ed|ion of) (?:our |the )?(?:\S+ )?polic",
                r"\bprohibited\b",
                r"\bnot (?:permitted|allowed) by (?:policy|the recipient)\b",
                r"\brejected (?:by|due to) (?:\S+ )?polic",
                r"\bacceptable use policy\b",
                r"\blocal policy\b",
                r"\bpolicy\b",
            ],
        ),
        (
            Reason::Filtered,
            &[
                r"\bfiltered\b",
                r"\bfilter\b",
                r"\brefused by (?:the )?recipient\b",
                r"\bdelivery not (?:authorized|permitted)\b",
                r"\bthe user does not accept mail from\b",
                concat!(
                    r"\brecipient (?:has )?(?:rejected|refused|blocked|denied) (?:your|the|this) (?:message|mail|",
                    r"e-?mail|sender)\b",
                ),
                r"\bsender (?:is )?(?:blocked|rejected|denied) by (?:the )?recipient\b",
                r"\bnot accepting (?:mail|e-?mail|messages) from\b",
                r"\brestricted (?:mailbox|recipient)\b",
                r"\bmailbox (?:\S+ )?(?:refuses|does not accept|is not accepting)\b",
                r"\bcan(?:not|'t) accept (?:mail|messages) from\b",
                r"\bdiscard(?:ed)?\b",
            ],
        ),
        (
            Reason::SecurityError,
            &[
                r"\bsmtp authentication\b",
                r"\bunauthenticated senders?\b",
                r"\bauthentication (?:required|failed|failure|credentials invalid)\b",
                r"\bmust (?:be authenticated|authenticate)\b",
                r"\b(?:smtp )?auth(?:entication)? (?:is )?required\b",
                r"\b(?:tls|ssl|starttls) (?:is )?(?:required|negotiation failed|handshake)\b",
                r"\bcertificate\b",
                r"\bsecure connection\b",
                r"\bencryption required\b",
                r"\bsecurity\b",
            ],
        ),
        (
            Reason::SystemFull,
            &[
                r"\b(?:disk|system|file system|filesystem|queue) (?:is )?full\b",
                r"\binsufficient (?:system|disk) (?:storage|space)\b",
                r"\bout of (?:disk|storage) space\b",
            ],
        ),
        (
            Reason::Expired,
            &[
                r"\bfailing for a long time\b",
                r"\bnot delivered within \d+ days\b",
                r"\bcould not deliver for the last\b",
                r"\bconnection timed out\b",
                r"\bconnect to \S+ connection timed out\b",
                r"\bdelivery failed \d+ attempts\b",
                r"\baborted after [\d.]+ ?(?:hour|day|minute)",
                r"\bcould not be delivered (?:in|within) the specified time\b",
                r"\bmessage expired\b",
                r"\bunable to deliver (?:the )?message after (?:multiple|\d+) (?:retries|attempts)\b",
                r"\bcannot send message (?:for|within) \d+ (?:days|hours)\b",
                r"\bhas been undeliverable for\b",
                r"\bdid not accept our requests to connect\b",
                r"\bretry (?:time|timeout) (?:exceeded|reached)\b",
                r"\bcould not be delivered within\b",
                r"\b(?:delivery|retry|queue|message) (?:time ?out|timeout|expired|lifetime exceeded)\b",
                r"\bretry time (?:not reached|exceeded)\b",
                r"\bcould not be delivered for\b",
                r"\bhas not been delivered\b.*\b(?:days|hours)\b",
                r"\bmessage (?:has been )?(?:in|on) (?:the )?queue (?:too long|for over|for more than)\b",
                r"\btoo long in (?:the )?queue\b",
                r"\bno (?:more )?retr(?:y|ies)\b",
                r"\bmaximum (?:delivery|retry) (?:time|attempts)\b",
                r"\bunable to deliver\b.*\b(?:days|hours)\b",
                r"\bexpired\b",
            ],
        ),
        (
            Reason::NetworkError,
            &[
                r"\bconnection (?:timed out|timeout|lost|reset|closed|dropped)\b",
                r"\bhost name lookup failure\b",
                r"\blost connection\b",
                r"\bnetwork (?:is )?(?:unreachable|error|down)\b",
                r"\bno route to host\b",
                r"\bhost (?:is )?(?:unreachable|down)\b",
                r"\b(?:mail|mx|routing) loop\b",
                r"\btoo many hops\b",
                r"\bhop count exceeded\b",
                r"\bloops back to myself\b",
                r"\bcould not connect\b",
                r"\bunable to connect\b",
                r"\bconnection refused\b",
                r"\bdns (?:error|failure|lookup)\b",
                r"\bunexpected name server reply\b",
                r"\btemporary (?:lookup|dns) failure\b",
                r"\bsocket error\b",
            ],
        ),
        (
            Reason::SyntaxError,
            &[
                r"\bcommand parameter not implemented\b",
                r"\bsyntax error\b",
                r"\bcommand (?:not recognized|unrecognized|unknown)\b",
                r"\bunrecognized command\b",
                r"\bbad sequence of commands\b",
                r"\binvalid command\b",
            ],
        ),
        (
            Reason::SystemError,
            &[
                r"\bservice (?:is )?(?:currently |temporarily )?unavailable\b",
                r"\bsystem (?:error|failure|config(?:uration)? error)\b",
                r"\binternal (?:server )?error\b",
                r"\blocal error\b",
                r"\bserver (?:error|failure|misconfigur)",
                r"\bconfiguration error\b",
                r"\bservice (?:not available|unavailable)\b",
                r"\btemporar(?:y|ily) (?:local )?(?:problem|failure|error|unavailable)\b",
                r"\bmail system (?:error|problem)\b",
                r"\btry again later\b",
                r"\bi/o error\b",
                r"\bdelivery (?:to|via) (?:\S+ )?(?:program|pipe) failed\b",
            ],
        ),
        (
            Reason::MailerError,
            &[
                r"\bprocmail\b",
                r"\bmailer error\b",
                r"\bcommand (?:died|failed|output)\b",
                r"\bunknown mailer\b",
                r"\bpipe to (?:\S+ )?failed\b",
                r"\bpipe to \|",
                r"\bx-unix; \d+\b",
            ],
        ),
    ];
    table
        .iter()
        .flat_map(|(r, ps)| ps.iter().map(move |p| (*r, Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}")))))
        .collect()
});

/// One set over every phrase, to skip the ordered walk when nothing matches at all.
static ANY_PHRASE: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(PHRASES.iter().map(|(_, r)| r.as_str())).unwrap());

/// The reason named by an enhanced status code alone, where the code is specific enough.
/// Generic codes (x.0.0, 5.7.1 "delivery not authorized", 5.5.0) say little: None.
pub fn reason_of_status(status: &str) -> Option<Reason> {
    let mut it = status.split('.');
    let (class, subject, detail) = (it.next()?, it.next()?, it.next()?);
    let r = match (subject, detail) {
        ("0", _) => return None,
        ("1", "0") => Reason::UserUnknown,
        ("1", "1" | "3" | "5") => Reason::UserUnknown,
        ("1", "2") => Reason::HostUnknown,
        ("1", "4") => Reason::UserUnknown,
        ("1", "6") => Reason::HasMoved,
        ("1", "7" | "8") => Reason::Rejected,
        ("1", "9") => Reason::NotAccept,
        // Microsoft's 5.1.10 "recipient not found" and its private 5.1.3xx codes.
        ("1", d) if d.len() >= 2 => Reason::UserUnknown,
        ("2", "0") => Reason::Filtered,
        ("2", "1") => return None,
        ("2", "2") => Reason::MailboxFull,
        ("2", "3") => Reason::ExceedLimit,
        ("2", "4") => Reason::SystemError,
        ("3", "0") => Reason::SystemError,
        ("3", "1") => Reason::SystemFull,
        ("3", "2") => Reason::NotAccept,
        ("3", "3") => Reason::SystemError,
        ("3", "4") => Reason::MesgTooBig,
        ("3", "5") => Reason::SystemError,
        ("4", "0" | "1" | "2" | "3" | "5" | "6") => Reason::NetworkError,
        // "Unable to route": no host answers for the domain (RFC 3463); on a temporary
        // status that is the network, below.
        ("4", "4") => Reason::HostUnknown,
        ("4", "7") => Reason::Expired,
        ("5", "0" | "2" | "4") => Reason::SyntaxError,
        ("5", "1" | "3" | "5") => Reason::SyntaxError,
        ("6", "0" | "1" | "2" | "3" | "4" | "5") => Reason::ContentError,
        ("7", "0") => Reason::SecurityError,
        ("7", "1") => return None,
        ("7", "2" | "3" | "4" | "5" | "6" | "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" | "16" | "17") => {
            Reason::SecurityError
        }
        ("7", "7") => Reason::SecurityError,
        ("7", "25") => Reason::RequirePtr,
        ("7", "20" | "21" | "22" | "23" | "24" | "26") => Reason::AuthFailure,
        ("7", "27") => Reason::NotAccept,
        ("7", "18" | "19") => Reason::Rejected,
        _ => return None,
    };
    // 4.1.1 and 4.1.2 are temporary: the lookup failed, the address may well exist.
    if class == "4" && matches!(r, Reason::UserUnknown | Reason::HostUnknown) {
        return Some(Reason::NetworkError);
    }
    Some(r)
}

/// Reasons a status code gives that the diagnostic text may refine (they name a kind of
/// trouble, not a cause).
fn refinable(r: Reason) -> bool {
    matches!(
        r,
        Reason::SecurityError
            | Reason::SystemError
            | Reason::NetworkError
            | Reason::SyntaxError
            | Reason::Expired
            | Reason::ContentError
            | Reason::NotAccept
    )
}

/// The first reason whose phrases the text contains.
pub fn reason_of_text(text: &str) -> Option<Reason> {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    if !ANY_PHRASE.is_match(&t) {
        return None;
    }
    PHRASES.iter().find(|(_, re)| re.is_match(&t)).map(|(r, _)| *r)
}

/// Whether the text has one of a reason's phrases.
fn says(reason: Reason, text: &str) -> bool {
    PHRASES.iter().any(|(r, re)| *r == reason && re.is_match(text))
}

/// Answers only a directory lookup gives ("the recipient name is not recognized", Exchange's
/// RecipNotFound, "no such user here"): the address is unknown whatever the SMTP stage.
fn says_for_sure(text: &str) -> bool {
    static SURE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"recipient name is not recognized|\baddress (?:couldn'?t|could not) be found\b|",
            r"\bno valid recipients\b|\bunknown recipient\b|recipnotfound|invalid (?:final delivery )?userid|",
            r"no such user here|no mailbox here by that name|this user doesn'?t have a \S+ account|",
            r"mail\.local: unknown user|requested action not taken: mailbox unavailable|destinataire invalide|",
            r"not listed in (?:the )?(?:domino directory|public name & address book)|\bunknown user: \S+@",
        ))
        .unwrap()
    });
    SURE.is_match(text)
}

/// Answers of known receivers and local delivery agents whose words decide the reason
/// whatever the status code says (Gmail's 552 5.7.0 "blocked because its content presents a
/// potential security issue" is its policy, not a blocklist; Orange's OFR_506 is its spam
/// filter; Yahoo's TSS04 is the sender's reputation; procmail's errors are the local mailer's).
fn vendor_reason(text: &str) -> Option<Reason> {
    static VENDOR: LazyLock<Vec<(Reason, Regex)>> = LazyLock::new(|| {
        [
            (Reason::PolicyViolation, r"\bcontent presents a potential\b|\brejected for policy reasons\b"),
            // Google Groups: "rejected due to spam classification" (its advice mentions SPF).
            (Reason::SpamDetected, r"\brejected due to spam classification\b"),
            // Outlook.com's SC-001…SC-004: the sending network is on its block list.
            (Reason::Blocked, r"\bsc-00[1-4]\b"),
            (Reason::SpamDetected, r"\bmail rejete\b|\bofr_?506\b"),
            (Reason::BadReputation, r"\[tss04\]|\bunexpected volume or user complaints\b"),
            (Reason::Filtered, r"\brefused due to recipient preferences\b"),
            (Reason::Speeding, r"\bsent to too many recipients (?:this|per|in the last) hour\b"),
            (Reason::MailerError, r"^procmail: |\bprocmail: (?:couldn'?t|lock failure|error while)\b"),
        ]
        .into_iter()
        .map(|(r, p)| (r, Regex::new(p).unwrap()))
        .collect()
    });
    VENDOR.iter().find(|(_, re)| re.is_match(text)).map(|(r, _)| *r)
}

/// A DNS lookup that failed for now (a server error, SERVFAIL, TRY_AGAIN), which says
/// nothing about whether the domain exists.
fn dns_failed(text: &str) -> bool {
    static DNS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bunexpected name server reply\b|\bhost not found, try again\b").unwrap());
    DNS.is_match(text)
}

/// The causes checked first, in this order, each by its status code or its phrases: a full
/// mailbox or a suspension named anywhere in the answer wins over a generic "rejected".
const FIRST: [Reason; 20] = [
    Reason::MailboxFull,
    Reason::ExceedLimit,
    Reason::MesgTooBig,
    Reason::Suspend,
    Reason::HasMoved,
    Reason::NoRelaying,
    Reason::RequirePtr,
    Reason::NotCompliantRfc,
    Reason::AuthFailure,
    Reason::UserUnknown,
    Reason::Filtered,
    Reason::BadReputation,
    Reason::Rejected,
    // "Couldn't find a mail exchanger" on a 5.4.4: the domain exists and takes no mail.
    Reason::NotAccept,
    Reason::HostUnknown,
    Reason::SpamDetected,
    Reason::Speeding,
    Reason::TooManyConn,
    Reason::Expired,
    Reason::Blocked,
];

/// Whether `class` is the cause, by the status code's name, the SMTP command and the text.
fn holds(class: Reason, by_status: Option<Reason>, text: &str, command: Option<&str>) -> bool {
    let before_data = command.is_some_and(|c| matches!(c, "CONN" | "EHLO" | "HELO" | "MAIL" | "RCPT"));
    match class {
        // An unknown user is the address: a 5.1.1-like status whose text names no other
        // cause, or a "user unknown" answered to RCPT TO.
        Reason::UserUnknown => match by_status {
            Some(Reason::UserUnknown) => ![
                Reason::NoRelaying,
                Reason::Blocked,
                Reason::MailboxFull,
                Reason::HasMoved,
                Reason::Rejected,
                Reason::NotAccept,
            ]
            .iter()
            .any(|r| says(*r, text)),
            // Without a 5.1.x status or an RCPT TO, "user unknown" is what filters answer too
            // (Japanese carriers, gateways after DATA): Sisimai's `filtered`, and so here.
            _ => (command == Some("RCPT") && says(Reason::UserUnknown, text)) || says_for_sure(text),
        },
        // A refusal after DATA (the address was accepted): filtered, also when the server
        // words it "user unknown". Before DATA nothing can have been filtered.
        Reason::Filtered => match by_status {
            Some(Reason::Suspend) => false,
            // 5.2.0 names no cause ("Mail rejected"): filtered only if the text says so.
            Some(Reason::Filtered) => says(Reason::Filtered, text) || says(Reason::UserUnknown, text),
            _ if before_data => false,
            _ => says(Reason::Filtered, text) || (says(Reason::UserUnknown, text) && by_status.is_none_or(refinable)),
        },
        // A status says the message expired; whether it did is the text's to say (a refusal
        // that made the MTA give up is that refusal).
        Reason::Expired => says(class, text),
        // Checked early for its words only; a 4.3.2 "not accepting messages" names no cause.
        Reason::NotAccept => says(class, text),
        _ => by_status == Some(class) || says(class, text),
    }
}

/// Sisimai's reason for one failed recipient.
pub fn reason(d: &Diagnosis<'_>) -> Reason {
    let action = d.action.map(|a| a.trim().to_ascii_lowercase());
    let class = d.status.and_then(|s| s.chars().next()).or_else(|| d.reply_code.and_then(|c| c.chars().next()));
    if matches!(action.as_deref(), Some("delivered" | "relayed" | "expanded")) || class == Some('2') {
        return Reason::Delivered;
    }
    // One space for each run of whitespace: answers arrive folded over lines.
    let joined = d.text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    // Multi-line replies repeat their codes on every line ("550-5.7.1 … 550-5.7.1 …"): the
    // repeats inside the text go, so phrases split over lines read whole. (Known receivers
    // read `joined`, codes and all.)
    static REPEAT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r" [245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?").unwrap());
    let text = match joined.find(' ') {
        Some(i) => format!("{}{}", &joined[..i], REPEAT.replace_all(&joined[i..], " ")),
        None => joined.clone(),
    };
    let command = d.command.map(str::to_ascii_uppercase);
    // A known receiver's own codes come first: its table says what its words mean.
    let answer = Answer { text: &joined, status: d.status, reply_code: d.reply_code, command: command.as_deref() };
    if let Some(r) = receivers::reason(&d.hosts, &answer) {
        return r;
    }
    let by_status = d.status.and_then(reason_of_status);
    // A bare number is a local mailer's exit code (sendmail's "Diagnostic-Code: X-Unix; 255").
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return Reason::MailerError;
    }
    let first = vendor_reason(&text)
        .or_else(|| FIRST.iter().copied().find(|r| holds(*r, by_status, &text, command.as_deref())));
    let r = match first {
        Some(r) => r,
        None => match (by_status, reason_of_text(&text).filter(|r| *r != Reason::Delivered)) {
            // A 5.1.x status whose text names another cause (see `holds`): the text's.
            (Some(s), Some(t)) if refinable(s) || s == Reason::UserUnknown => t,
            (Some(s), _) => s,
            (None, Some(t)) => t,
            (None, None) => match command.as_deref() {
                Some("CONN" | "HELO" | "EHLO") => Reason::Blocked,
                Some("MAIL") => Reason::Rejected,
                _ if matches!(action.as_deref(), Some("delayed")) => Reason::Expired,
                // Failed, and nothing says why: Sisimai's "onhold" (could not be decided).
                _ if class == Some('4') || class == Some('5') || action.as_deref() == Some("failed") => Reason::OnHold,
                _ => Reason::Undefined,
            },
        },
    };
    // A failed DNS lookup on a temporary status, or one the DNS server failed to answer, is
    // the network, not a dead domain.
    if r == Reason::HostUnknown && (class == Some('4') || dns_failed(&text)) {
        return Reason::NetworkError;
    }
    // Failed (not delayed) on a temporary status: the MTA gave up retrying — expired.
    if class == Some('4')
        && action.as_deref() == Some("failed")
        && matches!(r, Reason::SystemError | Reason::OnHold | Reason::Undefined)
    {
        return Reason::Expired;
    }
    r
}

/// Whether a reason means the address itself is dead (Sisimai's `hardbounce`): an unknown
/// user or domain, a mailbox that has moved, a domain that takes no mail. Everything else
/// may pass another day or with another message.
pub fn is_hard(reason: Reason, status: Option<&str>) -> bool {
    match reason {
        Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved => true,
        Reason::NotAccept => status.is_some_and(|s| s.starts_with('5')),
        _ => false,
    }
}

/// Hard, soft or delayed, from the reason and the action.
pub fn severity(reason: Reason, status: Option<&str>, action: Option<&str>) -> Severity {
    if is_hard(reason, status) {
        return Severity::Hard;
    }
    let delayed = action.is_some_and(|a| a.trim().eq_ignore_ascii_case("delayed"))
        || (reason == Reason::Expired && status.is_some_and(|s| s.starts_with('4')));
    if delayed { Severity::Delayed } else { Severity::Soft }
}

/// R-EM-8: what a bounce does to an address. Only a bounce of mail we sent may suppress
/// (anyone can forge one, and backscatter names strangers); a hard bounce suppresses at once,
/// soft ones once `soft_count` (this one included) reaches the limit; delays and delivery
/// reports never do. Returns the suppression reason, or None.
pub fn suppression(
    severity: Severity,
    reason: Reason,
    status: Option<&str>,
    soft_count: i64,
    soft_limit: i64,
    ours: bool,
) -> Option<String> {
    if !ours || reason == Reason::Delivered {
        return None;
    }
    let code = status.map(|s| format!(" {s}")).unwrap_or_default();
    match severity {
        Severity::Hard => Some(format!("bounce: hard, {}{code}", reason.as_str())),
        Severity::Soft if soft_count >= soft_limit => {
            Some(format!("bounce: {soft_count} soft bounces, last {}{code}", reason.as_str()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(status: Option<&str>, code: Option<&str>, text: &str) -> Reason {
        reason(&Diagnosis { action: Some("failed"), status, reply_code: code, text, ..Default::default() })
    }

    #[test]
    fn r_em_8_reason_from_status_code_and_text() {
        assert_eq!(
            r(Some("5.1.1"), Some("550"), "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown"),
            Reason::UserUnknown
        );
        // "User unknown" is the address only with a 5.1.x status or at RCPT TO; after DATA
        // (or with nothing to tell) it is what filters answer.
        let at = |command| {
            reason(&Diagnosis {
                action: Some("failed"),
                status: Some("5.0.0"),
                reply_code: Some("550"),
                text: "550 5.0.0 <a@b.example>... User unknown",
                command,
                ..Default::default()
            })
        };
        assert_eq!(at(Some("RCPT")), Reason::UserUnknown);
        assert_eq!(at(Some("DATA")), Reason::Filtered);
        assert_eq!(at(None), Reason::Filtered);
        assert_eq!(
            r(None, None, "The recipient name is not recognized"),
            Reason::UserUnknown,
            "a directory's answer is sure"
        );
        assert_eq!(r(Some("5.1.1"), Some("550"), "550 5.1.1 mailbox full"), Reason::MailboxFull);
        assert_eq!(
            r(None, Some("450"), "450 service permits 2 unverifyable sending IPs - a.example is not 192.0.2.1"),
            Reason::RequirePtr,
            "the sending IP has no verifiable name"
        );
        assert_eq!(r(Some("5.2.2"), None, ""), Reason::MailboxFull);
        assert_eq!(r(Some("4.4.7"), None, ""), Reason::Expired);
        assert_eq!(
            r(
                Some("5.7.1"),
                Some("554"),
                "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
            ),
            Reason::Blocked
        );
        assert_eq!(
            r(Some("5.7.1"), Some("550"), "550 5.7.1 Message rejected as spam by Content Filtering"),
            Reason::SpamDetected
        );
        assert_eq!(r(None, None, "Sorry, no mailbox here by that name. (#5.1.1)"), Reason::UserUnknown);
        assert_eq!(r(Some("5.1.2"), None, "Host or domain name not found"), Reason::HostUnknown);
        assert_eq!(r(Some("5.1.6"), None, ""), Reason::HasMoved);
        assert_eq!(r(None, Some("550"), ""), Reason::OnHold);
        assert_eq!(
            reason(&Diagnosis { action: Some("delivered"), status: Some("2.0.0"), ..Default::default() }),
            Reason::Delivered
        );
    }

    #[test]
    fn r_em_8_known_receivers_words_and_dns_failures() {
        // Gmail's content block is its policy, not a blocklisted sender.
        assert_eq!(
            r(
                Some("5.7.0"),
                Some("552"),
                "552-5.7.0 This message was blocked because its content presents a potential"
            ),
            Reason::PolicyViolation
        );
        // Orange's OFR_506 on a 5.2.0 is its spam filter.
        assert_eq!(
            r(Some("5.2.0"), Some("550"), "550 5.2.0 Mail rejete. Mail rejected. ofr_506 [506]"),
            Reason::SpamDetected
        );
        // A 5.1.1 about the sender's volume is not a dead address.
        assert_eq!(
            r(
                Some("5.1.1"),
                Some("550"),
                "550 5.1.1 <a@b.example> - 203.0.113.2 has sent to too many recipients this hour"
            ),
            Reason::Speeding
        );
        // A DNS server that failed to answer says nothing about the domain; NXDOMAIN does.
        assert_eq!(
            r(
                Some("5.4.4"),
                None,
                "Name service error for name=b.example type=MX: Malformed or unexpected name server reply"
            ),
            Reason::NetworkError
        );
        assert_eq!(
            r(
                Some("5.4.4"),
                None,
                "Host or domain name not found. Name service error for name=b.example type=A: Host not found"
            ),
            Reason::HostUnknown
        );
        assert_eq!(
            r(Some("5.4.4"), None, "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)"),
            Reason::NotAccept
        );
        // A 5.1.10 whose text names another cause takes the text's.
        assert_eq!(r(Some("5.1.10"), None, "Reason: host/domain does not accept mail"), Reason::NotAccept);
        // The status's own comment is part of the answer.
        assert_eq!(
            r(Some("5.2.1"), Some("550"), "550 5.2.1 User Unknown (mailbox disabled, not accepting messages)"),
            Reason::Suspend
        );
        // Failed, and nothing says why: on hold, not "undefined".
        assert_eq!(r(None, None, "did not reach the following recipient"), Reason::OnHold);
    }

    #[test]
    fn r_em_8_hard_means_the_address_is_dead() {
        assert!(is_hard(Reason::UserUnknown, Some("5.1.1")));
        assert!(is_hard(Reason::HostUnknown, None));
        assert!(is_hard(Reason::NotAccept, Some("5.1.10")));
        assert!(!is_hard(Reason::NotAccept, Some("4.3.2")));
        // A blocklisted IP or a full mailbox says nothing about the address.
        assert!(!is_hard(Reason::Blocked, Some("5.7.1")));
        assert!(!is_hard(Reason::MailboxFull, Some("5.2.2")));
        assert_eq!(severity(Reason::Expired, Some("4.4.7"), Some("delayed")), Severity::Delayed);
        assert_eq!(severity(Reason::MailboxFull, Some("5.2.2"), Some("failed")), Severity::Soft);
    }

    #[test]
    fn r_em_8_suppression_verdict() {
        assert_eq!(
            suppression(Severity::Hard, Reason::UserUnknown, Some("5.1.1"), 0, 3, true).as_deref(),
            Some("bounce: hard, userunknown 5.1.1")
        );
        assert_eq!(
            suppression(Severity::Hard, Reason::UserUnknown, Some("5.1.1"), 0, 3, false),
            None,
            "not our mail: never"
        );
        assert_eq!(suppression(Severity::Soft, Reason::MailboxFull, None, 2, 3, true), None);
        assert!(suppression(Severity::Soft, Reason::MailboxFull, None, 3, 3, true).is_some());
        assert_eq!(suppression(Severity::Delayed, Reason::Expired, None, 9, 3, true), None);
    }

    #[test]
    fn reason_names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
