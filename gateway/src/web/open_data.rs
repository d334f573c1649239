//! The independent evaluation's open data (`/donnees`): outcomes, delays
//! and proof of stay per month, prefecture and channel, as a page with
//! charts and as CSV and JSON downloads with a documented schema
//! (`/donnees/schema.json`, `docs/open-data.md`). No personal data: counts
//! and medians only, a cell under the minimum count withheld (an empty CSV
//! field, a JSON null). Instruction computes the figures once a day.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use super::{Page, Visitor, today};
use crate::error::ApiError;
use crate::extract::PathParam;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/donnees", get(page))
        .route("/donnees/schema.json", get(schema))
        .route("/donnees/{year}/evaluation.csv", get(csv))
        .route("/donnees/{year}/evaluation.json", get(json))
}

/// The downloads' columns, in order, as `schema.json` documents them.
pub const COLUMNS: [&str; 12] = [
    "month",
    "prefecture",
    "channel",
    "filed",
    "favourable",
    "unfavourable",
    "withdrawn",
    "closed_missing_documents",
    "pending",
    "needed_cover",
    "attested_when_needed",
    "median_days_to_decision",
];

/// The schema of `evaluation.csv` (a Table Schema), served as it is.
const SCHEMA: &str = include_str!("../../../docs/open-data.schema.json");

fn year_of(text: &str, state: &AppState) -> Result<i32, ApiError> {
    let this_year = chrono::Datelike::year(&today(state));
    text.parse::<i32>()
        .ok()
        .filter(|y| (2000..=this_year).contains(y))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("year"),
                format!("must be a year from 2000 to {this_year}"),
            )
        })
}

async fn report(state: &AppState, year: i32) -> Result<pb::EvaluationReport, ApiError> {
    Ok(state
        .instruction
        .clone()
        .evaluation(pb::EvaluationRequest { year })
        .await?
        .into_inner())
}

/// The counts of a cell or a month, a withheld one as `None`.
#[derive(Debug, Serialize)]
pub struct CountsJson {
    pub filed: Option<u64>,
    pub favourable: Option<u64>,
    pub unfavourable: Option<u64>,
    pub withdrawn: Option<u64>,
    pub closed_missing_documents: Option<u64>,
    pub pending: Option<u64>,
    pub needed_cover: Option<u64>,
    pub attested_when_needed: Option<u64>,
}

fn counts_json(counts: &[pb::EvaluationCount]) -> CountsJson {
    let count = |name: &str| counts.iter().find(|c| c.name == name).and_then(|c| c.value);
    CountsJson {
        filed: count("filed"),
        favourable: count("favourable"),
        unfavourable: count("unfavourable"),
        withdrawn: count("withdrawn"),
        closed_missing_documents: count("closed_missing_documents"),
        pending: count("pending"),
        needed_cover: count("needed_cover"),
        attested_when_needed: count("attested_when_needed"),
    }
}

/// One row of the downloads: a cell.
#[derive(Debug, Serialize)]
pub struct CellJson {
    pub month: String,
    pub prefecture: String,
    pub channel: String,
    #[serde(flatten)]
    pub counts: CountsJson,
    pub median_days_to_decision: Option<f64>,
}

/// A month's national totals.
#[derive(Debug, Serialize)]
pub struct TotalJson {
    pub month: String,
    #[serde(flatten)]
    pub counts: CountsJson,
}

#[derive(Debug, Serialize)]
pub struct EvaluationJson {
    pub year: i32,
    pub min_count: u32,
    pub computed_on: String,
    pub schema: &'static str,
    pub cells: Vec<CellJson>,
    pub month_totals: Vec<TotalJson>,
}

fn evaluation_json(r: pb::EvaluationReport) -> EvaluationJson {
    EvaluationJson {
        year: r.year,
        min_count: r.min_count,
        computed_on: r
            .computed_on
            .as_ref()
            .and_then(convert::date_from_pb)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        schema: "/donnees/schema.json",
        cells: r
            .cells
            .into_iter()
            .map(|c| CellJson {
                channel: crate::views::channel_text(c.channel).to_string(),
                counts: counts_json(&c.counts),
                median_days_to_decision: c.median_days_to_decision,
                month: c.month,
                prefecture: c.prefecture,
            })
            .collect(),
        month_totals: r
            .month_totals
            .into_iter()
            .map(|t| TotalJson {
                counts: counts_json(&t.counts),
                month: t.month,
            })
            .collect(),
    }
}

/// Open data may be cached by anyone for an hour (it changes daily).
fn public(mut response: Response, content_type: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `GET /donnees/schema.json`
async fn schema() -> Response {
    public(SCHEMA.into_response(), "application/schema+json")
}

/// `GET /donnees/{year}/evaluation.json`
async fn json(
    State(state): State<AppState>,
    PathParam(year): PathParam,
) -> Result<Response, ApiError> {
    let year = year_of(&year, &state)?;
    let body = serde_json::to_string(&evaluation_json(report(&state, year).await?))
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error"))?;
    Ok(public(body.into_response(), "application/json"))
}

fn field(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The cells as CSV (RFC 4180, UTF-8, comma-separated, a header line); a
/// withheld figure is an empty field.
pub fn csv_text(e: &EvaluationJson) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for c in &e.cells {
        let row = [
            c.month.clone(),
            c.prefecture.clone(),
            c.channel.clone(),
            field(c.counts.filed),
            field(c.counts.favourable),
            field(c.counts.unfavourable),
            field(c.counts.withdrawn),
            field(c.counts.closed_missing_documents),
            field(c.counts.pending),
            field(c.counts.needed_cover),
            field(c.counts.attested_when_needed),
            field(c.median_days_to_decision),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `GET /donnees/{year}/evaluation.csv`
async fn csv(
    State(state): State<AppState>,
    PathParam(year): PathParam,
) -> Result<Response, ApiError> {
    let year = year_of(&year, &state)?;
    let e = evaluation_json(report(&state, year).await?);
    let mut response = public(csv_text(&e).into_response(), "text/csv; charset=utf-8");
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"guichet-evaluation-{year}.csv\""
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    annee: Option<String>,
}

/// A bar of a chart: its label, its value, its height in the drawing.
struct Bar {
    label: String,
    value: u64,
    x: u32,
    height: u32,
}

#[derive(askama::Template)]
#[template(path = "open_data.html")]
struct DataPage {
    p: Page,
    year: i32,
    years: Vec<i32>,
    e: EvaluationJson,
    filed_bars: Vec<Bar>,
    decided_bars: Vec<Bar>,
    /// Per channel: (channel, published favourable, published decided).
    channels: Vec<(String, u64, u64)>,
}

impl DataPage {
    /// A count, or the sign of a withheld one.
    fn n(&self, v: &Option<u64>) -> String {
        v.map_or_else(|| "s".to_string(), |v| v.to_string())
    }
}

/// Bars for `values` in a drawing 40 units high a bar.
fn bars(values: &[(String, u64)]) -> Vec<Bar> {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    values
        .iter()
        .enumerate()
        .map(|(i, (label, v))| Bar {
            label: label.clone(),
            value: *v,
            x: 40 + i as u32 * 50,
            height: (*v * 160 / max) as u32,
        })
        .collect()
}

/// `GET /donnees`: the figures of a year, with charts and the downloads.
async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<PageQuery>,
) -> Response {
    let this_year = chrono::Datelike::year(&today(&state));
    let year = q
        .annee
        .as_deref()
        .and_then(|y| year_of(y, &state).ok())
        .unwrap_or(this_year);
    let e = match report(&state, year).await {
        Ok(r) => evaluation_json(r),
        Err(e) => return visitor.api_problem(&e),
    };
    let month_label = |m: &str| m.get(5..7).unwrap_or(m).to_string();
    let filed_bars = bars(
        &e.month_totals
            .iter()
            .map(|t| (month_label(&t.month), t.counts.filed.unwrap_or(0)))
            .collect::<Vec<_>>(),
    );
    let decided_bars = bars(
        &e.month_totals
            .iter()
            .map(|t| {
                (
                    month_label(&t.month),
                    t.counts.favourable.unwrap_or(0) + t.counts.unfavourable.unwrap_or(0),
                )
            })
            .collect::<Vec<_>>(),
    );
    let channels = ["web", "ccc", "pan", "postal"]
        .iter()
        .map(|ch| {
            let (fav, decided) = e
                .cells
                .iter()
                .filter(|c| c.channel == *ch)
                .filter_map(|c| {
                    let (f, u) = (c.counts.favourable?, c.counts.unfavourable?);
                    Some((f, f + u))
                })
                .fold((0, 0), |(a, b), (f, d)| (a + f, b + d));
            ((*ch).to_string(), fav, decided)
        })
        .collect();
    visitor.html(&DataPage {
        p: visitor.page("data-title"),
        year,
        years: (2020..=this_year).rev().collect(),
        e,
        filed_bars,
        decided_bars,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_figures_are_empty_fields_and_the_header_matches_the_schema() {
        let e = EvaluationJson {
            year: 2026,
            min_count: 11,
            computed_on: "2026-11-29".into(),
            schema: "/donnees/schema.json",
            cells: vec![CellJson {
                month: "2026-03".into(),
                prefecture: "59".into(),
                channel: "web".into(),
                counts: CountsJson {
                    filed: Some(35),
                    favourable: Some(20),
                    unfavourable: None,
                    withdrawn: Some(0),
                    closed_missing_documents: Some(0),
                    pending: None,
                    needed_cover: Some(0),
                    attested_when_needed: Some(0),
                },
                median_days_to_decision: Some(30.5),
            }],
            month_totals: Vec::new(),
        };
        let text = csv_text(&e);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        assert_eq!(lines.next(), Some("2026-03,59,web,35,20,,0,0,,0,0,30.5"));
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let names: Vec<&str> = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, COLUMNS);
    }
}
