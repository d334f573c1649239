//! For operators: `/metrics` for Prometheus and the equity report as JSON
//! (the page with the key figures is `web::agents::ops`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use guichet_dossier::Violations;
use guichet_kit::metrics::{self, HttpLabels};
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

/// The equity report, as the API and the operators' page show it.
pub async fn equity_report(state: &AppState, q: EquityQuery) -> Result<EquityJson, ApiError> {
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
    Ok(Json(equity_report(&state, q).await?))
}
