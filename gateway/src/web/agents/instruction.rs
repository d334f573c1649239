//! Instruction in the browser: the queue of the agent's prefectures with
//! its filters, take-next, the case in one page, and the acts on it
//! (take over, ask for documents, decide, record a withdrawal, confirm a
//! link). Each act is the agents' API function, judged the same way.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use guichet_dossier::DocumentKind;

use super::{AgentPage, Workspace};
use crate::agents::{
    self, CaseJson, DecisionBody, DocumentRequestBody, LinkBody, TakeNextBody, TakeOverBody,
    WithdrawalBody,
};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams, ReferenceParam};
use crate::state::AppState;
use crate::status::{QueueEntryView, QueueQuery};
use crate::web::{Form, Page, date_words, iso_date_of};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/instruction", get(queue))
        .route("/agents/instruction/suivant", post(take_next))
        .route("/agents/dossiers/{reference}", get(case))
        .route("/agents/dossiers/{reference}/reprise", post(take_over))
        .route(
            "/agents/dossiers/{reference}/pieces",
            post(request_documents),
        )
        .route("/agents/dossiers/{reference}/decision", post(decide))
        .route("/agents/dossiers/{reference}/desistement", post(withdraw))
        .route(
            "/agents/dossiers/{reference}/rapprochement",
            post(confirm_link),
        )
        .route(
            "/agents/dossiers/{reference}/documents/{sha256}",
            get(document_viewer),
        )
        .route(
            "/agents/dossiers/{reference}/documents/{sha256}/fichier",
            get(document_inline),
        )
}

/// The codes a filter offers, in the order shown.
const URGENCIES: &[&str] = &["critical", "soon", "routine"];
const CHANNELS: &[&str] = &["web", "ccc", "pan", "postal"];
const STATES: &[&str] = &[
    "filed",
    "incomplete",
    "documents_requested",
    "complete",
    "under_review",
];

#[derive(askama::Template)]
#[template(path = "agents/queue.html")]
struct QueuePage {
    a: AgentPage,
    p: Page,
    prefectures: Vec<String>,
    filter: QueueQuery,
    motifs: Vec<&'static str>,
    entries: Vec<QueueEntryView>,
}

impl QueuePage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn chosen(&self, field: &str, code: &str) -> bool {
        let value = match field {
            "prefecture" => &self.filter.prefecture,
            "urgency" => &self.filter.urgency,
            "procedure" => &self.filter.procedure,
            "motif" => &self.filter.motif,
            "channel" => &self.filter.channel,
            "state" => &self.filter.state,
            _ => return false,
        };
        value.as_deref() == Some(code)
    }

    fn urgencies(&self) -> &'static [&'static str] {
        URGENCIES
    }

    fn procedures(&self) -> Vec<&'static str> {
        guichet_dossier::Procedure::ALL
            .iter()
            .map(|p| p.as_str())
            .collect()
    }

    fn channels(&self) -> &'static [&'static str] {
        CHANNELS
    }

    fn states(&self) -> &'static [&'static str] {
        STATES
    }
}

/// Blank fields of the filter form mean "any".
fn filter_of(q: QueueQuery) -> QueueQuery {
    let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    QueueQuery {
        prefecture: keep(q.prefecture),
        procedure: keep(q.procedure),
        motif: keep(q.motif),
        channel: keep(q.channel),
        state: keep(q.state),
        cover_ends_before: keep(q.cover_ends_before).map(|d| iso_date_of(&d)),
        urgency: keep(q.urgency),
        limit: q.limit,
    }
}

/// `GET /agents/instruction`: the queue, most urgent and oldest first.
async fn queue(
    State(state): State<AppState>,
    w: Workspace,
    QueryParams(q): QueryParams<QueueQuery>,
) -> Response {
    let filter = filter_of(q);
    let prefectures = w.access.own_prefectures();
    let a = w.page("agents-queue-title");
    let mut page = QueuePage {
        p: a.p.clone(),
        a,
        prefectures: prefectures.clone(),
        filter: filter.clone(),
        motifs: guichet_dossier::Motif::ALL
            .iter()
            .map(|m| m.as_str())
            .collect(),
        entries: Vec::new(),
    };
    // Several prefectures and none chosen: the first one's queue, each
    // queue being its own.
    let mut asked = filter;
    if asked.prefecture.is_none() {
        asked.prefecture = prefectures.first().cloned();
        page.filter.prefecture = asked.prefecture.clone();
    }
    match crate::status::queue(State(state), w.access.clone(), QueryParams(asked)).await {
        Ok(axum::Json(entries)) => {
            page.entries = entries;
            w.visitor.html(&page)
        }
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => {
            page.p.add_api_errors(&e, &[]);
            w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => w.api_problem(&e),
    }
}

/// `POST /agents/instruction/suivant`: the next case of the prefecture
/// chosen is now the agent's.
async fn take_next(State(state): State<AppState>, w: Workspace, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let body = TakeNextBody {
        prefecture: form.get("prefecture"),
    };
    match agents::take_next(State(state), w.access.clone(), JsonBody(body)).await {
        Ok(axum::Json(case)) => w
            .visitor
            .redirect(&format!("/agents/dossiers/{}", case.dossier.reference)),
        Err(e) if e.status() == StatusCode::NOT_FOUND => w.refusal(
            StatusCode::NOT_FOUND,
            "agents-queue-empty-title",
            "agents-queue-empty-body",
        ),
        Err(e) => w.api_problem(&e),
    }
}

#[derive(askama::Template)]
#[template(path = "agents/case.html")]
struct CasePage {
    a: AgentPage,
    p: Page,
    case: CaseJson,
    /// The case is the signed-in agent's: the acts are offered.
    mine: bool,
    kinds: Vec<&'static str>,
    form: Form,
}

impl CasePage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    /// An instant of the history, in Paris, to the minute.
    fn when(&self, at: &str) -> String {
        match chrono::DateTime::parse_from_rfc3339(at) {
            Ok(t) => {
                let t = t.with_timezone(&chrono::Utc);
                format!(
                    "{} {}",
                    date_words(
                        self.p.lang,
                        &guichet_dossier::calendar::paris_date(t).to_string()
                    ),
                    guichet_dossier::calendar::paris_time_of_day(t)
                )
            }
            Err(_) => at.to_string(),
        }
    }

    fn document_href(&self, sha256: &str) -> String {
        self.p.href(&format!(
            "/agents/dossiers/{}/documents/{sha256}",
            self.case.dossier.reference
        ))
    }

    fn value(&self, field: &str) -> String {
        self.form.get(field).unwrap_or_default()
    }

    fn is_missing(&self, kind: &str) -> bool {
        self.case.missing.iter().any(|k| k == kind)
    }

    fn kind_checked(&self, kind: &str) -> bool {
        self.form
            .pairs()
            .iter()
            .any(|(k, v)| k == "kinds" && v == kind)
    }
}

fn case_page(w: &Workspace, case: CaseJson, form: Form) -> CasePage {
    let a = w.page("agents-case-title");
    let mine = case.taken_by.is_some() && case.taken_by == w.uid;
    CasePage {
        p: a.p.clone(),
        a,
        case,
        mine,
        kinds: DocumentKind::ALL.iter().map(|k| k.as_str()).collect(),
        form,
    }
}

/// `GET /agents/dossiers/{reference}`: the whole case; the read is audited.
async fn case(State(state): State<AppState>, w: Workspace, reference: ReferenceParam) -> Response {
    match agents::read_case(State(state), w.access.clone(), reference).await {
        Ok(axum::Json(case)) => {
            let page = case_page(&w, case, Form::default());
            w.visitor.html(&page)
        }
        Err(e) => case_refused(&w, &e),
    }
}

/// A refusal on a case, in words: held by another agent says so.
fn case_refused(w: &Workspace, e: &ApiError) -> Response {
    if agents::is_held_by_another(e) {
        return w.refusal(
            StatusCode::CONFLICT,
            "agents-held-title",
            "agents-held-body",
        );
    }
    w.api_problem(e)
}

/// After an act: the case again, or the form's problems on it.
async fn after_act(
    state: AppState,
    w: &Workspace,
    reference: &str,
    answer: Result<axum::Json<CaseJson>, ApiError>,
    form: Form,
    ids: &[(&str, &str)],
) -> Response {
    match answer {
        Ok(_) => w.visitor.redirect(&format!("/agents/dossiers/{reference}")),
        Err(e)
            if e.status() == StatusCode::BAD_REQUEST
                || e.status() == StatusCode::UNPROCESSABLE_ENTITY
                || (e.status() == StatusCode::CONFLICT && !agents::is_held_by_another(&e)) =>
        {
            // The case as it stands, with the form as sent and what is
            // wrong: a field, or a step the case's state does not allow.
            let param = ReferenceParam::new(reference);
            match agents::read_case(State(state), w.access.clone(), param).await {
                Ok(axum::Json(case)) => {
                    let mut page = case_page(w, case, form);
                    if e.status() == StatusCode::CONFLICT {
                        page.p.errors.push(crate::web::FieldError {
                            id: "case-title".into(),
                            message: page.p.t("agents-impossible-step"),
                        });
                    } else {
                        page.p.add_api_errors(&e, ids);
                    }
                    let status = if e.status() == StatusCode::CONFLICT {
                        StatusCode::CONFLICT
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    w.visitor.html_with(status, &page)
                }
                Err(e) => case_refused(w, &e),
            }
        }
        Err(e) => case_refused(w, &e),
    }
}

/// `POST /agents/dossiers/{reference}/reprise`: the case is the agent's,
/// from whoever held it; the reason is recorded.
async fn take_over(
    State(state): State<AppState>,
    w: Workspace,
    reference: ReferenceParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let path = reference.as_str().to_string();
    let answer = agents::take_over(
        State(state.clone()),
        w.access.clone(),
        reference,
        JsonBody(TakeOverBody {
            reason: form.get("reason"),
        }),
    )
    .await;
    after_act(
        state,
        &w,
        &path,
        answer,
        form,
        &[("reason", "takeover-reason")],
    )
    .await
}

/// `POST /agents/dossiers/{reference}/pieces`: documents asked of the
/// person, with a deadline.
async fn request_documents(
    State(state): State<AppState>,
    w: Workspace,
    reference: ReferenceParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let path = reference.as_str().to_string();
    let kinds: Vec<String> = form
        .pairs()
        .iter()
        .filter(|(k, _)| k == "kinds")
        .map(|(_, v)| v.clone())
        .collect();
    if kinds.is_empty() {
        return after_act(
            state,
            &w,
            &path,
            Err(ApiError::from(guichet_dossier::Violations::one(
                "kinds",
                "name at least one document",
            ))),
            form,
            &[("kinds", "request-kinds")],
        )
        .await;
    }
    let answer = agents::request_documents(
        State(state.clone()),
        w.access.clone(),
        reference,
        JsonBody(DocumentRequestBody {
            kinds,
            deadline: form.get("deadline").map(|d| iso_date_of(&d)),
            reason: form.get("reason"),
        }),
    )
    .await;
    after_act(
        state,
        &w,
        &path,
        answer,
        form,
        &[
            ("deadline", "request-deadline"),
            ("reason", "request-reason"),
        ],
    )
    .await
}

/// `POST /agents/dossiers/{reference}/decision`
async fn decide(
    State(state): State<AppState>,
    w: Workspace,
    reference: ReferenceParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let path = reference.as_str().to_string();
    let favourable = match form.get("outcome").as_deref() {
        Some("favourable") => Some(true),
        Some("unfavourable") => Some(false),
        _ => None,
    };
    let answer = agents::decide(
        State(state.clone()),
        w.access.clone(),
        reference,
        JsonBody(DecisionBody {
            favourable,
            reason: form.get("decision_reason"),
            new_title: None,
        }),
    )
    .await;
    after_act(
        state,
        &w,
        &path,
        answer,
        form,
        &[
            ("favourable", "decision-outcome"),
            ("reason", "decision-reason"),
        ],
    )
    .await
}

/// `POST /agents/dossiers/{reference}/desistement`: the person withdrew.
async fn withdraw(
    State(state): State<AppState>,
    w: Workspace,
    reference: ReferenceParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let path = reference.as_str().to_string();
    let answer = agents::withdraw(
        State(state.clone()),
        w.access.clone(),
        reference,
        JsonBody(WithdrawalBody {
            reason: form.get("withdrawal_reason"),
        }),
    )
    .await;
    after_act(
        state,
        &w,
        &path,
        answer,
        form,
        &[("reason", "withdrawal-reason")],
    )
    .await
}

/// `POST /agents/dossiers/{reference}/rapprochement`: this filing is (or
/// is not) the same request as the one it was linked to.
async fn confirm_link(
    State(state): State<AppState>,
    w: Workspace,
    reference: ReferenceParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let path = reference.as_str().to_string();
    let same_request = match form.get("same_request").as_deref() {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    };
    let answer = agents::confirm_link(
        State(state.clone()),
        w.access.clone(),
        reference,
        JsonBody(LinkBody { same_request }),
    )
    .await;
    after_act(
        state,
        &w,
        &path,
        answer,
        form,
        &[("same_request", "link-same")],
    )
    .await
}

#[derive(askama::Template)]
#[template(path = "agents/document.html")]
struct DocumentPage {
    a: AgentPage,
    p: Page,
    reference: String,
    kind: String,
    media_type: String,
    size_kib: u64,
    file_href: String,
    download_href: String,
}

/// `GET /agents/dossiers/{reference}/documents/{sha256}`: a document beside
/// its case, shown by the browser itself (an image, or its PDF viewer).
async fn document_viewer(
    State(state): State<AppState>,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    params: RawPathParams,
) -> Response {
    let found = crate::uploads::document_receipt(
        &state,
        &w.access,
        peer.as_ref(),
        &headers,
        &reference,
        &params,
    )
    .await;
    match found {
        Ok((reference, receipt)) => {
            let a = w.page("agents-document-title");
            let path = format!("/agents/dossiers/{reference}/documents/{}", receipt.sha256);
            let page = DocumentPage {
                p: a.p.clone(),
                a,
                kind: guichet_proto::convert::document_kind_text(receipt.kind).unwrap_or_default(),
                media_type: receipt.media_type.clone(),
                size_kib: receipt.size_bytes.div_ceil(1024),
                file_href: format!("{path}/fichier"),
                download_href: format!("/api/v1/dossiers/{reference}/documents/{}", receipt.sha256),
                reference: reference.to_string(),
            };
            let mut response = w.visitor.html(&page);
            // The page's policy, and its document in the browser's viewer.
            if let Ok(v) =
                HeaderValue::from_str(&format!("{}; object-src 'self'", crate::web::PAGE_POLICY))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, v);
            }
            response
        }
        Err(e) => w.api_problem(&e),
    }
}

/// `GET /agents/dossiers/{reference}/documents/{sha256}/fichier`: the
/// document's bytes, shown inline in the workspace's viewer only: its
/// exact type (PDF, JPEG, PNG, as the uploads accept), no sniffing, no
/// script, framed by the workspace's own pages alone.
async fn document_inline(
    State(state): State<AppState>,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    reference: ReferenceParam,
    params: RawPathParams,
) -> Response {
    let file = match crate::uploads::document_file(
        &state,
        &w.access,
        peer.as_ref(),
        &headers,
        &reference,
        &params,
    )
    .await
    {
        Ok(file) => file,
        Err(e) => return w.api_problem(&e),
    };
    let mut response = file.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, file.media_type);
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", file.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'self'"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}
