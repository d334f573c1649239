//! Equity between channels: the same measures for every channel, and a flag
//! wherever a channel does worse than the best one by more than a margin.
//! DOMAIN.md asks for this evaluation because a channel that is slower, or
//! leaves more people without proof of stay, breaks the promise of equal rights.

use chrono::NaiveDate;

use crate::Channel;

/// What the comparison needs to know of one dossier.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFacts {
    pub channel: Channel,
    pub legal_filing_date: NaiveDate,
    /// The day the receipt was issued (Europe/Paris).
    pub receipt_date: NaiveDate,
    /// The day of the decision, if there was one.
    pub decided_on: Option<NaiveDate>,
    /// Whether the file was complete when it arrived.
    pub complete_at_filing: bool,
    /// Open, and the person's title no longer covers them: they depend on an
    /// extension or an attestation.
    pub needs_cover: bool,
    /// Their legal stay is proven today.
    pub covered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Median days from the legal filing date to the decision.
    DaysToDecision,
    /// Share of dossiers complete when they arrived.
    CompleteAtFiling,
    /// Share of those who depend on it whose stay is proven today.
    Covered,
    /// Median days from the legal filing date to the receipt.
    DaysToReceipt,
}

impl Measure {
    pub const ALL: [Measure; 4] = [
        Measure::DaysToDecision,
        Measure::CompleteAtFiling,
        Measure::Covered,
        Measure::DaysToReceipt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Measure::DaysToDecision => "median_days_to_decision",
            Measure::CompleteAtFiling => "share_complete_at_filing",
            Measure::Covered => "share_covered",
            Measure::DaysToReceipt => "median_days_to_receipt",
        }
    }

    /// Days: less is better. Shares: more is better.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Measure::DaysToDecision | Measure::DaysToReceipt)
    }
}

/// One figure and how many dossiers it stands on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub sample: usize,
}

/// One channel's measures; `None` where no dossier is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelFigures {
    pub channel: Channel,
    pub dossiers: usize,
    pub days_to_decision: Option<Figure>,
    pub complete_at_filing: Option<Figure>,
    pub covered: Option<Figure>,
    pub days_to_receipt: Option<Figure>,
}

impl ChannelFigures {
    pub fn get(&self, measure: Measure) -> Option<Figure> {
        match measure {
            Measure::DaysToDecision => self.days_to_decision,
            Measure::CompleteAtFiling => self.complete_at_filing,
            Measure::Covered => self.covered,
            Measure::DaysToReceipt => self.days_to_receipt,
        }
    }
}

/// A channel worse than the best by more than the margin.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub channel: Channel,
    pub measure: Measure,
    pub value: f64,
    pub best_channel: Channel,
    pub best: f64,
}

/// The measures of every channel, in `Channel::ALL` order.
pub fn figures(cases: &[CaseFacts]) -> Vec<ChannelFigures> {
    Channel::ALL
        .iter()
        .map(|&channel| {
            let mine: Vec<&CaseFacts> = cases.iter().filter(|c| c.channel == channel).collect();
            let decision_days: Vec<f64> = mine
                .iter()
                .filter_map(|c| c.decided_on.map(|d| days(c.legal_filing_date, d)))
                .collect();
            let receipt_days: Vec<f64> = mine
                .iter()
                .map(|c| days(c.legal_filing_date, c.receipt_date))
                .collect();
            let dependent: Vec<bool> = mine
                .iter()
                .filter(|c| c.needs_cover)
                .map(|c| c.covered)
                .collect();
            let complete: Vec<bool> = mine.iter().map(|c| c.complete_at_filing).collect();
            ChannelFigures {
                channel,
                dossiers: mine.len(),
                days_to_decision: median(&decision_days),
                complete_at_filing: share(&complete),
                covered: share(&dependent),
                days_to_receipt: median(&receipt_days),
            }
        })
        .collect()
}

/// The flags: for each measure, the channels worse than the best by more than
/// `margin` (0.2 = 20 %). Days are compared to at least one day, so that a
/// best of 0 days does not flag a channel for a few hours. Figures resting
/// on fewer than `min_sample` dossiers are neither flagged nor taken as best.
pub fn flags(figures: &[ChannelFigures], margin: f64, min_sample: usize) -> Vec<Flag> {
    let mut out = Vec::new();
    for measure in Measure::ALL {
        let usable: Vec<(Channel, f64)> = figures
            .iter()
            .filter_map(|f| {
                f.get(measure)
                    .filter(|x| x.sample >= min_sample.max(1))
                    .map(|x| (f.channel, x.value))
            })
            .collect();
        let best = usable.iter().copied().reduce(|a, b| {
            let b_better = if measure.lower_is_better() {
                b.1 < a.1
            } else {
                b.1 > a.1
            };
            if b_better { b } else { a }
        });
        let Some((best_channel, best)) = best else {
            continue;
        };
        for (channel, value) in usable {
            let worse = if measure.lower_is_better() {
                value - best > margin * best.max(1.0)
            } else {
                best - value > margin * best
            };
            if worse {
                out.push(Flag {
                    channel,
                    measure,
                    value,
                    best_channel,
                    best,
                });
            }
        }
    }
    out
}

fn days(from: NaiveDate, to: NaiveDate) -> f64 {
    (to - from).num_days().max(0) as f64
}

/// The median (the mean of the two middle values for an even count).
fn median(values: &[f64]) -> Option<Figure> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let value = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Figure { value, sample: n })
}

fn share(values: &[bool]) -> Option<Figure> {
    if values.is_empty() {
        return None;
    }
    let yes = values.iter().filter(|&&b| b).count();
    Some(Figure {
        value: yes as f64 / values.len() as f64,
        sample: values.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn case(channel: Channel, filed: &str, receipt: &str, decided: Option<&str>) -> CaseFacts {
        CaseFacts {
            channel,
            legal_filing_date: d(filed),
            receipt_date: d(receipt),
            decided_on: decided.map(d),
            complete_at_filing: true,
            needs_cover: false,
            covered: false,
        }
    }

    #[test]
    fn medians_and_shares_per_channel() {
        let mut cases = vec![
            case(Channel::Web, "2026-01-01", "2026-01-01", Some("2026-03-02")),
            case(Channel::Web, "2026-01-01", "2026-01-01", Some("2026-02-10")),
            case(Channel::Web, "2026-01-01", "2026-01-01", None),
            case(
                Channel::Postal,
                "2026-01-01",
                "2026-01-05",
                Some("2026-04-11"),
            ),
        ];
        cases[2].complete_at_filing = false;
        cases[2].needs_cover = true;
        cases[2].covered = true;
        let f = figures(&cases);
        let web = &f[0];
        assert_eq!(web.channel, Channel::Web);
        assert_eq!(web.dossiers, 3);
        // 40 and 60 days: the median of an even count is their mean.
        assert_eq!(
            web.days_to_decision,
            Some(Figure {
                value: 50.0,
                sample: 2
            })
        );
        assert_eq!(web.complete_at_filing.map(|x| x.sample), Some(3));
        assert!((web.complete_at_filing.map_or(0.0, |x| x.value) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            web.covered,
            Some(Figure {
                value: 1.0,
                sample: 1
            })
        );
        let postal = &f[3];
        assert_eq!(postal.days_to_receipt.map(|x| x.value), Some(4.0));
        assert_eq!(postal.days_to_decision.map(|x| x.value), Some(100.0));
        // No dossier on the call-centre channel: no figure, not a zero.
        assert_eq!(f[1].dossiers, 0);
        assert_eq!(f[1].days_to_decision, None);
    }

    fn fig(channel: Channel, decision: f64, complete: f64, sample: usize) -> ChannelFigures {
        ChannelFigures {
            channel,
            dossiers: sample,
            days_to_decision: Some(Figure {
                value: decision,
                sample,
            }),
            complete_at_filing: Some(Figure {
                value: complete,
                sample,
            }),
            covered: None,
            days_to_receipt: Some(Figure { value: 0.0, sample }),
        }
    }

    #[test]
    fn flags_name_the_channels_worse_than_the_best_by_more_than_the_margin() {
        // Every case is judged with the same margin and sample floor: a row
        // says only its figures and what is flagged.
        const MARGIN: f64 = 0.2;
        const MIN_SAMPLE: usize = 5;
        struct Case {
            what: &'static str,
            figures: Vec<ChannelFigures>,
            expected: Vec<(Channel, Measure)>,
        }
        let cases = [
            Case {
                what: "all equal: nothing flagged",
                figures: vec![
                    fig(Channel::Web, 60.0, 0.8, 10),
                    fig(Channel::Postal, 60.0, 0.8, 10),
                ],
                expected: vec![],
            },
            Case {
                what: "post 30 % slower, margin 20 %: flagged",
                figures: vec![
                    fig(Channel::Web, 60.0, 0.8, 10),
                    fig(Channel::Postal, 78.0, 0.8, 10),
                ],
                expected: vec![(Channel::Postal, Measure::DaysToDecision)],
            },
            Case {
                what: "exactly at the margin: not flagged",
                figures: vec![
                    fig(Channel::Web, 60.0, 0.8, 10),
                    fig(Channel::Postal, 72.0, 0.8, 10),
                ],
                expected: vec![],
            },
            Case {
                what: "a share lower by more than the margin is flagged",
                figures: vec![
                    fig(Channel::Web, 60.0, 0.5, 10),
                    fig(Channel::Pan, 60.0, 0.9, 10),
                ],
                expected: vec![(Channel::Web, Measure::CompleteAtFiling)],
            },
            Case {
                what: "too few dossiers: neither flagged nor taken as best",
                figures: vec![
                    fig(Channel::Web, 60.0, 0.8, 10),
                    fig(Channel::Ccc, 10.0, 0.8, 2),
                    fig(Channel::Postal, 90.0, 0.8, 3),
                ],
                expected: vec![],
            },
            Case {
                what: "a best of 0 days counts as one day",
                figures: vec![
                    ChannelFigures {
                        days_to_receipt: Some(Figure {
                            value: 1.0,
                            sample: 10,
                        }),
                        ..fig(Channel::Postal, 60.0, 0.8, 10)
                    },
                    fig(Channel::Web, 60.0, 0.8, 10),
                ],
                expected: vec![(Channel::Postal, Measure::DaysToReceipt)],
            },
        ];
        for c in cases {
            let got: Vec<(Channel, Measure)> = flags(&c.figures, MARGIN, MIN_SAMPLE)
                .into_iter()
                .map(|f| (f.channel, f.measure))
                .collect();
            assert_eq!(got, c.expected, "{}", c.what);
        }
    }
}
