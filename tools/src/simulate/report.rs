//! The figures, per channel and in total, for each rule set: as a table for
//! people and as one JSON object for dashboards and scripts.

use std::fmt::Write as _;

use chrono::NaiveDate;
use guichet_dossier::Channel;
use serde::Serialize;

use super::delivery::Delivery;
use super::engine::Outcome;
use super::population::{Filing, Population, plus};

/// What was run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunParams {
    pub filings: usize,
    pub start: NaiveDate,
    pub days: i64,
    pub seed: u64,
    /// Decisions per working day at full strength (less in summer).
    pub capacity_per_working_day: f64,
    /// Filed before the period and still waiting on its first day.
    pub carry_over_filings: usize,
    /// Filed after the period, while its cases were followed.
    pub follow_on_filings: usize,
    /// The last day simulated: the period's cases were followed this far.
    pub followed_until: NaiveDate,
    /// `rights::DEFAULT_HORIZON_DAYS`: Guichet issues or renews an
    /// attestation when proof of stay would end within this many days.
    pub horizon_days: i64,
    /// How attestations travel to the person: delays and failure rates.
    pub delivery: Delivery,
}

/// One rule set's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub gap_days: u64,
    pub people_with_gaps: u64,
    pub gap_days_delivered: u64,
    pub people_with_gaps_delivered: u64,
    pub attestations_issued: Issued,
    /// Of those, the ones that reached the person on one of their channels.
    pub attestations_delivered: Issued,
    pub channels: Channels,
    pub total: Figures,
}

/// Attestations for the period's filings, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Issued {
    pub prolongation: u64,
    pub rights_creating: u64,
    pub favourable_decision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channels {
    pub web: Figures,
    pub ccc: Figures,
    pub pan: Figures,
    pub postal: Figures,
}

impl Channels {
    pub fn get(&self, channel: Channel) -> &Figures {
        match channel {
            Channel::Web => &self.web,
            Channel::Ccc => &self.ccc,
            Channel::Pan => &self.pan,
            Channel::Postal => &self.postal,
        }
    }
}

/// One channel's figures (or all channels').
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub filings: u64,
    /// Share of filings with every required document at filing, 0 to 1.
    pub complete_at_filing: f64,
    pub decided: u64,
    /// Days from the legal filing date to the decision (lower middle).
    pub median_days_to_decision: Option<i64>,
    pub p90_days_to_decision: Option<i64>,
    /// Closed because requested documents never came.
    pub closed_incomplete: u64,
    /// Still pending when the follow-up ended.
    pub undecided: u64,
    /// Renewals filed before their title expired that became complete:
    /// the people gap days are counted for.
    pub renewals_in_time_complete: u64,
    /// Counted against the attestations issued: in the database.
    pub gap_days: u64,
    pub people_with_gaps: u64,
    /// Counted against the attestations that had reached the person.
    pub gap_days_delivered: u64,
    pub people_with_gaps_delivered: u64,
}

/// Everything `guichet simulate` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub params: RunParams,
    pub guichet: Scenario,
    pub baseline: Scenario,
    /// Person-days between the postmark and the file reaching the system on
    /// which a renewal posted in time, complete, had no proof of stay. The
    /// rules cannot act on a file they do not have yet, so these are not
    /// gap days; they are the same under both rule sets.
    pub postal_transit_uncovered_days: u64,
}

pub fn scenario(population: &Population, outcomes: &[Outcome]) -> Scenario {
    let reported = || {
        population
            .filings
            .iter()
            .zip(outcomes)
            .filter(|(f, _)| f.reported())
    };
    let figures_of = |channel: Option<Channel>| {
        figures(reported().filter(|(f, _)| channel.is_none_or(|c| f.channel == c)))
    };
    let total = figures_of(None);
    let mut issued = Issued::default();
    let mut delivered = Issued::default();
    for (_, o) in reported() {
        issued.prolongation += u64::from(o.prolongations);
        issued.rights_creating += u64::from(o.rights_creating);
        issued.favourable_decision += u64::from(o.favourable_decisions);
        delivered.prolongation += u64::from(o.prolongations_delivered);
        delivered.rights_creating += u64::from(o.rights_creating_delivered);
        delivered.favourable_decision += u64::from(o.favourable_decisions_delivered);
    }
    Scenario {
        gap_days: total.gap_days,
        people_with_gaps: total.people_with_gaps,
        gap_days_delivered: total.gap_days_delivered,
        people_with_gaps_delivered: total.people_with_gaps_delivered,
        attestations_issued: issued,
        attestations_delivered: delivered,
        channels: Channels {
            web: figures_of(Some(Channel::Web)),
            ccc: figures_of(Some(Channel::Ccc)),
            pan: figures_of(Some(Channel::Pan)),
            postal: figures_of(Some(Channel::Postal)),
        },
        total,
    }
}

fn figures<'a>(cases: impl Iterator<Item = (&'a Filing, &'a Outcome)>) -> Figures {
    let mut filings = 0;
    let mut complete = 0;
    let mut closed = 0;
    let mut undecided = 0;
    let mut in_time = 0;
    let mut gap_days = 0;
    let mut people_with_gaps = 0;
    let mut gap_days_delivered = 0;
    let mut people_with_gaps_delivered = 0;
    let mut days = Vec::new();
    for (f, o) in cases {
        filings += 1;
        complete += u64::from(f.complete_at_filing);
        gap_days += u64::from(o.gap_days);
        people_with_gaps += u64::from(o.gap_days > 0);
        gap_days_delivered += u64::from(o.gap_days_delivered);
        people_with_gaps_delivered += u64::from(o.gap_days_delivered > 0);
        match o.decided_on {
            Some(on) => days.push((on - f.legal_filing_date).num_days()),
            None if o.closed => closed += 1,
            None => undecided += 1,
        }
        in_time += u64::from(f.renewal_in_time() && o.became_complete);
    }
    days.sort_unstable();
    let rank = |q: f64| -> Option<i64> {
        let n = days.len();
        // Nearest rank: the smallest value with at least q of them at or below it.
        let k = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        days.get(k).copied()
    };
    Figures {
        filings,
        complete_at_filing: share(complete, filings),
        decided: days.len() as u64,
        median_days_to_decision: rank(0.5),
        p90_days_to_decision: rank(0.9),
        closed_incomplete: closed,
        undecided,
        renewals_in_time_complete: in_time,
        gap_days,
        people_with_gaps,
        gap_days_delivered,
        people_with_gaps_delivered,
    }
}

impl Issued {
    /// Every kind together.
    pub fn all(&self) -> u64 {
        self.prolongation + self.rights_creating + self.favourable_decision
    }
}

/// `part / whole`, to four decimals.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

/// 40000 -> "40,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn days_or_dash(days: Option<i64>) -> String {
    days.map_or_else(|| "-".to_string(), |d| d.to_string())
}

/// 0.03 -> "3", 0.025 -> "2.5".
fn percent(rate: f64) -> String {
    ((rate * 10_000.0).round() / 100.0).to_string()
}

/// "after 3 working days, 2 % never"; `unit` in the singular.
fn route(delay: u32, unit: &str, failure_rate: f64) -> String {
    let when = match delay {
        0 => "the same day".to_string(),
        1 => format!("after 1 {unit}"),
        _ => format!("after {delay} {unit}s"),
    };
    format!("{when}, {} % never", percent(failure_rate))
}

impl Report {
    /// The figures for people: one row per channel, the two rule sets side
    /// by side.
    pub fn table(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let last = plus(p.start, p.days - 1);
        let _ = writeln!(
            out,
            "guichet simulate: {} filings from {} to {} (seed {}), one queue, {:.0} decisions per working day",
            thousands(p.filings as u64),
            p.start,
            last,
            p.seed,
            p.capacity_per_working_day,
        );
        let _ = writeln!(
            out,
            "{} filings carried over from before {}; cases followed to their decision until {}.",
            thousands(p.carry_over_filings as u64),
            p.start,
            p.followed_until,
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9}   {:^23}   {:^23}   {:^23}",
            "", "", "complete", "median days to decision", "gap days", "people with gaps"
        );
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9}   {:>11} {:>11}   {:>11} {:>11}   {:>11} {:>11}",
            "channel",
            "filings",
            "at filing",
            "guichet",
            "baseline",
            "guichet",
            "baseline",
            "guichet",
            "baseline"
        );
        let mut row = |name: &str, g: &Figures, b: &Figures| {
            let _ = writeln!(
                out,
                "{:<8} {:>8} {:>7.1} %   {:>11} {:>11}   {:>11} {:>11}   {:>11} {:>11}",
                name,
                thousands(g.filings),
                g.complete_at_filing * 100.0,
                days_or_dash(g.median_days_to_decision),
                days_or_dash(b.median_days_to_decision),
                thousands(g.gap_days),
                thousands(b.gap_days),
                thousands(g.people_with_gaps),
                thousands(b.people_with_gaps),
            );
        };
        for channel in Channel::ALL {
            row(
                channel.as_str(),
                self.guichet.channels.get(channel),
                self.baseline.channels.get(channel),
            );
        }
        row("total", &self.guichet.total, &self.baseline.total);
        let _ = writeln!(out);
        self.delivered_table(&mut out);
        let g = &self.guichet;
        let b = &self.baseline;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "gap days: person-days on which someone who filed a complete renewal before their title\n\
             \x20 expired held no proof of stay while it was pending, counted from the day the file was\n\
             \x20 complete ({} such people).",
            thousands(g.total.renewals_in_time_complete),
        );
        let d = &p.delivery;
        let _ = writeln!(
            out,
            "delivered: the same days, counting an attestation only from the day it reached the person\n\
             \x20 on one of their channels; paper follows when every electronic channel has failed.\n\
             \x20 e-mail: {}. SMS: {}.\n\
             \x20 post: {}.",
            route(d.email_delay_days, "day", d.email_failure_rate),
            route(d.sms_delay_days, "day", d.sms_failure_rate),
            route(d.post_delay_days, "working day", d.post_failure_rate),
        );
        let _ = writeln!(
            out,
            "attestations de prolongation: {} issued and renewed automatically (guichet), {} fetched\n\
             \x20 by hand (baseline).",
            thousands(g.attestations_issued.prolongation),
            thousands(b.attestations_issued.prolongation),
        );
        let _ = writeln!(
            out,
            "attestations of every kind that reached the person: {} of {} (guichet), {} of {} (baseline).",
            thousands(g.attestations_delivered.all()),
            thousands(g.attestations_issued.all()),
            thousands(b.attestations_delivered.all()),
            thousands(b.attestations_issued.all()),
        );
        let _ = writeln!(
            out,
            "decided {} of {}; closed for missing documents {}; pending at the end: {} (guichet), {} (baseline).",
            thousands(g.total.decided),
            thousands(g.total.filings),
            thousands(g.total.closed_incomplete),
            thousands(g.total.undecided),
            thousands(b.total.undecided),
        );
        let _ = writeln!(
            out,
            "postal transit: {} person-days without proof between the postmark and the file reaching\n\
             \x20 the system, before any rule can act (the same under both).",
            thousands(self.postal_transit_uncovered_days),
        );
        // Centred headings leave spaces at line ends; the caller ends the
        // last line.
        out.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Gap days and people with gaps per channel, counted against what was
    /// issued and against what had reached the person, both rule sets.
    fn delivered_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{:<8} {:^39}   {:^39}",
            "", "gap days", "people with gaps"
        );
        let _ = writeln!(
            out,
            "{:<8} {:^19} {:^19}   {:^19} {:^19}",
            "", "guichet", "baseline", "guichet", "baseline"
        );
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9} {:>9}",
            "channel",
            "issued",
            "delivered",
            "issued",
            "delivered",
            "issued",
            "delivered",
            "issued",
            "delivered"
        );
        let mut row = |name: &str, g: &Figures, b: &Figures| {
            let _ = writeln!(
                out,
                "{:<8} {:>9} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9} {:>9}",
                name,
                thousands(g.gap_days),
                thousands(g.gap_days_delivered),
                thousands(b.gap_days),
                thousands(b.gap_days_delivered),
                thousands(g.people_with_gaps),
                thousands(g.people_with_gaps_delivered),
                thousands(b.people_with_gaps),
                thousands(b.people_with_gaps_delivered),
            );
        };
        for channel in Channel::ALL {
            row(
                channel.as_str(),
                self.guichet.channels.get(channel),
                self.baseline.channels.get(channel),
            );
        }
        row("total", &self.guichet.total, &self.baseline.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        let table = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (40_000, "40,000"),
            (1_234_567, "1,234,567"),
        ];
        for (n, text) in table {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn routes_read_as_words() {
        let table = [
            (0, "day", 0.03, "the same day, 3 % never"),
            (3, "working day", 0.02, "after 3 working days, 2 % never"),
            (1, "day", 0.025, "after 1 day, 2.5 % never"),
            (0, "day", 0.0, "the same day, 0 % never"),
        ];
        for (delay, unit, rate, text) in table {
            assert_eq!(route(delay, unit, rate), text);
        }
    }

    #[test]
    fn shares_round_to_four_decimals() {
        assert_eq!(share(1, 3), 0.3333);
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(5, 5), 1.0);
    }
}
