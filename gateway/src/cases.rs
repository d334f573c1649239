//! `/api/v1` for instruction: the queue with its filters, where a person's
//! file stands, processing times, and the agents' desk (`/api/v1/agent/…`).
//!
//! Agents name themselves with the `X-Agent-Id` header, which the agents'
//! front-end sets after sign-in; every read and every act is recorded
//! against it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use guichet_dossier::calendar::parse_iso_date;
use guichet_dossier::{
    CaseState, Channel, DocumentKind, Motif, Procedure, Reference, TitleKind, Violations,
};
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use crate::api::{DossierView, channel_text, date_text, dossier_view, time_text};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::server::AppState;

pub const AGENT_HEADER: &str = "x-agent-id";

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| Violations::one("reference", e.to_string()).into())
}

/// `renewal` -> its wire number (0 when not given); a clear error naming
/// `field` for a code that is not in the list. Case does not matter.
fn code_value<T>(
    field: &str,
    text: &Option<String>,
    parse: fn(&str) -> Option<T>,
    to_pb: fn(T) -> i32,
) -> Result<i32, ApiError> {
    let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    parse(&text.to_ascii_lowercase())
        .map(to_pb)
        .ok_or_else(|| Violations::one(field, format!("unknown value {text:?}")).into())
}

fn date_param(field: &str, text: &Option<String>) -> Result<Option<pb::CalendarDate>, ApiError> {
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => parse_iso_date(t)
            .map(|d| Some(convert::date_to_pb(d)))
            .ok_or_else(|| Violations::one(field, "must be a date of the form YYYY-MM-DD").into()),
    }
}

// ---- the queue -----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    pub prefecture: Option<String>,
    pub procedure: Option<String>,
    pub motif: Option<String>,
    pub channel: Option<String>,
    pub state: Option<String>,
    /// Only files whose proof of stay ends on or before this date.
    pub cover_ends_before: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct QueueEntryView {
    pub position: usize,
    pub reference: String,
    pub channel: &'static str,
    pub procedure: String,
    pub motif: String,
    pub prefecture: String,
    pub legal_filing_date: String,
    pub queue_date: String,
    pub urgency: String,
    pub state: String,
    pub cover_until: Option<String>,
    pub title_expires_on: Option<String>,
    pub taken_by: Option<String>,
    pub linked: Vec<String>,
}

/// `GET /api/v1/queue`: the equal-rights queue, most urgent and oldest first.
pub async fn queue(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<QueueQuery>,
) -> Result<Json<Vec<QueueEntryView>>, ApiError> {
    if q.limit == Some(0) || q.limit.is_some_and(|l| l > 500) {
        return Err(Violations::one("limit", "must be between 1 and 500").into());
    }
    let request = pb::ListQueueRequest {
        prefecture: q.prefecture.clone().unwrap_or_default(),
        limit: q.limit.unwrap_or(50),
        procedure: code_value(
            "procedure",
            &q.procedure,
            Procedure::parse,
            convert::procedure_to_pb,
        )?,
        motif: code_value("motif", &q.motif, Motif::parse, convert::motif_to_pb)?,
        channel: code_value("channel", &q.channel, Channel::parse, |c| {
            convert::channel_to_pb(c) as i32
        })?,
        state: code_value("state", &q.state, CaseState::parse, |s| {
            convert::case_state_to_pb(s) as i32
        })?,
        cover_ends_before: date_param("cover_ends_before", &q.cover_ends_before)?,
    };
    let entries = state
        .instruction
        .clone()
        .list_queue(request)
        .await?
        .into_inner()
        .entries;
    Ok(Json(
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| QueueEntryView {
                position: i + 1,
                channel: channel_text(e.channel),
                procedure: convert::procedure_text(e.procedure).unwrap_or_default(),
                motif: convert::motif_text(e.motif).unwrap_or_default(),
                legal_filing_date: date_text(&e.legal_filing_date),
                queue_date: date_text(&e.queue_date),
                urgency: convert::urgency_text(e.urgency).unwrap_or_default(),
                state: convert::case_state_text(e.state).unwrap_or_default(),
                cover_until: e.cover_until.as_ref().map(|d| date_text(&Some(*d))),
                title_expires_on: e.title_expires_on.as_ref().map(|d| date_text(&Some(*d))),
                taken_by: (!e.taken_by.is_empty()).then_some(e.taken_by),
                linked: e.linked,
                prefecture: e.prefecture,
                reference: e.reference,
            })
            .collect(),
    ))
}

// ---- the person's view -------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CoverView {
    /// What proves legal stay: current_title, legal_extension, prolongation,
    /// rights_creating, favourable_decision; null when nothing does.
    pub basis: Option<String>,
    pub until: Option<String>,
    pub open_ended: bool,
}

fn cover_view(c: Option<pb::Cover>) -> CoverView {
    let c = c.unwrap_or_default();
    CoverView {
        basis: (!c.basis.is_empty()).then_some(c.basis),
        until: c.until.as_ref().map(|d| date_text(&Some(*d))),
        open_ended: c.open_ended,
    }
}

#[derive(Debug, Serialize)]
pub struct AttestationJson {
    pub id: u64,
    pub kind: String,
    pub valid_from: String,
    /// Null: until the card is handed over.
    pub valid_until: Option<String>,
    pub issued_at: String,
    pub verification_code: String,
}

fn attestation_json(a: pb::AttestationView) -> AttestationJson {
    AttestationJson {
        id: a.id,
        kind: a.kind,
        valid_from: date_text(&a.valid_from),
        valid_until: a.valid_until.as_ref().map(|d| date_text(&Some(*d))),
        issued_at: time_text(&a.issued_at),
        verification_code: a.verification_code,
    }
}

fn kinds_text(kinds: &[i32]) -> Vec<String> {
    kinds
        .iter()
        .map(|k| convert::document_kind_text(*k).unwrap_or_default())
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    pub birth_date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub reference: String,
    pub channel: &'static str,
    pub state: String,
    pub legal_filing_date: String,
    pub missing: Vec<String>,
    pub documents_deadline: Option<String>,
    pub cover: CoverView,
    pub attestations: Vec<AttestationJson>,
    pub files_ahead: u32,
    /// 80th percentile of observed days to decision; null until enough
    /// decisions were observed for a figure worth giving.
    pub estimated_days_to_decision: Option<u32>,
    pub decisions_observed: u32,
    pub linked: Vec<String>,
    /// Whom the attestations name, as an employer or benefits office needs it.
    pub holder: HolderJson,
    /// Days since the title expired that nothing covered.
    pub uncovered: Vec<PeriodJson>,
}

/// Consecutive days, both included.
#[derive(Debug, Serialize)]
pub struct PeriodJson {
    pub from: String,
    pub until: String,
}

fn periods_json(periods: Vec<pb::Period>) -> Vec<PeriodJson> {
    periods
        .into_iter()
        .map(|p| PeriodJson {
            from: date_text(&p.from),
            until: date_text(&p.until),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct HolderJson {
    pub family_name: String,
    pub given_names: String,
    pub birth_date: String,
    pub nationality: String,
    pub foreigner_number: Option<String>,
}

fn holder_json(h: Option<pb::AttestationHolder>) -> HolderJson {
    let h = h.unwrap_or_default();
    HolderJson {
        family_name: h.family_name,
        given_names: h.given_names,
        birth_date: date_text(&h.birth_date),
        nationality: h.nationality,
        foreigner_number: (!h.foreigner_number.is_empty()).then_some(h.foreigner_number),
    }
}

#[derive(Debug, Serialize)]
pub struct AttestationCheckJson {
    pub valid_today: bool,
    pub reference: String,
    pub attestation: AttestationJson,
    pub holder: HolderJson,
}

/// `GET /api/v1/attestations/{verification_code}`: for an employer or a
/// benefits office holding the paper, is it genuine, valid today, and whose.
pub async fn verify_attestation(
    State(state): State<AppState>,
    PathParam(code): PathParam,
) -> Result<Json<AttestationCheckJson>, ApiError> {
    let check = state
        .instruction
        .clone()
        .verify_attestation(pb::VerifyAttestationRequest {
            verification_code: code,
        })
        .await?
        .into_inner();
    Ok(Json(AttestationCheckJson {
        valid_today: check.valid_today,
        reference: check.reference,
        attestation: attestation_json(check.attestation.unwrap_or_default()),
        holder: holder_json(check.holder),
    }))
}

/// `GET /api/v1/dossiers/{reference}/status?birth_date=YYYY-MM-DD`: where my
/// file stands. The birth date is the identity check.
pub async fn status(
    State(state): State<AppState>,
    PathParam(reference): PathParam,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Json<StatusJson>, ApiError> {
    let reference = parse_reference(&reference)?;
    let birth_date = date_param("birth_date", &q.birth_date)?.ok_or_else(|| {
        ApiError::from(Violations::one(
            "birth_date",
            "is required, as an identity check",
        ))
    })?;
    let s = state
        .instruction
        .clone()
        .get_status(pb::GetStatusRequest {
            reference: reference.to_string(),
            birth_date: Some(birth_date),
        })
        .await?
        .into_inner();
    Ok(Json(StatusJson {
        channel: channel_text(s.channel),
        state: convert::case_state_text(s.state).unwrap_or_default(),
        legal_filing_date: date_text(&s.legal_filing_date),
        missing: kinds_text(&s.missing),
        documents_deadline: s.documents_deadline.as_ref().map(|d| date_text(&Some(*d))),
        cover: cover_view(s.cover),
        attestations: s.attestations.into_iter().map(attestation_json).collect(),
        files_ahead: s.files_ahead,
        estimated_days_to_decision: (s.decisions_observed > 0 && s.estimated_days_to_decision > 0)
            .then_some(s.estimated_days_to_decision),
        decisions_observed: s.decisions_observed,
        linked: s.linked,
        holder: holder_json(s.holder),
        uncovered: periods_json(s.uncovered),
        reference: s.reference,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefectureQuery {
    pub prefecture: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProcessingTimeJson {
    pub procedure: String,
    pub decisions: u32,
    pub median_days: Option<u32>,
    pub p80_days: Option<u32>,
    pub open: u32,
}

/// `GET /api/v1/processing-times?prefecture=59`: observed delays, published.
pub async fn processing_times(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PrefectureQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let prefecture = q.prefecture.filter(|p| !p.is_empty()).ok_or_else(|| {
        ApiError::from(Violations::one(
            "prefecture",
            "is required (a département code such as 59)",
        ))
    })?;
    let r = state
        .instruction
        .clone()
        .processing_times(pb::ProcessingTimesRequest { prefecture })
        .await?
        .into_inner();
    let rows: Vec<ProcessingTimeJson> = r
        .rows
        .into_iter()
        .map(|t| ProcessingTimeJson {
            procedure: convert::procedure_text(t.procedure).unwrap_or_default(),
            decisions: t.decisions,
            median_days: (t.decisions > 0).then_some(t.median_days),
            p80_days: (t.decisions > 0).then_some(t.p80_days),
            open: t.open,
        })
        .collect();
    Ok(Json(
        serde_json::json!({"prefecture": r.prefecture, "procedures": rows}),
    ))
}

// ---- the agents' desk ------------------------------------------------------------------

pub(crate) fn agent_of(headers: &HeaderMap) -> Result<String, ApiError> {
    crate::extract::header_text(headers, AGENT_HEADER, "X-Agent-Id")?
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("X-Agent-Id"),
                "agents must say who they are",
            )
        })
}

#[derive(Debug, Serialize)]
pub struct CaseJson {
    pub dossier: DossierView,
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

/// `POST /api/v1/agent/queue/next`: take the next file of my prefecture.
pub async fn take_next(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TakeNextBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let agent_id = agent_of(&headers)?;
    let case = state
        .desk
        .clone()
        .take_next(pb::TakeNextRequest {
            agent_id,
            prefecture: body.prefecture.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
}

/// `GET /api/v1/agent/dossiers/{reference}`: the whole file; the read is recorded.
pub async fn read_case(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParam(reference): PathParam,
) -> Result<Json<CaseJson>, ApiError> {
    let agent_id = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let case = state
        .desk
        .clone()
        .read_case(pb::ReadCaseRequest {
            agent_id,
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
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
    headers: HeaderMap,
    PathParam(reference): PathParam,
    JsonBody(body): JsonBody<DocumentRequestBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let agent_id = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let mut kinds = Vec::with_capacity(body.kinds.len());
    for (i, k) in body.kinds.iter().enumerate() {
        kinds.push(code_value(
            &format!("kinds[{i}]"),
            &Some(k.clone()),
            DocumentKind::parse,
            convert::document_kind_to_pb,
        )?);
    }
    let case = state
        .desk
        .clone()
        .request_documents(pb::RequestDocumentsRequest {
            agent_id,
            reference: reference.to_string(),
            kinds,
            deadline: date_param("deadline", &body.deadline)?,
            reason: body.reason.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
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
    headers: HeaderMap,
    PathParam(reference): PathParam,
    JsonBody(body): JsonBody<DocumentBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let actor = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let channel = code_value("channel", &body.channel, Channel::parse, |c| {
        convert::channel_to_pb(c) as i32
    })?;
    let kind = code_value(
        "document.kind",
        &body.kind,
        DocumentKind::parse,
        convert::document_kind_to_pb,
    )?;
    let case = state
        .desk
        .clone()
        .add_document(pb::AddDocumentRequest {
            actor,
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
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
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
    headers: HeaderMap,
    PathParam(reference): PathParam,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let agent_id = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let favourable = body.favourable.ok_or_else(|| {
        ApiError::from(Violations::one("favourable", "is required: true or false"))
    })?;
    let case = state
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
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalBody {
    pub reason: Option<String>,
}

/// `POST /api/v1/agent/dossiers/{reference}/withdrawal`
pub async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParam(reference): PathParam,
    JsonBody(body): JsonBody<WithdrawalBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let actor = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let case = state
        .desk
        .clone()
        .withdraw(pb::WithdrawRequest {
            actor,
            reference: reference.to_string(),
            reason: body.reason.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
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
    headers: HeaderMap,
    PathParam(reference): PathParam,
    JsonBody(body): JsonBody<LinkBody>,
) -> Result<Json<CaseJson>, ApiError> {
    let agent_id = agent_of(&headers)?;
    let reference = parse_reference(&reference)?;
    let same_request = body.same_request.ok_or_else(|| {
        ApiError::from(Violations::one(
            "same_request",
            "is required: true or false",
        ))
    })?;
    let case = state
        .desk
        .clone()
        .confirm_link(pb::ConfirmLinkRequest {
            agent_id,
            reference: reference.to_string(),
            same_request,
        })
        .await?
        .into_inner();
    Ok(Json(case_json(case)))
}
