//! Dates in law are French calendar dates: an instant becomes a date in
//! Europe/Paris, whatever the server's time zone, or in the overseas
//! department's own time where the person is (`local_date`).

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use chrono_tz::Europe::Paris;
use chrono_tz::Tz;

/// The calendar date in Paris at this instant.
pub fn paris_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Paris).date_naive()
}

/// The legal time of `department`: each overseas department keeps its own;
/// the mainland and Corsica (and any other code) keep Paris's.
pub fn time_zone(department: &str) -> Tz {
    match department {
        "971" => chrono_tz::America::Guadeloupe,
        "972" => chrono_tz::America::Martinique,
        "973" => chrono_tz::America::Cayenne,
        "974" => chrono_tz::Indian::Reunion,
        "976" => chrono_tz::Indian::Mayotte,
        _ => Paris,
    }
}

/// The calendar date in `department` at this instant: a renewal filed at
/// 21:00 in Cayenne on the title's last day is filed that day, though it
/// is already the next day in Paris.
pub fn local_date(at: DateTime<Utc>, department: &str) -> NaiveDate {
    at.with_timezone(&time_zone(department)).date_naive()
}

/// The latest calendar date anywhere in France at this instant (La
/// Réunion's, four hours ahead of UTC all year; Paris is at most two):
/// the bound for "not in the future", whichever department a date is from.
pub fn latest_date_in_france(at: DateTime<Utc>) -> NaiveDate {
    local_date(at, "974").max(paris_date(at))
}

/// The time of day in Paris at instant `at` (`09:30`), as desks and
/// convocations give it.
pub fn paris_time_of_day(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::Paris)
        .format("%H:%M")
        .to_string()
}

/// Parses `YYYY-MM-DD`, the only date form the APIs accept: four digits,
/// two and two. chrono's `%Y-%m-%d` alone also takes a sign, a space or a
/// one-digit month (`+2026-1-01`, ` 2026-1-01`).
pub fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Easter Sunday of `year` (Gregorian calendar, the anonymous algorithm).
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).unwrap_or(NaiveDate::MIN)
}

/// The public holidays of `department` (a department code, as prefectures
/// are named): the eleven national ones, and those the law adds locally.
/// Alsace-Moselle (57, 67, 68) keeps Good Friday and 26 December (Code du
/// travail L.3134-13); each overseas department marks the abolition of
/// slavery on its own day (law 83-550). Any other code, or none, has the
/// national ones alone.
pub fn is_public_holiday(d: NaiveDate, department: &str) -> bool {
    let fixed = [
        (1, 1),
        (5, 1),
        (5, 8),
        (7, 14),
        (8, 15),
        (11, 1),
        (11, 11),
        (12, 25),
    ];
    let day = (d.month(), d.day());
    if fixed.contains(&day) {
        return true;
    }
    let easter = easter(d.year());
    let after_easter =
        |offset: i64| easter.checked_add_signed(chrono::Duration::days(offset)) == Some(d);
    // Easter Monday, Ascension Thursday, Whit Monday.
    if [1, 39, 50].into_iter().any(after_easter) {
        return true;
    }
    match department {
        "57" | "67" | "68" => after_easter(-2) || day == (12, 26),
        "971" => day == (5, 27),
        "972" => day == (5, 22),
        "973" => day == (6, 10),
        "974" => day == (12, 20),
        "976" => day == (4, 27),
        _ => false,
    }
}

/// Monday to Friday, and not a public holiday of `department`: a day its
/// prefecture works.
pub fn is_working_day(d: NaiveDate, department: &str) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !is_public_holiday(d, department)
}

/// The `n`-th working day of `department` after `from` (`from` itself does
/// not count).
pub fn add_working_days(from: NaiveDate, n: u32, department: &str) -> NaiveDate {
    let mut d = from;
    let mut left = n;
    while left > 0 {
        d = d.succ_opt().unwrap_or(d);
        if is_working_day(d, department) {
            left -= 1;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_table() {
        for (year, (m, d)) in [
            (2024, (3, 31)),
            (2025, (4, 20)),
            (2026, (4, 5)),
            (2027, (3, 28)),
            (2038, (4, 25)),
        ] {
            assert_eq!(easter(year), date(year, m, d), "{year}");
        }
    }

    #[test]
    fn working_days_table() {
        // (from, n, expected, why)
        let table = [
            (
                date(2026, 11, 23),
                5,
                date(2026, 11, 30),
                "a plain week: Monday + 5 = next Monday",
            ),
            (
                date(2026, 11, 27),
                1,
                date(2026, 11, 30),
                "Friday + 1 skips the weekend",
            ),
            (date(2026, 11, 28), 1, date(2026, 11, 30), "from a Saturday"),
            (
                date(2026, 11, 6),
                5,
                date(2026, 11, 16),
                "11 November is not worked",
            ),
            (
                date(2026, 12, 24),
                2,
                date(2026, 12, 29),
                "Christmas, then the weekend",
            ),
            (date(2026, 4, 3), 1, date(2026, 4, 7), "Easter Monday 2026"),
            (
                date(2026, 5, 13),
                1,
                date(2026, 5, 15),
                "Ascension Thursday 2026",
            ),
            (date(2026, 5, 22), 1, date(2026, 5, 26), "Whit Monday 2026"),
            (date(2026, 4, 30), 1, date(2026, 5, 4), "1 May on a Friday"),
            (
                date(2026, 11, 23),
                0,
                date(2026, 11, 23),
                "no days: the same day",
            ),
        ];
        for (from, n, expected, why) in table {
            assert_eq!(add_working_days(from, n, "59"), expected, "{why}");
        }
    }

    #[test]
    fn local_holidays_table() {
        // (day, department, a public holiday there, why)
        let table = [
            (date(2027, 3, 26), "67", true, "Good Friday in Bas-Rhin"),
            (date(2027, 3, 26), "57", true, "Good Friday in Moselle"),
            (
                date(2027, 3, 26),
                "59",
                false,
                "Good Friday is worked in Nord",
            ),
            (
                date(2026, 4, 3),
                "68",
                true,
                "Good Friday 2026 in Haut-Rhin",
            ),
            (date(2029, 12, 26), "68", true, "26 December in Haut-Rhin"),
            (
                date(2029, 12, 26),
                "75",
                false,
                "26 December is worked in Paris",
            ),
            (date(2027, 5, 27), "971", true, "abolition day, Guadeloupe"),
            (date(2027, 5, 27), "972", false, "Martinique's is the 22nd"),
            (
                date(2027, 5, 21),
                "972",
                false,
                "the day before Martinique's",
            ),
            (date(2026, 5, 22), "972", true, "abolition day, Martinique"),
            (date(2027, 6, 10), "973", true, "abolition day, Guyane"),
            (date(2026, 12, 20), "974", true, "abolition day, La Réunion"),
            (date(2027, 4, 27), "976", true, "abolition day, Mayotte"),
            (
                date(2027, 4, 27),
                "",
                false,
                "no department: national days alone",
            ),
            (date(2027, 3, 29), "", true, "Easter Monday everywhere"),
            (date(2027, 3, 29), "67", true, "Easter Monday in Alsace too"),
            (date(2027, 12, 25), "974", true, "Christmas overseas too"),
        ];
        for (day, department, holiday, why) in table {
            assert_eq!(is_public_holiday(day, department), holiday, "{why}");
        }
        // A report opened in Strasbourg on Maundy Thursday 2027 waits past
        // Good Friday and Easter Monday; in Lille, past Easter Monday only.
        assert_eq!(
            add_working_days(date(2027, 3, 25), 1, "67"),
            date(2027, 3, 30)
        );
        assert_eq!(
            add_working_days(date(2027, 3, 25), 1, "59"),
            date(2027, 3, 26)
        );
    }

    #[test]
    fn paris_date_table() {
        // (UTC instant, date in Paris)
        let table = [
            // Winter (UTC+1): 23:30 UTC is already the next day in Paris.
            ((2026, 1, 15, 23, 30), (2026, 1, 16)),
            ((2026, 1, 15, 22, 59), (2026, 1, 15)),
            // Summer (UTC+2): 22:00 UTC is midnight in Paris.
            ((2026, 7, 1, 22, 0), (2026, 7, 2)),
            ((2026, 7, 1, 21, 59), (2026, 7, 1)),
            // New year's eve, leap day.
            ((2025, 12, 31, 23, 0), (2026, 1, 1)),
            ((2028, 2, 28, 23, 0), (2028, 2, 29)),
            // The night the clocks go forward (29 March 2026, 01:00 UTC).
            ((2026, 3, 28, 23, 0), (2026, 3, 29)),
        ];
        for ((y, m, d, h, mi), (ey, em, ed)) in table {
            let at = Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap();
            assert_eq!(
                paris_date(at),
                NaiveDate::from_ymd_opt(ey, em, ed).unwrap(),
                "{at}"
            );
        }
    }

    #[test]
    fn iso_dates() {
        let table = [
            ("2026-02-28", Some((2026, 2, 28))),
            ("2028-02-29", Some((2028, 2, 29))),
            ("2026-02-29", None),
            ("2026-13-01", None),
            ("26-01-01", None),
            ("2026-1-1", None),
            ("01/02/2026", None),
            ("", None),
            // Ten characters, but not the form: a sign, a space, a short month.
            ("+2026-1-01", None),
            (" 2026-1-01", None),
            ("-001-01-01", None),
            ("2026-01-1 ", None),
            ("2026/01/01", None),
            ("２026-01-01", None),
        ];
        for (input, expected) in table {
            let expected = expected.map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap());
            assert_eq!(parse_iso_date(input), expected, "{input}");
        }
    }
}
