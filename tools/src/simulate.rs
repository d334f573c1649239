//! `guichet simulate`: a synthetic period of filings on the four channels,
//! run day by day through the real domain rules (`guichet-dossier`), once
//! with Guichet's automatic attestations and once with today's manual
//! practice, and the figures per channel side by side: days to decision,
//! share complete at filing, and gap days (people who filed a complete
//! renewal in time yet held no proof of legal stay while it was pending),
//! counted against the attestations issued and against those that had
//! reached the person. No database, no I/O but the printed result. See
//! docs/simulation.md.
//!
//! - `mixes`: every assumed number, as tables;
//! - `population`: the filings, drawn once from the seed;
//! - `engine`: the day-by-day run of one rule set;
//! - `delivery`: how an attestation reaches the person, or not;
//! - `report`: the figures, as a table or JSON.

mod chart;
mod delivery;
mod engine;
mod mixes;
mod population;
mod report;

use chrono::{Datelike, NaiveDate};

use crate::progress::Progress;
use guichet_dossier::calendar::parse_iso_date;
use guichet_dossier::lifecycle::ImpossibleStep;
use guichet_dossier::rights::{CaseFacts, DEFAULT_HORIZON_DAYS, cover};
use guichet_dossier::{CaseState, Channel};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use delivery::{AnswerChannels, Delivery};
pub use engine::Rules;
pub use report::{Channels, Figures, Issued, Report, RunParams, Scenario};

use engine::Engine;
use mixes::{AGENT_MONTH_FACTOR, CAPACITY_PER_FILING, is_working_day};
use population::{Population, generate, plus};

/// `guichet simulate [--filings N] [--start DATE] [--days N] [--seed N] [--capacity N]
/// [--email-delay-days N] [--sms-delay-days N] [--post-delay-days N]
/// [--email-failure-rate R] [--sms-failure-rate R] [--post-failure-rate R] [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub params: Params,
    /// Print the figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the per-channel figures as a chart (SVG) in this file.
    #[arg(long, default_value = "guichet-simulation.svg")]
    pub chart: std::path::PathBuf,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Params {
    /// Filings in the period (one large prefecture: ~40,000 a year).
    #[arg(long, default_value_t = 40_000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    pub filings: u32,
    /// First day of the period (YYYY-MM-DD).
    #[arg(long, default_value = "2026-01-01", value_parser = parse_start)]
    pub start: NaiveDate,
    /// Length of the period, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub days: u32,
    /// The same seed gives the same filings and the same figures.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Decisions per working day at full strength [default: just under the
    /// average inflow, see docs/simulation.md].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub capacity: Option<u32>,
    /// How attestations reach people.
    #[command(flatten)]
    pub delivery: Delivery,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            filings: 40_000,
            start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            days: 365,
            seed: 7,
            capacity: None,
            delivery: Delivery::default(),
        }
    }
}

/// Years the calendar arithmetic is known to be safe for.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

fn parse_start(s: &str) -> Result<NaiveDate, String> {
    match parse_iso_date(s) {
        Some(d) if YEARS.contains(&d.year()) => Ok(d),
        Some(_) => Err(format!(
            "the start must be between {} and {}",
            YEARS.start(),
            YEARS.end()
        )),
        None => Err("expected a date as YYYY-MM-DD".to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid parameter {field}: {problem}")]
    Params {
        field: &'static str,
        problem: String,
    },
    /// A bug in the simulation: it asked the lifecycle for a step it refuses.
    #[error("the simulation took a step the lifecycle refuses")]
    Lifecycle(#[from] ImpossibleStep),
    #[error("encoding the figures as JSON")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the chart to {0}")]
    Chart(std::path::PathBuf, #[source] std::io::Error),
}

/// Runs the simulation and renders it: the table, or JSON with `json`.
pub fn run(args: &SimulateArgs) -> Result<String, SimulateError> {
    let report = simulate(&args.params)?;
    std::fs::write(&args.chart, chart::svg(&report))
        .map_err(|e| SimulateError::Chart(args.chart.clone(), e))?;
    if args.json {
        Ok(serde_json::to_string_pretty(&report)?)
    } else {
        Ok(report.table())
    }
}

/// The same filings under both rule sets, and their figures.
pub fn simulate(params: &Params) -> Result<Report, SimulateError> {
    check(params)?;
    let days = i64::from(params.days);
    let mut rng = StdRng::seed_from_u64(params.seed);
    // Answer channels from a stream of their own: the filings are the ones
    // drawn before people had answer channels.
    let mut answers = StdRng::seed_from_u64(params.seed ^ 0x0061_6e73_7765_7273);
    let population = generate(
        &mut rng,
        &mut answers,
        params.filings as usize,
        params.start,
        days,
    );
    let capacity = params
        .capacity
        .map_or_else(|| default_capacity(&population, params), f64::from);

    // The people's own draws (when they fetch an attestation by hand) come
    // from a stream of their own, so the filings stay the same whatever the
    // rules. Only the baseline draws from it.
    let fetch_rng = || StdRng::seed_from_u64(params.seed ^ 0x6261_7365_6c69_6e65);
    // Whether and when each attestation reaches the person: a stream of its
    // own too, so the delivery parameters change nothing that is issued.
    let delivery_rng = || StdRng::seed_from_u64(params.seed ^ 0x6465_6c69_7665_7279);
    let span = (population.last_day - population.first_day)
        .num_days()
        .max(0) as u64
        + 1;
    let engine = |rules| {
        Engine::new(
            &population,
            rules,
            capacity,
            fetch_rng(),
            params.delivery,
            delivery_rng(),
        )
    };
    let guichet =
        engine(Rules::Guichet).run(&mut Progress::new("simulating Guichet, days", Some(span)))?;
    let baseline = engine(Rules::Baseline).run(&mut Progress::new(
        "simulating the baseline, days",
        Some(span),
    ))?;
    let followed_until = [&guichet, &baseline]
        .iter()
        .flat_map(|outcomes| outcomes.iter().filter_map(|o| o.decided_on))
        .max()
        .unwrap_or(population.period_end)
        .max(plus(population.period_end, -1));

    Ok(Report {
        params: RunParams {
            filings: params.filings as usize,
            start: params.start,
            days,
            seed: params.seed,
            capacity_per_working_day: (capacity * 10.0).round() / 10.0,
            carry_over_filings: population.carry_over_filings,
            follow_on_filings: population.follow_on_filings,
            followed_until,
            horizon_days: DEFAULT_HORIZON_DAYS,
            delivery: params.delivery,
        },
        guichet: report::scenario(&population, &guichet),
        baseline: report::scenario(&population, &baseline),
        postal_transit_uncovered_days: postal_transit_uncovered_days(&population),
    })
}

fn check(params: &Params) -> Result<(), SimulateError> {
    if params.filings == 0 {
        return Err(SimulateError::Params {
            field: "filings",
            problem: "must be at least 1".to_string(),
        });
    }
    if params.days == 0 || params.days > 3_650 {
        return Err(SimulateError::Params {
            field: "days",
            problem: "must be between 1 and 3650".to_string(),
        });
    }
    if !YEARS.contains(&params.start.year()) {
        return Err(SimulateError::Params {
            field: "start",
            problem: format!("must be between {} and {}", YEARS.start(), YEARS.end()),
        });
    }
    if let Some((field, problem)) = params.delivery.problem() {
        return Err(SimulateError::Params { field, problem });
    }
    Ok(())
}

/// Just under the period's average inflow, spread over its working days
/// weighted by the agents' presence (`mixes::CAPACITY_PER_FILING`).
fn default_capacity(population: &Population, params: &Params) -> f64 {
    let mut staffed_days = 0.0;
    let mut day = population.period_start;
    while day < population.period_end {
        if is_working_day(day) {
            staffed_days += AGENT_MONTH_FACTOR[day.month0() as usize];
        }
        day = plus(day, 1);
    }
    f64::from(params.filings) * CAPACITY_PER_FILING / staffed_days.max(1.0)
}

/// Renewals posted in time and complete: days between the postmark and the
/// file reaching the system on which nothing proved the person's stay.
fn postal_transit_uncovered_days(population: &Population) -> u64 {
    let mut total = 0;
    for f in &population.filings {
        if !(f.reported()
            && f.channel == Channel::Postal
            && f.renewal_in_time()
            && f.complete_at_filing)
        {
            continue;
        }
        let facts = CaseFacts {
            procedure: f.procedure,
            state: CaseState::Filed,
            title: f.title,
            filed_on: f.legal_filing_date,
            // The simulation ends at the decision: no card yet.
            card_until: None,
        };
        let mut day = f.legal_filing_date;
        while day < f.arrives_on {
            total += u64::from(!cover(&facts, &[], day).covers(day));
            day = plus(day, 1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn small(seed: u64) -> Params {
        Params {
            filings: 3_000,
            seed,
            ..Params::default()
        }
    }

    /// The small run, once for all tests that only read it.
    fn small_report() -> &'static Report {
        static REPORT: OnceLock<Report> = OnceLock::new();
        REPORT.get_or_init(|| simulate(&small(7)).unwrap())
    }

    #[test]
    fn guichet_leaves_no_gap_day_and_the_baseline_does() {
        let r = small_report();
        assert_eq!(r.guichet.gap_days, 0);
        assert_eq!(r.guichet.people_with_gaps, 0);
        for channel in Channel::ALL {
            assert_eq!(r.guichet.channels.get(channel).gap_days, 0, "{channel}");
        }
        assert!(r.baseline.gap_days > 0);
        assert!(r.baseline.people_with_gaps > 0);
        assert!(r.baseline.gap_days >= r.baseline.people_with_gaps);
        // There were people to protect, and Guichet issued for them.
        assert!(r.guichet.total.renewals_in_time_complete > 0);
        assert!(r.guichet.attestations_issued.prolongation > 0);
        // Once delivery counts, Guichet is not at 0 (13 days over 3 people
        // in this run): an API issued the day a file became complete after
        // the title ran out reaches a person who gets only paper 3 working
        // days later, and a lost letter leaves its person without proof
        // until the next API. It stays a small part of the baseline's.
        assert!(r.guichet.gap_days_delivered * 10 < r.baseline.gap_days_delivered);
        assert!(r.guichet.people_with_gaps_delivered * 5 < r.baseline.people_with_gaps_delivered);
        assert!(r.baseline.gap_days_delivered >= r.baseline.gap_days);
    }

    /// Delivery can only take cover away: issued is what the office holds,
    /// delivered what had reached the person by each day.
    #[test]
    fn delivered_gap_days_against_issued() {
        enum Expect {
            /// Nothing late, nothing lost: the same figures.
            Equal,
            /// Later or lost: at least as many gap days.
            AtLeast,
            /// Nothing reaches anyone: no attestation covers, under either rule set.
            NothingDelivered,
        }
        let slow = Delivery {
            email_delay_days: 2,
            sms_delay_days: 1,
            post_delay_days: 8,
            email_failure_rate: 0.2,
            sms_failure_rate: 0.2,
            post_failure_rate: 0.1,
        };
        let never = Delivery {
            email_failure_rate: 1.0,
            sms_failure_rate: 1.0,
            post_failure_rate: 1.0,
            ..Delivery::INSTANT
        };
        let table = [
            ("instant", Delivery::INSTANT, Expect::Equal),
            ("defaults", Delivery::default(), Expect::AtLeast),
            ("slow and lossy", slow, Expect::AtLeast),
            ("every channel fails", never, Expect::NothingDelivered),
        ];
        let run = |delivery| {
            simulate(&Params {
                filings: 1_500,
                delivery,
                ..Params::default()
            })
            .unwrap()
        };
        let reference = run(Delivery::INSTANT);
        for (name, delivery, expect) in table {
            let r = run(delivery);
            for (rules, s, before) in [
                ("guichet", &r.guichet, &reference.guichet),
                ("baseline", &r.baseline, &reference.baseline),
            ] {
                let what = format!("{name}, {rules}");
                // How attestations travel changes nothing that is issued.
                assert_eq!(s.attestations_issued, before.attestations_issued, "{what}");
                assert_eq!(s.gap_days, before.gap_days, "{what}");
                let figures = Channel::ALL
                    .into_iter()
                    .map(|c| (c.as_str(), s.channels.get(c), before.channels.get(c)))
                    .chain([("total", &s.total, &before.total)]);
                for (channel, f, was) in figures {
                    let what = format!("{what}, {channel}");
                    assert_eq!(f.gap_days, was.gap_days, "{what}");
                    assert_eq!(f.people_with_gaps, was.people_with_gaps, "{what}");
                    match expect {
                        Expect::Equal => {
                            assert_eq!(f.gap_days_delivered, f.gap_days, "{what}");
                            assert_eq!(f.people_with_gaps_delivered, f.people_with_gaps, "{what}");
                        }
                        Expect::AtLeast | Expect::NothingDelivered => {
                            assert!(f.gap_days_delivered >= f.gap_days, "{what}");
                            assert!(f.people_with_gaps_delivered >= f.people_with_gaps, "{what}");
                        }
                    }
                }
                match expect {
                    Expect::Equal => {
                        assert_eq!(s.attestations_delivered, s.attestations_issued, "{what}")
                    }
                    Expect::AtLeast => {
                        assert!(s.attestations_delivered.all() <= s.attestations_issued.all())
                    }
                    Expect::NothingDelivered => {
                        assert_eq!(s.attestations_delivered, Issued::default(), "{what}");
                        assert!(s.attestations_issued.all() > 0, "{what}");
                    }
                }
            }
            if let Expect::AtLeast | Expect::NothingDelivered = expect {
                // Guichet's attestations stop protecting once they are late
                // or lost: the delivered figure is the one that moves.
                assert!(r.guichet.gap_days_delivered > r.guichet.gap_days, "{name}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_output() {
        let chart = std::env::temp_dir().join(format!("guichet-sim-{}.svg", std::process::id()));
        let a = SimulateArgs {
            params: small(11),
            json: true,
            chart: chart.clone(),
        };
        assert_eq!(run(&a).unwrap(), run(&a).unwrap());
        let table = SimulateArgs {
            json: false,
            ..a.clone()
        };
        assert_eq!(run(&table).unwrap(), run(&table).unwrap());
        let lossy = SimulateArgs {
            params: Params {
                delivery: Delivery {
                    post_delay_days: 5,
                    email_failure_rate: 0.3,
                    sms_failure_rate: 0.3,
                    post_failure_rate: 0.3,
                    ..Delivery::default()
                },
                ..small(11)
            },
            ..a.clone()
        };
        assert_eq!(run(&lossy).unwrap(), run(&lossy).unwrap());
        assert_ne!(run(&lossy).unwrap(), run(&a).unwrap());
        let other = SimulateArgs {
            params: small(12),
            json: true,
            chart: chart.clone(),
        };
        assert_ne!(run(&other).unwrap(), run(&table).unwrap());
        let drawn = std::fs::read_to_string(&chart).unwrap();
        assert!(
            drawn.starts_with("<svg"),
            "the chart is written beside the report"
        );
        std::fs::remove_file(&chart).unwrap();
    }

    #[test]
    fn json_has_the_documented_keys() {
        let json = serde_json::to_value(small_report()).unwrap();
        for key in [
            "params",
            "guichet",
            "baseline",
            "postal_transit_uncovered_days",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        for scenario in ["guichet", "baseline"] {
            let s = &json[scenario];
            for key in [
                "gap_days",
                "people_with_gaps",
                "gap_days_delivered",
                "people_with_gaps_delivered",
                "attestations_issued",
                "attestations_delivered",
                "channels",
                "total",
            ] {
                assert!(s.get(key).is_some(), "{scenario}.{key}");
            }
            for channel in ["web", "ccc", "pan", "postal"] {
                let figures = &s["channels"][channel];
                for key in [
                    "filings",
                    "complete_at_filing",
                    "median_days_to_decision",
                    "gap_days",
                    "people_with_gaps",
                    "gap_days_delivered",
                    "people_with_gaps_delivered",
                ] {
                    assert!(figures.get(key).is_some(), "{scenario}.{channel}.{key}");
                }
            }
        }
        assert_eq!(json["guichet"]["gap_days"], 0);
        assert_eq!(json["params"]["filings"], 3_000);
        assert_eq!(json["params"]["start"], "2026-01-01");
        for key in [
            "email_delay_days",
            "sms_delay_days",
            "post_delay_days",
            "email_failure_rate",
            "sms_failure_rate",
            "post_failure_rate",
        ] {
            assert!(json["params"]["delivery"].get(key).is_some(), "{key}");
        }
        assert_eq!(json["params"]["delivery"]["post_delay_days"], 3);
    }

    #[test]
    fn channel_shares_follow_the_mix() {
        let r = small_report();
        let total = r.guichet.total.filings as f64;
        assert_eq!(total, 3_000.0);
        for (channel, percent) in mixes::CHANNEL_MIX {
            let share = r.guichet.channels.get(*channel).filings as f64 / total * 100.0;
            assert!(
                (share - f64::from(*percent)).abs() < 3.0,
                "{channel}: {share:.1} % for {percent} %"
            );
        }
        // Assisted channels arrive more complete than the web.
        let complete = |c| r.guichet.channels.get(c).complete_at_filing;
        assert!(complete(Channel::Pan) > complete(Channel::Web));
    }

    #[test]
    fn decisions_take_weeks_to_months() {
        let r = small_report();
        for s in [&r.guichet, &r.baseline] {
            let median = s.total.median_days_to_decision.unwrap();
            assert!((14..=200).contains(&median), "median {median} days");
            assert_eq!(s.total.undecided, 0);
            assert_eq!(s.total.decided + s.total.closed_incomplete, s.total.filings);
        }
    }

    #[test]
    fn parameters_are_checked() {
        assert!(parse_start("2026-01-01").is_ok());
        assert!(parse_start("1850-01-01").is_err());
        assert!(parse_start("01/01/2026").is_err());
        let zero = Params {
            filings: 0,
            ..Params::default()
        };
        assert!(matches!(
            simulate(&zero),
            Err(SimulateError::Params {
                field: "filings",
                ..
            })
        ));
        let lost_more_than_all = Params {
            delivery: Delivery {
                post_failure_rate: 1.5,
                ..Delivery::default()
            },
            ..Params::default()
        };
        assert!(matches!(
            simulate(&lost_more_than_all),
            Err(SimulateError::Params {
                field: "post_failure_rate",
                ..
            })
        ));
    }
}
