//! Reports of people the online route blocks (signalements). A report opens a
//! clock: the prefecture of residence must offer an alternative (a desk
//! appointment or a paper filing kit) within a number of working days; past
//! that it is escalated; it closes only once an alternative was offered, so
//! no report ends without one. A new alternative may replace the one offered
//! (the appointment was cancelled, or the person would rather file by post).

use chrono::NaiveDate;

use crate::calendar::add_working_days;
use crate::codes::{codes, from_stored};

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

from_stored!(Category);

from_stored!(ReportState);

codes!(
    /// What the prefecture offers a blocked person instead of the online route.
    AlternativeKind {
        PanAppointment => "pan_appointment",
        PaperKit => "paper_kit",
    }
);

codes!(
    /// How a report ended, once an alternative was offered.
    ReportOutcome {
        Filed => "filed",
        Declined => "declined",
        Unreachable => "unreachable",
    }
);

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
const STEPS: [(ReportState, ReportStep, ReportState); 5] = [
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
        ReportStep::OfferAlternative,
        ReportState::AlternativeOffered,
    ),
    (
        ReportState::AlternativeOffered,
        ReportStep::Close,
        ReportState::Closed,
    ),
];

/// A step the report's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepRefused {
    #[error("a report closes only once an alternative was offered")]
    CloseBeforeAlternative,
    #[error("a report that is {} cannot be {}", .state.as_str(), .step.as_str())]
    NotFrom {
        state: ReportState,
        step: ReportStep,
    },
}

/// Where `step` leads from `state`, or why it cannot be taken.
pub fn next_state(state: ReportState, step: ReportStep) -> Result<ReportState, StepRefused> {
    STEPS
        .iter()
        .find(|(from, s, _)| *from == state && *s == step)
        .map(|(_, _, to)| *to)
        .ok_or(match (state, step) {
            (ReportState::Open | ReportState::Escalated, ReportStep::Close) => {
                StepRefused::CloseBeforeAlternative
            }
            _ => StepRefused::NotFrom { state, step },
        })
}

/// The last day to offer an alternative for a report opened on `opened`,
/// counted in the working days of its prefecture (`department`).
pub fn deadline(opened: NaiveDate, working_days: u32, department: &str) -> NaiveDate {
    add_working_days(opened, working_days, department)
}

/// Past its deadline without an alternative.
pub fn is_overdue(state: ReportState, deadline: NaiveDate, today: NaiveDate) -> bool {
    state.awaits_alternative() && today > deadline
}

/// A desk appointment as the prefecture offers it to a report, from what
/// the desk service says of it.
#[derive(Debug, Clone, Copy)]
pub struct OfferedAppointment<'a> {
    /// booked, cancelled, attended or no_show.
    pub state: &'a str,
    /// The report it was booked for; empty for an ordinary booking.
    pub report_id: &'a str,
    /// The department of the appointment's site.
    pub site_prefecture: &'a str,
}

/// Why an appointment cannot be the alternative offered to a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferRefused {
    #[error("was cancelled: book another appointment and offer that one")]
    Cancelled,
    #[error("is {0}: only an appointment still to come can be offered")]
    NotToCome(String),
    #[error("is at a site of prefecture {site}, and this report is for prefecture {report}")]
    OtherPrefecture { site: String, report: String },
    #[error(
        "was not booked for this report: book it with this report's id so it takes a place \
         kept for reports"
    )]
    NotForThisReport,
}

/// Whether `appointment` can be the alternative offered to report
/// `report_id` of `report_prefecture`: still to come, at a site of the
/// prefecture that must answer, and booked for this report (so nobody
/// else's appointment is offered).
pub fn check_offered_appointment(
    report_id: &str,
    report_prefecture: &str,
    appointment: OfferedAppointment<'_>,
) -> Result<(), OfferRefused> {
    match appointment.state {
        "booked" => {}
        "cancelled" => return Err(OfferRefused::Cancelled),
        other => return Err(OfferRefused::NotToCome(other.to_string())),
    }
    if appointment.site_prefecture != report_prefecture {
        return Err(OfferRefused::OtherPrefecture {
            site: appointment.site_prefecture.to_string(),
            report: report_prefecture.to_string(),
        });
    }
    if appointment.report_id != report_id {
        return Err(OfferRefused::NotForThisReport);
    }
    Ok(())
}

/// Why a booking may not take a place kept for reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingRefused {
    #[error("is closed: places kept for reports go to reports still waiting")]
    Closed,
    #[error("is for prefecture {report}, and this site belongs to prefecture {site}")]
    OtherPrefecture { report: String, site: String },
}

/// Whether a booking may take a place kept for reports at a site of
/// `site_prefecture`, on behalf of a report that is `state` and belongs to
/// `report_prefecture`.
pub fn check_report_for_booking(
    state: ReportState,
    report_prefecture: &str,
    site_prefecture: &str,
) -> Result<(), BookingRefused> {
    if state == ReportState::Closed {
        return Err(BookingRefused::Closed);
    }
    if report_prefecture != site_prefecture {
        return Err(BookingRefused::OtherPrefecture {
            report: report_prefecture.to_string(),
            site: site_prefecture.to_string(),
        });
    }
    Ok(())
}

/// The alternative a report was offered, as it stands when the report is
/// to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferedAlternative<'a> {
    /// A desk appointment: its state now, `None` when the desk service no
    /// longer knows it.
    Appointment(Option<&'a str>),
    /// A paper kit: whether it had a full address to be posted to.
    PaperKit { addressed: bool },
}

/// Why the alternative offered no longer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AlternativeGone {
    #[error(
        "the appointment offered does not exist at the desk: offer another alternative before \
         closing"
    )]
    AppointmentUnknown,
    #[error(
        "the appointment offered was cancelled since: offer another alternative before closing"
    )]
    AppointmentCancelled,
    #[error("the paper kit had no address to be posted to: offer it again with an address")]
    KitWithoutAddress,
}

impl AlternativeGone {
    /// The field of the alternative at fault.
    pub fn field(self) -> &'static str {
        match self {
            AlternativeGone::AppointmentUnknown | AlternativeGone::AppointmentCancelled => {
                "appointment_id"
            }
            AlternativeGone::KitWithoutAddress => "kit_sent_to",
        }
    }
}

/// Whether the alternative offered still stands, so that the report may
/// close. A report closed on an appointment that was cancelled, or a kit
/// that went nowhere, would end without an alternative.
pub fn check_alternative_stands(
    alternative: OfferedAlternative<'_>,
) -> Result<(), AlternativeGone> {
    match alternative {
        OfferedAlternative::Appointment(None) => Err(AlternativeGone::AppointmentUnknown),
        OfferedAlternative::Appointment(Some("cancelled")) => {
            Err(AlternativeGone::AppointmentCancelled)
        }
        OfferedAlternative::Appointment(Some(_)) => Ok(()),
        OfferedAlternative::PaperKit { addressed: false } => {
            Err(AlternativeGone::KitWithoutAddress)
        }
        OfferedAlternative::PaperKit { addressed: true } => Ok(()),
    }
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
            (AlternativeOffered, OfferAlternative, Ok(AlternativeOffered)),
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
        assert!(
            next_state(Open, Close)
                .unwrap_err()
                .to_string()
                .contains("alternative")
        );
    }

    #[test]
    fn overdue_table() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        // Opened Monday 23 November: five working days give Monday 30.
        assert_eq!(deadline(d(23), 5, "59"), d(30));
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
    fn offered_appointment_table() {
        let a = |state, report_id, site_prefecture| OfferedAppointment {
            state,
            report_id,
            site_prefecture,
        };
        let table = [
            (
                a("booked", "r1", "59"),
                Ok(()),
                "booked for this report, here",
            ),
            (a("cancelled", "r1", "59"), Err("cancelled"), "cancelled"),
            (a("attended", "r1", "59"), Err("attended"), "already past"),
            (a("no_show", "r1", "59"), Err("no_show"), "already past"),
            (a("booked", "r1", "62"), Err("prefecture 62"), "elsewhere"),
            (
                a("booked", "", "59"),
                Err("not booked for this report"),
                "ordinary",
            ),
            (
                a("booked", "r2", "59"),
                Err("not booked for this report"),
                "another's",
            ),
        ];
        for (appointment, expected, why) in table {
            let got = check_offered_appointment("r1", "59", appointment);
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{why}"),
                Err(word) => assert!(
                    got.as_ref().is_err_and(|e| e.to_string().contains(word)),
                    "{why}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn alternative_stands_table() {
        use OfferedAlternative::*;
        let table = [
            (Appointment(Some("booked")), Ok(())),
            (Appointment(Some("attended")), Ok(())),
            (Appointment(Some("no_show")), Ok(())),
            (Appointment(Some("cancelled")), Err("appointment_id")),
            (Appointment(None), Err("appointment_id")),
            (PaperKit { addressed: true }, Ok(())),
            (PaperKit { addressed: false }, Err("kit_sent_to")),
        ];
        for (alternative, expected) in table {
            assert_eq!(
                check_alternative_stands(alternative).map_err(AlternativeGone::field),
                expected,
                "{alternative:?}"
            );
        }
    }

    #[test]
    fn report_for_booking_table() {
        let table = [
            (Open, "59", "59", Ok(())),
            (Escalated, "59", "59", Ok(())),
            (AlternativeOffered, "59", "59", Ok(())),
            (Closed, "59", "59", Err("closed")),
            (Open, "62", "59", Err("prefecture 62")),
        ];
        for (state, report, site, expected) in table {
            let got = check_report_for_booking(state, report, site);
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{state:?} {report} {site}"),
                Err(word) => assert!(
                    got.as_ref().is_err_and(|e| e.to_string().contains(word)),
                    "{got:?}"
                ),
            }
        }
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
