//! For operators: `/metrics` for Prometheus, the equity report as JSON, and a
//! plain page with the key figures for when no Grafana is at hand.

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use guichet_dossier::Violations;
use guichet_kit::metrics::{
    self, ChannelLabels, DeadLetterLabels, HttpLabels, QueueLabels, ServiceLabels,
};
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

/// Operations: figures, health, and the API's own description.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/equity", get(equity))
        .route("/api/openapi.json", get(crate::openapi::document))
        .route("/ops", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .route("/.well-known/jwks.json", get(jwks))
}

/// `GET /.well-known/jwks.json`: the public keys persons' documents are
/// signed with, the earlier ones included, for anyone to check a paper
/// offline (`guichet verify --keys`).
pub async fn jwks(State(state): State<AppState>) -> Result<Response, crate::error::ApiError> {
    let keys = guichet_kit::seal::KeySet::load(&state.signing_keys).map_err(|e| {
        tracing::error!(error = %e, "cannot read the signing keys");
        crate::error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the signing keys cannot be read just now",
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/jwk-set+json")],
        keys.jwks().to_string(),
    )
        .into_response())
}

/// `GET /metrics`: this process's figures in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Counts every request by route template, method and status, with its duration.
pub async fn count_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(request.method());
    // The template, never the raw path: references must not become labels.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquityQuery {
    pub prefecture: Option<String>,
    pub margin: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FigureJson {
    pub value: f64,
    pub sample: u32,
}

#[derive(Debug, Serialize)]
pub struct ChannelEquityJson {
    pub channel: &'static str,
    pub dossiers: u32,
    pub median_days_to_decision: Option<FigureJson>,
    pub share_complete_at_filing: Option<FigureJson>,
    pub share_covered: Option<FigureJson>,
    pub median_days_to_receipt: Option<FigureJson>,
}

#[derive(Debug, Serialize)]
pub struct FlagJson {
    pub channel: &'static str,
    pub measure: String,
    pub value: f64,
    pub best_channel: &'static str,
    pub best: f64,
}

#[derive(Debug, Serialize)]
pub struct EquityJson {
    pub prefecture: Option<String>,
    pub margin: f64,
    pub min_sample: u32,
    pub since: Option<String>,
    pub channels: Vec<ChannelEquityJson>,
    pub flags: Vec<FlagJson>,
}

fn channel_name(c: i32) -> &'static str {
    pb::Channel::try_from(c)
        .ok()
        .and_then(convert::channel_from_pb)
        .map_or("unknown", |c| c.as_str())
}

fn figure(f: Option<pb::EquityFigure>) -> Option<FigureJson> {
    f.map(|f| FigureJson {
        value: f.value,
        sample: f.sample,
    })
}

fn equity_json(r: pb::EquityReport) -> EquityJson {
    EquityJson {
        prefecture: Some(r.prefecture).filter(|p| !p.is_empty()),
        margin: r.margin,
        min_sample: r.min_sample,
        since: r
            .since
            .as_ref()
            .and_then(convert::date_from_pb)
            .map(|d| d.to_string()),
        channels: r
            .channels
            .into_iter()
            .map(|c| ChannelEquityJson {
                channel: channel_name(c.channel),
                dossiers: c.dossiers,
                median_days_to_decision: figure(c.median_days_to_decision),
                share_complete_at_filing: figure(c.share_complete_at_filing),
                share_covered: figure(c.share_covered),
                median_days_to_receipt: figure(c.median_days_to_receipt),
            })
            .collect(),
        flags: r
            .flags
            .into_iter()
            .map(|f| FlagJson {
                channel: channel_name(f.channel),
                measure: f.measure,
                value: f.value,
                best_channel: channel_name(f.best_channel),
                best: f.best,
            })
            .collect(),
    }
}

async fn fetch_equity(state: &AppState, q: EquityQuery) -> Result<EquityJson, ApiError> {
    let margin = match q.margin {
        None => 0.0,
        Some(m) if m.is_finite() && m > 0.0 && m < 10.0 => m,
        Some(_) => {
            return Err(Violations::one(
                "margin",
                "must be a number above 0 and below 10 (0.2 = 20 %)",
            )
            .into());
        }
    };
    let report = state
        .instruction
        .clone()
        .equity(pb::EquityRequest {
            prefecture: q.prefecture.unwrap_or_default(),
            margin,
        })
        .await?
        .into_inner();
    Ok(equity_json(report))
}

/// `GET /api/v1/equity?prefecture=59&margin=0.2`: every channel on the same
/// measures, and the channels worse than the best by more than the margin.
pub async fn equity(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EquityQuery>,
) -> Result<Json<EquityJson>, ApiError> {
    Ok(Json(fetch_equity(&state, q).await?))
}

fn cell(f: &Option<FigureJson>, share: bool) -> String {
    match f {
        None => "–".into(),
        Some(f) if share => format!("{:.0} % <small>({})</small>", f.value * 100.0, f.sample),
        Some(f) => format!("{:.1} d <small>({})</small>", f.value, f.sample),
    }
}

/// `GET /ops`: the key figures on one page, refreshed every 30 seconds.
pub async fn page(State(state): State<AppState>) -> Response {
    let equity = fetch_equity(
        &state,
        EquityQuery {
            prefecture: None,
            margin: None,
        },
    )
    .await;
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>Guichet: operators</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .7em;text-align:right}\
         th:first-child,td:first-child{text-align:left}.flag{background:#fdd;font-weight:bold}\
         small{color:#666}</style></head><body><h1>Guichet: operators' figures</h1>",
    );
    match equity {
        Ok(e) => {
            let _ = write!(
                html,
                "<h2>Equity between channels</h2><p>Dossiers received since {}. A cell is \
                 marked when its channel does worse than the best by more than {:.0} %; \
                 figures on fewer than {} dossiers are not compared.</p>\
                 <table><tr><th>channel</th><th>dossiers</th><th>days to decision (median)</th>\
                 <th>complete at filing</th><th>covered today</th><th>days to receipt (median)</th></tr>",
                e.since.as_deref().unwrap_or("?"),
                e.margin * 100.0,
                e.min_sample
            );
            for c in &e.channels {
                let flagged = |m: &str| {
                    e.flags
                        .iter()
                        .any(|f| f.channel == c.channel && f.measure == m)
                };
                let td = |m: &str, text: String| {
                    if flagged(m) {
                        format!("<td class=\"flag\">⚠ {text}</td>")
                    } else {
                        format!("<td>{text}</td>")
                    }
                };
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td>{}{}{}{}</tr>",
                    c.channel,
                    c.dossiers,
                    td(
                        "median_days_to_decision",
                        cell(&c.median_days_to_decision, false)
                    ),
                    td(
                        "share_complete_at_filing",
                        cell(&c.share_complete_at_filing, true)
                    ),
                    td("share_covered", cell(&c.share_covered, true)),
                    td(
                        "median_days_to_receipt",
                        cell(&c.median_days_to_receipt, false)
                    ),
                );
            }
            html.push_str("</table>");
            if e.flags.is_empty() {
                html.push_str("<p>No channel is flagged.</p>");
            }
        }
        Err(_) => html.push_str(
            "<h2>Equity between channels</h2><p class=\"flag\">The instruction service \
             does not answer: no figures.</p>",
        ),
    }
    let m = &state.metrics;
    html.push_str(
        "<h2>This process</h2><p>Counted since this process started (with <code>guichet up</code>, \
         every service's figures). All of them: <a href=\"/metrics\">/metrics</a>.</p>\
         <table><tr><th>channel</th><th>filings accepted</th><th>dossiers in instruction</th></tr>",
    );
    for channel in guichet_dossier::Channel::ALL {
        let labels = ChannelLabels {
            channel: channel.as_str(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            channel.as_str(),
            m.filings_accepted.get_or_create(&labels).get(),
            m.dossiers_recorded.get_or_create(&labels).get(),
        );
    }
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
    let _ = write!(
        html,
        "</table><table><tr><th>figure</th><th>now</th></tr>\
         <tr><td>outbox backlog, online intake</td><td>{}</td></tr>\
         <tr><td>messages waiting in instruction.dossiers</td><td>{}</td></tr>\
         <tr><td>messages in the dead-letter queue</td><td>{}</td></tr>\
         <tr><td>dead-lettered by the consumer</td><td>{}</td></tr></table>",
        m.outbox_backlog
            .get_or_create(&ServiceLabels {
                service: "intake_web"
            })
            .get(),
        m.queue_depth
            .get_or_create(&QueueLabels {
                queue: guichet_kit::bus::INSTRUCTION_QUEUE
            })
            .get(),
        m.queue_depth
            .get_or_create(&QueueLabels {
                queue: guichet_kit::bus::DEAD_LETTER_QUEUE
            })
            .get(),
        dead,
    );
    html.push_str("</body></html>");
    Html(html).into_response()
}
