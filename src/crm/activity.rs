//! Activity rules shared by the workers: the overdue predicate (R-TASK-1) and the due
//! instant of DateOnly due dates.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// [DESIGN] R-TASK-1: a DateOnly due date falls due at 23:59:59.999 of that date in the org
/// time zone.
pub fn date_only_due(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let end = date.and_hms_milli_opt(23, 59, 59, 999).expect("valid time");
    match tz.from_local_datetime(&end) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(_, late) => late.with_timezone(&Utc),
        // A gap at 23:59 (no zone does this today): fall back to UTC.
        chrono::LocalResult::None => Utc.from_utc_datetime(&end),
    }
}

/// R-TASK-1: Open, with a due instant, and that instant has passed.
pub fn is_overdue(statecode: i32, due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    statecode == 0 && due.is_some_and(|d| d < now)
}

/// R-PBX-2: `actualdurationminutes` = ceil(seconds / 60).
pub fn duration_minutes(seconds: i64) -> i32 {
    if seconds <= 0 { 0 } else { ((seconds + 59) / 60).min(i32::MAX as i64) as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_task_1_date_only_due_is_end_of_day_in_moscow() {
        let due = date_only_due(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(), chrono_tz::Europe::Moscow);
        // 23:59:59.999 MSK (UTC+3) = 20:59:59.999 UTC.
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 11, 27, 20, 59, 59).unwrap() + chrono::Duration::milliseconds(999));
        assert!(!is_overdue(0, Some(due), due));
        assert!(is_overdue(0, Some(due), due + chrono::Duration::milliseconds(1)));
    }

    #[test]
    fn r_task_1_only_open_activities_with_a_due_date() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let past = Some(now - chrono::Duration::seconds(1));
        assert!(is_overdue(0, past, now));
        assert!(!is_overdue(1, past, now), "completed");
        assert!(!is_overdue(2, past, now), "canceled");
        assert!(!is_overdue(0, None, now), "no due date");
        assert!(!is_overdue(0, Some(now), now), "due exactly now is not yet overdue");
    }

    #[test]
    fn r_pbx_2_duration_rounds_up() {
        assert_eq!(duration_minutes(0), 0);
        assert_eq!(duration_minutes(1), 1);
        assert_eq!(duration_minutes(60), 1);
        assert_eq!(duration_minutes(61), 2);
    }
}
