//! Expiry alerts: a title holder is warned at set offsets before the title
//! expires, by e-mail and SMS (and by post where that is their channel).

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// Days before expiry at which an alert goes out, earliest first.
pub const DEFAULT_ALERT_OFFSETS: [i64; 3] = [120, 60, 30];

/// The offsets whose alert is due on `today` and not yet sent. An offset is
/// A title's name on the bus without its number: the first 16 hex digits of
/// the SHA-256 of kind and number. Two holders whose numbers share their
/// last four characters still get an alert each.
pub fn title_key(kind: &str, number: &str) -> String {
    let digest = Sha256::digest(format!("{kind}|{number}").as_bytes());
    hex::encode(&digest[..8])
}

/// due from its day until the title expires, so a missed day catches up.
pub fn alerts_due(
    expires_on: NaiveDate,
    offsets: &[i64],
    already_sent: &[i64],
    today: NaiveDate,
) -> Vec<i64> {
    let days_left = (expires_on - today).num_days();
    if days_left < 0 {
        return Vec::new();
    }
    // Only the nearest offset reached counts: three alerts on one day say
    // nothing more, and an earlier window missed is not sent afterwards.
    let nearest = offsets.iter().copied().filter(|o| days_left <= *o).min();
    match nearest {
        Some(o) if !already_sent.contains(&o) => vec![o],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn alerts_table() {
        let expires = d(2027, 3, 31);
        let o = &DEFAULT_ALERT_OFFSETS;
        let table: Vec<(NaiveDate, Vec<i64>, Vec<i64>)> = vec![
            (d(2026, 11, 30), vec![], vec![]),        // 121 days left
            (d(2026, 12, 1), vec![], vec![120]),      // 120 days left
            (d(2026, 12, 2), vec![120], vec![]),      // sent already
            (d(2027, 1, 30), vec![120], vec![60]),    // 60 days left
            (d(2027, 2, 15), vec![], vec![60]),       // missed the 120 one: the nearest only
            (d(2027, 3, 1), vec![120, 60], vec![30]), // 30 days left
            (d(2027, 3, 31), vec![120, 60, 30], vec![]),
            (d(2027, 4, 1), vec![], vec![]), // expired: too late for alerts
        ];
        for (today, sent, expected) in table {
            assert_eq!(alerts_due(expires, o, &sent, today), expected, "{today}");
        }
    }
}
