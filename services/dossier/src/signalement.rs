//! Reports of people the online route blocks (signalements). A report opens a
//! clock: the prefecture of residence must offer an alternative (a desk
//! appointment or a paper filing kit) within a number of working days; past
//! that it is escalated; it closes only once an alternative was offered, so
//! no report ends without one.

use chrono::NaiveDate;

use crate::calendar::add_working_days;

/// Working days the prefecture has to offer an alternative, by default.
pub const DEFAULT_DEADLINE_WORKING_DAYS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    CannotCreateAccount,
    UploadFails,
    AppointmentImpossible,
    TwoProceduresAtOnce,
    NoReceipt,
    Other,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::CannotCreateAccount,
        Category::UploadFails,
        Category::AppointmentImpossible,
        Category::TwoProceduresAtOnce,
        Category::NoReceipt,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::CannotCreateAccount => "cannot_create_account",
            Category::UploadFails => "upload_fails",
            Category::AppointmentImpossible => "appointment_impossible",
            Category::TwoProceduresAtOnce => "two_procedures_at_once",
            Category::NoReceipt => "no_receipt",
            Category::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportState {
    Open,
    Escalated,
    AlternativeOffered,
    Closed,
}

impl ReportState {
    pub const ALL: [ReportState; 4] = [
        ReportState::Open,
        ReportState::Escalated,
        ReportState::AlternativeOffered,
        ReportState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Open => "open",
            ReportState::Escalated => "escalated",
            ReportState::AlternativeOffered => "alternative_offered",
            ReportState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Still waiting for the prefecture.
    pub fn awaits_alternative(self) -> bool {
        matches!(self, ReportState::Open | ReportState::Escalated)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportStep {
    Escalate,
    OfferAlternative,
    Close,
}

impl ReportStep {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStep::Escalate => "escalated",
            ReportStep::OfferAlternative => "alternative_offered",
            ReportStep::Close => "closed",
        }
    }
}

/// The allowed steps, as one table: (from, step, to).
const STEPS: [(ReportState, ReportStep, ReportState); 4] = [
    (
        ReportState::Open,
        ReportStep::Escalate,
        ReportState::Escalated,
    ),
    (
        ReportState::Open,
        ReportStep::OfferAlternative,
        ReportState::AlternativeOffered,
    ),
    (
        ReportState::Escalated,
        ReportStep::OfferAlternative,
        ReportState::AlternativeOffered,
    ),
    (
        ReportState::AlternativeOffered,
        ReportStep::Close,
        ReportState::Closed,
    ),
];

/// Where `step` leads from `state`, or why it cannot be taken.
pub fn next_state(state: ReportState, step: ReportStep) -> Result<ReportState, String> {
    STEPS
        .iter()
        .find(|(from, s, _)| *from == state && *s == step)
        .map(|(_, _, to)| *to)
        .ok_or_else(|| match (state, step) {
            (ReportState::Open | ReportState::Escalated, ReportStep::Close) => {
                "a report closes only once an alternative was offered".to_string()
            }
            _ => format!(
                "a report that is {} cannot be {}",
                state.as_str(),
                step.as_str()
            ),
        })
}

/// The last day to offer an alternative for a report opened on `opened`.
pub fn deadline(opened: NaiveDate, working_days: u32) -> NaiveDate {
    add_working_days(opened, working_days)
}

/// Past its deadline without an alternative.
pub fn is_overdue(state: ReportState, deadline: NaiveDate, today: NaiveDate) -> bool {
    state.awaits_alternative() && today > deadline
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReportState::*;
    use ReportStep::*;

    #[test]
    fn steps_table() {
        let table = [
            (Open, Escalate, Ok(Escalated)),
            (Open, OfferAlternative, Ok(AlternativeOffered)),
            (Escalated, OfferAlternative, Ok(AlternativeOffered)),
            (AlternativeOffered, Close, Ok(Closed)),
            (Open, Close, Err(())),
            (Escalated, Close, Err(())),
            (Escalated, Escalate, Err(())),
            (AlternativeOffered, Escalate, Err(())),
            (AlternativeOffered, OfferAlternative, Err(())),
            (Closed, OfferAlternative, Err(())),
            (Closed, Close, Err(())),
        ];
        for (from, step, expected) in table {
            assert_eq!(
                next_state(from, step).map_err(|_| ()),
                expected,
                "{from:?} {step:?}"
            );
        }
        assert!(next_state(Open, Close).unwrap_err().contains("alternative"));
    }

    #[test]
    fn overdue_table() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        // Opened Monday 23 November: five working days give Monday 30.
        assert_eq!(deadline(d(23), 5), d(30));
        let table = [
            (Open, d(27), false, "before the deadline"),
            (Open, d(30), false, "on the deadline day: still on time"),
            (AlternativeOffered, d(30), false, "answered"),
        ];
        for (state, today, expected, why) in table {
            assert_eq!(is_overdue(state, d(30), today), expected, "{why}");
        }
        let december_1 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(is_overdue(Open, d(30), december_1), "the day after");
        assert!(is_overdue(Escalated, d(30), december_1), "still waiting");
        assert!(!is_overdue(AlternativeOffered, d(30), december_1));
        assert!(!is_overdue(Closed, d(30), december_1));
    }

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        for s in ReportState::ALL {
            assert_eq!(ReportState::parse(s.as_str()), Some(s));
        }
    }
}
