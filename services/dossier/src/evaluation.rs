//! The independent evaluation the law asks for: outcomes, delays and proof
//! of stay per channel, prefecture and month, as open data. No personal
//! data leaves: only counts and medians of cells, and a cell standing on
//! fewer dossiers than the minimum count is not published (statistical
//! secrecy), nor one that would let it be worked out by subtraction.
//!
//! A cell is a cohort: the dossiers filed in one month (by legal filing
//! date), in one prefecture, by one channel, and what became of them.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use crate::Channel;

/// What became of a dossier, as far as the evaluation tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Pending,
    Favourable,
    Unfavourable,
    Withdrawn,
    /// Closed because the documents asked for never came.
    ClosedMissingDocuments,
}

/// What the evaluation needs to know of one dossier.
#[derive(Debug, Clone, PartialEq)]
pub struct DossierFacts {
    pub channel: Channel,
    pub prefecture: String,
    pub legal_filing_date: NaiveDate,
    pub outcome: Outcome,
    /// The decision's day, for a decided dossier.
    pub decided_on: Option<NaiveDate>,
    /// The person's title ran out before the outcome (or is out, for a
    /// pending file): they depended on an attestation.
    pub needed_cover: bool,
    /// An attestation was issued for the file.
    pub attested: bool,
}

/// The counts a cell publishes, in the order of the export's columns.
pub const COUNTS: [&str; 8] = [
    "filed",
    "favourable",
    "unfavourable",
    "withdrawn",
    "closed_missing_documents",
    "pending",
    "needed_cover",
    "attested_when_needed",
];

/// One cell before secrecy: counts by name (`COUNTS`), and the median days
/// from the legal filing date to the decision.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    pub counts: BTreeMap<&'static str, u64>,
    pub median_days_to_decision: Option<f64>,
    days: Vec<i64>,
}

/// Where a cell stands: month (`YYYY-MM`), prefecture, channel.
pub type CellKey = (String, String, Channel);

/// The cells of every cohort present in `facts`.
pub fn cells(facts: &[DossierFacts]) -> BTreeMap<CellKey, Cell> {
    let mut out: BTreeMap<CellKey, Cell> = BTreeMap::new();
    for f in facts {
        let d = f.legal_filing_date;
        let key = (
            format!("{:04}-{:02}", d.year(), d.month()),
            f.prefecture.clone(),
            f.channel,
        );
        let cell = out.entry(key).or_default();
        let mut add = |name: &'static str| *cell.counts.entry(name).or_insert(0) += 1;
        add("filed");
        add(match f.outcome {
            Outcome::Pending => "pending",
            Outcome::Favourable => "favourable",
            Outcome::Unfavourable => "unfavourable",
            Outcome::Withdrawn => "withdrawn",
            Outcome::ClosedMissingDocuments => "closed_missing_documents",
        });
        if f.needed_cover {
            add("needed_cover");
            if f.attested {
                add("attested_when_needed");
            }
        }
        if let Some(on) = f.decided_on {
            cell.days.push((on - f.legal_filing_date).num_days());
        }
    }
    for cell in out.values_mut() {
        for name in COUNTS {
            cell.counts.entry(name).or_insert(0);
        }
        cell.days.sort_unstable();
        cell.median_days_to_decision = median(&cell.days);
    }
    out
}

fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

/// A cell as published: each count, or `None` where secrecy withholds it;
/// the median only when the decisions it stands on reach the minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedCell {
    pub month: String,
    pub prefecture: String,
    pub channel: Channel,
    pub counts: BTreeMap<&'static str, Option<u64>>,
    pub median_days_to_decision: Option<f64>,
}

/// The cells as published, and the national totals of each month: each
/// published unless it alone would give a withheld cell away.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub cells: Vec<PublishedCell>,
    pub month_totals: BTreeMap<String, BTreeMap<&'static str, Option<u64>>>,
}

/// Applies statistical secrecy with `min_count`:
/// - primary: a count from 1 to `min_count - 1` is withheld (0 is
///   published: that nobody is concerned reveals no one);
/// - secondary: where a sum is published, one withheld term could be
///   worked out from it and the others, so a second term is withheld, the
///   smallest published one above 0. The sums are a cell's outcomes (which
///   add up to `filed`) and a month's cells for each count (which add up
///   to the month's national total); when no other term can be withheld
///   (they are all 0), the month's total of that count is. Repeated until
///   nothing changes.
pub fn publish(cells: &BTreeMap<CellKey, Cell>, min_count: u64) -> Published {
    let keys: Vec<&CellKey> = cells.keys().collect();
    let mut shown: Vec<BTreeMap<&'static str, Option<u64>>> = cells
        .values()
        .map(|c| {
            c.counts
                .iter()
                .map(|(k, v)| (*k, (*v == 0 || *v >= min_count).then_some(*v)))
                .collect()
        })
        .collect();
    let outcomes: [&str; 6] = [
        "filed",
        "favourable",
        "unfavourable",
        "withdrawn",
        "closed_missing_documents",
        "pending",
    ];
    let mut totals_withheld: Vec<(String, &'static str)> = Vec::new();
    loop {
        let mut changed = false;
        // Within a cell: the outcomes and `filed`.
        for s in shown.iter_mut() {
            changed |= withhold_second(s, &outcomes);
        }
        // Within a month: each count across its cells.
        let mut months: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            months.entry(k.0.as_str()).or_default().push(i);
        }
        for members in months.values() {
            for name in COUNTS {
                let withheld = members
                    .iter()
                    .filter(|&&i| shown[i][name].is_none())
                    .count();
                if withheld == 1 {
                    let smallest = members
                        .iter()
                        .filter_map(|&i| shown[i][name].filter(|v| *v > 0).map(|v| (v, i)))
                        .min();
                    match smallest {
                        Some((_, i)) => {
                            shown[i].insert(name, None);
                            changed = true;
                        }
                        None => {
                            let month = keys[members[0]].0.clone();
                            if !totals_withheld.contains(&(month.clone(), name)) {
                                totals_withheld.push((month, name));
                            }
                        }
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut sums: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for (k, c) in cells {
        let totals = sums.entry(k.0.clone()).or_default();
        for (name, v) in &c.counts {
            *totals.entry(name).or_insert(0) += v;
        }
    }
    let month_totals = sums
        .into_iter()
        .map(|(month, totals)| {
            let shown = totals
                .into_iter()
                .map(|(name, v)| {
                    let withheld = totals_withheld.contains(&(month.clone(), name));
                    (name, (!withheld).then_some(v))
                })
                .collect();
            (month, shown)
        })
        .collect();
    let published = keys
        .iter()
        .zip(shown)
        .map(|(k, counts)| {
            let cell = &cells[*k];
            let decided = cell.days.len() as u64;
            PublishedCell {
                month: k.0.clone(),
                prefecture: k.1.clone(),
                channel: k.2,
                counts,
                median_days_to_decision: cell
                    .median_days_to_decision
                    .filter(|_| decided >= min_count),
            }
        })
        .collect();
    Published {
        cells: published,
        month_totals,
    }
}

/// In one sum (`terms`, whose first is the total of the others): when
/// exactly one term is withheld, withholds the smallest other published
/// term above 0. Whether anything changed.
fn withhold_second(s: &mut BTreeMap<&'static str, Option<u64>>, terms: &[&str]) -> bool {
    let withheld = terms.iter().filter(|t| s[**t].is_none()).count();
    if withheld != 1 {
        return false;
    }
    let smallest = terms
        .iter()
        .filter_map(|t| s[*t].filter(|v| *v > 0).map(|v| (v, *t)))
        .min();
    match smallest.and_then(|(_, t)| COUNTS.iter().find(|c| **c == t)) {
        Some(name) => {
            s.insert(name, None);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn dossier(
        channel: Channel,
        prefecture: &str,
        filed: NaiveDate,
        outcome: Outcome,
    ) -> DossierFacts {
        DossierFacts {
            channel,
            prefecture: prefecture.into(),
            legal_filing_date: filed,
            outcome,
            decided_on: matches!(outcome, Outcome::Favourable | Outcome::Unfavourable)
                .then(|| filed + chrono::Days::new(30)),
            needed_cover: false,
            attested: false,
        }
    }

    fn many(n: usize, channel: Channel, prefecture: &str, outcome: Outcome) -> Vec<DossierFacts> {
        (0..n)
            .map(|_| dossier(channel, prefecture, d(2026, 3, 10), outcome))
            .collect()
    }

    #[test]
    fn cohorts_count_outcomes_cover_and_delays() {
        let mut facts = vec![
            dossier(Channel::Web, "59", d(2026, 3, 1), Outcome::Favourable),
            dossier(Channel::Web, "59", d(2026, 3, 31), Outcome::Unfavourable),
            dossier(Channel::Web, "59", d(2026, 4, 1), Outcome::Pending),
            dossier(Channel::Postal, "59", d(2026, 3, 2), Outcome::Withdrawn),
        ];
        facts[0].decided_on = Some(d(2026, 3, 11));
        facts[1].decided_on = Some(d(2026, 5, 30));
        facts[2].needed_cover = true;
        facts[2].attested = true;
        let cells = cells(&facts);
        let march_web = &cells[&("2026-03".into(), "59".into(), Channel::Web)];
        assert_eq!(march_web.counts["filed"], 2);
        assert_eq!(march_web.counts["favourable"], 1);
        assert_eq!(march_web.counts["unfavourable"], 1);
        assert_eq!(march_web.counts["pending"], 0);
        // 10 and 60 days.
        assert_eq!(march_web.median_days_to_decision, Some(35.0));
        let april = &cells[&("2026-04".into(), "59".into(), Channel::Web)];
        assert_eq!(
            (
                april.counts["needed_cover"],
                april.counts["attested_when_needed"]
            ),
            (1, 1)
        );
        assert_eq!(april.median_days_to_decision, None);
        let post = &cells[&("2026-03".into(), "59".into(), Channel::Postal)];
        assert_eq!(post.counts["withdrawn"], 1);
    }

    #[test]
    fn small_cells_are_withheld_and_cannot_be_worked_out() {
        // 59 web: 20 favourable, 3 unfavourable (withheld), 12 pending.
        // 75 web: 15 favourable. 59 post: 30 favourable.
        let facts = [
            many(20, Channel::Web, "59", Outcome::Favourable),
            many(3, Channel::Web, "59", Outcome::Unfavourable),
            many(12, Channel::Web, "59", Outcome::Pending),
            many(15, Channel::Web, "75", Outcome::Favourable),
            many(30, Channel::Postal, "59", Outcome::Favourable),
        ]
        .concat();
        let published = publish(&cells(&facts), 11);
        let cell = |p: &str, c: Channel| {
            published
                .cells
                .iter()
                .find(|x| x.prefecture == p && x.channel == c)
                .unwrap()
        };
        let web59 = cell("59", Channel::Web);
        assert_eq!(web59.counts["filed"], Some(35));
        assert_eq!(web59.counts["unfavourable"], None, "3 < 11");
        // filed - favourable - pending would give it away: one more goes.
        assert_eq!(web59.counts["pending"], None, "the smallest other term");
        assert_eq!(web59.counts["favourable"], Some(20));
        assert_eq!(web59.counts["withdrawn"], Some(0), "0 is published");
        // Across the month: `unfavourable` and `pending` are withheld in 59
        // web only, and the other cells have 0 of them: the month's totals
        // of those two would give them away, and are withheld.
        assert_eq!(cell("75", Channel::Web).counts["favourable"], Some(15));
        let totals = &published.month_totals["2026-03"];
        assert_eq!(totals["filed"], Some(80));
        assert_eq!(totals["favourable"], Some(65));
        assert_eq!(totals["unfavourable"], None);
        assert_eq!(totals["pending"], None);
        // The median needs as many decisions as the minimum count.
        assert_eq!(web59.median_days_to_decision, Some(30.0));
        for c in &published.cells {
            for (name, v) in &c.counts {
                assert!(
                    v.is_none_or(|v| v == 0 || v >= 11),
                    "{name} = {v:?} published in {c:?}"
                );
            }
        }
    }

    #[test]
    fn a_month_with_one_small_cell_withholds_a_second() {
        // 5 web is withheld; the month's total (57) and the other cells
        // would give it away, so the smallest other (12) is withheld too.
        let facts = [
            many(5, Channel::Web, "59", Outcome::Favourable),
            many(12, Channel::Ccc, "59", Outcome::Favourable),
            many(40, Channel::Postal, "59", Outcome::Favourable),
        ]
        .concat();
        let published = publish(&cells(&facts), 11);
        let fav = |c: Channel| {
            published
                .cells
                .iter()
                .find(|x| x.channel == c)
                .unwrap()
                .counts["favourable"]
        };
        assert_eq!(fav(Channel::Web), None);
        assert_eq!(fav(Channel::Ccc), None, "would give the web cell away");
        assert_eq!(fav(Channel::Postal), Some(40));
        assert_eq!(published.month_totals["2026-03"]["favourable"], Some(57));
    }
}
