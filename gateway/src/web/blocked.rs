//! "I'm blocked": a person the website failed says so, and a report opens
//! on the call centre's clock: the prefecture where they live must offer an
//! alternative (a desk appointment or a paper kit) by its deadline. The
//! report is followed by its secret link.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use guichet_proto::v1 as pb;

use super::{Form, Page, Visitor, date_words};
use crate::appointments::ReportJson;
use crate::extract::PathParam;
use crate::policy::Access;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bloque", get(ask).post(open))
        .route("/bloque/{id}", get(follow))
}

/// Who opened a report the person opened on the pages (a call-centre
/// agent's uid otherwise).
pub const SELF_SERVICE: &str = "online-self-service";

/// A report as the form (the person's, or the call centre's) describes it,
/// opened by `agent_id` under `idempotency_key`.
pub(crate) fn report_request(
    form: &Form,
    lang: super::Lang,
    agent_id: &str,
    idempotency_key: String,
) -> pb::OpenReportRequest {
    let get = |n: &str| form.get(n).unwrap_or_default();
    pb::OpenReportRequest {
        category: form
            .get("category")
            .and_then(|c| CATEGORIES.iter().find(|(code, _)| *code == c))
            .map_or(0, |(_, c)| *c as i32),
        what_was_tried: get("what_was_tried"),
        family_name: get("family_name"),
        given_names: get("given_names"),
        contact: Some(pb::Contact {
            email: get("email"),
            phone: get("phone"),
            address: Some(pb::PostalAddress {
                line1: get("line1"),
                line2: String::new(),
                postal_code: get("postal_code"),
                city: get("city"),
                country: "FR".to_string(),
            }),
            answer_channel: 0,
            language: lang.code().to_string(),
        }),
        procedure: form
            .get("procedure")
            .and_then(|p| guichet_dossier::Procedure::parse(&p))
            .map_or(0, guichet_proto::convert::procedure_to_pb),
        agent_id: agent_id.to_string(),
        call_id: get("call_id"),
        idempotency_key,
    }
}

/// What the person can say went wrong, as the call centre files it.
pub(crate) const CATEGORIES: &[(&str, pb::ReportCategory)] = &[
    (
        "cannot_create_account",
        pb::ReportCategory::CannotCreateAccount,
    ),
    ("upload_fails", pb::ReportCategory::UploadFails),
    (
        "appointment_impossible",
        pb::ReportCategory::AppointmentImpossible,
    ),
    (
        "two_procedures_at_once",
        pb::ReportCategory::TwoProceduresAtOnce,
    ),
    ("no_receipt", pb::ReportCategory::NoReceipt),
    ("other", pb::ReportCategory::Other),
];

#[derive(askama::Template)]
#[template(path = "blocked.html")]
struct BlockedPage {
    p: Page,
    form: Form,
    categories: Vec<(&'static str, String)>,
}

impl BlockedPage {
    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }
}

fn blocked_page(visitor: &Visitor, form: Form) -> BlockedPage {
    let p = visitor.page("blocked-title");
    BlockedPage {
        categories: CATEGORIES
            .iter()
            .map(|(code, _)| (*code, p.code_text("category", code)))
            .collect(),
        p,
        form,
    }
}

async fn ask(visitor: Visitor) -> Response {
    visitor.html(&blocked_page(&visitor, Form::default()))
}

/// `POST /bloque`: opens the report, then its page.
async fn open(State(state): State<AppState>, visitor: Visitor, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let category = form
        .get("category")
        .and_then(|c| CATEGORIES.iter().find(|(code, _)| *code == c))
        .map(|(_, c)| *c);
    let mut page = blocked_page(&visitor, form);
    let required = ["family_name", "what_was_tried", "postal_code", "city"];
    for name in required {
        if page.form.get(name).is_none() {
            page.p.add_error(name, &format!("report.{name}"));
        }
    }
    if category.is_none() {
        page.p.add_error("category", "report.category");
    }
    if page.form.get("email").is_none() && page.form.get("phone").is_none() {
        page.p.add_error("phone", "report.contact");
    }
    let answer = if page.p.errors.is_empty() {
        let f = &page.form;
        // Opened by the person themselves, on the pages.
        let request = report_request(
            f,
            visitor.lang,
            SELF_SERVICE,
            // The same form sent twice (a double click, a retry) is one
            // report; a different one from the same visitor is another.
            f.idempotency_key("web", "", &[]),
        );
        state
            .ccc
            .clone()
            .open_report(request)
            .await
            .map(|r| r.into_inner())
    } else {
        return visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    match answer {
        Ok(report) => {
            let secret = state.links.secret("report", &report.id);
            visitor.redirect(&format!("/bloque/{}?cle={secret}", report.id))
        }
        Err(status) => {
            let e = crate::error::ApiError::from(status);
            if e.status().is_client_error() {
                page.p.add_api_errors(
                    &e,
                    &[
                        ("contact.phone", "phone"),
                        ("contact.email", "email"),
                        ("contact.address.postal_code", "postal_code"),
                        ("contact.address.city", "city"),
                        ("contact.address", "line1"),
                    ],
                );
                visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
            } else {
                visitor.api_problem(&e)
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Key {
    cle: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "blocked_follow.html")]
struct FollowPage {
    p: Page,
    report: ReportJson,
    deadline: String,
}

/// `GET /bloque/{id}?cle=…`: where the report stands.
async fn follow(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    Path(id): Path<String>,
    Query(key): Query<Key>,
) -> Response {
    let headers = super::link_headers(&key.cle);
    match crate::appointments::report(State(state), access, headers, PathParam(id)).await {
        Ok(Json(report)) => {
            let p = visitor.page("blocked-follow-title");
            let deadline = report
                .deadline
                .as_deref()
                .map(|d| date_words(p.lang, d))
                .unwrap_or_default();
            visitor.html(&FollowPage {
                p,
                report,
                deadline,
            })
        }
        Err(e) => visitor.api_problem(&e),
    }
}
