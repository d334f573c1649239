//! `/api/v1`: filing a dossier, reading where it stands, and the queue.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guichet_dossier::filing::RawProvenance;
use guichet_dossier::{Filing, RawFiling, Reference, Violations};
use guichet_proto::{convert, v1 as pb};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam};
use crate::server::AppState;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

#[derive(Debug, Serialize)]
pub struct ReceiptView {
    pub reference: String,
    pub channel: &'static str,
    pub legal_filing_date: String,
    pub issued_at: String,
    pub verification_code: String,
    pub documents: Vec<DocumentView>,
    pub trace_id: String,
    pub links: Links,
}

#[derive(Debug, Serialize)]
pub struct DocumentView {
    pub kind: String,
    pub sha256: String,
    pub media_type: String,
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
}

pub(crate) fn date_text(d: &Option<pb::CalendarDate>) -> String {
    d.as_ref()
        .and_then(convert::date_from_pb)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

pub(crate) fn time_text(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(convert::timestamp_from_pb)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(crate) fn channel_text(c: i32) -> &'static str {
    pb::Channel::try_from(c)
        .ok()
        .and_then(convert::channel_from_pb)
        .map(|c| c.as_str())
        .unwrap_or("")
}

/// `POST /api/v1/dossiers`: file a dossier online.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(mut raw): JsonBody<RawFiling>,
) -> Result<Response, ApiError> {
    let header_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("Idempotency-Key"),
                "must be plain ASCII",
            )
        })?),
    };
    match (&header_key, &raw.idempotency_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("idempotency_key"),
                "differs from the Idempotency-Key header; send one key",
            ));
        }
        (Some(h), _) => raw.idempotency_key = Some(h.clone()),
        // No key: this request cannot be recognised if retried; still accepted.
        (None, None) => raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string()),
        (None, Some(_)) => {}
    }
    let filing = Filing::parse(
        &raw,
        &RawProvenance::Web { account_id: None },
        state.clock.today(),
    )
    .inspect_err(|violations| {
        for v in violations.iter() {
            state
                .metrics
                .validation_failures
                .get_or_create(&guichet_kit::metrics::ValidationLabels {
                    channel: "web",
                    field: guichet_kit::metrics::field_label(&v.field),
                })
                .inc();
        }
    })?;
    let mut client = state.intake.clone();
    let answer = client
        .submit_filing(pb::SubmitFilingRequest {
            filing: Some(convert::filing_to_pb(&filing)),
        })
        .await?
        .into_inner();
    let receipt = answer.receipt.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            None,
            "the intake service answered without a receipt",
        )
    })?;
    let location = format!("/api/v1/dossiers/{}", receipt.reference);
    let view = ReceiptView {
        channel: channel_text(receipt.channel),
        legal_filing_date: date_text(&receipt.legal_filing_date),
        issued_at: time_text(&receipt.issued_at),
        verification_code: receipt.verification_code,
        documents: receipt
            .documents
            .into_iter()
            .map(|d| DocumentView {
                kind: convert::document_kind_text(d.kind).unwrap_or_default(),
                sha256: d.sha256,
                media_type: d.media_type,
                size_bytes: d.size_bytes,
            })
            .collect(),
        trace_id: answer.trace_id,
        links: Links {
            this: location.clone(),
        },
        reference: receipt.reference,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if !answer.created {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Serialize)]
pub struct DossierView {
    pub reference: String,
    pub channel: &'static str,
    pub procedure: String,
    pub motif: String,
    pub prefecture: String,
    pub state: String,
    pub urgency: String,
    pub legal_filing_date: String,
    pub filed_at: String,
    pub recorded_at: String,
    pub title_expires_on: Option<String>,
    pub documents: usize,
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub kind: String,
    pub actor: String,
    pub at: String,
    pub reason: String,
    pub trace_id: String,
}

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| Violations::one("reference", e.to_string()).into())
}

/// `GET /api/v1/dossiers/{reference}`: where a dossier stands. No personal
/// data: the reference alone must not reveal who filed.
pub async fn get_dossier(
    State(state): State<AppState>,
    PathParam(reference): PathParam,
) -> Result<Json<DossierView>, ApiError> {
    let reference = parse_reference(&reference)?;
    let mut client = state.instruction.clone();
    let view = client
        .get_dossier(pb::GetDossierRequest {
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(dossier_view(view)))
}

/// The JSON form of a dossier's state and history, without personal data.
pub(crate) fn dossier_view(view: pb::DossierView) -> DossierView {
    let dossier = view.dossier.unwrap_or_default();
    let filing = dossier.filing.unwrap_or_default();
    DossierView {
        reference: dossier.reference,
        channel: channel_text(dossier.channel),
        procedure: convert::procedure_text(filing.procedure).unwrap_or_default(),
        motif: convert::motif_text(filing.motif).unwrap_or_default(),
        prefecture: dossier.prefecture,
        state: convert::case_state_text(view.state).unwrap_or_default(),
        urgency: convert::urgency_text(view.urgency).unwrap_or_default(),
        legal_filing_date: date_text(&dossier.legal_filing_date),
        filed_at: time_text(&dossier.filed_at),
        recorded_at: time_text(&view.recorded_at),
        title_expires_on: filing
            .current_title
            .as_ref()
            .map(|t| date_text(&t.expires_on)),
        documents: filing.documents.len(),
        events: view
            .events
            .into_iter()
            .map(|e| EventView {
                kind: e.kind,
                actor: e.actor,
                at: time_text(&e.at),
                reason: e.reason,
                trace_id: e.trace_id,
            })
            .collect(),
    }
}
