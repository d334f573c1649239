//! The synthetic filings: who files, on which channel, for what, on which
//! day, with which documents, and what will happen to them that does not
//! depend on the rules (when documents come, how long a review takes, the
//! decision). Drawn once from the seed, so both rule sets see the same people.

use chrono::{NaiveDate, TimeDelta};
use guichet_dossier::requirements::{missing, required};
use guichet_dossier::{Channel, DocumentKind, Motif, Procedure, TitleKind};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::mixes::*;

/// Which part of the timeline a filing belongs to. Only the period is
/// reported; the others keep the queue as loaded as it would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cohort {
    /// Filed before the period, still waiting on its first day.
    CarryOver,
    Period,
    /// Filed after the period, while its cases are followed to a decision.
    FollowOn,
}

#[derive(Debug, Clone)]
pub struct Filing {
    pub channel: Channel,
    pub procedure: Procedure,
    pub motif: Motif,
    /// The title held at filing: kind and expiry.
    pub title: Option<(TitleKind, NaiveDate)>,
    /// When the person filed (the postmark, for post).
    pub legal_filing_date: NaiveDate,
    /// When the file reaches the system (later than filing for post).
    pub arrives_on: NaiveDate,
    /// The documents in the file when it was filed.
    pub received: Vec<DocumentKind>,
    /// `missing(..)` found nothing at filing.
    pub complete_at_filing: bool,
    /// Days from the request for documents to their reaching the system;
    /// `None`: never sent.
    pub documents_after: Option<i64>,
    /// Days from take-up to decision.
    pub review_days: i64,
    pub favourable: bool,
    pub cohort: Cohort,
}

impl Filing {
    /// A renewal filed on or before the day its title expired: the people
    /// gap days are counted for.
    pub fn renewal_in_time(&self) -> bool {
        self.procedure == Procedure::Renewal
            && self
                .title
                .is_some_and(|(_, expires)| self.legal_filing_date <= expires)
    }

    pub fn reported(&self) -> bool {
        self.cohort == Cohort::Period
    }
}

pub struct Population {
    pub filings: Vec<Filing>,
    /// The first simulated day (the carry-over starts here).
    pub first_day: NaiveDate,
    /// The period: `period_start ..period_end`.
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    /// The last day filings are generated for, and cases followed.
    pub last_day: NaiveDate,
    pub carry_over_filings: usize,
    pub follow_on_filings: usize,
}

pub fn plus(day: NaiveDate, days: i64) -> NaiveDate {
    day.checked_add_signed(TimeDelta::days(days))
        .unwrap_or(NaiveDate::MAX)
}

/// `filings` in the period of `days` from `start`, plus the carry-over
/// before it and the follow-on after it at the same average rate.
pub fn generate(rng: &mut StdRng, filings: usize, start: NaiveDate, days: i64) -> Population {
    let per_day = filings as f64 / days as f64;
    let carry_over = (per_day * CARRY_OVER_DAYS as f64).round() as usize;
    let follow_on = (per_day * FOLLOW_UP_DAYS as f64).round() as usize;
    let first_day = plus(start, -CARRY_OVER_DAYS);
    let period_end = plus(start, days);
    let windows = [
        (Cohort::CarryOver, first_day, CARRY_OVER_DAYS, carry_over),
        (Cohort::Period, start, days, filings),
        (Cohort::FollowOn, period_end, FOLLOW_UP_DAYS, follow_on),
    ];
    let mut out = Vec::with_capacity(carry_over + filings + follow_on);
    for (cohort, from, length, count) in windows {
        for _ in 0..count {
            out.push(one(rng, cohort, from, length));
        }
    }
    Population {
        filings: out,
        first_day,
        period_start: start,
        period_end,
        last_day: plus(period_end, FOLLOW_UP_DAYS),
        carry_over_filings: carry_over,
        follow_on_filings: follow_on,
    }
}

fn one(rng: &mut StdRng, cohort: Cohort, from: NaiveDate, length: i64) -> Filing {
    let channel = pick(rng, CHANNEL_MIX);
    let procedure = pick(rng, PROCEDURE_MIX);
    let motif = pick(rng, MOTIF_MIX);
    let legal_filing_date = filing_day(rng, from, length, channel, motif);
    let title = title_held(rng, procedure, legal_filing_date);
    let transit = |rng: &mut StdRng| {
        if channel == Channel::Postal {
            pick(rng, POSTAL_TRANSIT_DAYS).draw(rng)
        } else {
            0
        }
    };
    let arrives_on = plus(legal_filing_date, transit(rng));

    let mut received = required(procedure, motif);
    if !rng.random_ratio(percent_of(COMPLETE_AT_FILING_PERCENT, channel), 100) {
        // Drop a few, but never the whole file.
        let lacking = pick(rng, MISSING_DOCUMENTS).min(received.len().saturating_sub(1));
        received.shuffle(rng);
        received.truncate(received.len() - lacking);
    }
    let complete_at_filing = missing(procedure, motif, &received).is_empty();
    let documents_after = pick(rng, DOCUMENTS_DELAY)
        .draw(rng)
        .map(|sent| sent + transit(rng));
    let review_days = pick(rng, REVIEW_DAYS).draw(rng);
    let favourable = rng.random_ratio(percent_of(FAVOURABLE_PERCENT, procedure), 100);
    Filing {
        channel,
        procedure,
        motif,
        title,
        legal_filing_date,
        arrives_on,
        received,
        complete_at_filing,
        documents_after,
        review_days,
        favourable,
        cohort,
    }
}

/// A day in `from .. from + length`, drawn in proportion to how heavily
/// this channel and motif file on it (by rejection: cheap, and exact).
fn filing_day(
    rng: &mut StdRng,
    from: NaiveDate,
    length: i64,
    channel: Channel,
    motif: Motif,
) -> NaiveDate {
    // Every channel files on weekdays, so a day is found quickly; the
    // bound only guards a table someone set to all zeros.
    for _ in 0..10_000 {
        let day = plus(from, rng.random_range(0..length.max(1)));
        if rng.random::<f64>() * MAX_DAY_WEIGHT < day_weight(day, channel, motif) {
            return day;
        }
    }
    from
}

/// The title held at filing, from the procedure.
fn title_held(
    rng: &mut StdRng,
    procedure: Procedure,
    filed: NaiveDate,
) -> Option<(TitleKind, NaiveDate)> {
    match procedure {
        Procedure::Renewal => {
            let lead = pick(rng, RENEWAL_LEAD_DAYS).draw(rng);
            Some((pick(rng, RENEWED_TITLES), plus(filed, lead)))
        }
        Procedure::ChangeOfStatus => {
            let lead = pick(rng, RENEWAL_LEAD_DAYS).draw(rng);
            Some((TitleKind::TemporaryCard, plus(filed, lead)))
        }
        Procedure::FirstApplication => rng
            .random_ratio(FIRST_APPLICATION_ON_VISA_PERCENT, 100)
            .then(|| {
                let left = VISA_DAYS_LEFT.draw(rng);
                (TitleKind::LongStayVisa, plus(filed, left))
            }),
        Procedure::Duplicate => {
            let left = DUPLICATE_DAYS_LEFT.draw(rng);
            Some((pick(rng, RENEWED_TITLES), plus(filed, left)))
        }
        Procedure::Regularisation => None,
    }
}
