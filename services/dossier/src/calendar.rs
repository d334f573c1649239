//! Dates in law are French calendar dates: an instant becomes a date in
//! Europe/Paris, whatever the server's time zone.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Paris;

/// The calendar date in Paris at this instant.
pub fn paris_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Paris).date_naive()
}

/// Parses `YYYY-MM-DD`, the only date form the APIs accept.
pub fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
        ];
        for (input, expected) in table {
            let expected = expected.map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap());
            assert_eq!(parse_iso_date(input), expected, "{input}");
        }
    }
}
