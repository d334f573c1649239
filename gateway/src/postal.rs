//! REST for the mailroom: print forms and separator sheets, upload a scanned
//! batch (multipart), follow every page to its envelope and outcome, key
//! envelopes, and print the letters for postal filers. Scanning-station and
//! mailroom software may use gRPC (`guichet.v1.Postal`) through the gateway
//! instead.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use guichet_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::server::{UPLOAD_TIMEOUT, timeout};
use crate::state::{AppState, MAX_UPLOAD_BYTES};

/// The mailroom: forms, separators, batches, keying and letters.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/postal/forms", post(print_form))
        .route("/api/v1/postal/separators", get(print_separators))
        .route("/api/v1/postal/batches/{id}", get(batch))
        .route("/api/v1/postal/keying", get(keying))
        .route("/api/v1/postal/envelopes/{id}", get(envelope))
        .route("/api/v1/postal/envelopes/{id}/confirmation", post(confirm))
        .route("/api/v1/postal/envelopes/{id}/routing", post(route))
        .route("/api/v1/postal/envelopes/{id}/attachment", post(attach))
        .route("/api/v1/postal/pages/{sha256}", get(page))
        .route("/api/v1/postal/letters", get(letters))
        .route("/api/v1/postal/letters/{id}", get(letter))
}

/// Scanned batches, over REST and gRPC: large bodies, and time to store
/// every page.
pub fn upload_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/postal/batches",
            post(upload)
                .layer::<_, Infallible>(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
                .layer::<_, Infallible>(timeout(UPLOAD_TIMEOUT)),
        )
        .route(
            "/guichet.v1.Postal/{method}",
            post(crate::grpc_proxy::pass_on).layer::<_, Infallible>(timeout(UPLOAD_TIMEOUT)),
        )
}

fn document(d: pb::PrintedDocument, filename: &str) -> Response {
    let mut response = d.content.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&d.media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&d.id) {
        headers.insert("x-document-id", v);
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormJson {
    #[serde(default)]
    pub procedure: String,
    #[serde(default)]
    pub prefill: BTreeMap<String, String>,
}

/// `POST /api/v1/postal/forms`: a form as PDF; its id in `X-Document-Id`.
pub async fn print_form(
    State(state): State<AppState>,
    JsonBody(f): JsonBody<FormJson>,
) -> Result<Response, ApiError> {
    let d = state
        .postal
        .clone()
        .print_form(pb::PrintFormRequest {
            procedure: f.procedure,
            prefill: f.prefill.into_iter().collect(),
        })
        .await?
        .into_inner();
    let name = format!("formulaire-{}.pdf", d.id);
    Ok(document(d, &name))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparatorsQuery {
    pub count: Option<u32>,
}

/// `GET /api/v1/postal/separators?count=20`
pub async fn print_separators(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<SeparatorsQuery>,
) -> Result<Response, ApiError> {
    let d = state
        .postal
        .clone()
        .print_separators(pb::PrintSeparatorsRequest {
            count: q.count.unwrap_or(1),
        })
        .await?
        .into_inner();
    Ok(document(d, "separateurs.pdf"))
}

#[derive(Debug, Serialize)]
pub struct StoredPageJson {
    pub seq: u32,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct UploadJson {
    pub batch_id: String,
    pub pages: Vec<StoredPageJson>,
}

/// `POST /api/v1/postal/batches`, multipart: text parts `station_id`,
/// `reception_date`, `postmark_date` (one per envelope, in stack order,
/// empty where there is none) and `idempotency_key`; file parts with their
/// own content type (application/pdf, image/tiff, image/png). Answers once
/// every page is stored: 201, or 200 for an upload already received.
pub async fn upload(
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadJson>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("content-type"),
            format!("send the batch as multipart/form-data with its boundary ({e})"),
        )
    })?;
    let mut request = pb::UploadBatchRequest::default();
    let mut received: u64 = 0;
    let mut kept = Vec::new();
    let bad = |field: &str, e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), Some(field), e.body_text())
    };
    // Every file stored so far is taken back if the request fails here.
    let collected: Result<(), ApiError> = async {
        while let Some(part) = multipart.next_field().await.map_err(|e| bad("body", e))? {
            let name = part.name().unwrap_or_default().to_string();
            let filename = part.file_name().map(str::to_string);
            let media_type = part.content_type().map(str::to_string);
            match (name.as_str(), filename) {
                (_, Some(filename)) => {
                    let media_type = media_type.unwrap_or_else(|| guess(&filename).to_string());
                    // Streamed to the document store: the batch is never whole
                    // in the gateway's memory, nor in the message to the postal
                    // service, which fetches each file in turn.
                    let at = format!("files[{}]", request.files.len());
                    let room = (MAX_UPLOAD_BYTES as u64).saturating_sub(received);
                    let content =
                        part.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
                    let stored = state
                        .uploads
                        .store
                        .put_stream(content, room)
                        .await
                        .map_err(|e| match e {
                            guichet_kit::documents::DocumentError::TooLarge { limit } => {
                                ApiError::new(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    Some(&at),
                                    format!("the batch is over {limit} bytes"),
                                )
                            }
                            guichet_kit::documents::DocumentError::Content(e) => {
                                ApiError::new(StatusCode::BAD_REQUEST, Some(&at), e.to_string())
                            }
                            other => crate::uploads::store_unavailable(
                                "a scanned file could not be stored",
                                &other,
                            ),
                        })?;
                    received += stored.size;
                    request.files.push(pb::ScanFile {
                        media_type,
                        content: Vec::new(),
                        filename,
                        sha256: stored.sha256.clone(),
                    });
                    kept.push(stored);
                }
                ("station_id" | "reception_date" | "postmark_date" | "idempotency_key", None) => {
                    let text = part.text().await.map_err(|e| bad(&name, e))?;
                    if let Some(problem) =
                        guichet_dossier::text::problem(&text, guichet_dossier::text::kind_of(&name))
                    {
                        return Err(ApiError::new(StatusCode::BAD_REQUEST, Some(&name), problem));
                    }
                    match name.as_str() {
                        "station_id" => request.station_id = text,
                        "reception_date" => request.reception_date = text,
                        "postmark_date" => request.postmark_dates.push(text),
                        _ => request.idempotency_key = text,
                    }
                }
                (other, None) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        Some(other),
                        "unknown part: send station_id, reception_date, postmark_date, \
                         idempotency_key and files",
                    ));
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = collected {
        for stored in &kept {
            state.uploads.store.withdraw(stored).await;
        }
        return Err(e);
    }
    let answer = state.postal.clone().upload_batch(request).await;
    let r = match answer {
        Ok(r) => r.into_inner(),
        Err(refused) => {
            // The batch was not taken: its files do not stay.
            for stored in &kept {
                state.uploads.store.withdraw(stored).await;
            }
            return Err(refused.into());
        }
    };
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(UploadJson {
            batch_id: r.batch_id,
            pages: r
                .pages
                .into_iter()
                .map(|p| StoredPageJson {
                    seq: p.seq,
                    sha256: p.sha256,
                })
                .collect(),
        }),
    ))
}

fn guess(filename: &str) -> &'static str {
    let lower = filename.to_ascii_lowercase();
    if lower.ends_with(".pdf") {
        "application/pdf"
    } else if lower.ends_with(".tif") || lower.ends_with(".tiff") {
        "image/tiff"
    } else if lower.ends_with(".png") {
        "image/png"
    } else {
        "application/octet-stream"
    }
}

#[derive(Debug, Serialize)]
pub struct FieldJson {
    pub key: String,
    pub value: String,
    pub confidence: f64,
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct EnvelopeJson {
    pub id: String,
    pub batch_id: String,
    pub seq: u32,
    pub page_count: u32,
    pub state: String,
    pub postmark_date: Option<String>,
    pub reception_date: String,
    pub form_id: Option<String>,
    pub code_problem: Option<String>,
    pub fields: Vec<FieldJson>,
    pub reference: Option<String>,
    pub routed_reason: Option<String>,
    pub routed_to: Option<String>,
    pub keyed_by: Option<String>,
    pub pages: Vec<String>,
    pub ocr_text: String,
    /// Why the postmark needs a second operator's confirmation, if it does.
    pub postmark_doubt: Option<String>,
    pub history: Vec<EnvelopeEventJson>,
}

#[derive(Debug, Serialize)]
pub struct EnvelopeEventJson {
    pub kind: String,
    pub operator_id: String,
    pub at: String,
    pub postmark_date: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn envelope_json(e: pb::Envelope) -> EnvelopeJson {
    EnvelopeJson {
        id: e.id,
        batch_id: e.batch_id,
        seq: e.seq,
        page_count: e.page_count,
        state: e.state,
        postmark_date: some(e.postmark_date),
        reception_date: e.reception_date,
        form_id: some(e.form_id),
        code_problem: some(e.code_problem),
        fields: e
            .fields
            .into_iter()
            .map(|f| FieldJson {
                key: f.key,
                value: f.value,
                confidence: f.confidence,
                source: f.source,
            })
            .collect(),
        reference: some(e.reference),
        routed_reason: some(e.routed_reason),
        routed_to: some(e.routed_to),
        keyed_by: some(e.keyed_by),
        pages: e.page_sha256,
        ocr_text: e.ocr_text,
        postmark_doubt: some(e.postmark_doubt),
        history: e
            .history
            .into_iter()
            .map(|h| EnvelopeEventJson {
                at: crate::views::time_text(&h.at),
                kind: h.kind,
                operator_id: h.operator_id,
                postmark_date: some(h.postmark_date),
                reason: some(h.reason),
                reference: some(h.reference),
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
pub struct PageTraceJson {
    pub seq: u32,
    pub sha256: String,
    pub role: String,
    pub envelope_id: Option<String>,
    pub code: String,
    pub outcome: String,
}

#[derive(Debug, Serialize)]
pub struct BatchJson {
    pub id: String,
    pub station_id: String,
    pub reception_date: String,
    pub state: String,
    pub pages: Vec<PageTraceJson>,
    pub envelopes: Vec<EnvelopeJson>,
}

/// `GET /api/v1/postal/batches/{id}`: every page, its envelope and outcome.
pub async fn batch(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Json<BatchJson>, ApiError> {
    let b = state
        .postal
        .clone()
        .get_batch(pb::GetBatchRequest { batch_id: id })
        .await?
        .into_inner();
    Ok(Json(BatchJson {
        id: b.id,
        station_id: b.station_id,
        reception_date: b.reception_date,
        state: b.state,
        pages: b
            .pages
            .into_iter()
            .map(|p| PageTraceJson {
                seq: p.seq,
                sha256: p.sha256,
                role: p.role,
                envelope_id: some(p.envelope_id),
                code: p.code,
                outcome: p.outcome,
            })
            .collect(),
        envelopes: b.envelopes.into_iter().map(envelope_json).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    pub limit: Option<u32>,
    pub reference: Option<String>,
}

/// `GET /api/v1/postal/keying?limit=50`: envelopes waiting for an operator.
pub async fn keying(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<LimitQuery>,
) -> Result<Json<Vec<EnvelopeJson>>, ApiError> {
    let r = state
        .postal
        .clone()
        .list_keying(pb::ListKeyingRequest {
            limit: q.limit.unwrap_or(50),
        })
        .await?
        .into_inner();
    Ok(Json(r.envelopes.into_iter().map(envelope_json).collect()))
}

pub async fn envelope(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Json<EnvelopeJson>, ApiError> {
    let e = state
        .postal
        .clone()
        .get_envelope(pb::GetEnvelopeRequest { envelope_id: id })
        .await?
        .into_inner();
    Ok(Json(envelope_json(e)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmJson {
    /// The operator signed in; may be left out.
    pub operator_id: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub postmark_date: String,
    #[serde(default)]
    pub postmark_reason: String,
}

/// The operator acting: the one signed in. A body naming someone else is
/// refused: the two-operator check on doubtful postmarks rests on it.
fn operator(access: &crate::policy::Access, named: Option<String>) -> Result<String, ApiError> {
    let signed_in = access.acting_agent()?;
    match named {
        Some(n) if !n.is_empty() && n != signed_in => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("operator_id"),
            format!("is the operator signed in ({signed_in}), or left out"),
        )),
        _ => Ok(signed_in),
    }
}

/// `POST /api/v1/postal/envelopes/{id}/confirmation`: the operator's fields;
/// the envelope becomes a dossier (its reference in the answer): 200. A
/// doubtful postmark is held on its first confirmation for another
/// operator's (state `postmark_check`): 202, nothing filed yet.
pub async fn confirm(
    State(state): State<AppState>,
    access: crate::policy::Access,
    PathParam(id): PathParam,
    JsonBody(c): JsonBody<ConfirmJson>,
) -> Result<(StatusCode, Json<EnvelopeJson>), ApiError> {
    let operator_id = operator(&access, c.operator_id)?;
    let e = state
        .postal
        .clone()
        .confirm_envelope(pb::ConfirmEnvelopeRequest {
            envelope_id: id,
            operator_id,
            fields: c.fields.into_iter().collect(),
            postmark_date: c.postmark_date,
            postmark_reason: c.postmark_reason,
        })
        .await?
        .into_inner();
    let status = if e.state == "postmark_check" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(envelope_json(e))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachJson {
    /// The operator signed in; may be left out.
    pub operator_id: Option<String>,
    /// The dossier the envelope's pages are documents of.
    pub reference: String,
    /// What each page is (pages not named are not recorded: a cover letter).
    pub pages: Vec<AttachedPageJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedPageJson {
    pub sha256: String,
    pub kind: String,
}

/// `POST /api/v1/postal/envelopes/{id}/attachment`: an envelope that
/// answers a request for documents. Its pages are recorded as documents of
/// the dossier (a receipt each, completeness recomputed), then the envelope
/// is closed as attached. Recording is idempotent, so a retry after a
/// failure in between does no harm.
pub async fn attach(
    State(state): State<AppState>,
    access: crate::policy::Access,
    PathParam(id): PathParam,
    JsonBody(a): JsonBody<AttachJson>,
) -> Result<Json<EnvelopeJson>, ApiError> {
    let operator_id = operator(&access, a.operator_id)?;
    let bad =
        |field: &str, problem: &str| ApiError::new(StatusCode::BAD_REQUEST, Some(field), problem);
    let reference = guichet_dossier::Reference::parse(a.reference.trim())
        .map_err(|e| bad("reference", &e.to_string()))?;
    if a.pages.is_empty() {
        return Err(bad(
            "pages",
            "name at least one page and what document it is",
        ));
    }
    let envelope = state
        .postal
        .clone()
        .get_envelope(pb::GetEnvelopeRequest {
            envelope_id: id.clone(),
        })
        .await?
        .into_inner();
    if !matches!(envelope.state.as_str(), "keying" | "postmark_check") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("state"),
            format!(
                "this envelope is {}, not waiting for keying",
                envelope.state
            ),
        ));
    }
    let mut documents = Vec::with_capacity(a.pages.len());
    for (i, page) in a.pages.iter().enumerate() {
        let sha256 = page.sha256.trim().to_ascii_lowercase();
        if !envelope.page_sha256.contains(&sha256) {
            return Err(bad(
                &format!("pages[{i}].sha256"),
                "is not a page of this envelope",
            ));
        }
        let kind = guichet_dossier::DocumentKind::parse(page.kind.trim())
            .ok_or_else(|| bad(&format!("pages[{i}].kind"), "is not a document kind"))?;
        let size =
            state.uploads.store.head(&sha256).await.map_err(|e| {
                crate::uploads::store_unavailable("a page could not be looked up", &e)
            })?;
        let Some(size) = size else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                Some(&format!("pages[{i}].sha256")),
                "this page's scan is not in the document store",
            ));
        };
        documents.push(pb::DocumentRef {
            kind: guichet_proto::convert::document_kind_to_pb(kind),
            sha256,
            media_type: "image/png".into(),
            size_bytes: size,
            filename: format!("envelope {id}, page {}", i + 1),
        });
    }
    // The dossier exists, and the operator may act on it.
    crate::dossiers::allow_on_dossier(&state, &access, &reference, None, false).await?;
    for document in documents {
        state
            .desk
            .clone()
            .add_document(pb::AddDocumentRequest {
                actor: operator_id.clone(),
                reference: reference.to_string(),
                document: Some(document),
                channel: pb::Channel::Postal as i32,
            })
            .await?;
    }
    let e = state
        .postal
        .clone()
        .attach_envelope(pb::AttachEnvelopeRequest {
            envelope_id: id,
            operator_id,
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(envelope_json(e)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJson {
    /// The operator signed in; may be left out.
    pub operator_id: Option<String>,
    pub reason: String,
    pub destination: String,
}

/// `POST /api/v1/postal/envelopes/{id}/routing`: not a filing; sent on.
pub async fn route(
    State(state): State<AppState>,
    access: crate::policy::Access,
    PathParam(id): PathParam,
    JsonBody(r): JsonBody<RouteJson>,
) -> Result<Json<EnvelopeJson>, ApiError> {
    let operator_id = operator(&access, r.operator_id)?;
    let e = state
        .postal
        .clone()
        .route_envelope(pb::RouteEnvelopeRequest {
            envelope_id: id,
            operator_id,
            reason: r.reason,
            destination: r.destination,
        })
        .await?
        .into_inner();
    Ok(Json(envelope_json(e)))
}

/// `GET /api/v1/postal/pages/{sha256}`: a stored page image.
pub async fn page(
    State(state): State<AppState>,
    PathParam(sha256): PathParam,
) -> Result<Response, ApiError> {
    let d = state
        .postal
        .clone()
        .get_page(pb::GetPageRequest { sha256 })
        .await?
        .into_inner();
    let name = format!("{}.png", d.id);
    Ok(document(d, &name))
}

#[derive(Debug, Serialize)]
pub struct LetterJson {
    pub id: String,
    pub reference: String,
    /// The envelope it answers; null for a letter to a filer of another
    /// channel, or a paper kit.
    pub envelope_id: Option<String>,
    pub kind: String,
    pub created_at: String,
    pub emailed_to: Option<String>,
    pub sha256: String,
    pub printed_at: Option<String>,
    pub printed_by: Option<String>,
    pub posted_at: Option<String>,
    pub posted_by: Option<String>,
}

pub fn letter_json(l: pb::Letter) -> LetterJson {
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(guichet_proto::convert::timestamp_from_pb)
            .map(|t| t.to_rfc3339())
    };
    LetterJson {
        created_at: time(&l.created_at).unwrap_or_default(),
        printed_at: time(&l.printed_at),
        posted_at: time(&l.posted_at),
        printed_by: some(l.printed_by),
        posted_by: some(l.posted_by),
        id: l.id,
        reference: l.reference,
        envelope_id: some(l.envelope_id),
        kind: l.kind,
        emailed_to: some(l.emailed_to),
        sha256: l.sha256,
    }
}

/// `GET /api/v1/postal/letters?reference=...`: letters to print, newest first.
pub async fn letters(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<LimitQuery>,
) -> Result<Json<Vec<LetterJson>>, ApiError> {
    let r = state
        .postal
        .clone()
        .list_letters(pb::ListLettersRequest {
            reference: q.reference.unwrap_or_default(),
            limit: q.limit.unwrap_or(100),
        })
        .await?
        .into_inner();
    Ok(Json(r.letters.into_iter().map(letter_json).collect()))
}

/// `GET /api/v1/postal/letters/{id}`: the print-ready PDF.
pub async fn letter(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let d = state
        .postal
        .clone()
        .get_letter(pb::GetLetterRequest { letter_id: id })
        .await?
        .into_inner();
    let name = format!("courrier-{}.pdf", d.id);
    Ok(document(d, &name))
}
