//! The agents' desk (`/api/v1/agent/…`): take the next file, read a case,
//! ask for documents, add one, decide, record a withdrawal, confirm a link.
//! Every call is judged against the policy table on the case's prefecture
//! and holder (`on_case`), and recorded against the agent who asks.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use guichet_access::Facts;
use guichet_dossier::{Channel, DocumentKind, TitleKind, Violations};
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{JsonBody, ReferenceParam, code_value, date_param};
use crate::policy::Access;
use crate::state::AppState;
use crate::views::{
    AttestationJson, CoverView, DossierView, PeriodJson, attestation_json, cover_view, date_text,
    dossier_view, kinds_text, periods_json,
};

/// The case as the desk service answered it, in JSON.
fn case_answer(
    answer: Result<tonic::Response<pb::CaseView>, tonic::Status>,
) -> Result<Json<CaseJson>, ApiError> {
    Ok(Json(case_json(answer?.into_inner())))
}

/// The agents' desk.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agent/queue/next", post(take_next))
        .route("/api/v1/agent/dossiers/{reference}", get(read_case))
        .route(
            "/api/v1/agent/dossiers/{reference}/document-requests",
            post(request_documents),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/documents",
            post(add_document),
        )
        .route("/api/v1/agent/dossiers/{reference}/decision", post(decide))
        .route(
            "/api/v1/agent/dossiers/{reference}/withdrawal",
            post(withdraw),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/link",
            post(confirm_link),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/takeover",
            post(take_over),
        )
        .route(
            "/api/v1/agent/dossiers/{reference}/card-handover",
            post(hand_over_card),
        )
}

#[derive(Debug, Serialize)]
pub struct CaseJson {
    pub dossier: DossierView,
    /// A receipt for each document received.
    pub documents: Vec<crate::uploads::ReceiptJson>,
    pub applicant: ApplicantJson,
    pub missing: Vec<String>,
    pub documents_deadline: Option<String>,
    pub cover: CoverView,
    pub attestations: Vec<AttestationJson>,
    pub linked_to: Option<String>,
    pub link_confirmed: bool,
    pub linked: Vec<String>,
    pub taken_by: Option<String>,
    pub queue_date: Option<String>,
    pub uncovered: Vec<PeriodJson>,
    pub near_matches: Vec<String>,
}

/// Who the file is about, as an agent (or an attestation) needs it.
#[derive(Debug, Serialize)]
pub struct ApplicantJson {
    pub family_name: String,
    pub given_names: String,
    pub birth_date: String,
    pub nationality: String,
    pub foreigner_number: Option<String>,
    pub answer_channel: String,
}

fn case_json(c: pb::CaseView) -> CaseJson {
    let view = c.dossier.unwrap_or_default();
    let filing = view
        .dossier
        .as_ref()
        .and_then(|d| d.filing.clone())
        .unwrap_or_default();
    let a = filing.applicant.unwrap_or_default();
    let answer = filing.contact.map(|c| c.answer_channel).unwrap_or(0);
    CaseJson {
        documents: c
            .documents
            .iter()
            .map(crate::uploads::receipt_json)
            .collect(),
        dossier: dossier_view(view),
        applicant: ApplicantJson {
            family_name: a.family_name,
            given_names: a.given_names,
            birth_date: date_text(&a.birth_date),
            nationality: a.nationality,
            foreigner_number: (!a.foreigner_number.is_empty()).then_some(a.foreigner_number),
            answer_channel: convert::answer_channel_text(answer).unwrap_or_default(),
        },
        missing: kinds_text(&c.missing),
        documents_deadline: c.documents_deadline.as_ref().map(|d| date_text(&Some(*d))),
        cover: cover_view(c.cover),
        attestations: c.attestations.into_iter().map(attestation_json).collect(),
        linked_to: (!c.linked_to.is_empty()).then_some(c.linked_to),
        link_confirmed: c.link_confirmed,
        linked: c.linked,
        taken_by: (!c.taken_by.is_empty()).then_some(c.taken_by),
        queue_date: c.queue_date.as_ref().map(|d| date_text(&Some(*d))),
        uncovered: periods_json(c.uncovered),
        near_matches: c.near_matches,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeNextBody {
    pub prefecture: Option<String>,
}

/// How a refusal on a case held by another agent begins.
const HELD_BY: &str = "held by ";

/// Whether `e` refused an act because another agent holds the case (and
/// not because the case cannot take that step).
pub fn is_held_by_another(e: &ApiError) -> bool {
    e.status() == axum::http::StatusCode::CONFLICT
        && e.problems()
            .any(|(field, problem)| field == Some("reference") && problem.starts_with(HELD_BY))
}

/// The case `reference` is about, judged against the table on its
/// prefecture and holder (asked of instruction, no personal data): the
/// acting agent's uid and the reference, or the refusal.
async fn on_case(
    state: &AppState,
    access: &Access,
    reference: ReferenceParam,
) -> Result<(String, guichet_dossier::Reference), ApiError> {
    let reference = reference.parse()?;
    let facts = state
        .desk
        .clone()
        .case_facts(pb::CaseFactsRequest {
            reference: reference.to_string(),
            with_documents: false,
        })
        .await?
        .into_inner();
    let mut judged = Facts::none()
        .dossier(&facts.reference)
        .prefecture(&facts.prefecture);
    if !facts.taken_by.is_empty() {
        judged = judged.held_by(&facts.taken_by);
    }
    access.allow(&judged).map_err(|refused| {
        // Say why when the agent may see the case but not act on it.
        if refused.status() == axum::http::StatusCode::FORBIDDEN
            && !facts.taken_by.is_empty()
            && access.agent_uid() != Some(facts.taken_by.as_str())
            && access.own_prefectures().contains(&facts.prefecture)
        {
            return ApiError::new(
                axum::http::StatusCode::CONFLICT,
                Some("reference"),
                format!("{HELD_BY}{}: take it over first", facts.taken_by),
            );
        }
        refused
    })?;
    Ok((access.acting_agent()?, reference))
}

/// `POST /api/v1/agent/queue/next`: take the next file of my prefecture
/// (the one asked, or my only one).
pub async fn take_next(
    State(state): State<AppState>,
    access: Access,
    JsonBody(body): JsonBody<TakeNextBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let prefecture = match body.prefecture {
        Some(p) => p,
        None => match access.own_prefectures().as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(ApiError::from(Violations::one(
                    "prefecture",
                    "is required: you work for several prefectures",
                )));
            }
        },
    };
    access.allow(&Facts::none().prefecture(&prefecture))?;
    let case = case_answer(
        state
            .desk
            .clone()
            .take_next(pb::TakeNextRequest {
                agent_id: access.acting_agent()?,
                prefecture,
            })
            .await,
    )?;
    access.note_dossier(&case.dossier.reference);
    Ok(case)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeOverBody {
    pub reason: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/takeover`: take a case from
/// whoever holds it (or nobody); recorded with its reason.
pub async fn take_over(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<TakeOverBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    case_answer(
        state
            .desk
            .clone()
            .take_over(pb::TakeOverRequest {
                agent_id,
                reference: reference.to_string(),
                reason: body.reason.unwrap_or_default(),
            })
            .await,
    )
}

/// `GET /api/v1/agent/dossiers/{reference}`: the whole file; the read is recorded.
pub async fn read_case(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    case_answer(
        state
            .desk
            .clone()
            .read_case(pb::ReadCaseRequest {
                agent_id,
                reference: reference.to_string(),
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequestBody {
    pub kinds: Vec<String>,
    pub deadline: Option<String>,
    pub reason: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/document-requests`
pub async fn request_documents(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<DocumentRequestBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    let mut kinds = Vec::with_capacity(body.kinds.len());
    for (i, k) in body.kinds.iter().enumerate() {
        kinds.push(code_value(
            &format!("kinds[{i}]"),
            &Some(k.clone()),
            DocumentKind::parse,
            convert::document_kind_to_pb,
        )?);
    }
    case_answer(
        state
            .desk
            .clone()
            .request_documents(pb::RequestDocumentsRequest {
                agent_id,
                reference: reference.to_string(),
                kinds,
                deadline: date_param("deadline", &body.deadline)?,
                reason: body.reason.unwrap_or_default(),
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    pub kind: Option<String>,
    pub sha256: Option<String>,
    pub media_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub filename: Option<String>,
    /// Where the document came from: web, ccc, pan or postal.
    pub channel: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/documents`: a document arrived.
pub async fn add_document(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<DocumentBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    let channel = code_value("channel", &body.channel, Channel::parse, |c| {
        convert::channel_to_pb(c) as i32
    })?;
    let kind = code_value(
        "document.kind",
        &body.kind,
        DocumentKind::parse,
        convert::document_kind_to_pb,
    )?;
    case_answer(
        state
            .desk
            .clone()
            .add_document(pb::AddDocumentRequest {
                actor: agent_id,
                reference: reference.to_string(),
                document: Some(pb::DocumentRef {
                    kind,
                    sha256: body.sha256.unwrap_or_default(),
                    media_type: body.media_type.unwrap_or_default(),
                    size_bytes: body.size_bytes.unwrap_or(0),
                    filename: body.filename.unwrap_or_default(),
                }),
                channel,
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub favourable: Option<bool>,
    pub reason: Option<String>,
    /// The title granted, when known, so its holder is warned before it expires.
    pub new_title: Option<NewTitleBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTitleBody {
    pub kind: Option<String>,
    pub number: Option<String>,
    pub expires_on: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/decision`
pub async fn decide(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    let favourable = body.favourable.ok_or_else(|| {
        ApiError::from(Violations::one("favourable", "is required: true or false"))
    })?;
    case_answer(
        state
            .desk
            .clone()
            .decide(pb::DecideRequest {
                agent_id,
                reference: reference.to_string(),
                favourable,
                reason: body.reason.unwrap_or_default(),
                new_title: match body.new_title {
                    None => None,
                    Some(t) => Some(pb::CurrentTitle {
                        kind: code_value(
                            "new_title.kind",
                            &t.kind,
                            TitleKind::parse,
                            convert::title_kind_to_pb,
                        )?,
                        number: t.number.unwrap_or_default(),
                        expires_on: date_param("new_title.expires_on", &t.expires_on)?,
                    }),
                },
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalBody {
    pub reason: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/withdrawal`
pub async fn withdraw(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<WithdrawalBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    case_answer(
        state
            .desk
            .clone()
            .withdraw(pb::WithdrawRequest {
                actor: agent_id,
                reference: reference.to_string(),
                reason: body.reason.unwrap_or_default(),
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardHandoverBody {
    pub card_number: Option<String>,
    /// The card's last day of validity (YYYY-MM-DD).
    pub valid_until: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/card-handover`: the card a
/// favourable decision granted is in the person's hands.
pub async fn hand_over_card(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<CardHandoverBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    let valid_until = date_param("valid_until", &body.valid_until)?;
    case_answer(
        state
            .desk
            .clone()
            .hand_over_card(pb::HandOverCardRequest {
                agent_id,
                reference: reference.to_string(),
                card_number: body.card_number.unwrap_or_default(),
                valid_until,
            })
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    pub same_request: Option<bool>,
}

/// `POST /api/v1/agent/dossiers/{reference}/link`: confirm (or undo) that a
/// second filing is the same request as its first.
pub async fn confirm_link(
    State(state): State<AppState>,
    access: Access,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<LinkBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let (agent_id, reference) = on_case(&state, &access, reference).await?;
    let same_request = body.same_request.ok_or_else(|| {
        ApiError::from(Violations::one(
            "same_request",
            "is required: true or false",
        ))
    })?;
    case_answer(
        state
            .desk
            .clone()
            .confirm_link(pb::ConfirmLinkRequest {
                agent_id,
                reference: reference.to_string(),
                same_request,
            })
            .await,
    )
}
