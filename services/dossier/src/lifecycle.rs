//! The case lifecycle as a table: from which state each step may be taken
//! and where it leads. Anything not in the table is refused.
//!
//! ```text
//! filed ─► incomplete ◄─► documents_requested ─► complete ─► under_review ─► favourable
//!   └──────────────────────────────────────────►    ▲                    └─► unfavourable
//! any open state ─► closed (withdrawn, or the deadline for documents passed)
//! ```

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Filed,
    Incomplete,
    DocumentsRequested,
    Complete,
    UnderReview,
    Favourable,
    Unfavourable,
    Closed,
}

impl CaseState {
    pub const ALL: [CaseState; 8] = [
        CaseState::Filed,
        CaseState::Incomplete,
        CaseState::DocumentsRequested,
        CaseState::Complete,
        CaseState::UnderReview,
        CaseState::Favourable,
        CaseState::Unfavourable,
        CaseState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Filed => "filed",
            CaseState::Incomplete => "incomplete",
            CaseState::DocumentsRequested => "documents_requested",
            CaseState::Complete => "complete",
            CaseState::UnderReview => "under_review",
            CaseState::Favourable => "favourable",
            CaseState::Unfavourable => "unfavourable",
            CaseState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

crate::codes::from_stored!(CaseState);

impl CaseState {
    /// Still waiting for a decision: in the queue, and owed proof of stay.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            CaseState::Favourable | CaseState::Unfavourable | CaseState::Closed
        )
    }

    /// Verified complete and not yet decided.
    pub fn is_complete_pending(self) -> bool {
        matches!(self, CaseState::Complete | CaseState::UnderReview)
    }
}

impl std::fmt::Display for CaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step in the life of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Completeness checked (on arrival, or when a document arrives): all there.
    FoundComplete,
    /// Completeness checked: something is missing.
    FoundIncomplete,
    /// An agent asks for documents, with a deadline.
    RequestDocuments,
    /// An agent takes the complete case up.
    StartReview,
    DecideFavourable,
    DecideUnfavourable,
    /// The person withdraws.
    Withdraw,
    /// The deadline for requested documents passed without them.
    DeadlinePassed,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::FoundComplete => "found_complete",
            Step::FoundIncomplete => "found_incomplete",
            Step::RequestDocuments => "documents_requested",
            Step::StartReview => "review_started",
            Step::DecideFavourable => "decided_favourable",
            Step::DecideUnfavourable => "decided_unfavourable",
            Step::Withdraw => "withdrawn",
            Step::DeadlinePassed => "closed_deadline_passed",
        }
    }

    pub const ALL: [Step; 8] = [
        FoundComplete,
        FoundIncomplete,
        RequestDocuments,
        StartReview,
        DecideFavourable,
        DecideUnfavourable,
        Withdraw,
        DeadlinePassed,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// Does the case leave the open states by this step (decided,
    /// withdrawn, closed)?
    pub fn leaves_open(self) -> bool {
        matches!(
            self,
            DecideFavourable | DecideUnfavourable | Withdraw | DeadlinePassed
        )
    }

    /// The step in words, for refusals: "cannot be {described}".
    pub fn described(self) -> &'static str {
        match self {
            Step::FoundComplete => "found complete",
            Step::FoundIncomplete => "found incomplete",
            Step::RequestDocuments => "asked for documents",
            Step::StartReview => "taken up for review",
            Step::DecideFavourable => "decided favourably",
            Step::DecideUnfavourable => "decided unfavourably",
            Step::Withdraw => "withdrawn",
            Step::DeadlinePassed => "closed for a missed deadline",
        }
    }
}

use CaseState::*;
use Step::*;

/// The event kind of a new card handed over at a desk (not a step: the
/// case stays favourable).
pub const CARD_HANDED_OVER: &str = "card_handed_over";

/// (from, step, to): the whole lifecycle.
pub const TRANSITIONS: &[(CaseState, Step, CaseState)] = &[
    (Filed, FoundComplete, Complete),
    (Filed, FoundIncomplete, Incomplete),
    (Incomplete, FoundComplete, Complete),
    (Incomplete, FoundIncomplete, Incomplete),
    (DocumentsRequested, FoundComplete, Complete),
    (DocumentsRequested, FoundIncomplete, DocumentsRequested),
    (Complete, FoundComplete, Complete),
    (UnderReview, FoundComplete, UnderReview),
    (Filed, RequestDocuments, DocumentsRequested),
    (Incomplete, RequestDocuments, DocumentsRequested),
    (DocumentsRequested, RequestDocuments, DocumentsRequested),
    (Complete, RequestDocuments, DocumentsRequested),
    (UnderReview, RequestDocuments, DocumentsRequested),
    (Complete, StartReview, UnderReview),
    (UnderReview, DecideFavourable, Favourable),
    (UnderReview, DecideUnfavourable, Unfavourable),
    (Filed, Withdraw, Closed),
    (Incomplete, Withdraw, Closed),
    (DocumentsRequested, Withdraw, Closed),
    (Complete, Withdraw, Closed),
    (UnderReview, Withdraw, Closed),
    (DocumentsRequested, DeadlinePassed, Closed),
];

/// Working days after the deadline for requested documents before the case
/// is closed for missing it. The documents are due by the deadline, sent by
/// then: for post the postmark attests it (CRPA L.112-1), as it does for a
/// filing. A letter posted on the deadline day arrives within three working
/// days (La Poste's ordinary letter); the mailroom then needs time to scan
/// and key it. Without this, the postal channel alone would have days less
/// than the others to answer.
pub const POSTED_REPLY_WORKING_DAYS: u32 = 5;

/// Is the deadline for requested documents of a case of `department`
/// missed at `now`: would a reply posted on the deadline day have been
/// received and keyed? Counted in the department's working days, on its
/// clock (a local holiday, or an evening in the Antilles, gives more time).
pub fn documents_deadline_missed(
    deadline: NaiveDate,
    department: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let keyed_by =
        crate::calendar::add_working_days(deadline, POSTED_REPLY_WORKING_DAYS, department);
    keyed_by < crate::calendar::local_date(now, department)
}

/// The latest deadline for requested documents whose case may be closed
/// `today` (Paris), on the national calendar: the sweep's first choice of
/// cases, before `documents_deadline_missed` decides each on its own
/// department's calendar and clock (never sooner; overseas ahead of Paris,
/// at most a day later).
pub fn latest_deadline_to_close(today: NaiveDate) -> NaiveDate {
    let mut deadline = today.pred_opt().unwrap_or(today);
    while crate::calendar::add_working_days(deadline, POSTED_REPLY_WORKING_DAYS, "") >= today {
        match deadline.pred_opt() {
            Some(day) => deadline = day,
            None => break,
        }
    }
    deadline
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a dossier that is {} cannot be {}", from.as_str().replace('_', " "), step.described())]
pub struct ImpossibleStep {
    pub from: CaseState,
    pub step: Step,
}

/// Where `step` leads from `from`, or why it cannot be taken.
pub fn next(from: CaseState, step: Step) -> Result<CaseState, ImpossibleStep> {
    TRANSITIONS
        .iter()
        .find(|(f, s, _)| *f == from && *s == step)
        .map(|(_, _, to)| *to)
        .ok_or(ImpossibleStep { from, step })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [Step; 8] = Step::ALL;

    #[test]
    fn every_state_and_step_is_allowed_exactly_as_the_table_says() {
        for from in CaseState::ALL {
            for step in STEPS {
                let listed: Vec<CaseState> = TRANSITIONS
                    .iter()
                    .filter(|(f, s, _)| *f == from && *s == step)
                    .map(|(_, _, t)| *t)
                    .collect();
                assert!(listed.len() <= 1, "{from} {step:?} listed twice");
                match listed.first() {
                    Some(to) => assert_eq!(next(from, step), Ok(*to)),
                    None => assert_eq!(next(from, step), Err(ImpossibleStep { from, step })),
                }
            }
        }
    }

    #[test]
    fn a_step_leaves_the_open_states_exactly_when_its_transitions_do() {
        for (from, step, to) in TRANSITIONS {
            assert_eq!(step.leaves_open(), !to.is_open(), "{from} {step:?} {to}");
        }
        for step in STEPS {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::parse(CARD_HANDED_OVER), None);
    }

    #[test]
    fn a_missed_deadline_closes_once_a_posted_reply_would_be_in_table() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        // (today, the latest deadline closed that day, why)
        let table = [
            (
                d(11, 30),
                d(11, 22),
                "Monday: deadlines up to Sunday 22 had 23-27",
            ),
            (
                d(12, 1),
                d(11, 23),
                "Tuesday: Monday 23's five days ended Monday 30",
            ),
            (
                d(12, 5),
                d(11, 29),
                "Saturday: Friday 27 to Sunday 29 had 30 Nov-4 Dec",
            ),
            (d(12, 7), d(11, 29), "Monday: nothing more since Saturday"),
            (
                d(11, 17),
                d(11, 8),
                "Friday 6's days skip 11 November: 9, 10, 12, 13, 16",
            ),
        ];
        for (today, latest, why) in table {
            assert_eq!(latest_deadline_to_close(today), latest, "{why}");
            // The day after it is not closed yet.
            let next = latest.succ_opt().unwrap();
            assert!(
                crate::calendar::add_working_days(next, POSTED_REPLY_WORKING_DAYS, "") >= today,
                "{why}"
            );
        }
    }

    #[test]
    fn a_deadline_is_missed_on_the_departments_calendar_and_clock() {
        use chrono::TimeZone;
        let at = |m, day, hour| {
            chrono::Utc
                .with_ymd_and_hms(2027, m, day, hour, 0, 0)
                .unwrap()
        };
        let d = |m, day| NaiveDate::from_ymd_opt(2027, m, day).unwrap();
        // (deadline, department, now, missed, why)
        let table = [
            (
                d(3, 18),
                "59",
                at(3, 26, 9),
                true,
                "Thursday 18: keyed by Thursday 25",
            ),
            (
                d(3, 22),
                "59",
                at(3, 31, 9),
                true,
                "Monday 22: keyed by Tuesday 30 in Nord",
            ),
            (
                d(3, 22),
                "67",
                at(3, 31, 9),
                false,
                "Good Friday closed too in Bas-Rhin",
            ),
            (
                d(3, 22),
                "67",
                at(4, 1, 9),
                true,
                "keyed by Wednesday 31 there",
            ),
            (
                d(3, 18),
                "971",
                at(3, 26, 3),
                false,
                "23:00 on the 25th in Guadeloupe",
            ),
            (
                d(3, 18),
                "971",
                at(3, 26, 5),
                true,
                "01:00 on the 26th in Guadeloupe",
            ),
            (
                d(3, 18),
                "974",
                at(3, 25, 21),
                true,
                "01:00 on the 26th in La Réunion",
            ),
        ];
        for (deadline, department, now, missed, why) in table {
            assert_eq!(
                documents_deadline_missed(deadline, department, now),
                missed,
                "{why}"
            );
        }
    }

    #[test]
    fn decided_and_closed_cases_take_no_step() {
        for from in [Favourable, Unfavourable, Closed] {
            assert!(!from.is_open());
            for step in STEPS {
                assert!(next(from, step).is_err(), "{from} {step:?}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_the_detours() {
        let walk = |steps: &[Step]| {
            steps
                .iter()
                .try_fold(Filed, |state, step| next(state, *step))
        };
        assert_eq!(
            walk(&[FoundComplete, StartReview, DecideFavourable]),
            Ok(Favourable)
        );
        assert_eq!(
            walk(&[
                FoundIncomplete,
                RequestDocuments,
                FoundComplete,
                StartReview,
                DecideUnfavourable
            ]),
            Ok(Unfavourable)
        );
        assert_eq!(
            walk(&[FoundIncomplete, RequestDocuments, DeadlinePassed]),
            Ok(Closed)
        );
        assert_eq!(
            walk(&[FoundComplete, StartReview, RequestDocuments, FoundComplete]),
            Ok(Complete)
        );
        // A decision needs a review first.
        assert!(walk(&[FoundComplete, DecideFavourable]).is_err());
        // Only requested documents have a deadline.
        assert!(walk(&[FoundIncomplete, DeadlinePassed]).is_err());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let e = next(Closed, StartReview).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a dossier that is closed cannot be taken up for review"
        );
    }

    #[test]
    fn states_round_trip_by_name() {
        for s in CaseState::ALL {
            assert_eq!(CaseState::parse(s.as_str()), Some(s));
        }
    }
}
