//! Calendar arithmetic of the admin views (DOMAIN §7): "today", "this week", "last week",
//! "this month" and "6 calendar months ago" in the organisation's time zone, with ISO weeks
//! starting Monday 00:00. Pure: `now` and the zone are arguments.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant local midnight of `date` begins. A midnight that a DST change skips starts at
/// the first local time that exists after it (the next whole hour).
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t: NaiveDateTime = date.and_hms_opt(0, 0, 0).expect("midnight");
    for _ in 0..4 {
        match tz.from_local_datetime(&t) {
            chrono::LocalResult::Single(x) => return x.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            chrono::LocalResult::None => t += chrono::Duration::hours(1),
        }
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// The local date of `now`.
pub fn today(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The local days of "the last `days` days" up to today, oldest first (at least today).
pub fn last_days(now: DateTime<Utc>, tz: Tz, days: u32) -> Vec<NaiveDate> {
    let first = today(now, tz) - Days::new(u64::from(days.max(1)) - 1);
    (0..days.max(1)).map(|i| first + Days::new(u64::from(i))).collect()
}

/// `days` local days from `first` cut into runs of whole 24-hour days: (start of the run, its
/// number of days). A day that is not 24 hours long (a DST change) is a run of its own, so
/// within a run the day of an instant is `(t - start) / 24 h` — what lets a database count
/// per local day with integer arithmetic (charts over 90 days in a few queries).
pub fn day_runs(first: NaiveDate, days: u32, tz: Tz) -> Vec<(DateTime<Utc>, u32)> {
    let mut runs: Vec<(DateTime<Utc>, u32)> = Vec::new();
    let mut prev_regular = false;
    for i in 0..days {
        let d = first + Days::new(u64::from(i));
        let (start, end) = (start_of_day(d, tz), start_of_day(d + Days::new(1), tz));
        let regular = end - start == chrono::Duration::days(1);
        match runs.last_mut() {
            Some(run) if regular && prev_regular => run.1 += 1,
            _ => runs.push((start, 1)),
        }
        prev_regular = regular;
    }
    runs
}

/// [start, end) of the local day of `now`.
pub fn day_bounds(now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let d = today(now, tz);
    (start_of_day(d, tz), start_of_day(d + Days::new(1), tz))
}

/// Monday 00:00 (local) of the ISO week holding `now`.
pub fn week_start(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let d = today(now, tz);
    let monday = d - Days::new(u64::from(d.weekday().num_days_from_monday()));
    start_of_day(monday, tz)
}

/// [start of last week, start of this week).
pub fn last_week(now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let this = week_start(now, tz);
    let d = today(now, tz);
    let monday = d - Days::new(u64::from(d.weekday().num_days_from_monday())) - Days::new(7);
    (start_of_day(monday, tz), this)
}

/// [first day of this month, first day of next month) as local dates.
pub fn month_dates(now: DateTime<Utc>, tz: Tz) -> (NaiveDate, NaiveDate) {
    let d = today(now, tz);
    let first = d.with_day(1).expect("day 1");
    (first, first + Months::new(1))
}

/// `now` minus `n` calendar months, in local time (31 March − 1 month = 28/29 February).
pub fn months_ago(now: DateTime<Utc>, tz: Tz, n: u32) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).naive_local();
    let back = local.checked_sub_months(Months::new(n)).unwrap_or(local);
    match tz.from_local_datetime(&back) {
        chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => x.with_timezone(&Utc),
        // A time a DST change skips: the first existing local time after it.
        chrono::LocalResult::None => (1..=4)
            .find_map(|h| tz.from_local_datetime(&(back + chrono::Duration::hours(h))).earliest())
            .map(|x| x.with_timezone(&Utc))
            .unwrap_or_else(|| start_of_day(back.date(), tz)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_runs_split_at_a_dst_change() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Moscow keeps one offset: 90 days are one run.
        let runs = day_runs(d("2026-09-01"), 90, chrono_tz::Europe::Moscow);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].1, 90);
        // Kyiv leaves summer time on 25 October 2026 (a 25-hour day): before it, the day
        // alone, then the rest.
        let runs = day_runs(d("2026-10-20"), 10, chrono_tz::Europe::Kyiv);
        let lens: Vec<u32> = runs.iter().map(|r| r.1).collect();
        assert_eq!(lens, [5, 1, 4]);
        assert_eq!(runs.iter().map(|r| r.1).sum::<u32>(), 10);
        assert_eq!(runs[1].0, start_of_day(d("2026-10-25"), chrono_tz::Europe::Kyiv));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const MSK: Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn week_starts_monday_midnight_moscow() {
        // Sunday 2026-11-29 22:30 UTC is Monday 30 Nov 01:30 in Moscow: a new week there.
        assert_eq!(week_start(utc("2026-11-29T22:30:00Z"), MSK), utc("2026-11-29T21:00:00Z"));
        // Sunday 2026-11-29 20:59 UTC is still Sunday 23:59 in Moscow: the week of 23 Nov.
        assert_eq!(week_start(utc("2026-11-29T20:59:00Z"), MSK), utc("2026-11-22T21:00:00Z"));
        let (a, b) = last_week(utc("2026-11-27T12:00:00Z"), MSK);
        assert_eq!((a, b), (utc("2026-11-15T21:00:00Z"), utc("2026-11-22T21:00:00Z")));
    }

    #[test]
    fn week_start_across_a_dst_change() {
        // Berlin leaves summer time on Sunday 25 Oct 2026; that week began Monday 19 Oct, CEST.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(week_start(utc("2026-10-25T12:00:00Z"), berlin), utc("2026-10-18T22:00:00Z"));
        assert_eq!(week_start(utc("2026-10-27T12:00:00Z"), berlin), utc("2026-10-25T23:00:00Z"));
    }

    #[test]
    fn today_and_month_in_moscow() {
        let (a, b) = day_bounds(utc("2026-11-30T21:30:00Z"), MSK);
        assert_eq!((a, b), (utc("2026-11-30T21:00:00Z"), utc("2026-12-01T21:00:00Z")));
        let (first, next) = month_dates(utc("2026-11-30T21:30:00Z"), MSK);
        assert_eq!((first.to_string(), next.to_string()), ("2026-12-01".into(), "2027-01-01".into()));
    }

    #[test]
    fn six_calendar_months_back_clamps_the_day() {
        assert_eq!(months_ago(utc("2026-08-31T09:00:00Z"), MSK, 6), utc("2026-02-28T09:00:00Z"));
        assert_eq!(months_ago(utc("2026-11-27T09:00:00Z"), MSK, 6), utc("2026-05-27T09:00:00Z"));
    }
}
