//! How urgent a dossier is: by how soon the person's proof of legal stay ends.
//! The queue is ordered by this class first, then by legal filing date.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrgencyClass {
    /// Cover already ended, or ends within the critical horizon.
    Critical,
    /// Cover ends within the attention horizon.
    Soon,
    Routine,
}

/// (class, cover ends within this many days from today). Checked in order;
/// anything later, or with no known end, is routine.
pub const URGENCY_HORIZONS: [(UrgencyClass, i64); 2] =
    [(UrgencyClass::Critical, 15), (UrgencyClass::Soon, 60)];

impl UrgencyClass {
    pub fn for_cover(cover_until: Option<NaiveDate>, today: NaiveDate) -> Self {
        let Some(end) = cover_until else {
            return UrgencyClass::Routine;
        };
        let days_left = (end - today).num_days();
        URGENCY_HORIZONS
            .iter()
            .find(|(_, horizon)| days_left <= *horizon)
            .map(|(class, _)| *class)
            .unwrap_or(UrgencyClass::Routine)
    }

    /// Rank used to sort the queue: lower comes first.
    pub fn rank(self) -> i16 {
        match self {
            UrgencyClass::Critical => 1,
            UrgencyClass::Soon => 2,
            UrgencyClass::Routine => 3,
        }
    }

    pub fn from_rank(rank: i16) -> Self {
        match rank {
            1 => UrgencyClass::Critical,
            2 => UrgencyClass::Soon,
            _ => UrgencyClass::Routine,
        }
    }

    /// The class named as `as_str` names it.
    pub fn parse(s: &str) -> Option<Self> {
        [
            UrgencyClass::Critical,
            UrgencyClass::Soon,
            UrgencyClass::Routine,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UrgencyClass::Critical => "critical",
            UrgencyClass::Soon => "soon",
            UrgencyClass::Routine => "routine",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn classes_by_days_of_cover_left() {
        let today = d(2026, 2, 14);
        let table = [
            (None, UrgencyClass::Routine),
            (Some(d(2025, 12, 31)), UrgencyClass::Critical),
            (Some(d(2026, 2, 14)), UrgencyClass::Critical),
            (Some(d(2026, 3, 1)), UrgencyClass::Critical), // 15 days
            (Some(d(2026, 3, 2)), UrgencyClass::Soon),     // 16 days
            (Some(d(2026, 4, 15)), UrgencyClass::Soon),    // 60 days
            (Some(d(2026, 4, 16)), UrgencyClass::Routine), // 61 days
        ];
        for (cover, expected) in table {
            assert_eq!(UrgencyClass::for_cover(cover, today), expected, "{cover:?}");
        }
    }

    #[test]
    fn ranks_round_trip_and_order() {
        for c in [
            UrgencyClass::Critical,
            UrgencyClass::Soon,
            UrgencyClass::Routine,
        ] {
            assert_eq!(UrgencyClass::from_rank(c.rank()), c);
            assert_eq!(UrgencyClass::parse(c.as_str()), Some(c));
        }
        assert!(UrgencyClass::Critical.rank() < UrgencyClass::Soon.rank());
        assert!(UrgencyClass::Soon.rank() < UrgencyClass::Routine.rank());
    }
}
