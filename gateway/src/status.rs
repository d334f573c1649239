//! What anyone may look up about the instruction of files: the public queue
//! with its filters, where a person's file stands (by reference and birth
//! date), processing times, and the check of an attestation's code.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use guichet_dossier::{CaseState, Channel, Motif, Procedure, Reference, UrgencyClass, Violations};
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{PathParam, QueryParams, ReferenceParam, code_value, date_param};
use crate::state::AppState;
use crate::views::{
    AttestationJson, CoverView, PeriodJson, attestation_json, channel_text, cover_view, date_text,
    kinds_text, periods_json,
};

// ---- the queue -----------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    pub prefecture: Option<String>,
    pub procedure: Option<String>,
    pub motif: Option<String>,
    pub channel: Option<String>,
    pub state: Option<String>,
    /// Only files whose proof of stay ends on or before this date.
    pub cover_ends_before: Option<String>,
    /// critical, soon or routine: today's class, from the cover's end.
    pub urgency: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct QueueEntryView {
    pub position: usize,
    /// Agents of the prefecture only: the public view names no file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
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
    access: crate::policy::Access,
    QueryParams(q): QueryParams<QueueQuery>,
) -> Result<Json<Vec<QueueEntryView>>, ApiError> {
    // An agent of one prefecture means theirs when they name none.
    let own = access.own_prefectures();
    let prefecture = q.prefecture.clone().or(match own.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    });
    let grant = match &prefecture {
        Some(p) => access.allow(&guichet_access::Facts::none().prefecture(p))?,
        None => access.allow(&guichet_access::Facts::none())?,
    };
    // The public view: order and delays, no reference, holder or link.
    let full = grant.who != guichet_access::Who::Anyone;
    if q.limit == Some(0) || q.limit.is_some_and(|l| l > 500) {
        return Err(Violations::one("limit", "must be between 1 and 500").into());
    }
    let request = pb::ListQueueRequest {
        prefecture: prefecture.unwrap_or_default(),
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
        urgency: code_value(
            "urgency",
            &q.urgency,
            UrgencyClass::parse,
            convert::urgency_to_pb,
        )?,
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
                taken_by: (full && !e.taken_by.is_empty()).then_some(e.taken_by),
                linked: if full { e.linked } else { Vec::new() },
                prefecture: e.prefecture,
                reference: full.then_some(e.reference),
            })
            .collect(),
    ))
}

// ---- the person's view -------------------------------------------------------------

/// Whether instruction has recorded `reference` (without personal data).
async fn dossier_exists(state: &AppState, reference: &Reference) -> bool {
    state
        .instruction
        .clone()
        .get_dossier(pb::GetDossierRequest {
            reference: reference.to_string(),
        })
        .await
        .is_ok()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    pub birth_date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub reference: String,
    /// A receipt for each document received.
    pub documents: Vec<crate::uploads::ReceiptJson>,
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
    /// Other filings of the same request: with the person's code only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked: Option<Vec<String>>,
    /// Whom the file names: with the person's code only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<HolderJson>,
    /// Days since the title expired that nothing covered.
    pub uncovered: Vec<PeriodJson>,
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
    pub attestation: AttestationJson,
    /// Whose it is, by name only: what an employer compares with the paper
    /// and an identity document, and nothing more.
    pub holder: NameJson,
}

#[derive(Debug, Serialize)]
pub struct NameJson {
    pub family_name: String,
    pub given_names: String,
}

/// `GET /api/v1/attestations/{verification_code}`: for an employer or a
/// benefits office holding the paper, is it genuine, valid today, and whose
/// (the name only: no birth date, nationality, foreigner number or file
/// reference). Unknown codes count against the client's address like wrong
/// birth dates do (`GUICHET_ATTESTATION_TRIES`), so codes cannot be tried
/// in bulk.
pub async fn verify_attestation(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    PathParam(code): PathParam,
) -> Result<Json<AttestationCheckJson>, ApiError> {
    let keys: Vec<String> = peer
        .map(|Extension(ConnectInfo(peer))| format!("client:{}", peer.ip()))
        .into_iter()
        .collect();
    let now = state.clock.now();
    if let Some(wait) = state.attestation_tries.wait(&keys, now) {
        return Err(ApiError::too_many(
            "code",
            "too many unknown codes from this address; try again later",
            wait,
        ));
    }
    let answer = state
        .instruction
        .clone()
        .verify_attestation(pb::VerifyAttestationRequest {
            verification_code: code,
        })
        .await;
    if answer
        .as_ref()
        .is_err_and(|e| e.code() == tonic::Code::NotFound)
    {
        state.attestation_tries.fail(&keys, now);
    }
    let check = answer?.into_inner();
    let holder = check.holder.unwrap_or_default();
    Ok(Json(AttestationCheckJson {
        valid_today: check.valid_today,
        attestation: attestation_json(check.attestation.unwrap_or_default()),
        holder: NameJson {
            family_name: holder.family_name,
            given_names: holder.given_names,
        },
    }))
}

/// What wrong birth dates and wrong codes count against: the file, and the
/// client's address.
pub fn try_keys(
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &Reference,
) -> Vec<String> {
    let mut keys = vec![format!("reference:{reference}")];
    if let Some(Extension(ConnectInfo(peer))) = peer {
        keys.push(format!("client:{}", peer.ip()));
    }
    keys
}

/// The status of `reference` if `birth_date` is its holder's: the identity
/// check of the status look-up and of asking for a code. Wrong birth dates
/// count per file and per client address; past the limit, a 429.
pub async fn check_birth_date(
    state: &AppState,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &Reference,
    birth_date: pb::CalendarDate,
) -> Result<pb::StatusView, ApiError> {
    let keys = try_keys(peer, reference);
    let now = state.clock.now();
    if let Some(wait) = state.status_tries.wait(&keys, now) {
        return Err(ApiError::too_many(
            "birth_date",
            "too many wrong birth dates for this file or from this address; try again later",
            wait,
        ));
    }
    let answer = state
        .instruction
        .clone()
        .get_status(pb::GetStatusRequest {
            reference: reference.to_string(),
            birth_date: Some(birth_date),
        })
        .await;
    if answer
        .as_ref()
        .is_err_and(|e| e.code() == tonic::Code::NotFound)
        && dossier_exists(state, reference).await
    {
        // A wrong birth date for a file that exists. A file not recorded
        // yet (asked right after filing) or a reference nobody has is not a
        // try: the reference alone says no more than `GET /dossiers/{ref}`.
        state.status_tries.fail(&keys, now);
    }
    Ok(answer?.into_inner())
}

/// `GET /api/v1/dossiers/{reference}/status?birth_date=YYYY-MM-DD`: where my
/// file stands. The birth date is the identity check; it shows the state,
/// the cover, the attestations and the delays. With the code sent to the
/// person (`X-Person-Code`), also whom the file names and the filings
/// linked to it.
pub async fn status(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Json<StatusJson>, ApiError> {
    let reference = reference.parse()?;
    let birth_date = date_param("birth_date", &q.birth_date)?.ok_or_else(|| {
        ApiError::from(Violations::one(
            "birth_date",
            "is required, as an identity check",
        ))
    })?;
    let s = check_birth_date(&state, peer.as_ref(), &reference, birth_date).await?;
    let person = crate::person_code::proof(&state, &headers, peer.as_ref(), &reference).await?;
    let grant = access.allow_person(
        person,
        &guichet_access::Facts::none().dossier(reference.as_str()),
    )?;
    let with_code = grant.who == guichet_access::Who::PersonWithCode;
    let mut documents: Vec<crate::uploads::ReceiptJson> = s
        .documents
        .iter()
        .map(crate::uploads::receipt_json)
        .collect();
    crate::uploads::look_up_files(&state.uploads.store, &mut documents).await;
    Ok(Json(StatusJson {
        documents,
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
        linked: with_code.then_some(s.linked),
        holder: with_code.then(|| holder_json(s.holder)),
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
