//! The day-by-day run of one rule set over the population, through the real
//! domain rules: `requirements::missing` decides completeness,
//! `lifecycle::next` every change of state, `UrgencyClass::for_cover` the
//! queue order, `rights::cover` whether a person holds proof of stay, and
//! `rights::attestation_due` what is issued. Nothing here re-implements them.
//! Each attestation is then sent to the person (`delivery`); gap days are
//! counted twice, against what was issued and against what had reached them.

use crate::progress::Progress;
use chrono::{Datelike, NaiveDate};
use guichet_dossier::lifecycle::{ImpossibleStep, next};
use guichet_dossier::requirements::{missing, required};
use guichet_dossier::rights::{
    Attestation, AttestationKind, CaseFacts, DEFAULT_HORIZON_DAYS, attestation_due, cover,
};
use guichet_dossier::{CaseState, Procedure, Step, UrgencyClass};
use rand::rngs::StdRng;

use super::delivery::Delivery;
use super::mixes::{
    AGENT_MONTH_FACTOR, BASELINE_FETCH_DELAY, DOCUMENT_DEADLINE_DAYS, is_working_day, pick,
};
use super::population::{Filing, Population, plus};

/// Who issues attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Guichet: every day, whatever `attestation_due` says is due, issued
    /// automatically (and the favourable-decision attestation on decision).
    Guichet,
    /// Today's practice: an attestation de prolongation only when the
    /// person fetches it by hand, some days after their proof ran out, and
    /// again by hand when it runs out.
    Baseline,
}

/// What happened to one filing under one rule set.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub decided_on: Option<NaiveDate>,
    /// Found complete at some point (at filing, or when documents came).
    pub became_complete: bool,
    /// Closed because requested documents never came.
    pub closed: bool,
    /// Days pending, complete, filed in time, with no proof of stay.
    pub gap_days: u32,
    /// The same days, counting an attestation only from the day it reached
    /// the person: never fewer than `gap_days`.
    pub gap_days_delivered: u32,
    pub prolongations: u32,
    pub rights_creating: u32,
    pub favourable_decisions: u32,
    /// Those of the attestations above that reached the person at all.
    pub prolongations_delivered: u32,
    pub rights_creating_delivered: u32,
    pub favourable_decisions_delivered: u32,
}

/// The baseline person's errand for an attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Covered, or not yet noticed.
    Idle,
    On(NaiveDate),
    Never,
}

#[derive(Debug, Clone)]
struct Case {
    state: CaseState,
    /// As issued: the office's view, which decides what is issued next.
    attestations: Vec<Attestation>,
    /// Issued, and the day each will reach the person (lost ones are not here).
    in_transit: Vec<(NaiveDate, Attestation)>,
    /// In the person's hands.
    received: Vec<Attestation>,
    /// Requested documents reach the system on this day.
    documents_on: Option<NaiveDate>,
    /// Closed on this day if the documents never came.
    deadline: Option<NaiveDate>,
    decide_on: Option<NaiveDate>,
    fetch: Fetch,
}

pub struct Engine<'a> {
    population: &'a Population,
    filings: &'a [Filing],
    rules: Rules,
    capacity: f64,
    cases: Vec<Case>,
    outcomes: Vec<Outcome>,
    /// Cases in the system and not finished, by index.
    active: Vec<usize>,
    open_reported: usize,
    /// The baseline person's errands.
    rng: StdRng,
    delivery: Delivery,
    /// Whether and when each attestation reaches the person: a stream of
    /// its own, so the errands above draw as they did without delivery.
    delivery_rng: StdRng,
}

impl<'a> Engine<'a> {
    pub fn new(
        population: &'a Population,
        rules: Rules,
        capacity: f64,
        rng: StdRng,
        delivery: Delivery,
        delivery_rng: StdRng,
    ) -> Self {
        let filings = &population.filings;
        Engine {
            population,
            filings,
            rules,
            capacity,
            cases: vec![
                Case {
                    state: CaseState::Filed,
                    attestations: Vec::new(),
                    in_transit: Vec::new(),
                    received: Vec::new(),
                    documents_on: None,
                    deadline: None,
                    decide_on: None,
                    fetch: Fetch::Idle,
                };
                filings.len()
            ],
            outcomes: vec![Outcome::default(); filings.len()],
            active: Vec::new(),
            open_reported: filings.iter().filter(|f| f.reported()).count(),
            rng,
            delivery,
            delivery_rng,
        }
    }

    /// Runs from the first day until every reported case is finished (or
    /// the follow-up ends). Returns one outcome per filing.
    pub fn run(mut self, progress: &mut Progress) -> Result<Vec<Outcome>, ImpossibleStep> {
        let population = self.population;
        let mut arrivals: Vec<usize> = (0..self.filings.len()).collect();
        arrivals.sort_by_key(|&i| (self.filings[i].arrives_on, i));
        let mut next_arrival = 0;
        let mut day = population.first_day;
        while day <= population.last_day {
            while let Some(&i) = arrivals.get(next_arrival) {
                if self.filings[i].arrives_on != day {
                    break;
                }
                self.arrive(i, day)?;
                next_arrival += 1;
            }
            for k in 0..self.active.len() {
                self.events(self.active[k], day)?;
            }
            for k in 0..self.active.len() {
                self.rights(self.active[k], day);
            }
            // Before the period, the backlog only builds up.
            if day >= population.period_start && is_working_day(day) {
                self.take_up(day)?;
            }
            for k in 0..self.active.len() {
                self.count_gap(self.active[k], day);
            }
            let cases = &self.cases;
            self.active.retain(|&i| cases[i].state.is_open());
            if day >= population.period_end && self.open_reported == 0 {
                break;
            }
            day = plus(day, 1);
            progress.add(1);
        }
        progress.finish();
        Ok(self.outcomes)
    }

    fn facts(&self, i: usize) -> CaseFacts {
        let f = &self.filings[i];
        CaseFacts {
            procedure: f.procedure,
            state: self.cases[i].state,
            title: f.title,
            filed_on: f.legal_filing_date,
            // The simulation ends at the decision: no card yet.
            card_until: None,
        }
    }

    fn step(&mut self, i: usize, step: Step) -> Result<(), ImpossibleStep> {
        let case = &mut self.cases[i];
        case.state = next(case.state, step)?;
        if case.state == CaseState::Complete {
            self.outcomes[i].became_complete = true;
        }
        if !case.state.is_open() && self.filings[i].reported() {
            self.open_reported -= 1;
        }
        Ok(())
    }

    /// The file reaches the system: completeness from the requirements
    /// table, and a request for what is missing.
    fn arrive(&mut self, i: usize, day: NaiveDate) -> Result<(), ImpossibleStep> {
        let f = &self.filings[i];
        self.active.push(i);
        if missing(f.procedure, f.motif, &f.received).is_empty() {
            return self.step(i, Step::FoundComplete);
        }
        self.step(i, Step::FoundIncomplete)?;
        self.step(i, Step::RequestDocuments)?;
        let f = &self.filings[i];
        let case = &mut self.cases[i];
        case.documents_on = f.documents_after.map(|after| plus(day, after));
        case.deadline = Some(plus(day, DOCUMENT_DEADLINE_DAYS + 1));
        Ok(())
    }

    /// Documents arriving, deadlines passing, reviews ending.
    fn events(&mut self, i: usize, day: NaiveDate) -> Result<(), ImpossibleStep> {
        let case = &self.cases[i];
        match case.state {
            CaseState::DocumentsRequested if case.documents_on == Some(day) => {
                let f = &self.filings[i];
                // Everything asked for has come: the table decides again.
                let step =
                    if missing(f.procedure, f.motif, &required(f.procedure, f.motif)).is_empty() {
                        Step::FoundComplete
                    } else {
                        Step::FoundIncomplete
                    };
                self.step(i, step)
            }
            CaseState::DocumentsRequested
                if case.documents_on.is_none() && case.deadline == Some(day) =>
            {
                self.outcomes[i].closed = true;
                self.step(i, Step::DeadlinePassed)
            }
            CaseState::UnderReview
                if case.decide_on.is_some_and(|d| d <= day) && is_working_day(day) =>
            {
                self.decide(i, day)
            }
            _ => Ok(()),
        }
    }

    fn decide(&mut self, i: usize, day: NaiveDate) -> Result<(), ImpossibleStep> {
        let step = if self.filings[i].favourable {
            Step::DecideFavourable
        } else {
            Step::DecideUnfavourable
        };
        self.step(i, step)?;
        self.outcomes[i].decided_on = Some(day);
        if self.rules == Rules::Guichet {
            self.issue_due(i, day, DEFAULT_HORIZON_DAYS);
        }
        Ok(())
    }

    /// Issues whatever the rules say is due today, if anything, and sends
    /// it to the person.
    fn issue_due(&mut self, i: usize, day: NaiveDate, horizon_days: i64) {
        let facts = self.facts(i);
        let case = &mut self.cases[i];
        let Some(a) = attestation_due(&facts, &case.attestations, day, horizon_days) else {
            return;
        };
        case.attestations.push(a);
        let reaches =
            self.delivery
                .reaches(self.filings[i].answer_channels, day, &mut self.delivery_rng);
        if let Some(on) = reaches {
            case.in_transit.push((on, a));
        }
        let delivered = u32::from(reaches.is_some());
        let out = &mut self.outcomes[i];
        match a.kind {
            AttestationKind::Prolongation => {
                out.prolongations += 1;
                out.prolongations_delivered += delivered;
            }
            AttestationKind::RightsCreating => {
                out.rights_creating += 1;
                out.rights_creating_delivered += delivered;
            }
            AttestationKind::FavourableDecision => {
                out.favourable_decisions += 1;
                out.favourable_decisions_delivered += delivered;
            }
        }
    }

    /// Attestations, the Guichet way or the manual way.
    fn rights(&mut self, i: usize, day: NaiveDate) {
        match self.rules {
            Rules::Guichet => self.issue_due(i, day, DEFAULT_HORIZON_DAYS),
            Rules::Baseline => self.fetch_by_hand(i, day),
        }
    }

    /// The baseline person notices, some days after their proof ran out,
    /// and fetches an API; the office issues what the rules allow on that
    /// day (horizon 0: only once cover has ended). No renewal without them.
    fn fetch_by_hand(&mut self, i: usize, day: NaiveDate) {
        let f = &self.filings[i];
        if f.procedure != Procedure::Renewal || !self.cases[i].state.is_complete_pending() {
            return;
        }
        let facts = self.facts(i);
        let covered = cover(&facts, &self.cases[i].attestations, day).covers(day);
        let case = &mut self.cases[i];
        if covered {
            case.fetch = Fetch::Idle;
            return;
        }
        if case.fetch == Fetch::Idle {
            case.fetch = match pick(&mut self.rng, BASELINE_FETCH_DELAY).draw(&mut self.rng) {
                Some(after) => Fetch::On(plus(day, after)),
                None => Fetch::Never,
            };
        }
        if matches!(case.fetch, Fetch::On(on) if on <= day) {
            case.fetch = Fetch::Idle;
            self.issue_due(i, day, 0);
        }
    }

    /// Agents take up the top of the one queue: by urgency of the person's
    /// proof of stay, then legal filing date. The channel plays no part.
    fn take_up(&mut self, day: NaiveDate) -> Result<(), ImpossibleStep> {
        let mut queue: Vec<(i16, NaiveDate, usize)> = self
            .active
            .iter()
            .filter(|&&i| self.cases[i].state == CaseState::Complete)
            .map(|&i| {
                let until = cover(&self.facts(i), &self.cases[i].attestations, day).until();
                let urgency = UrgencyClass::for_cover(until, day);
                (urgency.rank(), self.filings[i].legal_filing_date, i)
            })
            .collect();
        let capacity = (self.capacity * AGENT_MONTH_FACTOR[day.month0() as usize]).round() as usize;
        if capacity < queue.len() {
            queue.select_nth_unstable(capacity);
            queue.truncate(capacity);
        }
        for (_, _, i) in queue {
            self.step(i, Step::StartReview)?;
            let review_days = self.filings[i].review_days;
            self.cases[i].decide_on = Some(plus(day, review_days));
            if review_days == 0 {
                self.decide(i, day)?;
            }
        }
        Ok(())
    }

    /// One gap day if this person filed a renewal in time, the file is
    /// complete and pending, and nothing proves their stay today: once by
    /// what was issued, once by what has reached them. Their title and the
    /// law's extension are in their hands already; attestations only count
    /// from the day they arrive.
    fn count_gap(&mut self, i: usize, day: NaiveDate) {
        let f = &self.filings[i];
        if !(f.reported() && f.renewal_in_time() && self.cases[i].state.is_complete_pending()) {
            return;
        }
        let facts = self.facts(i);
        let case = &mut self.cases[i];
        case.in_transit.retain(|&(on, a)| {
            let arrived = on <= day;
            if arrived {
                case.received.push(a);
            }
            !arrived
        });
        let out = &mut self.outcomes[i];
        out.gap_days += u32::from(!cover(&facts, &case.attestations, day).covers(day));
        out.gap_days_delivered += u32::from(!cover(&facts, &case.received, day).covers(day));
    }
}
