//! The synthetic filings: who files, on which channel, for what, on which
//! day, with which documents, and what will happen to them that does not
//! depend on the rules (when documents come, how long a review takes, the
//! decision), and where answers reach them. Drawn once from the seed, so
//! both rule sets see the same people.

use chrono::{NaiveDate, TimeDelta};
use guichet_dossier::requirements::{missing, required};
use guichet_dossier::{Channel, DocumentKind, Motif, Procedure, TitleKind};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::delivery::AnswerChannels;
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

#[derive(Debug, Clone, PartialEq)]
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
    /// Where answers, attestations among them, are sent.
    pub answer_channels: AnswerChannels,
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
/// before it and the follow-on after it at the same average rate. Answer
/// channels come from `answers`, a stream of their own, so adding them left
/// every other draw as it was.
pub fn generate(
    rng: &mut StdRng,
    answers: &mut StdRng,
    filings: usize,
    start: NaiveDate,
    days: i64,
) -> Population {
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
            out.push(one(rng, answers, cohort, from, length));
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

fn one(
    rng: &mut StdRng,
    answers: &mut StdRng,
    cohort: Cohort,
    from: NaiveDate,
    length: i64,
) -> Filing {
    let channel = pick(rng, CHANNEL_MIX);
    let answer_channels = pick(answers, answer_channel_mix(channel));
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
        answer_channels,
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

#[cfg(test)]
mod tests {
    use guichet_dossier::Channel;
    use rand::SeedableRng;

    use super::*;

    fn population(seed: u64, answers: u64) -> Population {
        generate(
            &mut StdRng::seed_from_u64(seed),
            &mut StdRng::seed_from_u64(answers),
            20_000,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            365,
        )
    }

    #[test]
    fn answer_channels_leave_the_other_draws_alone() {
        let a = population(7, 1);
        let b = population(7, 2);
        assert_eq!(a.filings.len(), b.filings.len());
        let mut differ = 0;
        for (x, y) in a.filings.iter().zip(&b.filings) {
            differ += usize::from(x.answer_channels != y.answer_channels);
            let y = Filing {
                answer_channels: x.answer_channels,
                ..y.clone()
            };
            assert_eq!(*x, y);
        }
        assert!(differ > 0, "the answer channels come from their own stream");
    }

    /// Whether a set of answer channels has some property.
    type Has = fn(&AnswerChannels) -> bool;

    #[test]
    fn answer_channels_follow_the_mix_of_each_intake_channel() {
        let p = population(7, 7);
        for (channel, mix) in ANSWER_CHANNEL_MIX {
            let of: Vec<&Filing> = p.filings.iter().filter(|f| f.channel == *channel).collect();
            let share = |pred: Has| {
                of.iter().filter(|f| pred(&f.answer_channels)).count() as f64 / of.len() as f64
            };
            let expected = |pred: Has| {
                mix.iter()
                    .filter(|(to, _)| pred(to))
                    .map(|(_, w)| *w)
                    .sum::<u32>() as f64
                    / 100.0
            };
            let table: [(&str, Has); 4] = [
                ("e-mail", |to| to.email),
                ("sms", |to| to.sms),
                ("post", |to| to.post),
                ("paper only", |to| *to == AnswerChannels::POST),
            ];
            for (name, pred) in table {
                // The smallest channel has ~1,000 filings here.
                assert!(
                    (share(pred) - expected(pred)).abs() < 0.05,
                    "{channel} {name}: {:.3} for {:.3}",
                    share(pred),
                    expected(pred)
                );
            }
        }
        let postal: Vec<&Filing> = p
            .filings
            .iter()
            .filter(|f| f.channel == Channel::Postal)
            .collect();
        let paper_only = postal
            .iter()
            .filter(|f| f.answer_channels == AnswerChannels::POST)
            .count();
        assert!(
            paper_only * 2 > postal.len(),
            "postal filers mostly get paper only"
        );
    }
}
