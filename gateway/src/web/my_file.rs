//! "My file": where a file stands, by its reference and the holder's birth
//! date (the same check, the same limits on wrong tries as the API); with
//! the one-time code sent to the person's contact, whom it names and the
//! papers to download.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use guichet_proto::v1 as pb;

use super::{Form, Page, Visitor, date_words};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams, ReferenceParam};
use crate::policy::Access;
use crate::state::AppState;
use crate::status::{StatusJson, StatusQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mon-dossier", get(ask).post(look_up))
        .route("/mon-dossier/code", post(send_code))
        .route("/mon-dossier/papier", post(paper))
}

/// Missing documents sent from the page: their own body limit.
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/mon-dossier/documents", post(send_documents))
}

#[derive(askama::Template)]
#[template(path = "my_file.html")]
struct MyFilePage {
    p: Page,
    reference: String,
    birth_date: String,
    code: String,
    status: Option<StatusJson>,
    papers: Vec<pb::PaperView>,
    code_sent: bool,
    /// The documents just received, by kind.
    received: Vec<String>,
}

impl MyFilePage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn state_text(&self, s: &StatusJson) -> String {
        self.p.code_text("state", &s.state)
    }

    fn kind_text(&self, kind: &str) -> String {
        self.p.code_text("kind", kind)
    }

    fn attestation_text(&self, kind: &str) -> String {
        self.p.code_text("attestation", kind)
    }

    fn basis_text(&self, basis: &str) -> String {
        self.p.code_text("basis", basis)
    }
}

fn page(visitor: &Visitor, form: &Form) -> MyFilePage {
    MyFilePage {
        p: visitor.page("my-file-title"),
        reference: form.get("reference").unwrap_or_default(),
        birth_date: form
            .get("birth_date")
            .map(|d| super::iso_date_of(&d))
            .unwrap_or_default(),
        code: form.get("code").unwrap_or_default(),
        status: None,
        papers: Vec::new(),
        code_sent: false,
        received: Vec::new(),
    }
}

async fn ask(visitor: Visitor) -> Response {
    visitor.html(&page(&visitor, &Form::default()))
}

/// The form's answer, or the page with the fields at fault.
fn refused(visitor: &Visitor, mut page: MyFilePage, e: &ApiError) -> Response {
    if e.status().is_server_error() || e.status() == StatusCode::TOO_MANY_REQUESTS {
        return visitor.api_problem(e);
    }
    if e.status() == StatusCode::NOT_FOUND {
        page.p.add_error("reference", "status-not-found");
    } else {
        page.p.add_api_errors(e, &[("X-Person-Code", "code")]);
    }
    let status = e.status();
    visitor.html_with(status, &page)
}

async fn status_of(
    state: &AppState,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    page: &MyFilePage,
) -> Result<StatusJson, ApiError> {
    let mut headers = HeaderMap::new();
    if !page.code.is_empty()
        && let Ok(v) = HeaderValue::from_str(&page.code)
    {
        headers.insert(crate::person_code::PERSON_CODE_HEADER, v);
    }
    let Json(status) = crate::status::status(
        State(state.clone()),
        access,
        peer,
        headers,
        ReferenceParam::new(page.reference.to_ascii_uppercase()),
        QueryParams(StatusQuery {
            birth_date: Some(page.birth_date.clone()),
        }),
    )
    .await?;
    Ok(status)
}

/// `POST /mon-dossier`: the status (and, with the code, the details).
async fn look_up(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let page = page(&visitor, &form);
    show(&state, &visitor, access, peer, page).await
}

/// The status page, with the papers when the code was right.
async fn show(
    state: &AppState,
    visitor: &Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut page: MyFilePage,
) -> Response {
    let visitor = visitor.clone();
    let state = state.clone();
    match status_of(&state, access, peer, &page).await {
        Ok(status) => {
            if status.holder.is_some() {
                page.papers = state
                    .notifier
                    .clone()
                    .list_papers(pb::ListPapersRequest {
                        subject_ref: status.reference.clone(),
                    })
                    .await
                    .map(|r| r.into_inner().papers)
                    .unwrap_or_default();
            }
            page.status = Some(status);
            visitor.html(&page)
        }
        Err(e) => refused(&visitor, page, &e),
    }
}

/// `POST /mon-dossier/code`: sends the one-time code to the file's contact.
async fn send_code(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let mut page = page(&visitor, &form);
    let sent = crate::person_code::ask(
        State(state.clone()),
        peer,
        ReferenceParam::new(page.reference.to_ascii_uppercase()),
        JsonBody(crate::person_code::CodeRequest {
            birth_date: Some(page.birth_date.clone()),
        }),
    )
    .await;
    if let Err(e) = sent {
        return refused(&visitor, page, &e);
    }
    page.code_sent = true;
    show(&state, &visitor, access, peer, page).await
}

/// `POST /mon-dossier/documents` (multipart: the token, the reference, the
/// birth date and the code first, then one file input per missing
/// document): sent as `POST /api/v1/dossiers/{reference}/documents` sends
/// them, each screened and virus-scanned, a receipt each.
async fn send_documents(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: axum::extract::Request,
) -> Response {
    let mut multipart = match crate::uploads::multipart_of(request, &state).await {
        Ok(m) => m,
        Err(e) => return visitor.api_problem(&e),
    };
    let mut fields = Vec::new();
    for name in ["csrf", "reference", "birth_date", "code"] {
        let value = match multipart.next_field().await {
            Ok(Some(f)) if f.name() == Some(name) => crate::uploads::text_part(f, name, 200)
                .await
                .unwrap_or_default(),
            _ => String::new(),
        };
        fields.push((name.to_string(), value));
    }
    let form = Form::from_pairs(fields);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        crate::uploads::drain(&mut multipart).await;
        return *r;
    }
    let mut page = page(&visitor, &form);
    let reference = match ReferenceParam::new(page.reference.to_ascii_uppercase()).parse() {
        Ok(r) => r,
        Err(e) => {
            crate::uploads::drain(&mut multipart).await;
            return refused(&visitor, page, &e);
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&page.code) {
        headers.insert(crate::person_code::PERSON_CODE_HEADER, v);
    }
    let sent = async {
        let sender =
            crate::uploads::sender(&state, &access, &headers, peer.as_ref(), &reference).await?;
        crate::uploads::receive_documents(&state, &sender, &reference, &mut multipart).await
    }
    .await;
    match sent {
        Ok(answer) => {
            page.received = answer.received.into_iter().map(|r| r.kind).collect();
            show(&state, &visitor, access, peer, page).await
        }
        Err(e) => {
            crate::uploads::drain(&mut multipart).await;
            if e.status().is_client_error() && e.status() != StatusCode::UNAUTHORIZED {
                page.p.add_error("documents", "upload-refused");
                return show_refused(&state, &visitor, access, peer, page, e.status()).await;
            }
            refused(&visitor, page, &e)
        }
    }
}

/// The status page again, with a refusal of the files sent.
async fn show_refused(
    state: &AppState,
    visitor: &Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    page: MyFilePage,
    status: StatusCode,
) -> Response {
    let mut response = show(state, visitor, access, peer, page).await;
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// `POST /mon-dossier/papier`: one of the file's papers as a PDF, with the
/// person's code (a form, so the code never sits in an address).
async fn paper(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let page = page(&visitor, &form);
    let reference = match ReferenceParam::new(page.reference.to_ascii_uppercase()).parse() {
        Ok(r) => r,
        Err(e) => return refused(&visitor, page, &e),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&page.code) {
        headers.insert(crate::person_code::PERSON_CODE_HEADER, v);
    }
    let person = match crate::person_code::proof(&state, &headers, peer.as_ref(), &reference).await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            return visitor.refusal(
                StatusCode::UNAUTHORIZED,
                "error-refused-title",
                "error-refused-body",
            );
        }
        Err(e) => return refused(&visitor, page, &e),
    };
    if let Err(e) = access.allow_person(
        Some(person),
        &guichet_access::Facts::none().dossier(reference.as_str()),
    ) {
        return visitor.api_problem(&e);
    }
    match state
        .notifier
        .clone()
        .get_paper(pb::GetPaperRequest {
            subject_ref: reference.to_string(),
            id: form.get("paper").unwrap_or_default(),
            language: visitor.lang.code().to_string(),
        })
        .await
    {
        Ok(file) => crate::uploads::pdf_answer(file.into_inner()),
        Err(e) => visitor.api_problem(&ApiError::from(e)),
    }
}
