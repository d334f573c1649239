//! The operators' page (`/ops`, `/en/ops`): the equity between channels
//! with the channels doing worse flagged, the delays per channel as a
//! chart, a prefecture's filings per channel month by month, and this
//! process's own figures. No personal data: anyone may read it.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use guichet_kit::metrics::{ChannelLabels, DeadLetterLabels, QueueLabels, ServiceLabels};
use guichet_proto::v1 as pb;
use serde::Deserialize;

use super::{AgentPage, Workspace};
use crate::ops::{EquityJson, EquityQuery, FigureJson};
use crate::state::AppState;
use crate::web::{Page, today};

pub fn routes() -> Router<AppState> {
    Router::new().route("/ops", get(page))
}

#[derive(Debug, Default, Deserialize)]
struct OpsQuery {
    prefecture: Option<String>,
}

/// A bar: its label, its text, where it stands and how high.
struct Bar {
    label: String,
    text: String,
    x: usize,
    height: usize,
    fill: &'static str,
}

/// The colours of the channels, the same on every chart (DSFR's
/// illustrative palette, each with a contrast of 3:1 or more on white).
fn colour(channel: &str) -> &'static str {
    match channel {
        "web" => "#000091",
        "ccc" => "#a94645",
        "pan" => "#18753c",
        _ => "#716043",
    }
}

/// A month's bars, one per channel.
type Month = (String, Vec<Bar>);

/// A chart of a bar per channel each month: its id, its title, its months.
type Chart = (&'static str, String, Vec<Month>);

#[derive(askama::Template)]
#[template(path = "agents/ops.html")]
struct OpsPage {
    a: AgentPage,
    p: Page,
    equity: Option<EquityJson>,
    delay_bars: Vec<Bar>,
    prefecture: String,
    prefectures: Vec<String>,
    charts: Vec<Chart>,
    /// Instruction did not answer for the month charts.
    months_unavailable: bool,
    process: Vec<(&'static str, u64, u64)>,
    backlog: (i64, i64, i64, u64),
}

impl OpsPage {
    /// Whether bars have anything to show (a figure above 0).
    fn drawn(&self, bars: &[Bar]) -> bool {
        bars.iter().any(|b| b.height > 0)
    }

    fn any_drawn(&self, months: &[Month]) -> bool {
        months.iter().any(|(_, bars)| self.drawn(bars))
    }

    fn flagged(&self, channel: &str, measure: &str) -> bool {
        self.equity.as_ref().is_some_and(|e| {
            e.flags
                .iter()
                .any(|f| f.channel == channel && f.measure == measure)
        })
    }

    fn days(&self, f: &Option<FigureJson>) -> String {
        f.as_ref()
            .map_or("–".into(), |f| format!("{:.1} ({})", f.value, f.sample))
    }

    fn share(&self, f: &Option<FigureJson>) -> String {
        f.as_ref().map_or("–".into(), |f| {
            format!("{:.0} % ({})", f.value * 100.0, f.sample)
        })
    }
}

/// `GET /ops`
async fn page(
    State(state): State<AppState>,
    w: Workspace,
    axum::extract::Query(q): Query<OpsQuery>,
) -> Response {
    let equity = crate::ops::equity_report(
        &state,
        EquityQuery {
            prefecture: None,
            margin: None,
        },
    )
    .await
    .ok();
    // Delays per channel: the median days to decision, as bars.
    let delay_bars = equity.as_ref().map_or_else(Vec::new, |e| {
        let max = e
            .channels
            .iter()
            .filter_map(|c| c.median_days_to_decision.as_ref().map(|f| f.value))
            .fold(1.0_f64, f64::max);
        e.channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = c.median_days_to_decision.as_ref().map_or(0.0, |f| f.value);
                Bar {
                    label: c.channel.to_string(),
                    text: c
                        .median_days_to_decision
                        .as_ref()
                        .map_or("–".into(), |f| format!("{:.0}", f.value)),
                    x: 40 + i * 70,
                    height: (v / max * 150.0) as usize,
                    fill: colour(c.channel),
                }
            })
            .collect()
    });
    // A prefecture's filings per channel, month by month (this year's
    // evaluation, before secrecy is of no use here: the counts published).
    let year = chrono::Datelike::year(&today(&state));
    // Instruction not answering is said on the page, not drawn as no data.
    let (cells, months_unavailable) = match state
        .instruction
        .clone()
        .evaluation(pb::EvaluationRequest { year })
        .await
    {
        Ok(r) => (r.into_inner().cells, false),
        Err(status) => {
            tracing::warn!(error = %status, "the evaluation's figures cannot be read");
            (Vec::new(), true)
        }
    };
    let mut prefectures: Vec<String> = cells.iter().map(|c| c.prefecture.clone()).collect();
    prefectures.sort();
    prefectures.dedup();
    let prefecture = q
        .prefecture
        .filter(|p| prefectures.contains(p))
        .or_else(|| prefectures.first().cloned())
        .unwrap_or_default();
    let mut month_names: Vec<String> = cells
        .iter()
        .filter(|c| c.prefecture == prefecture)
        .map(|c| c.month.clone())
        .collect();
    month_names.sort();
    month_names.dedup();
    let filed = |c: &pb::EvaluationCell| {
        c.counts
            .iter()
            .find(|n| n.name == "filed")
            .and_then(|n| n.value)
            .unwrap_or(0)
    };
    let max = cells
        .iter()
        .filter(|c| c.prefecture == prefecture)
        .map(filed)
        .max()
        .unwrap_or(0)
        .max(1);
    let cell_of = |m: &str, ch: &str| {
        cells.iter().find(|c| {
            c.prefecture == prefecture
                && c.month == m
                && crate::views::channel_text(c.channel) == ch
        })
    };
    // Per month, a bar per channel: its filings, and (a second chart) its
    // median days to decision, where enough decisions stand behind it.
    let per_channel = |value: &dyn Fn(&pb::EvaluationCell) -> Option<f64>, max: f64| {
        month_names
            .iter()
            .map(|m| {
                let bars = ["web", "ccc", "pan", "postal"]
                    .iter()
                    .enumerate()
                    .map(|(i, ch)| {
                        let v = cell_of(m, ch).and_then(value);
                        Bar {
                            label: (*ch).to_string(),
                            text: v.map_or("–".into(), |v| format!("{v:.0}")),
                            x: 10 + i * 22,
                            height: (v.unwrap_or(0.0) * 120.0 / max.max(1.0)) as usize,
                            fill: colour(ch),
                        }
                    })
                    .collect();
                (m.clone(), bars)
            })
            .collect::<Vec<_>>()
    };
    let months = per_channel(&|c| Some(filed(c) as f64), max as f64);
    let max_days = cells
        .iter()
        .filter(|c| c.prefecture == prefecture)
        .filter_map(|c| c.median_days_to_decision)
        .fold(1.0_f64, f64::max);
    let month_delays = per_channel(&|c| c.median_days_to_decision, max_days);
    let m = &state.metrics;
    let process = guichet_dossier::Channel::ALL
        .iter()
        .map(|c| {
            let labels = ChannelLabels {
                channel: c.as_str(),
            };
            (
                c.as_str(),
                m.filings_accepted.get_or_create(&labels).get(),
                m.dossiers_recorded.get_or_create(&labels).get(),
            )
        })
        .collect();
    let dead: u64 = [
        "no_message_id",
        "undecodable",
        "unknown_schema",
        "breaks_rule",
        "rejected",
    ]
    .into_iter()
    .map(|reason| {
        m.dead_letters
            .get_or_create(&DeadLetterLabels {
                queue: guichet_kit::bus::INSTRUCTION_QUEUE,
                reason,
            })
            .get()
    })
    .sum();
    let backlog = (
        m.outbox_backlog
            .get_or_create(&ServiceLabels {
                service: "intake_web",
            })
            .get(),
        m.queue_depth
            .get_or_create(&QueueLabels {
                queue: guichet_kit::bus::INSTRUCTION_QUEUE,
            })
            .get(),
        m.queue_depth
            .get_or_create(&QueueLabels {
                queue: guichet_kit::bus::DEAD_LETTER_QUEUE,
            })
            .get(),
        dead,
    );
    let a = w.page("ops-title");
    let charts = if month_names.is_empty() {
        Vec::new()
    } else {
        vec![
            (
                "months-chart",
                a.p.t1("ops-months-title", "prefecture", &prefecture),
                months,
            ),
            (
                "delays-by-month",
                a.p.t1("ops-delays-title", "prefecture", &prefecture),
                month_delays,
            ),
        ]
    };
    w.visitor.html(&OpsPage {
        p: a.p.clone(),
        a,
        equity,
        delay_bars,
        prefecture,
        prefectures,
        charts,
        months_unavailable,
        process,
        backlog,
    })
}
