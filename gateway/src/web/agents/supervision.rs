//! Supervision in the browser: the agents of the supervisor's prefectures
//! and their roles (granted and withdrawn here, recorded with who did it),
//! the reports past their deadline, and the audit log of reads and changes.
//! Operators see every prefecture and change nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use std::net::SocketAddr;

use super::call_centre::{ReportView, waiting_reports};
use super::{AgentPage, Workspace};
use crate::admin::{AgentJson, AgentsQuery, AuditParams};
use crate::directory::AuditRow;
use crate::extract::QueryParams;
use crate::state::AppState;
use crate::web::{Form, Page, date_words};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/supervision", get(agents))
        .route("/agents/supervision/habilitations", post(grant))
        .route("/agents/supervision/habilitations/retrait", post(revoke))
        .route("/agents/journal", get(journal))
}

/// The roles a supervisor grants in their prefectures (national roles are
/// granted on the servers).
const GRANTABLE: [guichet_access::Role; 3] = [
    guichet_access::Role::Instructor,
    guichet_access::Role::DeskAgent,
    guichet_access::Role::Supervisor,
];

#[derive(askama::Template)]
#[template(path = "agents/supervision.html")]
struct SupervisionPage {
    a: AgentPage,
    p: Page,
    agents: Vec<AgentJson>,
    overdue: Vec<ReportView>,
    /// The prefectures the signed-in supervisor grants roles in (none for
    /// an operator, who only reads).
    grantable_in: Vec<String>,
    roles: Vec<&'static str>,
    form: Form,
}

impl SupervisionPage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }

    fn grantable(&self, role: &str, prefecture: &Option<String>) -> bool {
        self.roles.contains(&role)
            && prefecture
                .as_ref()
                .is_some_and(|p| self.grantable_in.contains(p))
    }
}

async fn supervision_page(
    state: &AppState,
    w: &Workspace,
    form: Form,
) -> Result<SupervisionPage, Response> {
    let agents = crate::admin::list_agents(
        State(state.clone()),
        w.access.clone(),
        QueryParams(AgentsQuery { prefecture: None }),
    )
    .await
    .map_err(|e| w.api_problem(&e))?
    .0;
    // A supervisor's prefectures; everyone's for an operator.
    let places = w.access.own_prefectures();
    let mut overdue = Vec::new();
    if places.is_empty() {
        overdue = waiting_reports(state, "", true)
            .await
            .map_err(|e| w.api_problem(&e))?;
    }
    for p in &places {
        overdue.extend(
            waiting_reports(state, p, true)
                .await
                .map_err(|e| w.api_problem(&e))?,
        );
    }
    let grantable_in = match w.access.caller() {
        guichet_access::Caller::Agent(agent) => agent
            .prefectures_of(guichet_access::Role::Supervisor)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let a = w.page("agents-supervision-title");
    Ok(SupervisionPage {
        p: a.p.clone(),
        a,
        agents,
        overdue,
        grantable_in,
        roles: GRANTABLE.iter().map(|r| r.as_str()).collect(),
        form,
    })
}

/// `GET /agents/supervision`
async fn agents(State(state): State<AppState>, w: Workspace) -> Response {
    match supervision_page(&state, &w, Form::default()).await {
        Ok(page) => w.visitor.html(&page),
        Err(r) => r,
    }
}

async fn change(
    state: AppState,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
    granting: bool,
) -> Response {
    let form = Form::parse(&body);
    let path = (
        form.get("uid").unwrap_or_default(),
        form.get("role").unwrap_or_default(),
        form.get("prefecture").unwrap_or_default(),
    );
    let answer = if granting {
        crate::admin::grant(
            State(state.clone()),
            w.access.clone(),
            peer,
            axum::extract::Path(path),
        )
        .await
    } else {
        crate::admin::revoke(
            State(state.clone()),
            w.access.clone(),
            peer,
            axum::extract::Path(path),
        )
        .await
    };
    match answer {
        Ok(Json(_)) => w.visitor.redirect("/agents/supervision"),
        Err(e) if e.status().is_client_error() && e.status().as_u16() != 403 => {
            match supervision_page(&state, &w, form).await {
                Ok(mut page) => {
                    page.p
                        .add_api_errors(&e, &[("uid", "grant-uid"), ("role", "grant-role")]);
                    w.visitor.html_with(e.status(), &page)
                }
                Err(r) => r,
            }
        }
        Err(e) => w.api_problem(&e),
    }
}

/// `POST /agents/supervision/habilitations`: a role granted in one of the
/// supervisor's prefectures.
async fn grant(
    State(state): State<AppState>,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    change(state, w, peer, body, true).await
}

/// `POST /agents/supervision/habilitations/retrait`: a role withdrawn.
async fn revoke(
    State(state): State<AppState>,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    change(state, w, peer, body, false).await
}

#[derive(Debug, Default, Deserialize)]
struct JournalQuery {
    agent: Option<String>,
    dossier: Option<String>,
    avant: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "agents/journal.html")]
struct JournalPage {
    a: AgentPage,
    p: Page,
    rows: Vec<AuditRow>,
    agent: String,
    dossier: String,
    /// The id to page back from, when there may be more.
    next: Option<i64>,
}

impl JournalPage {
    fn next_href(&self, before: &i64) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !self.agent.is_empty() {
            query.append_pair("agent", &self.agent);
        }
        if !self.dossier.is_empty() {
            query.append_pair("dossier", &self.dossier);
        }
        query.append_pair("avant", &before.to_string());
        format!("{}?{}", self.p.href("/agents/journal"), query.finish())
    }
}

const JOURNAL_PAGE: u32 = 100;

/// `GET /agents/journal`: who read or changed what, newest first.
async fn journal(
    State(state): State<AppState>,
    w: Workspace,
    Query(q): Query<JournalQuery>,
) -> Response {
    let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (agent, dossier) = (keep(q.agent), keep(q.dossier).map(|d| d.to_uppercase()));
    let answer = crate::admin::audit_log(
        State(state),
        w.access.clone(),
        QueryParams(AuditParams {
            agent: agent.clone(),
            dossier: dossier.clone(),
            prefecture: None,
            since: None,
            before: q.avant,
            limit: Some(JOURNAL_PAGE),
        }),
    )
    .await;
    match answer {
        Ok(Json(rows)) => {
            let a = w.page("agents-journal-title");
            let next = (rows.len() as u32 == JOURNAL_PAGE)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            w.visitor.html(&JournalPage {
                p: a.p.clone(),
                a,
                rows,
                agent: agent.unwrap_or_default(),
                dossier: dossier.unwrap_or_default(),
                next,
            })
        }
        Err(e) => w.api_problem(&e),
    }
}
