//! Documents uploaded on every channel: with an online filing, or later for
//! a dossier (by its person with their one-time code, or by the agent who
//! received them at a desk or in the mailroom). Each file streams to the
//! document store through the checks of `guichet_kit::documents` (type by
//! content, image size, PDF active content and pages, ClamAV); the files of
//! one request are kept together or not at all; each one kept gets a
//! receipt, and instruction recomputes what is still missing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::extract::{ConnectInfo, FromRequest, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::TryStreamExt;
use guichet_access::{Role, Who};
use guichet_dossier::filing::RawDocument;
use guichet_dossier::{Channel, DocumentKind, RawFiling};
use guichet_kit::documents::{
    CheckedUpload, DocumentStore, UploadError, UploadRules, VirusScanner,
};
use guichet_proto::{convert, v1 as pb};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::ReferenceParam;
use crate::state::AppState;
use crate::views::time_text;

/// The filing's own JSON part, at most.
const FILING_PART_BYTES: usize = 256 * 1024;

/// What the gateway needs to take uploads.
pub struct Uploads {
    pub store: DocumentStore,
    pub scanner: VirusScanner,
    pub rules: UploadRules,
    pub max_files: usize,
    pub max_dossier_bytes: u64,
}

impl Uploads {
    /// The largest request of files: every file at its limit, and room for
    /// the parts' headers and the filing.
    pub fn max_request_bytes(&self) -> usize {
        let files = self
            .rules
            .max_file_bytes
            .saturating_mul(self.max_files as u64);
        usize::try_from(files)
            .unwrap_or(usize::MAX)
            .saturating_add(1024 * 1024)
    }
}

/// Routes that take files: their own body limit and time.
pub fn routes(max_request_bytes: usize, request_timeout: Duration) -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .route(
            "/api/v1/dossiers",
            post(submit)
                .layer::<_, Infallible>(DefaultBodyLimit::max(max_request_bytes))
                .layer::<_, Infallible>(axum::middleware::from_fn(
                    move |request: Request, next: Next| {
                        bound_by_kind(request, next, request_timeout)
                    },
                )),
        )
        .route(
            "/api/v1/dossiers/{reference}/documents",
            post(add_documents)
                .layer::<_, Infallible>(DefaultBodyLimit::max(max_request_bytes))
                .layer::<_, Infallible>(crate::server::timeout(crate::server::UPLOAD_TIMEOUT)),
        )
        .route(
            "/api/v1/dossiers/{reference}/documents/{sha256}",
            get(download)
                .layer::<_, Infallible>(crate::server::timeout(crate::server::UPLOAD_TIMEOUT)),
        )
        .route("/api/v1/dossiers/{reference}/papers", get(list_papers))
        .route("/api/v1/dossiers/{reference}/papers/{id}", get(paper))
}

/// A filing with files (multipart) has the upload bound: its time is the
/// client's line. A filing in JSON alone has the request bound, as every
/// other call: under the upload bound, one held up behind a stuck database
/// held the person, and a place in flight, for five minutes.
async fn bound_by_kind(request: Request, next: Next, request_timeout: Duration) -> Response {
    let bound = if is_multipart(request.headers()) {
        crate::server::UPLOAD_TIMEOUT
    } else {
        request_timeout
    };
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        // What the common bound answers (`server::timeout`).
        Err(_) => StatusCode::GATEWAY_TIMEOUT.into_response(),
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// A document kept, as its receipt says it.
#[derive(Debug, Serialize)]
pub struct ReceiptJson {
    pub kind: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub media_type: String,
    pub received_at: Option<String>,
    pub channel: String,
    /// Whether the file itself is in the document store: a JSON filing
    /// declares its documents by digest, and their files may never have
    /// been sent. Absent where it was not looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_received: Option<bool>,
}

pub fn receipt_json(r: &pb::DocumentReceipt) -> ReceiptJson {
    ReceiptJson {
        kind: convert::document_kind_text(r.kind).unwrap_or_default(),
        sha256: r.sha256.clone(),
        size_bytes: r.size_bytes,
        media_type: r.media_type.clone(),
        received_at: r.received_at.is_some().then(|| time_text(&r.received_at)),
        channel: crate::views::channel_text(r.channel).to_string(),
        file_received: None,
    }
}

/// Says of each receipt whether its file is in the document store (left
/// unsaid when the store cannot be asked).
pub async fn look_up_files(store: &DocumentStore, receipts: &mut [ReceiptJson]) {
    for r in receipts {
        r.file_received = match store.head(&r.sha256).await {
            Ok(found) => Some(found.is_some()),
            Err(e) => {
                tracing::warn!(error = %e, "the document store cannot say whether a file is there");
                None
            }
        };
    }
}

/// `POST /api/v1/dossiers`: a filing as JSON (documents declared by their
/// digest), or as `multipart/form-data`: its JSON in a first part named
/// `filing`, then one file part per document, named by its kind.
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    if !is_multipart(&headers) {
        // The JSON body keeps the small limit of every other route.
        let (parts, body) = request.into_parts();
        let limited = Body::new(http_body_util::Limited::new(
            body,
            crate::server::MAX_BODY_BYTES,
        ));
        let request = Request::from_parts(parts, limited);
        let crate::extract::JsonBody(raw) =
            crate::extract::JsonBody::<RawFiling>::from_request(request, &state).await?;
        return crate::dossiers::file_online(&state, &headers, raw).await;
    }
    let mut multipart = multipart_of(request, &state).await?;
    let first = multipart
        .next_field()
        .await
        .map_err(|e| bad_body("body", &e))?;
    let Some(first) = first.filter(|f| f.name() == Some("filing")) else {
        drain(&mut multipart).await;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("filing"),
            "the first part is the filing's JSON, named `filing`; the files follow",
        ));
    };
    let json = text_part(first, "filing", FILING_PART_BYTES).await?;
    let mut json_headers = HeaderMap::new();
    json_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut raw: RawFiling = crate::extract::parse_json(&json_headers, json.as_bytes())?;
    if !raw.documents.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("filing.documents"),
            "send the documents as file parts, not listed in the filing",
        ));
    }
    let files = read_files(&state, &mut multipart, 0).await?;
    raw.documents = files
        .iter()
        .map(|f| RawDocument {
            kind: Some(f.kind.as_str().to_string()),
            sha256: Some(f.checked.sha256().to_string()),
            media_type: Some(f.checked.media_type.as_str().to_string()),
            size_bytes: Some(f.checked.size()),
            filename: f.filename.clone(),
        })
        .collect();
    // Kept only once the filing is: a refused filing leaves no document.
    let filed = crate::dossiers::file_online(&state, &headers, raw).await;
    match filed {
        Ok(answer) if answer.status().is_success() => {
            for file in files {
                state.metrics.count_upload("accepted");
                if let Err(e) = state.uploads.store.commit_upload(file.checked).await {
                    // The dossier exists and names the digest: said loudly,
                    // for an operator to restore from the staged copy.
                    tracing::error!(error = %e, "a filed document could not be kept");
                }
            }
            Ok(answer)
        }
        other => {
            discard(&state, files).await;
            other
        }
    }
}

pub(crate) async fn multipart_of(
    request: Request,
    state: &AppState,
) -> Result<Multipart, ApiError> {
    Multipart::from_request(request, state).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("body"),
            format!("send the files as multipart/form-data with its boundary ({e})"),
        )
    })
}

fn bad_body(field: &str, e: &MultipartError) -> ApiError {
    ApiError::new(e.status(), Some(field), e.body_text())
}

pub(crate) async fn text_part(
    field: Field<'_>,
    name: &str,
    max: usize,
) -> Result<String, ApiError> {
    let mut text = Vec::new();
    let mut field = field;
    while let Some(chunk) = field.chunk().await.map_err(|e| bad_body(name, &e))? {
        if text.len() + chunk.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(name),
                format!("at most {max} bytes"),
            ));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, Some(name), "must be UTF-8 text"))
}

/// A file checked and written aside, not yet kept.
pub(crate) struct File {
    pub kind: DocumentKind,
    pub filename: Option<String>,
    pub checked: CheckedUpload,
}

/// Reads what is left of a refused request's body, so that the client,
/// still sending, gets the answer rather than a connection reset. Bounded
/// by the route's body limit.
pub(crate) async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

pub(crate) async fn discard(state: &AppState, files: Vec<File>) {
    for file in files {
        state.uploads.store.discard_upload(file.checked).await;
    }
}

/// The name a file was sent under, for showing only (it never becomes a
/// path): a plain name, or a refusal that says what is wrong with it.
fn display_name(name: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err("the file name must be a plain name, without folders");
    }
    if name.chars().any(char::is_control) {
        return Err("the file name must not hold control characters");
    }
    if name.chars().count() > 200 {
        return Err("the file name is longer than 200 characters");
    }
    Ok(Some(name.to_string()))
}

/// Reads every file part, each through the checks; on the first refusal
/// the files already checked are dropped and the refusal names the file.
/// `already` is what the dossier's documents add up to.
async fn read_files(
    state: &AppState,
    multipart: &mut Multipart,
    already: u64,
) -> Result<Vec<File>, ApiError> {
    let uploads = &state.uploads;
    let mut files: Vec<File> = Vec::new();
    let mut total = already;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                discard(state, files).await;
                return Err(bad_body("body", &e));
            }
        };
        // A file input left empty: a browser still sends its part, unnamed.
        if field.file_name() == Some("") {
            let mut field = field;
            while let Ok(Some(_)) = field.chunk().await {}
            continue;
        }
        let at = format!("files[{}]", files.len());
        let outcome = if files.len() >= uploads.max_files {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(&at),
                format!("at most {} files in one request", uploads.max_files),
            ))
        } else {
            check_part(state, field, &at, total).await
        };
        match outcome {
            Ok(file) => {
                total = total.saturating_add(file.checked.size());
                files.push(file);
            }
            Err(e) => {
                discard(state, files).await;
                drain(multipart).await;
                return Err(e);
            }
        }
    }
    Ok(files)
}

/// One file part through the checks (kind by the part's name, file name,
/// size within what the dossier has room for, content, viruses), written
/// aside; a refusal names the file as `at`. `total` is what the dossier's
/// documents add up to so far.
pub(crate) async fn check_part(
    state: &AppState,
    field: Field<'_>,
    at: &str,
    total: u64,
) -> Result<File, ApiError> {
    let uploads = &state.uploads;
    let refused = |status: StatusCode, problem: String| ApiError::new(status, Some(at), problem);
    let name = field.name().unwrap_or_default().to_string();
    let kind = DocumentKind::parse(&name).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name:?} is not a document kind; name each file part by its kind"),
        )
    })?;
    let filename = display_name(field.file_name())
        .map_err(|p| refused(StatusCode::UNPROCESSABLE_ENTITY, p.to_string()))?;
    let mut rules = uploads.rules;
    let room = uploads.max_dossier_bytes.saturating_sub(total);
    if room == 0 {
        return Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the dossier's documents would pass the {} bytes accepted",
                uploads.max_dossier_bytes
            ),
        ));
    }
    rules.max_file_bytes = rules.max_file_bytes.min(room);
    let content = field.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
    let checked = uploads
        .store
        .check_upload(content, &rules, &uploads.scanner)
        .await
        .map_err(|e| {
            state.metrics.count_upload(e.code());
            upload_refusal(at, filename.as_deref(), &e)
        })?;
    Ok(File {
        kind,
        filename,
        checked,
    })
}

/// An upload's refusal as an answer: the file at fault is a 413 or a 422
/// naming it; the scanner or the store failing is a 503.
fn upload_refusal(at: &str, filename: Option<&str>, e: &UploadError) -> ApiError {
    let named = match filename {
        Some(f) => format!("{f:?}: {e}"),
        None => e.to_string(),
    };
    let status = match e {
        UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        UploadError::Interrupted(_) => StatusCode::BAD_REQUEST,
        _ if e.is_the_files() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => {
            tracing::error!(error = %e, "an upload could not be checked or stored");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    ApiError::new(status, Some(at), named)
}

/// The document store failing: logged with `what`, a 503 for the caller.
pub fn store_unavailable(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the document store is unavailable",
    )
}

/// Who may send documents for a dossier, and what they are acting as.
pub(crate) struct Sender {
    actor: String,
    channel: Channel,
    facts: pb::CaseFactsView,
}

/// The caller on a dossier's documents: an agent judged on its facts, or
/// its person with their code (a 401 for anyone else).
async fn on_dossier(
    state: &AppState,
    access: &crate::policy::Access,
    headers: &HeaderMap,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &guichet_dossier::Reference,
    with_documents: bool,
) -> Result<(guichet_access::Grant, pb::CaseFactsView), ApiError> {
    let person = crate::dossiers::person_with_code(state, access, headers, peer, reference).await?;
    crate::dossiers::allow_on_dossier(state, access, reference, person, with_documents).await
}

/// The caller on a dossier's documents, judged before any file is read.
pub(crate) async fn sender(
    state: &AppState,
    access: &crate::policy::Access,
    headers: &HeaderMap,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &guichet_dossier::Reference,
) -> Result<Sender, ApiError> {
    let (grant, facts) = on_dossier(state, access, headers, peer, reference, true).await?;
    let (actor, channel) = match grant.who {
        Who::Role(Role::MailroomOperator) => (access.acting_agent()?, Channel::Postal),
        Who::Role(Role::DeskAgent) => (access.acting_agent()?, Channel::Pan),
        Who::Role(Role::CallCentreAgent) => (access.acting_agent()?, Channel::Ccc),
        Who::Role(_) => (access.acting_agent()?, Channel::Web),
        _ => ("person".to_string(), Channel::Web),
    };
    Ok(Sender {
        actor,
        channel,
        facts,
    })
}

#[derive(Debug, Serialize)]
pub struct DocumentsAnswer {
    pub reference: String,
    /// The files of this request, each with its receipt.
    pub received: Vec<ReceiptJson>,
    /// Every document of the dossier.
    pub documents: Vec<ReceiptJson>,
    /// What is still missing, recomputed.
    pub missing: Vec<String>,
    pub state: String,
}

/// `POST /api/v1/dossiers/{reference}/documents`, multipart: one file part
/// per document, named by its kind.
async fn add_documents(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    request: Request,
) -> Result<Response, ApiError> {
    let reference = reference.parse()?;
    let sender = sender(&state, &access, &headers, peer.as_ref(), &reference).await?;
    if !is_multipart(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("content-type"),
            "send the files as multipart/form-data, one part per document named by its kind",
        ));
    }
    let mut multipart = multipart_of(request, &state).await?;
    let answer = receive_documents(&state, &sender, &reference, &mut multipart).await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The file parts left in `multipart`, each checked, kept and recorded on
/// the dossier with its receipt: the answer of `POST .../documents`, which
/// the person's page uses too.
pub(crate) async fn receive_documents(
    state: &AppState,
    sender: &Sender,
    reference: &guichet_dossier::Reference,
    multipart: &mut Multipart,
) -> Result<DocumentsAnswer, ApiError> {
    let state = state.clone();
    let already: u64 = sender.facts.documents.iter().map(|d| d.size_bytes).sum();
    let files = read_files(&state, multipart, already).await?;
    let mut kept = Vec::with_capacity(files.len());
    for file in files {
        let kind = file.kind;
        let filename = file.filename.clone().unwrap_or_default();
        let accepted = state
            .uploads
            .store
            .commit_upload(file.checked)
            .await
            .map_err(|e| upload_refusal("files", None, &e))?;
        state.metrics.count_upload("accepted");
        kept.push((kind, filename, accepted));
    }
    let mut case = None;
    let mut received = Vec::new();
    for (kind, filename, accepted) in kept {
        let view = state
            .desk
            .clone()
            .add_document(pb::AddDocumentRequest {
                actor: sender.actor.clone(),
                reference: reference.to_string(),
                document: Some(pb::DocumentRef {
                    kind: convert::document_kind_to_pb(kind),
                    sha256: accepted.sha256.clone(),
                    media_type: accepted.media_type.as_str().to_string(),
                    size_bytes: accepted.size,
                    filename,
                }),
                channel: convert::channel_to_pb(sender.channel) as i32,
            })
            .await?
            .into_inner();
        if let Some(r) =
            view.documents.iter().rev().find(|d| {
                d.sha256 == accepted.sha256 && d.kind == convert::document_kind_to_pb(kind)
            })
        {
            received.push(receipt_json(r));
        }
        case = Some(view);
    }
    // No file, no answer from instruction: nothing was sent.
    let Some(case) = case else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("files"),
            "no file: send one part per document, named by its kind",
        ));
    };
    let mut documents: Vec<ReceiptJson> = case.documents.iter().map(receipt_json).collect();
    look_up_files(&state.uploads.store, &mut documents).await;
    Ok(DocumentsAnswer {
        reference: reference.to_string(),
        received,
        documents,
        missing: crate::views::kinds_text(&case.missing),
        state: case
            .dossier
            .as_ref()
            .and_then(|d| convert::case_state_text(d.state))
            .unwrap_or_default(),
    })
}

/// `GET /api/v1/dossiers/{reference}/documents/{sha256}`: a document of the
/// dossier, for its person (with their code) and the agents of its
/// prefecture; always as an attachment, never shown inline.
async fn download(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let file = document_file(
        &state,
        &access,
        peer.as_ref(),
        &headers,
        &reference,
        &params,
    )
    .await?;
    let disposition = format!("attachment; filename=\"{}\"", file.filename);
    let mut response = file.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, file.media_type);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// A document of a dossier, read from the store once the caller was
/// judged on the dossier.
pub(crate) struct DocumentFile {
    /// Only the types the uploads accept (PDF, JPEG, PNG); anything else
    /// is `application/octet-stream`.
    pub media_type: HeaderValue,
    pub filename: String,
    pub bytes: axum::body::Bytes,
}

/// The receipt of document `{sha256}` of the dossier `{reference}`, for
/// the caller the policy admits on that dossier.
pub(crate) async fn document_receipt(
    state: &AppState,
    access: &crate::policy::Access,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    reference: &ReferenceParam,
    params: &RawPathParams,
) -> Result<(guichet_dossier::Reference, pb::DocumentReceipt), ApiError> {
    let reference = reference.parse()?;
    let sha256 = params
        .iter()
        .find(|(name, _)| *name == "sha256")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if !guichet_dossier::filing::is_sha256(&sha256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("sha256"),
            "is the document's sha256, 64 hexadecimal characters",
        ));
    }
    let (_, facts) = on_dossier(state, access, headers, peer, &reference, true).await?;
    let sha256 = sha256.to_ascii_lowercase();
    let Some(receipt) = facts.documents.into_iter().find(|d| d.sha256 == sha256) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("sha256"),
            "no document of this dossier has this digest",
        ));
    };
    Ok((reference, receipt))
}

/// The document `{sha256}` of the dossier `{reference}` and its bytes, for
/// the caller the policy admits on that dossier.
pub(crate) async fn document_file(
    state: &AppState,
    access: &crate::policy::Access,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    reference: &ReferenceParam,
    params: &RawPathParams,
) -> Result<DocumentFile, ApiError> {
    let (reference, receipt) =
        document_receipt(state, access, peer, headers, reference, params).await?;
    let bytes = state
        .uploads
        .store
        .get(&receipt.sha256)
        .await
        .map_err(|e| store_unavailable("a document could not be read", &e))?;
    let Some(bytes) = bytes else {
        // Declared with the filing, never uploaded (a JSON filing).
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("sha256"),
            "this document was declared but its file was never received",
        ));
    };
    let kind = convert::document_kind_text(receipt.kind).unwrap_or_else(|| "document".into());
    let (extension, media_type) = match receipt.media_type.as_str() {
        "application/pdf" => ("pdf", "application/pdf"),
        "image/jpeg" => ("jpg", "image/jpeg"),
        "image/png" => ("png", "image/png"),
        _ => ("bin", "application/octet-stream"),
    };
    Ok(DocumentFile {
        filename: format!("{reference}-{kind}.{extension}"),
        media_type: HeaderValue::from_static(media_type),
        bytes,
    })
}

/// A document the person keeps, as listed.
#[derive(Debug, Serialize)]
pub struct PaperJson {
    pub id: String,
    /// receipt, attestation_issued, appointment_booked, ...
    pub kind: String,
    pub title: String,
    pub issued_at: String,
    /// Where to download it (add `?language=en` for English).
    pub href: String,
}

/// `GET /api/v1/dossiers/{reference}/papers`: the filing receipt and the
/// attestations of a dossier, for its person (with their code) and the
/// agents of its prefecture.
async fn list_papers(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
) -> Result<Json<Vec<PaperJson>>, ApiError> {
    let reference = reference.parse()?;
    on_dossier(&state, &access, &headers, peer.as_ref(), &reference, false).await?;
    let papers = state
        .notifier
        .clone()
        .list_papers(pb::ListPapersRequest {
            subject_ref: reference.to_string(),
        })
        .await?
        .into_inner()
        .papers;
    Ok(Json(
        papers
            .into_iter()
            .map(|p| PaperJson {
                href: format!("/api/v1/dossiers/{reference}/papers/{}", p.id),
                id: p.id,
                kind: p.kind,
                title: p.title,
                issued_at: time_text(&p.issued_at),
            })
            .collect(),
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperQuery {
    /// fr or en; unset: the person's language.
    pub language: Option<String>,
}

/// `GET /api/v1/dossiers/{reference}/papers/{id}`: one of them, as a PDF
/// with its signed 2D code.
async fn paper(
    State(state): State<AppState>,
    access: crate::policy::Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    params: RawPathParams,
    crate::extract::QueryParams(query): crate::extract::QueryParams<PaperQuery>,
) -> Result<Response, ApiError> {
    let reference = reference.parse()?;
    let id = params
        .iter()
        .find(|(name, _)| *name == "id")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let language = language_of(&query)?;
    on_dossier(&state, &access, &headers, peer.as_ref(), &reference, false).await?;
    let file = state
        .notifier
        .clone()
        .get_paper(pb::GetPaperRequest {
            subject_ref: reference.to_string(),
            id,
            language,
        })
        .await?
        .into_inner();
    Ok(pdf_answer(file))
}

/// `?language=`: fr, en, or the person's own when unset.
pub fn language_of(query: &PaperQuery) -> Result<String, ApiError> {
    match query.language.as_deref().map(str::trim) {
        None | Some("") => Ok(String::new()),
        Some(l @ ("fr" | "en")) => Ok(l.to_string()),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("language"),
            "is fr or en",
        )),
    }
}

/// A person's paper as a PDF download.
pub fn pdf_answer(file: pb::PaperFile) -> Response {
    let mut response = file.content.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    let safe: String = file
        .file_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_shown_never_followed() {
        for (name, expected) in [
            (None, Ok(None)),
            (Some("  "), Ok(None)),
            (Some("passeport.pdf"), Ok(Some("passeport.pdf".to_string()))),
            (
                Some("../../etc/passwd"),
                Err("the file name must be a plain name, without folders"),
            ),
            (
                Some("C:\\Users\\a.pdf"),
                Err("the file name must be a plain name, without folders"),
            ),
            (
                Some(".."),
                Err("the file name must be a plain name, without folders"),
            ),
            (
                Some("a\u{0}.pdf"),
                Err("the file name must not hold control characters"),
            ),
        ] {
            assert_eq!(display_name(name), expected, "{name:?}");
        }
    }
}
