//! Rights continuity: until when a person's legal stay is proven while their
//! file is pending, by what, and which attestation is due today so that a
//! complete pending file never leaves anyone without proof.
//!
//! Sources of cover, the latest wins:
//! - the current title, until it expires;
//! - CESEDA L.433-3: for the renewal of a multi-year card, a resident card or a
//!   title of more than one year under an international agreement, asked for
//!   before the title expired (legal filing date on or before the expiry
//!   date), the expired title proves legal stay for 3 more months;
//! - an attestation de prolongation d'instruction (API): 3 months, renewed
//!   while a complete renewal is pending;
//! - a rights-creating attestation for a regularisation verified complete;
//! - a favourable-decision attestation, valid until the card is handed over.

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::codes::{Procedure, TitleKind};
use crate::lifecycle::{CaseState, Step};

/// The extension L.433-3 gives an expired long-stay title, in months.
pub const LEGAL_EXTENSION_MONTHS: u32 = 3;
/// How long one API or rights-creating attestation runs, in months.
pub const ATTESTATION_MONTHS: u32 = 3;
/// Issue or renew when cover would end within this many days.
pub const DEFAULT_HORIZON_DAYS: i64 = 15;

/// Titles whose renewal L.433-3 covers.
pub const EXTENDED_TITLES: [TitleKind; 3] = [
    TitleKind::MultiYearCard,
    TitleKind::ResidentCard,
    TitleKind::AgreementTitle,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    /// Attestation de prolongation d'instruction (API).
    Prolongation,
    /// Attestation de décision favorable.
    FavourableDecision,
    /// Rights-creating attestation for a regularisation file verified complete.
    RightsCreating,
}

impl AttestationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationKind::Prolongation => "prolongation",
            AttestationKind::FavourableDecision => "favourable_decision",
            AttestationKind::RightsCreating => "rights_creating",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AttestationKind::Prolongation,
            AttestationKind::FavourableDecision,
            AttestationKind::RightsCreating,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

crate::codes::from_stored!(AttestationKind);

/// An attestation as issued: from when, and until when (`None`: until the
/// card is handed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub kind: AttestationKind,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverBasis {
    CurrentTitle,
    /// CESEDA L.433-3.
    LegalExtension,
    Attestation(AttestationKind),
    /// The card the decision granted, handed over.
    NewCard,
}

impl CoverBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            CoverBasis::CurrentTitle => "current_title",
            CoverBasis::LegalExtension => "legal_extension",
            CoverBasis::Attestation(k) => k.as_str(),
            CoverBasis::NewCard => "new_card",
        }
    }
}

/// Until when legal stay is proven, and by what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cover {
    /// Nothing proves legal stay.
    None,
    Until {
        date: NaiveDate,
        basis: CoverBasis,
    },
    /// Until the card is handed over.
    Open {
        basis: CoverBasis,
    },
}

impl Cover {
    /// Legal stay is proven on `day`.
    pub fn covers(self, day: NaiveDate) -> bool {
        match self {
            Cover::None => false,
            Cover::Until { date, .. } => day <= date,
            Cover::Open { .. } => true,
        }
    }

    /// The last day proven, when there is one.
    pub fn until(self) -> Option<NaiveDate> {
        match self {
            Cover::Until { date, .. } => Some(date),
            _ => None,
        }
    }

    pub fn basis(self) -> Option<CoverBasis> {
        match self {
            Cover::None => None,
            Cover::Until { basis, .. } | Cover::Open { basis } => Some(basis),
        }
    }

    /// The later of two covers.
    fn max(self, other: Cover) -> Cover {
        match (self, other) {
            (Cover::Open { .. }, _) => self,
            (_, Cover::Open { .. }) => other,
            (Cover::None, _) => other,
            (_, Cover::None) => self,
            (Cover::Until { date: a, .. }, Cover::Until { date: b, .. }) => {
                if b > a {
                    other
                } else {
                    self
                }
            }
        }
    }
}

/// What the rules need to know of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseFacts {
    pub procedure: Procedure,
    pub state: CaseState,
    /// The title held at filing: kind and expiry.
    pub title: Option<(TitleKind, NaiveDate)>,
    /// The legal filing date (the postmark for post): L.433-3 needs the
    /// renewal asked for before the title expired.
    pub filed_on: NaiveDate,
    /// The new card's last day, once it was handed over: the cover then
    /// rests on it, and the favourable-decision attestation has ended.
    pub card_until: Option<NaiveDate>,
}

/// `date` plus `months`, clamped to the month's last day (31 Jan + 1 month
/// is 28 or 29 Feb).
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// Does L.433-3 extend this case's title? Only for a renewal of a long-stay
/// title asked for while the title was still valid: its last day counts as
/// in time, the day after does not.
pub fn legal_extension_applies(facts: &CaseFacts) -> bool {
    facts.state.is_open() && extension_was_owed(facts)
}

/// Was this case's title extended by L.433-3 while the case was open? The
/// openness aside, the same conditions as `legal_extension_applies`: a
/// decided or closed case no longer has the extension, but had it.
fn extension_was_owed(facts: &CaseFacts) -> bool {
    facts.procedure == Procedure::Renewal
        && facts.title.is_some_and(|(kind, expires)| {
            EXTENDED_TITLES.contains(&kind) && facts.filed_on <= expires
        })
}

/// The cover today, from the title, the law and the attestations issued.
pub fn cover(facts: &CaseFacts, attestations: &[Attestation], today: NaiveDate) -> Cover {
    let mut best = Cover::None;
    if let Some((_, expires)) = facts.title {
        best = best.max(Cover::Until {
            date: expires,
            basis: CoverBasis::CurrentTitle,
        });
        if legal_extension_applies(facts) {
            best = best.max(Cover::Until {
                date: add_months(expires, LEGAL_EXTENSION_MONTHS),
                basis: CoverBasis::LegalExtension,
            });
        }
    }
    if let Some(date) = facts.card_until {
        best = best.max(Cover::Until {
            date,
            basis: CoverBasis::NewCard,
        });
    }
    for a in attestations.iter().filter(|a| a.valid_from <= today) {
        let basis = CoverBasis::Attestation(a.kind);
        best = best.max(match a.valid_until {
            Some(date) => Cover::Until { date, basis },
            None => Cover::Open { basis },
        });
    }
    best
}

/// The attestation to issue today, if any. Issued automatically:
/// - on a favourable decision, once;
/// - for a complete pending renewal whose cover ends within `horizon_days`
///   (or has ended), an API running 3 months past the later of today and the
///   current cover, so the new one joins the old with no gap; again each time
///   the last one nears its end;
/// - for a regularisation verified complete, a rights-creating attestation at
///   once, renewed the same way.
pub fn attestation_due(
    facts: &CaseFacts,
    attestations: &[Attestation],
    today: NaiveDate,
    horizon_days: i64,
) -> Option<Attestation> {
    let has = |kind| attestations.iter().any(|a| a.kind == kind);
    if facts.state == CaseState::Favourable {
        // Once the card is in hand, it is the proof: no attestation again.
        let owed = !has(AttestationKind::FavourableDecision) && facts.card_until.is_none();
        return owed.then_some(Attestation {
            kind: AttestationKind::FavourableDecision,
            valid_from: today,
            valid_until: None,
        });
    }
    if !facts.state.is_complete_pending() {
        return None;
    }
    let kind = match facts.procedure {
        Procedure::Renewal => AttestationKind::Prolongation,
        Procedure::Regularisation => AttestationKind::RightsCreating,
        _ => return None,
    };
    let current = cover(facts, attestations, today);
    let first_regularisation = kind == AttestationKind::RightsCreating && !has(kind);
    let ends_soon = match current {
        Cover::None => true,
        Cover::Open { .. } => false,
        Cover::Until { date, .. } => (date - today).num_days() <= horizon_days,
    };
    if !(ends_soon || first_regularisation) {
        return None;
    }
    let base = current.until().map_or(today, |d| d.max(today));
    Some(Attestation {
        kind,
        valid_from: today,
        valid_until: Some(add_months(base, ATTESTATION_MONTHS)),
    })
}

/// What a case went through that the days it covered depend on, from its
/// history: the cover of the past is read from what happened, not from the
/// state the case is in today.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaseHistory {
    /// The day the case was decided, withdrawn or closed: L.433-3 covered
    /// the expired title up to it.
    pub left_open_on: Option<NaiveDate>,
    /// The day the new card was handed over: it covers from then to
    /// `CaseFacts::card_until`.
    pub card_handed_over_on: Option<NaiveDate>,
}

impl CaseHistory {
    /// From a case's events, each as its kind and the day (Paris) it
    /// happened.
    pub fn of<'a>(events: impl IntoIterator<Item = (&'a str, NaiveDate)>) -> CaseHistory {
        let earliest =
            |known: Option<NaiveDate>, day: NaiveDate| Some(known.map_or(day, |k| k.min(day)));
        let mut history = CaseHistory::default();
        for (kind, day) in events {
            if kind == crate::lifecycle::CARD_HANDED_OVER {
                history.card_handed_over_on = earliest(history.card_handed_over_on, day);
            } else if Step::parse(kind).is_some_and(Step::leaves_open) {
                history.left_open_on = earliest(history.left_open_on, day);
            }
        }
        history
    }
}

/// The days since the title expired, up to `today`, that nothing covered:
/// each gap as its first and last day. A late renewal's attestation is never
/// back-dated, so its case shows the time the person was without proof.
/// Nothing before the title's expiry counts (no title, no gap to show).
pub fn uncovered_periods(
    facts: &CaseFacts,
    history: &CaseHistory,
    attestations: &[Attestation],
    today: NaiveDate,
) -> Vec<(NaiveDate, NaiveDate)> {
    let Some((_, expires)) = facts.title else {
        return Vec::new();
    };
    let mut covered: Vec<(NaiveDate, Option<NaiveDate>)> = attestations
        .iter()
        .map(|a| (a.valid_from, a.valid_until))
        .collect();
    if extension_was_owed(facts) {
        let end = add_months(expires, LEGAL_EXTENSION_MONTHS);
        let end = history.left_open_on.map_or(end, |left| end.min(left));
        covered.push((expires, Some(end)));
    }
    if let (Some(from), Some(until)) = (history.card_handed_over_on, facts.card_until) {
        covered.push((from, Some(until)));
    }
    covered.sort();
    let mut gaps = Vec::new();
    // The first day not yet known to be covered.
    let Some(mut next) = expires.succ_opt() else {
        return gaps;
    };
    for (from, until) in covered {
        if next > today {
            break;
        }
        if from > next {
            let last = from.pred_opt().unwrap_or(from).min(today);
            gaps.push((next, last));
        }
        match until {
            None => return gaps,
            Some(until) => next = next.max(until.succ_opt().unwrap_or(until)),
        }
    }
    if next <= today {
        gaps.push((next, today));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseState::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn facts(
        procedure: Procedure,
        state: CaseState,
        title: Option<(TitleKind, NaiveDate)>,
    ) -> CaseFacts {
        // Filed well before any title in the tables expires: in time.
        CaseFacts {
            procedure,
            state,
            title,
            filed_on: d(2026, 1, 2),
            card_until: None,
        }
    }

    fn filed_on(f: CaseFacts, day: NaiveDate) -> CaseFacts {
        CaseFacts { filed_on: day, ..f }
    }

    fn attestation(
        kind: AttestationKind,
        valid_from: NaiveDate,
        valid_until: Option<NaiveDate>,
    ) -> Attestation {
        Attestation {
            kind,
            valid_from,
            valid_until,
        }
    }

    /// An attestation of prolongation of stay (API), the usual one.
    fn api(from: NaiveDate, until: NaiveDate) -> Attestation {
        attestation(AttestationKind::Prolongation, from, Some(until))
    }

    fn until(date: NaiveDate, basis: CoverBasis) -> Cover {
        Cover::Until { date, basis }
    }

    #[test]
    fn adding_months_clamps_to_month_ends() {
        let table = [
            (d(2026, 1, 31), 1, d(2026, 2, 28)),
            (d(2028, 1, 31), 1, d(2028, 2, 29)), // leap year
            (d(2026, 11, 30), 3, d(2027, 2, 28)),
            (d(2027, 11, 30), 3, d(2028, 2, 29)),
            (d(2026, 12, 31), 3, d(2027, 3, 31)),
            (d(2026, 3, 31), 3, d(2026, 6, 30)),
            (d(2028, 2, 29), 12, d(2029, 2, 28)),
            (d(2026, 5, 15), 3, d(2026, 8, 15)),
        ];
        for (from, months, expected) in table {
            assert_eq!(add_months(from, months), expected, "{from} + {months}");
        }
    }

    #[test]
    fn cover_table() {
        let today = d(2026, 11, 24);
        let multi = Some((TitleKind::MultiYearCard, d(2026, 11, 30)));
        let temp = Some((TitleKind::TemporaryCard, d(2026, 11, 30)));
        let table: Vec<CoverRow> = vec![
            (
                "no title, nothing",
                facts(Procedure::FirstApplication, Filed, None),
                vec![],
                Cover::None,
            ),
            (
                "temporary card: the title alone",
                facts(Procedure::Renewal, Complete, temp),
                vec![],
                until(d(2026, 11, 30), CoverBasis::CurrentTitle),
            ),
            (
                "multi-year renewal: L.433-3, 3 months past expiry, month end kept",
                facts(Procedure::Renewal, Filed, multi),
                vec![],
                until(d(2027, 2, 28), CoverBasis::LegalExtension),
            ),
            (
                "resident card renewal",
                facts(
                    Procedure::Renewal,
                    Incomplete,
                    Some((TitleKind::ResidentCard, d(2027, 8, 31))),
                ),
                vec![],
                until(d(2027, 11, 30), CoverBasis::LegalExtension),
            ),
            (
                "agreement title renewal",
                facts(
                    Procedure::Renewal,
                    UnderReview,
                    Some((TitleKind::AgreementTitle, d(2027, 1, 15))),
                ),
                vec![],
                until(d(2027, 4, 15), CoverBasis::LegalExtension),
            ),
            (
                "L.433-3 is for renewals only",
                facts(Procedure::ChangeOfStatus, Filed, multi),
                vec![],
                until(d(2026, 11, 30), CoverBasis::CurrentTitle),
            ),
            (
                "L.433-3 ends with the case",
                facts(Procedure::Renewal, Unfavourable, multi),
                vec![],
                until(d(2026, 11, 30), CoverBasis::CurrentTitle),
            ),
            (
                "an API beyond the title wins",
                facts(Procedure::Renewal, Complete, temp),
                vec![api(d(2026, 11, 20), d(2027, 2, 28))],
                until(
                    d(2027, 2, 28),
                    CoverBasis::Attestation(AttestationKind::Prolongation),
                ),
            ),
            (
                "an API not yet valid does not count",
                facts(Procedure::Renewal, Complete, temp),
                vec![api(d(2026, 12, 1), d(2027, 3, 1))],
                until(d(2026, 11, 30), CoverBasis::CurrentTitle),
            ),
            (
                "favourable decision: open-ended",
                facts(Procedure::Renewal, Favourable, temp),
                vec![attestation(
                    AttestationKind::FavourableDecision,
                    today,
                    None,
                )],
                Cover::Open {
                    basis: CoverBasis::Attestation(AttestationKind::FavourableDecision),
                },
            ),
            (
                "card handed over: the attestation ended that day, the card covers",
                CaseFacts {
                    card_until: Some(d(2030, 11, 19)),
                    ..facts(Procedure::Renewal, Favourable, temp)
                },
                vec![attestation(
                    AttestationKind::FavourableDecision,
                    d(2026, 10, 1),
                    Some(today),
                )],
                until(d(2030, 11, 19), CoverBasis::NewCard),
            ),
        ];
        for (name, f, atts, expected) in table {
            assert_eq!(cover(&f, &atts, today), expected, "{name}");
        }
    }

    #[test]
    fn covers_is_inclusive_of_the_last_day() {
        let c = until(d(2026, 2, 28), CoverBasis::CurrentTitle);
        assert!(c.covers(d(2026, 2, 28)));
        assert!(!c.covers(d(2026, 3, 1)));
        assert!(!Cover::None.covers(d(2026, 1, 1)));
        assert!(
            Cover::Open {
                basis: CoverBasis::CurrentTitle
            }
            .covers(d(2099, 1, 1))
        );
    }

    type DueRow = (
        &'static str,
        CaseFacts,
        Vec<Attestation>,
        NaiveDate,
        Option<Attestation>,
    );
    type CoverRow = (&'static str, CaseFacts, Vec<Attestation>, Cover);

    #[test]
    fn attestation_due_table() {
        let h = DEFAULT_HORIZON_DAYS;
        let temp = |expires| Some((TitleKind::TemporaryCard, expires));
        let table: Vec<DueRow> = vec![
            (
                "complete renewal, title ends in 16 days: not yet",
                facts(Procedure::Renewal, Complete, temp(d(2026, 12, 10))),
                vec![],
                d(2026, 11, 24),
                None,
            ),
            (
                "complete renewal, title ends in 15 days: API to 3 months past the title",
                facts(Procedure::Renewal, Complete, temp(d(2026, 12, 9))),
                vec![],
                d(2026, 11, 24),
                Some(attestation(
                    AttestationKind::Prolongation,
                    d(2026, 11, 24),
                    Some(d(2027, 3, 9)),
                )),
            ),
            (
                "complete renewal, title long expired: API from today",
                facts(Procedure::Renewal, UnderReview, temp(d(2026, 1, 31))),
                vec![],
                d(2026, 11, 30),
                Some(attestation(
                    AttestationKind::Prolongation,
                    d(2026, 11, 30),
                    Some(d(2027, 2, 28)),
                )),
            ),
            (
                "incomplete renewal: no API (the file must be complete)",
                facts(Procedure::Renewal, Incomplete, temp(d(2026, 11, 30))),
                vec![],
                d(2026, 11, 24),
                None,
            ),
            (
                "API running, far from its end: nothing",
                facts(Procedure::Renewal, UnderReview, temp(d(2026, 11, 30))),
                vec![api(d(2026, 11, 20), d(2027, 2, 28))],
                d(2026, 12, 1),
                None,
            ),
            (
                "API ending within the horizon: renewed, joining the old one",
                facts(Procedure::Renewal, UnderReview, temp(d(2026, 11, 30))),
                vec![api(d(2026, 11, 20), d(2027, 2, 28))],
                d(2027, 2, 13),
                Some(attestation(
                    AttestationKind::Prolongation,
                    d(2027, 2, 13),
                    Some(d(2027, 5, 28)),
                )),
            ),
            (
                "multi-year card: L.433-3 covers first, API when it nears its end",
                facts(
                    Procedure::Renewal,
                    Complete,
                    Some((TitleKind::MultiYearCard, d(2026, 11, 30))),
                ),
                vec![],
                d(2027, 2, 14),
                Some(attestation(
                    AttestationKind::Prolongation,
                    d(2027, 2, 14),
                    Some(d(2027, 5, 28)),
                )),
            ),
            (
                "multi-year card: within L.433-3's months, nothing yet",
                facts(
                    Procedure::Renewal,
                    Complete,
                    Some((TitleKind::MultiYearCard, d(2026, 11, 30))),
                ),
                vec![],
                d(2026, 12, 15),
                None,
            ),
            (
                "favourable decision: its attestation, once",
                facts(Procedure::Renewal, Favourable, temp(d(2026, 11, 30))),
                vec![],
                d(2026, 12, 1),
                Some(attestation(
                    AttestationKind::FavourableDecision,
                    d(2026, 12, 1),
                    None,
                )),
            ),
            (
                "favourable decision already attested",
                facts(Procedure::Renewal, Favourable, temp(d(2026, 11, 30))),
                vec![attestation(
                    AttestationKind::FavourableDecision,
                    d(2026, 12, 1),
                    None,
                )],
                d(2026, 12, 2),
                None,
            ),
            (
                "card handed over before any attestation: none owed",
                CaseFacts {
                    card_until: Some(d(2030, 12, 1)),
                    ..facts(Procedure::Renewal, Favourable, temp(d(2026, 11, 30)))
                },
                vec![],
                d(2026, 12, 2),
                None,
            ),
            (
                "regularisation verified complete: rights-creating attestation at once",
                facts(Procedure::Regularisation, Complete, None),
                vec![],
                d(2026, 11, 24),
                Some(attestation(
                    AttestationKind::RightsCreating,
                    d(2026, 11, 24),
                    Some(d(2027, 2, 24)),
                )),
            ),
            (
                "regularisation not complete: nothing",
                facts(Procedure::Regularisation, Incomplete, None),
                vec![],
                d(2026, 11, 24),
                None,
            ),
            (
                "first application: no automatic attestation",
                facts(Procedure::FirstApplication, Complete, temp(d(2026, 11, 25))),
                vec![],
                d(2026, 11, 24),
                None,
            ),
            (
                "unfavourable decision: nothing",
                facts(Procedure::Renewal, Unfavourable, temp(d(2026, 11, 25))),
                vec![],
                d(2026, 11, 24),
                None,
            ),
            (
                "leap day: API from 29 Feb",
                facts(Procedure::Renewal, Complete, temp(d(2028, 2, 29))),
                vec![],
                d(2028, 2, 20),
                Some(attestation(
                    AttestationKind::Prolongation,
                    d(2028, 2, 20),
                    Some(d(2028, 5, 29)),
                )),
            ),
        ];
        for (name, f, atts, today, expected) in table {
            assert_eq!(attestation_due(&f, &atts, today, h), expected, "{name}");
        }
    }

    /// L.433-3 against the filing date, with what follows for the queue and
    /// for the attestation: dates worked out by hand from the law.
    #[test]
    fn renewals_in_time_and_late_table() {
        use crate::urgency::UrgencyClass::{self, *};
        let multi = TitleKind::MultiYearCard;
        type Row = (
            &'static str,
            TitleKind,
            NaiveDate, // title expires
            NaiveDate, // legal filing date
            CaseState,
            NaiveDate, // today
            Cover,
            UrgencyClass,
            Option<Attestation>,
        );
        let table: Vec<Row> = vec![
            (
                "multi-year card renewed in time: L.433-3, three months past expiry",
                multi,
                d(2026, 12, 10),
                d(2026, 11, 20),
                Filed,
                d(2026, 11, 28),
                until(d(2027, 3, 10), CoverBasis::LegalExtension),
                Routine,
                None,
            ),
            (
                "filed on the title's last day: still in time",
                multi,
                d(2026, 11, 20),
                d(2026, 11, 20),
                Complete,
                d(2026, 11, 28),
                until(d(2027, 2, 20), CoverBasis::LegalExtension),
                Routine,
                None,
            ),
            (
                "filed the day after expiry: no L.433-3",
                multi,
                d(2026, 11, 19),
                d(2026, 11, 20),
                Filed,
                d(2026, 11, 28),
                until(d(2026, 11, 19), CoverBasis::CurrentTitle),
                Critical,
                None,
            ),
            (
                "multi-year card renewed 20 days late, complete: no L.433-3, critical, an API from today only",
                multi,
                d(2026, 11, 8),
                d(2026, 11, 28),
                Complete,
                d(2026, 11, 28),
                until(d(2026, 11, 8), CoverBasis::CurrentTitle),
                Critical,
                Some(api(d(2026, 11, 28), d(2027, 2, 28))),
            ),
            (
                "resident card renewed late and incomplete: nothing covers, nothing due",
                TitleKind::ResidentCard,
                d(2026, 10, 31),
                d(2026, 11, 20),
                Incomplete,
                d(2026, 11, 28),
                until(d(2026, 10, 31), CoverBasis::CurrentTitle),
                Critical,
                None,
            ),
            (
                "temporary card renewed in time: the title alone, API within the horizon",
                TitleKind::TemporaryCard,
                d(2026, 12, 5),
                d(2026, 11, 1),
                Complete,
                d(2026, 11, 28),
                until(d(2026, 12, 5), CoverBasis::CurrentTitle),
                Critical,
                Some(api(d(2026, 11, 28), d(2027, 3, 5))),
            ),
            (
                "month end: 31 January + 3 months = 30 April",
                multi,
                d(2027, 1, 31),
                d(2027, 1, 10),
                UnderReview,
                d(2027, 3, 15),
                until(d(2027, 4, 30), CoverBasis::LegalExtension),
                Soon,
                None,
            ),
            (
                "leap year: 30 November 2027 + 3 months = 29 February 2028",
                TitleKind::AgreementTitle,
                d(2027, 11, 30),
                d(2027, 11, 30),
                Filed,
                d(2028, 2, 14),
                until(d(2028, 2, 29), CoverBasis::LegalExtension),
                Critical,
                None,
            ),
            (
                "leap day expiry, filed on 1 March: late",
                multi,
                d(2028, 2, 29),
                d(2028, 3, 1),
                Complete,
                d(2028, 3, 1),
                until(d(2028, 2, 29), CoverBasis::CurrentTitle),
                Critical,
                Some(api(d(2028, 3, 1), d(2028, 6, 1))),
            ),
        ];
        for (name, kind, expires, filed, state, today, cover_expected, urgency, due) in table {
            let f = filed_on(
                facts(Procedure::Renewal, state, Some((kind, expires))),
                filed,
            );
            let c = cover(&f, &[], today);
            assert_eq!(c, cover_expected, "{name}: cover");
            assert_eq!(
                UrgencyClass::for_cover(c.until(), today),
                urgency,
                "{name}: urgency"
            );
            assert_eq!(
                attestation_due(&f, &[], today, DEFAULT_HORIZON_DAYS),
                due,
                "{name}: attestation"
            );
        }
    }

    #[test]
    fn uncovered_periods_table() {
        let late = filed_on(
            facts(
                Procedure::Renewal,
                Complete,
                Some((TitleKind::MultiYearCard, d(2026, 11, 8))),
            ),
            d(2026, 11, 28),
        );
        let in_time = filed_on(late, d(2026, 11, 1));
        let open = CaseHistory::default();
        let left_open_on = |day| CaseHistory {
            left_open_on: Some(day),
            card_handed_over_on: None,
        };
        // In time, decided favourably on 10 January (L.433-3 ran until
        // then), its card handed over on 1 March.
        let favourable = CaseFacts {
            state: Favourable,
            ..in_time
        };
        let handed_over = CaseFacts {
            card_until: Some(d(2031, 2, 28)),
            ..favourable
        };
        let decided_then_card = CaseHistory {
            left_open_on: Some(d(2027, 1, 10)),
            card_handed_over_on: Some(d(2027, 3, 1)),
        };
        let decision_attestation = attestation(
            AttestationKind::FavourableDecision,
            d(2027, 1, 10),
            Some(d(2027, 3, 1)),
        );
        type Row = (
            &'static str,
            CaseFacts,
            CaseHistory,
            Vec<Attestation>,
            NaiveDate,
            Vec<(NaiveDate, NaiveDate)>,
        );
        let table: Vec<Row> = vec![
            (
                "late, nothing issued yet: uncovered since the day after expiry",
                late,
                open,
                vec![],
                d(2026, 11, 28),
                vec![(d(2026, 11, 9), d(2026, 11, 28))],
            ),
            (
                "late, API from the day it was issued: the days before stay a gap",
                late,
                open,
                vec![api(d(2026, 11, 28), d(2027, 2, 28))],
                d(2026, 12, 15),
                vec![(d(2026, 11, 9), d(2026, 11, 27))],
            ),
            (
                "in time: L.433-3 then an API that joins it, no gap",
                in_time,
                open,
                vec![api(d(2027, 1, 25), d(2027, 5, 8))],
                d(2027, 3, 1),
                vec![],
            ),
            (
                "title still valid: nothing to show",
                late,
                open,
                vec![],
                d(2026, 11, 1),
                vec![],
            ),
            (
                "no title: nothing to show",
                facts(Procedure::FirstApplication, Filed, None),
                open,
                vec![],
                d(2026, 11, 1),
                vec![],
            ),
            (
                "two attestations with a gap between them",
                late,
                open,
                vec![
                    api(d(2026, 11, 28), d(2026, 12, 31)),
                    api(d(2027, 1, 10), d(2027, 4, 10)),
                ],
                d(2027, 2, 1),
                vec![
                    (d(2026, 11, 9), d(2026, 11, 27)),
                    (d(2027, 1, 1), d(2027, 1, 9)),
                ],
            ),
            (
                "in time, decided favourably: L.433-3 covered the days up to the decision",
                favourable,
                left_open_on(d(2027, 1, 10)),
                vec![attestation(
                    AttestationKind::FavourableDecision,
                    d(2027, 1, 10),
                    None,
                )],
                d(2027, 2, 1),
                vec![],
            ),
            (
                "card handed over: it covers from that day, long after the decision's attestation ended",
                handed_over,
                decided_then_card,
                vec![decision_attestation],
                d(2027, 6, 1),
                vec![],
            ),
            (
                "card handed over after the old title's three months: still no gap",
                handed_over,
                decided_then_card,
                vec![decision_attestation],
                d(2031, 2, 28),
                vec![],
            ),
            (
                "card's last day past: uncovered from the day after",
                handed_over,
                decided_then_card,
                vec![decision_attestation],
                d(2031, 3, 5),
                vec![(d(2031, 3, 1), d(2031, 3, 5))],
            ),
            (
                "decided against: L.433-3 covered up to the decision, not after",
                CaseFacts {
                    state: Unfavourable,
                    ..in_time
                },
                left_open_on(d(2027, 1, 10)),
                vec![],
                d(2027, 1, 20),
                vec![(d(2027, 1, 11), d(2027, 1, 20))],
            ),
            (
                "withdrawn after the three months: the three months stay covered",
                CaseFacts {
                    state: Closed,
                    ..in_time
                },
                left_open_on(d(2027, 3, 20)),
                vec![],
                d(2027, 3, 25),
                vec![(d(2027, 2, 9), d(2027, 3, 25))],
            ),
            (
                "late renewal decided: no L.433-3 before or after",
                CaseFacts {
                    state: Unfavourable,
                    ..late
                },
                left_open_on(d(2026, 12, 1)),
                vec![],
                d(2026, 12, 3),
                vec![(d(2026, 11, 9), d(2026, 12, 3))],
            ),
        ];
        for (name, f, history, atts, today, expected) in table {
            assert_eq!(
                uncovered_periods(&f, &history, &atts, today),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_case_history_is_read_from_its_events() {
        let events = [
            ("found_complete", d(2026, 11, 2)),
            ("review_started", d(2026, 12, 1)),
            ("decided_favourable", d(2027, 1, 10)),
            ("card_handed_over", d(2027, 3, 1)),
        ];
        assert_eq!(
            CaseHistory::of(events),
            CaseHistory {
                left_open_on: Some(d(2027, 1, 10)),
                card_handed_over_on: Some(d(2027, 3, 1)),
            }
        );
        for (kind, leaves) in [
            ("decided_unfavourable", true),
            ("withdrawn", true),
            ("closed_deadline_passed", true),
            ("documents_requested", false),
            ("attestation_issued", false),
        ] {
            let history = CaseHistory::of([(kind, d(2027, 1, 10))]);
            assert_eq!(history.left_open_on.is_some(), leaves, "{kind}");
        }
        assert_eq!(CaseHistory::of([]), CaseHistory::default());
    }

    /// Day by day over two years, a complete renewal pending with the
    /// automatic rules applied daily is never without cover.
    #[test]
    fn automatic_rules_leave_no_gap_day() {
        for kind in [TitleKind::TemporaryCard, TitleKind::MultiYearCard] {
            let f = facts(
                Procedure::Renewal,
                UnderReview,
                Some((kind, d(2026, 3, 31))),
            );
            let mut issued = Vec::new();
            let mut day = d(2026, 1, 1);
            while day < d(2028, 1, 1) {
                if let Some(a) = attestation_due(&f, &issued, day, DEFAULT_HORIZON_DAYS) {
                    issued.push(a);
                }
                assert!(
                    cover(&f, &issued, day).covers(day),
                    "{kind} uncovered on {day}"
                );
                day = day.succ_opt().unwrap();
            }
        }
    }
}
