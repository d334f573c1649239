//! `/api/v1`: filing a dossier, reading where it stands, and the queue.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use guichet_dossier::RawFiling;
use guichet_proto::{convert, v1 as pb};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::ReferenceParam;
use crate::state::AppState;
use crate::status;
use crate::views::{DossierView, channel_text, date_text, dossier_view, time_text};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Filing, and what anyone may look up about a file.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/dossiers/{reference}", get(get_dossier))
        .route("/api/v1/dossiers/{reference}/notices", get(list_notices))
        .route("/api/v1/dossiers/{reference}/status", get(status::status))
        .route(
            "/api/v1/dossiers/{reference}/code",
            post(crate::person_code::ask),
        )
        .route("/api/v1/queue", get(status::queue))
        .route("/api/v1/processing-times", get(status::processing_times))
        .route(
            "/api/v1/attestations/{code}",
            get(status::verify_attestation),
        )
}

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

/// Files a dossier online (`POST /api/v1/dossiers`, in `uploads`: the body
/// is JSON, or multipart with the files).
pub async fn file_online(
    state: &AppState,
    headers: &HeaderMap,
    raw: RawFiling,
) -> Result<Response, ApiError> {
    let (view, created) = file(state, headers, raw).await?;
    let location = view.links.this.clone();
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if !created {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Files a dossier with the intake service: its receipt, and whether it
/// was made now (not a retry under the same key). The web pages file
/// through here too.
pub async fn file(
    state: &AppState,
    headers: &HeaderMap,
    mut raw: RawFiling,
) -> Result<(ReceiptView, bool), ApiError> {
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
    // Checked for shape and text here; parsed once, by the intake service,
    // which names every field at fault and counts the refusals.
    let raw_json = serde_json::to_string(&raw).map_err(|e| {
        tracing::error!(error = %e, "cannot write a filing back as JSON");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
    })?;
    let answer = state
        .intake
        .clone()
        .submit_filing(pb::SubmitFilingRequest {
            filing: None,
            raw_json,
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
    Ok((view, answer.created))
}

/// One message sent to the person about their file, as an agent sees it:
/// what and how, where it stands; never the address it went to.
#[derive(Debug, Serialize)]
pub struct NoticeJson {
    pub kind: String,
    pub medium: String,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure: String,
    pub attempts: u32,
    pub created_at: Option<String>,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    /// When a queued message is (next) tried.
    pub next_try_at: Option<String>,
}

/// Judges the caller on the dossier's facts (its prefecture), asked of
/// instruction: a reference that names nothing is a 404. The documents
/// received come with the facts when `with_documents` (a read more).
pub(crate) async fn allow_on_dossier(
    state: &AppState,
    access: &crate::policy::Access,
    reference: &guichet_dossier::Reference,
    person: Option<guichet_access::Person>,
    with_documents: bool,
) -> Result<(guichet_access::Grant, pb::CaseFactsView), ApiError> {
    let facts = state
        .desk
        .clone()
        .case_facts(pb::CaseFactsRequest {
            reference: reference.to_string(),
            with_documents,
        })
        .await?
        .into_inner();
    let grant = access.allow_person(
        person,
        &guichet_access::Facts::none()
            .dossier(&facts.reference)
            .prefecture(&facts.prefecture),
    )?;
    Ok((grant, facts))
}

/// Who asks about a dossier's own content: a signed-in agent (`None`), or
/// its person with the code sent to them; anyone else is a 401.
pub(crate) async fn person_with_code(
    state: &AppState,
    access: &crate::policy::Access,
    headers: &HeaderMap,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &guichet_dossier::Reference,
) -> Result<Option<guichet_access::Person>, ApiError> {
    if !matches!(access.caller(), guichet_access::Caller::Anonymous) {
        return Ok(None);
    }
    match crate::person_code::proof(state, headers, peer, reference).await? {
        Some(person) => Ok(Some(person)),
        None => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            Some("Authorization"),
            "sign in as an agent; a person gives the code sent to them (X-Person-Code, \
             asked for at POST /api/v1/dossiers/{reference}/code)",
        )),
    }
}

/// `GET /api/v1/dossiers/{reference}/notices`: what the person was sent
/// about their file (receipt, attestation, ...), by which medium, and
/// whether it reached them: for the agents who answer them.
pub async fn list_notices(
    State(state): State<AppState>,
    access: crate::policy::Access,
    reference: ReferenceParam,
) -> Result<Json<Vec<NoticeJson>>, ApiError> {
    let reference = reference.parse()?;
    allow_on_dossier(&state, &access, &reference, None, false).await?;
    let notices = state
        .notifier
        .clone()
        .list_notices(pb::ListNoticesRequest {
            subject_ref: reference.to_string(),
        })
        .await?
        .into_inner()
        .notices;
    let at = |t: Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(guichet_proto::convert::timestamp_from_pb)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    Ok(Json(
        notices
            .into_iter()
            .map(|n| NoticeJson {
                next_try_at: if n.state == "queued" {
                    at(n.not_before)
                } else {
                    None
                },
                kind: n.kind,
                medium: n.medium,
                state: n.state,
                failure: n.failure,
                attempts: n.attempts,
                created_at: at(n.created_at),
                sent_at: at(n.sent_at),
                delivered_at: at(n.delivered_at),
            })
            .collect(),
    ))
}

/// `GET /api/v1/dossiers/{reference}`: where a dossier stands, with its
/// history and the whole filing, for the agents who deal with it. A person
/// sees their own the same way, with the code sent to them
/// (`X-Person-Code`, asked for at `POST …/code`).
pub async fn get_dossier(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
) -> Result<Json<DossierView>, ApiError> {
    let reference = reference.parse()?;
    let person = person_with_code(&state, &access, &headers, peer.as_ref(), &reference).await?;
    allow_on_dossier(&state, &access, &reference, person, false).await?;
    let mut client = state.instruction.clone();
    let view = client
        .get_dossier(pb::GetDossierRequest {
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(dossier_view(view)))
}
