//! Campaign e-mail wave rules (DOMAIN §4.4, §4.5): the wave's life cycle (R-WV-5), who gets a
//! message (R-WV-2 member set, R-WV-3 exclusions, R-OPT-1 gate), how an SMTP reply is judged
//! (retry, throttle, reject), retry backoff, the relay's rate (GCRA) and local start times.
//! Pure: no I/O, the clock is a parameter. Called by `store::waves` and `waves`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::error::{RuleError, refuse, refuse_conflict};
use super::types::EntityKind;

/// The daemon-side state of a wave (issue: scheduled → sending ⇄ paused → completed /
/// canceled / aborted). The CRM side (bulkoperation, campaignactivity statuses) follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaveState {
    Scheduled,
    Sending,
    Paused,
    Completed,
    Canceled,
    Aborted,
}

impl WaveState {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Scheduled => "scheduled",
            WaveState::Sending => "sending",
            WaveState::Paused => "paused",
            WaveState::Completed => "completed",
            WaveState::Canceled => "canceled",
            WaveState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<WaveState> {
        Some(match s {
            "scheduled" => WaveState::Scheduled,
            "sending" => WaveState::Sending,
            "paused" => WaveState::Paused,
            "completed" => WaveState::Completed,
            "canceled" => WaveState::Canceled,
            "aborted" => WaveState::Aborted,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, WaveState::Completed | WaveState::Canceled | WaveState::Aborted)
    }
}

/// What a marketer asks of a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveAction {
    Pause,
    Resume,
    Cancel,
}

/// R-WV-5 as the daemon runs it: pause only while sending, resume only while paused, cancel
/// anything not finished. Returns the new state.
pub fn next_state(from: WaveState, action: WaveAction) -> Result<WaveState, RuleError> {
    match (from, action) {
        (WaveState::Sending, WaveAction::Pause) => Ok(WaveState::Paused),
        (WaveState::Paused, WaveAction::Resume) => Ok(WaveState::Sending),
        (s, WaveAction::Cancel) if !s.is_final() => Ok(WaveState::Canceled),
        (s, a) => refuse_conflict(
            "R-WV-5",
            "invalid_wave_transition",
            format!(
                "a {} wave cannot be {}",
                s.as_str(),
                match a {
                    WaveAction::Pause => "paused",
                    WaveAction::Resume => "resumed",
                    WaveAction::Cancel => "canceled",
                }
            ),
        ),
    }
}

/// A list member as the expansion sees it (read at distribution start).
#[derive(Debug, Clone, Default)]
pub struct Member {
    pub kind: EntityKind,
    pub id: Uuid,
    pub statecode: i32,
    /// emailaddress1..3 as stored.
    pub emails: [Option<String>; 3],
    pub donotemail: bool,
    pub donotbulkemail: bool,
    pub donotsendmm: bool,
    pub lastusedincampaign: Option<NaiveDate>,
    /// Personalisation values (first_name, last_name, full_name, company, ...).
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// The wave's exclusion settings (campaignactivity fields plus the global override).
#[derive(Debug, Clone)]
pub struct ExpandSettings {
    /// `donotsendonoptout`, already combined with `allow_optout_override` (R-OPT-1 [DESIGN]).
    pub skip_opted_out: bool,
    pub ignore_inactive: bool,
    /// `excludeifcontactedinxdays`.
    pub exclude_days: Option<i32>,
    /// Today in the organisation's time zone.
    pub today: NaiveDate,
}

/// One recipient of a wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub kind: EntityKind,
    pub id: Uuid,
    /// Normalised address (the per-wave uniqueness key).
    pub address: String,
    /// The address as written on the record (what goes into To:).
    pub written: String,
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// The frozen member set of a wave.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    /// Distinct member records (R-WV-2, deduped by entity and id).
    pub targeted: usize,
    pub recipients: Vec<Recipient>,
    /// Excluded members by reason (R-WV-3).
    pub excluded: BTreeMap<&'static str, usize>,
}

/// Reasons a member gets no message, in the order they are tested.
pub const REASON_INACTIVE: &str = "inactive";
pub const REASON_NO_EMAIL: &str = "no_valid_email";
pub const REASON_OPTED_OUT: &str = "opted_out";
pub const REASON_SUPPRESSED: &str = "suppressed";
pub const REASON_RECENT: &str = "contacted_recently";
pub const REASON_RESPONDED: &str = "responded_to_previous_wave";
pub const REASON_DUPLICATE: &str = "duplicate_address";

/// R-WV-2 / R-WV-3 / R-OPT-1: the recipients of a wave and the excluded members by reason.
/// `normalize` turns a written address into its key (None = not a valid address);
/// `suppressed` holds normalised addresses; `responded` the members (and addresses) that
/// answered the wave this one follows up on.
pub fn plan_recipients(
    members: Vec<Member>,
    s: &ExpandSettings,
    normalize: impl Fn(&str) -> Option<String>,
    suppressed: &HashSet<String>,
    responded: &HashSet<String>,
) -> Expansion {
    let mut out = Expansion::default();
    let mut seen_members = HashSet::new();
    let mut seen_addresses = HashSet::new();
    for m in members {
        if !seen_members.insert((m.kind, m.id)) {
            continue;
        }
        out.targeted += 1;
        let reason = (|| {
            if s.ignore_inactive && m.statecode != 0 {
                return Err(REASON_INACTIVE);
            }
            let Some((written, address)) =
                m.emails.iter().flatten().find_map(|e| normalize(e).map(|n| (e.trim().to_string(), n)))
            else {
                return Err(REASON_NO_EMAIL);
            };
            if s.skip_opted_out && (m.donotemail || m.donotbulkemail || m.donotsendmm) {
                return Err(REASON_OPTED_OUT);
            }
            if suppressed.contains(&address) {
                return Err(REASON_SUPPRESSED);
            }
            if let (Some(n), Some(last)) = (s.exclude_days.filter(|n| *n > 0), m.lastusedincampaign) {
                if last >= s.today - chrono::Duration::days(n as i64) {
                    return Err(REASON_RECENT);
                }
            }
            if responded.contains(&m.id.to_string()) || responded.contains(&address) {
                return Err(REASON_RESPONDED);
            }
            if !seen_addresses.insert(address.clone()) {
                return Err(REASON_DUPLICATE);
            }
            Ok((written, address))
        })();
        match reason {
            Ok((written, address)) => {
                out.recipients.push(Recipient { kind: m.kind, id: m.id, address, written, vars: m.vars })
            }
            Err(r) => *out.excluded.entry(r).or_default() += 1,
        }
    }
    out
}

/// R-OPT-1 for the `optouts` view of a list: why a member gets no marketing e-mail whatever
/// the wave — each opt-out flag set, a suppressed address, or no valid address. Empty = none.
pub fn optout_reasons(
    m: &Member,
    normalize: impl Fn(&str) -> Option<String>,
    suppressed: &HashSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (set, flag) in
        [(m.donotemail, "donotemail"), (m.donotbulkemail, "donotbulkemail"), (m.donotsendmm, "donotsendmm")]
    {
        if set {
            out.push(format!("{REASON_OPTED_OUT}: {flag}"));
        }
    }
    let addresses: Vec<String> = m.emails.iter().flatten().filter_map(|e| normalize(e)).collect();
    match addresses.first() {
        None => out.push(REASON_NO_EMAIL.to_string()),
        Some(a) if suppressed.contains(a) => out.push(format!("{REASON_SUPPRESSED}: {a}")),
        Some(_) => {}
    }
    out
}

/// A marketer's wall-clock start, `YYYY-MM-DD HH:MM[:SS]` (a space or `T` between).
pub fn parse_local(s: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// A wall-clock start in a named zone → the UTC instant. A time skipped by a DST change is
/// refused; an ambiguous one (clocks going back) takes the earlier instant.
pub fn local_start(local: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, RuleError> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Ok(a.with_timezone(&Utc)),
        LocalResult::None => {
            refuse("R-WV-5", "start_time_skipped", format!("{local} does not exist in {tz} (a daylight-saving gap)"))
        }
    }
}

/// Where in the SMTP transaction a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting, EHLO, STARTTLS, AUTH: the relay, not the recipient.
    Connect,
    Mail,
    Rcpt,
    Data,
}

/// What to do with a delivery after an SMTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Count an attempt and try again later with backoff (4xx, timeouts, lost connection).
    Retry,
    /// The relay asks us to slow down: back off the whole relay; the attempt is not counted.
    Throttled,
    /// The relay itself is unusable (cannot connect or log in): back off, attempt not counted.
    RelayDown,
    /// Permanent failure of this recipient; `suppress` when the address itself was refused.
    Rejected { suppress: bool },
    /// The envelope sender was refused: the wave cannot be sent (R-WV-5 Aborted).
    SenderRejected,
}

/// 421/450/451/452/454 with rate wording are throttling replies (RFC 5321 §4.2.3 codes;
/// the wording is what Gmail, Outlook.com, Yahoo and Postfix's anvil put in them).
pub fn is_throttle(code: u16, text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    matches!(code, 421 | 450 | 451 | 452 | 454)
        && ["rate", "too many", "throttl", "slow down", "too fast", "limit exceeded", "4.7.0", "4.7.28"]
            .iter()
            .any(|w| t.contains(w))
}

/// Judges an SMTP failure at `stage`; `code` is None for network errors and timeouts.
pub fn classify(stage: Stage, code: Option<u16>, text: &str) -> Verdict {
    match (stage, code) {
        (_, Some(c)) if is_throttle(c, text) => Verdict::Throttled,
        // 421: the relay is closing the session (RFC 5321 §3.8), whoever the recipient.
        (Stage::Connect, _) | (_, Some(421)) => Verdict::RelayDown,
        (_, None) => Verdict::Retry,
        (_, Some(c)) if c < 500 => Verdict::Retry,
        (Stage::Mail, Some(_)) => Verdict::SenderRejected,
        (Stage::Rcpt, Some(_)) => Verdict::Rejected { suppress: true },
        (Stage::Data, Some(_)) => Verdict::Rejected { suppress: false },
    }
}

/// Exponential backoff: base × 2^(attempts−1), at most `max`.
pub fn retry_delay(base: Duration, attempts: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// A generic cell rate algorithm grant: how many of `want` messages may go now at
/// `rate_per_min`, allowing a burst of one second's worth. Returns (granted, new TAT in
/// epoch ms, ms until the next message may go when nothing was granted).
pub fn gcra_take(tat_ms: i64, now_ms: i64, rate_per_min: u32, want: usize) -> (usize, i64, i64) {
    if rate_per_min == 0 {
        return (0, tat_ms, 60_000);
    }
    let interval = 60_000.0 / rate_per_min as f64;
    let burst = (rate_per_min as f64 / 60.0).max(1.0);
    let start = tat_ms.max(now_ms) as f64;
    let horizon = now_ms as f64 + burst * interval;
    let room = ((horizon - start) / interval).floor().max(0.0) as usize;
    let granted = room.min(want);
    let tat = (start + granted as f64 * interval).round() as i64;
    let wait = if granted == 0 { (start + interval - horizon).ceil().max(1.0) as i64 } else { 0 };
    (granted, tat, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_opt_1_optout_reasons_name_each_flag_and_the_suppression() {
        let m = Member {
            kind: EntityKind::Contact,
            id: Uuid::nil(),
            statecode: 0,
            emails: [Some("A@x.ru".into()), None, None],
            donotemail: false,
            donotbulkemail: true,
            donotsendmm: true,
            lastusedincampaign: None,
            vars: Default::default(),
        };
        let norm = |e: &str| Some(e.to_lowercase());
        let sup: HashSet<String> = ["a@x.ru".to_string()].into();
        assert_eq!(
            optout_reasons(&m, norm, &sup),
            vec!["opted_out: donotbulkemail", "opted_out: donotsendmm", "suppressed: a@x.ru"]
        );
        let clean = Member { donotbulkemail: false, donotsendmm: false, ..m.clone() };
        assert!(optout_reasons(&clean, norm, &HashSet::new()).is_empty());
        let none = Member { emails: [Some("broken".into()), None, None], ..clean };
        assert_eq!(optout_reasons(&none, |_| None, &HashSet::new()), vec!["no_valid_email"]);
    }
    use serde_json::json;

    fn member(id: u128, email: Option<&str>) -> Member {
        Member {
            kind: EntityKind::Contact,
            id: Uuid::from_u128(id),
            emails: [email.map(str::to_string), None, None],
            ..Default::default()
        }
    }

    fn settings() -> ExpandSettings {
        ExpandSettings {
            skip_opted_out: true,
            ignore_inactive: true,
            exclude_days: None,
            today: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        }
    }

    fn norm(s: &str) -> Option<String> {
        s.contains('@').then(|| s.trim().to_lowercase())
    }

    #[test]
    fn r_wv_2_one_message_per_member_and_per_address() {
        let mut a = member(1, Some("Anna@Acme.ru"));
        a.vars.insert("first_name".into(), json!("Анна"));
        let members = vec![a.clone(), a, member(2, Some("anna@acme.ru")), member(3, Some("boris@acme.ru"))];
        let e = plan_recipients(members, &settings(), norm, &HashSet::new(), &HashSet::new());
        assert_eq!(e.targeted, 3, "the same member on two lists counts once");
        assert_eq!(
            e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
            ["anna@acme.ru", "boris@acme.ru"]
        );
        assert_eq!(e.recipients[0].written, "Anna@Acme.ru");
        assert_eq!(e.recipients[0].vars["first_name"], json!("Анна"));
        assert_eq!(e.excluded.get(REASON_DUPLICATE), Some(&1));
    }

    #[test]
    fn r_wv_3_and_r_opt_1_exclusions_are_counted_by_reason() {
        let mut inactive = member(1, Some("a@x.ru"));
        inactive.statecode = 1;
        let none = member(2, None);
        let bad = member(3, Some("not an address"));
        let mut opted = member(4, Some("o@x.ru"));
        opted.donotbulkemail = true;
        let mut mm = member(5, Some("m@x.ru"));
        mm.donotsendmm = true;
        let sup = member(6, Some("s@x.ru"));
        let mut recent = member(7, Some("r@x.ru"));
        recent.lastusedincampaign = NaiveDate::from_ymd_opt(2026, 11, 20);
        let mut old = member(8, Some("old@x.ru"));
        old.lastusedincampaign = NaiveDate::from_ymd_opt(2026, 10, 1);
        let responded = member(9, Some("resp@x.ru"));
        let mut fallback = member(10, None);
        fallback.emails[2] = Some("third@x.ru".into());
        let s = ExpandSettings { exclude_days: Some(30), ..settings() };
        let sup_set = HashSet::from(["s@x.ru".to_string()]);
        let resp_set = HashSet::from([Uuid::from_u128(9).to_string()]);
        let e = plan_recipients(
            vec![inactive, none, bad, opted, mm, sup, recent, old, responded, fallback],
            &s,
            norm,
            &sup_set,
            &resp_set,
        );
        assert_eq!(e.targeted, 10);
        assert_eq!(e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["old@x.ru", "third@x.ru"]);
        let ex: Vec<(&str, usize)> = e.excluded.into_iter().collect();
        assert_eq!(
            ex,
            [
                (REASON_RECENT, 1),
                (REASON_INACTIVE, 1),
                (REASON_NO_EMAIL, 2),
                (REASON_OPTED_OUT, 2),
                (REASON_RESPONDED, 1),
                (REASON_SUPPRESSED, 1)
            ]
        );
    }

    #[test]
    fn r_opt_1_override_sends_to_opted_out_but_never_to_suppressed() {
        let mut opted = member(1, Some("o@x.ru"));
        opted.donotemail = true;
        let mut inactive = member(2, Some("i@x.ru"));
        inactive.statecode = 2;
        let s = ExpandSettings { skip_opted_out: false, ignore_inactive: false, ..settings() };
        let sup = HashSet::from(["i@x.ru".to_string()]);
        let e = plan_recipients(vec![opted, inactive], &s, norm, &sup, &HashSet::new());
        assert_eq!(e.recipients.len(), 1);
        assert_eq!(e.excluded.get(REASON_SUPPRESSED), Some(&1));
    }

    #[test]
    fn r_wv_5_wave_transitions() {
        use WaveAction::*;
        use WaveState::*;
        assert_eq!(next_state(Sending, Pause).unwrap(), Paused);
        assert_eq!(next_state(Paused, Resume).unwrap(), Sending);
        assert_eq!(next_state(Scheduled, Cancel).unwrap(), Canceled);
        assert_eq!(next_state(Paused, Cancel).unwrap(), Canceled);
        assert_eq!(next_state(Scheduled, Pause).unwrap_err().code, "invalid_wave_transition");
        assert!(next_state(Completed, Cancel).is_err());
        assert!(next_state(Sending, Resume).is_err());
    }

    #[test]
    fn start_time_in_moscow_is_stored_utc() {
        let moscow: Tz = "Europe/Moscow".parse().unwrap();
        let local = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap().and_hms_opt(10, 0, 0).unwrap();
        assert_eq!(local_start(local, moscow).unwrap().to_rfc3339(), "2026-12-01T07:00:00+00:00");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(local_start(gap, berlin).unwrap_err().code, "start_time_skipped");
        let twice = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(local_start(twice, berlin).unwrap().to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    #[test]
    fn smtp_replies_are_judged_by_stage_and_wording() {
        assert_eq!(classify(Stage::Rcpt, Some(550), "5.1.1 user unknown"), Verdict::Rejected { suppress: true });
        assert_eq!(classify(Stage::Data, Some(554), "5.7.1 spam"), Verdict::Rejected { suppress: false });
        assert_eq!(classify(Stage::Rcpt, Some(450), "4.2.1 mailbox busy"), Verdict::Retry);
        assert_eq!(classify(Stage::Rcpt, Some(451), "4.7.1 Too many messages, slow down"), Verdict::Throttled);
        assert_eq!(classify(Stage::Data, Some(421), "4.7.0 rate limit exceeded"), Verdict::Throttled);
        assert_eq!(
            classify(Stage::Mail, Some(421), "4.7.28 our system has detected an unusual rate"),
            Verdict::Throttled
        );
        assert_eq!(classify(Stage::Data, None, "connection reset"), Verdict::Retry);
        assert_eq!(classify(Stage::Mail, Some(553), "sender not allowed"), Verdict::SenderRejected);
        assert_eq!(classify(Stage::Connect, Some(535), "authentication failed"), Verdict::RelayDown);
        assert_eq!(classify(Stage::Connect, None, "connection refused"), Verdict::RelayDown);
        assert_eq!(
            classify(Stage::Rcpt, Some(421), "4.3.2 service shutting down"),
            Verdict::RelayDown,
            "421 is the relay's, not the recipient's"
        );
        assert!(!is_throttle(550, "rate limit"), "a 5xx is never a throttle");
    }

    #[test]
    fn retry_backoff_doubles_up_to_the_cap() {
        let b = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        assert_eq!(retry_delay(b, 1, max), Duration::from_secs(60));
        assert_eq!(retry_delay(b, 3, max), Duration::from_secs(240));
        assert_eq!(retry_delay(b, 10, max), max);
        assert_eq!(retry_delay(b, 4000, max), max);
    }

    #[test]
    fn gcra_spreads_messages_over_the_minute() {
        // 60/min = one per second, burst of one.
        let (g, tat, _) = gcra_take(0, 1_000_000, 60, 10);
        assert_eq!((g, tat), (1, 1_001_000));
        let (g, _, wait) = gcra_take(tat, 1_000_000, 60, 10);
        assert_eq!(g, 0);
        assert_eq!(wait, 1_000);
        let (g, _, _) = gcra_take(tat, 1_001_000, 60, 10);
        assert_eq!(g, 1);
        // 6000/min: 100 per second of burst.
        let (g, _, _) = gcra_take(0, 5_000, 6000, 1000);
        assert_eq!(g, 100);
        // Over a minute the total is the rate (+ the burst).
        let (mut tat, mut sent) = (0i64, 0usize);
        for ms in (0..60_000).step_by(100) {
            let (g, t, _) = gcra_take(tat, 10_000_000 + ms, 120, 1000);
            tat = t;
            sent += g;
        }
        assert!((120..=123).contains(&sent), "{sent}");
    }
}
