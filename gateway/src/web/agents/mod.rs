//! The agents' workspace (`/agents`, and `/en/agents` in English): the same
//! DSFR pages as the persons', for the people who work the files, signed in
//! through the OpenID provider (`/auth/login`) with the browser session.
//!
//! Each page is another face of the agents' API: its handler calls the same
//! function the JSON route calls, with the same [`Access`], under its own
//! row of the policy table. Forms post without JavaScript; the session's
//! CSRF token travels in a hidden field, which [`form_token`] hands to the
//! policy layer as the header it checks.

mod call_centre;
mod desk;
mod instruction;
mod mailroom;
mod ops;
mod supervision;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guichet_access::{Caller, Role};

use super::{Form, Page, Visitor};
use crate::policy::Access;
use crate::session::{CSRF_HEADER, SESSION_COOKIE_CLEARED, session_id};
use crate::state::AppState;

/// A form the workspace posts is small: its fields, never a file.
const FORM_LIMIT: usize = 64 * 1024;

/// The workspace's pages, with the time bounds of `web::routes`.
pub fn routes(upload_bytes: usize, request_timeout: std::time::Duration) -> Router<AppState> {
    let pages = || {
        Router::new()
            .route("/agents", get(home))
            .route("/agents/deconnexion", post(sign_out))
            .merge(instruction::routes())
            .merge(call_centre::routes())
            .merge(mailroom::routes())
            .merge(supervision::routes())
            .merge(desk::routes())
            .merge(ops::routes())
            .route_layer(crate::server::timeout(request_timeout))
            .merge(
                desk::upload_routes()
                    .layer(axum::extract::DefaultBodyLimit::max(upload_bytes))
                    .route_layer(crate::server::timeout(crate::server::UPLOAD_TIMEOUT)),
            )
    };
    Router::new().merge(pages()).nest("/en", pages())
}

/// Whether `path` is one of the workspace's pages.
pub fn is_workspace(path: &str) -> bool {
    let path = guichet_access::policy::page_in_french(path);
    path == "/agents" || path.starts_with("/agents/")
}

/// A workspace form's CSRF field, moved into the header the session check
/// reads, before the policy layer judges the request: a URL-encoded form's
/// `csrf` field, or a multipart form's first part (`csrf`, placed first so
/// that the files behind it stream on untouched). Anything else passes as
/// it came.
pub async fn form_token(request: Request, next: Next) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if request.method() != Method::POST
        || !is_workspace(request.uri().path())
        || request.headers().contains_key(CSRF_HEADER)
    {
        return next.run(request).await;
    }
    if let Some(boundary) = multipart_boundary(&content_type) {
        return multipart_token(request, next, &boundary).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return crate::error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "this form is larger than the workspace's forms can be",
        )
        .into_response();
    };
    if let Some(v) = Form::parse(&bytes)
        .csrf()
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        parts.headers.insert(CSRF_HEADER, v);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The boundary of a `multipart/form-data` body, if that is what it is.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
    })
}

/// How far into a multipart body its first part (the token) must end.
const FIRST_PART_LIMIT: usize = 8 * 1024;

/// The value of the first part when it is the `csrf` field, once `prefix`
/// holds all of it.
fn first_part_token(prefix: &[u8], boundary: &str) -> Option<String> {
    let head = &prefix[..prefix.len().min(FIRST_PART_LIMIT)];
    // Files may follow: only what reads as text counts.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let start = text.find(&format!("--{boundary}"))?;
    let part = &text[start..];
    let head_end = part.find("\r\n\r\n")?;
    if !part[..head_end].contains("name=\"csrf\"") {
        return None;
    }
    let value = &part[head_end + 4..];
    let end = value.find(&format!("\r\n--{boundary}"))?;
    Some(value[..end].trim().to_string())
}

async fn multipart_token(request: Request, next: Next, boundary: &str) -> Response {
    use futures_util::StreamExt;
    let (mut parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut prefix: Vec<u8> = Vec::new();
    let mut token = None;
    while prefix.len() < FIRST_PART_LIMIT {
        match stream.next().await {
            Some(Ok(chunk)) => {
                prefix.extend_from_slice(&chunk);
                token = first_part_token(&prefix, boundary);
                if token.is_some() {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a workspace upload broke off");
                return crate::error::ApiError::new(
                    StatusCode::BAD_REQUEST,
                    None,
                    "the form's body broke off",
                )
                .into_response();
            }
            None => break,
        }
    }
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        parts.headers.insert(CSRF_HEADER, v);
    }
    let head =
        futures_util::stream::once(
            async move { Ok::<_, axum::Error>(axum::body::Bytes::from(prefix)) },
        );
    let body = Body::from_stream(head.chain(stream));
    next.run(Request::from_parts(parts, body)).await
}

/// Who is at the workspace: the visitor, what the policy made of them, and
/// their session's CSRF token (the one their forms carry).
pub struct Workspace {
    pub visitor: Visitor,
    pub access: Access,
    /// The signed-in agent's uid; `None` when nobody is signed in.
    pub uid: Option<String>,
    csrf: String,
}

impl FromRequestParts<AppState> for Workspace {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Ok(visitor) = Visitor::from_request_parts(parts, state).await;
        let access = Access::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // The session the policy layer read: its agent and form token.
        let (uid, csrf) = match (access.session_csrf(), access.caller()) {
            (Some(csrf), Caller::Agent(agent)) => (Some(agent.uid.clone()), csrf.to_string()),
            _ => (None, String::new()),
        };
        Ok(Workspace {
            visitor,
            access,
            uid,
            csrf,
        })
    }
}

/// A section of the workspace, as the menu lists it.
#[derive(Debug, Clone)]
pub struct Section {
    pub path: &'static str,
    pub label: &'static str,
}

impl Workspace {
    /// A page of the workspace, titled by the message `title`, whose forms
    /// carry the session's token.
    pub fn page(&self, title: &str) -> AgentPage {
        let mut p = self.visitor.page(title);
        p.csrf = self.csrf.clone();
        AgentPage {
            p,
            uid: self.uid.clone().unwrap_or_default(),
            sections: self.sections(),
        }
    }

    /// A page saying why nothing was done, in the workspace.
    pub fn refusal(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let a = self.page(title);
        problem_page(&self.visitor, a, status, body)
    }

    /// An answer of the API refused, as a page of the workspace.
    pub fn api_problem(&self, e: &crate::error::ApiError) -> Response {
        let (status, title, body) = super::problem_of(e.status());
        self.refusal(status, title, body)
    }

    fn roles(&self) -> Vec<Role> {
        match self.access.caller() {
            Caller::Agent(agent) => agent.grants.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// The sections the agent's roles open.
    fn sections(&self) -> Vec<Section> {
        let roles = self.roles();
        let mut sections = Vec::new();
        if roles
            .iter()
            .any(|r| matches!(r, Role::Instructor | Role::Supervisor))
        {
            sections.push(Section {
                path: "/agents/instruction",
                label: "agents-nav-instruction",
            });
        }
        if roles
            .iter()
            .any(|r| matches!(r, Role::Supervisor | Role::Operator))
        {
            sections.push(Section {
                path: "/agents/supervision",
                label: "agents-nav-supervision",
            });
            sections.push(Section {
                path: "/agents/journal",
                label: "agents-nav-journal",
            });
        }
        if roles
            .iter()
            .any(|r| matches!(r, Role::DeskAgent | Role::Supervisor))
        {
            sections.push(Section {
                path: "/agents/guichet",
                label: "agents-nav-desk",
            });
        }
        if roles.contains(&Role::Operator) {
            sections.push(Section {
                path: "/ops",
                label: "agents-nav-ops",
            });
        }
        if roles.contains(&Role::MailroomOperator) {
            sections.push(Section {
                path: "/agents/courrier",
                label: "agents-nav-mailroom",
            });
        }
        if roles.contains(&Role::CallCentreAgent) {
            sections.push(Section {
                path: "/agents/centre-appels",
                label: "agents-nav-call-centre",
            });
        }
        sections
    }
}

/// A receipt as the filing pages show it: the reference and the legal
/// filing date.
pub fn filed_of(receipt: Option<guichet_proto::v1::Receipt>) -> (String, String) {
    let receipt = receipt.unwrap_or_default();
    let date = receipt
        .legal_filing_date
        .as_ref()
        .and_then(guichet_proto::convert::date_from_pb)
        .map(|d| d.to_string())
        .unwrap_or_default();
    (receipt.reference, date)
}

/// A filing the rules refused: each field at fault next to its input.
pub fn add_filing_violations(p: &mut Page, v: &guichet_dossier::Violations) {
    for problem in v.iter() {
        p.add_error(
            &crate::web::filing::input_id(&problem.field),
            &problem.field,
        );
    }
}

/// A filing refused by its channel's service: each field at fault next to
/// its input.
pub fn add_filing_problems(p: &mut Page, e: &crate::error::ApiError) {
    for (field, _) in e.problems() {
        let field = field.unwrap_or_default().trim_start_matches("filing.");
        p.add_error(&crate::web::filing::input_id(field), field);
    }
}

/// What every workspace template holds: the page, who is signed in, and
/// the sections their roles open.
pub struct AgentPage {
    pub p: Page,
    pub uid: String,
    pub sections: Vec<Section>,
}

#[derive(askama::Template)]
#[template(path = "agents/home.html")]
struct HomePage {
    a: AgentPage,
    p: Page,
    roles: Vec<(String, String)>,
}

/// `GET /agents`: sign in, or what the agent's roles open.
async fn home(w: Workspace) -> Response {
    let a = w.page("agents-home-title");
    let roles = match w.access.caller() {
        Caller::Agent(agent) if w.uid.is_some() => agent
            .grants
            .iter()
            .map(|(role, places)| {
                let places: Vec<&str> = places.iter().map(String::as_str).collect();
                (
                    a.p.code_text("role", role.as_str()),
                    if places.is_empty() {
                        a.p.t("agents-role-everywhere")
                    } else {
                        places.join(", ")
                    },
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let p = a.p.clone();
    w.visitor.html(&HomePage { a, p, roles })
}

/// `POST /agents/deconnexion`: the session ends; back to the door.
async fn sign_out(State(state): State<AppState>, w: Workspace, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers)
        && let Err(e) = state.auth.directory().close_session(&id).await
    {
        tracing::error!(error = %e, "cannot close a session");
        return w.refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-unavailable-title",
            "error-unavailable-body",
        );
    }
    let mut response = w.visitor.redirect("/agents");
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(SESSION_COOKIE_CLEARED),
    );
    response
}

#[derive(askama::Template)]
#[template(path = "agents/problem.html")]
struct ProblemPage {
    a: AgentPage,
    p: Page,
    message: String,
    /// Nobody is signed in: the way to is offered.
    sign_in: bool,
}

fn problem_page(visitor: &Visitor, a: AgentPage, status: StatusCode, body: &str) -> Response {
    let page = ProblemPage {
        p: a.p.clone(),
        message: a.p.t(body),
        sign_in: a.uid.is_empty(),
        a,
    };
    visitor.html_with(status, &page)
}

/// A refusal the policy made before a workspace page's handler ran.
pub fn refusal(visitor: &Visitor, status: StatusCode, title: &str, body: &str) -> Response {
    let a = AgentPage {
        p: visitor.page(title),
        uid: String::new(),
        sections: Vec::new(),
    };
    problem_page(visitor, a, status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_forms_first_part_gives_its_token() {
        let b = "XyZ";
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some(b)
        );
        assert_eq!(multipart_boundary("application/json"), None);
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok-123\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"passport\"; filename=\"p.pdf\"\r\n\r\n%PDF";
        assert_eq!(
            first_part_token(body.as_bytes(), b).as_deref(),
            Some("tok-123")
        );
        // Not all there yet, or another field first: no token.
        assert_eq!(first_part_token(&body.as_bytes()[..60], b), None);
        let other = body.replace("name=\"csrf\"", "name=\"other\"");
        assert_eq!(first_part_token(other.as_bytes(), b), None);
    }
}
