//! The call centre in the browser: look a caller's file up, open a report
//! for a caller the website failed, follow the reports on their clock, and
//! answer one with a desk appointment booked on the phone or a paper kit.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use guichet_access::Facts;
use guichet_proto::{convert, v1 as pb};
use serde::Deserialize;
use std::net::SocketAddr;

use super::{AgentPage, Workspace};
use crate::appointments::{SitesQuery, SlotsQuery};
use crate::error::ApiError;
use crate::extract::{PathParam, QueryParams, ReferenceParam};
use crate::state::AppState;
use crate::status::{StatusJson, StatusQuery};
use crate::web::blocked::CATEGORIES;
use crate::web::booking::{next_working_day, paris_words};
use crate::web::{Form, Page, date_words, iso_date_of, today};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/centre-appels", get(hub))
        .route("/agents/centre-appels/consultation", post(look_up))
        .route(
            "/agents/centre-appels/depot",
            get(on_behalf_form).post(file_on_behalf),
        )
        .route("/agents/signalements", post(open_report))
        .route("/agents/signalements/{id}", get(report))
        .route(
            "/agents/signalements/{id}/rendez-vous",
            post(offer_appointment),
        )
        .route("/agents/signalements/{id}/kit", post(offer_kit))
}

/// A report as the pages list and show it.
pub struct ReportView {
    pub id: String,
    pub category: String,
    pub what_was_tried: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    pub address: String,
    pub prefecture: String,
    pub state: String,
    pub opened_on: String,
    pub deadline: String,
    /// Working days or calendar days left, as the deadline says; negative
    /// when past.
    pub days_left: i64,
    pub overdue: bool,
    pub alternative: Option<String>,
    pub appointment_id: Option<String>,
    pub history: Vec<(String, String, String, String)>,
}

pub fn report_view(r: pb::Report, today: chrono::NaiveDate) -> ReportView {
    let contact = r.contact.unwrap_or_default();
    let address = contact.address.unwrap_or_default();
    let deadline = r.deadline.as_ref().and_then(convert::date_from_pb);
    ReportView {
        category: convert::report_category_text(r.category).unwrap_or_default(),
        what_was_tried: r.what_was_tried,
        name: format!("{} {}", r.family_name, r.given_names)
            .trim()
            .to_string(),
        phone: contact.phone,
        email: contact.email,
        address: [
            address.line1,
            format!("{} {}", address.postal_code, address.city),
        ]
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", "),
        prefecture: r.prefecture,
        state: convert::report_state_text(r.state).unwrap_or_default(),
        opened_on: r
            .opened_at
            .as_ref()
            .and_then(convert::timestamp_from_pb)
            .map(|t| guichet_dossier::calendar::paris_date(t).to_string())
            .unwrap_or_default(),
        deadline: deadline.map(|d| d.to_string()).unwrap_or_default(),
        days_left: deadline.map_or(0, |d| (d - today).num_days()),
        overdue: r.overdue,
        alternative: r
            .alternative
            .as_ref()
            .and_then(|a| convert::alternative_kind_text(a.kind)),
        appointment_id: r
            .alternative
            .as_ref()
            .map(|a| a.appointment_id.clone())
            .filter(|s| !s.is_empty()),
        history: r
            .history
            .into_iter()
            .map(|e| {
                (
                    e.at.as_ref()
                        .and_then(convert::timestamp_from_pb)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default(),
                    e.kind,
                    e.actor,
                    e.detail,
                )
            })
            .collect(),
        id: r.id,
    }
}

/// The reports still waiting for an answer, the overdue first, then the
/// nearest deadline: `prefecture` empty for every one.
pub async fn waiting_reports(
    state: &AppState,
    prefecture: &str,
    overdue_only: bool,
) -> Result<Vec<ReportView>, ApiError> {
    let today = today(state);
    let mut views = Vec::new();
    for s in [pb::ReportState::Escalated, pb::ReportState::Open] {
        let reports = state
            .ccc
            .clone()
            .list_reports(pb::ListReportsRequest {
                prefecture: prefecture.to_string(),
                state: s as i32,
                overdue_only,
                limit: 100,
            })
            .await?
            .into_inner()
            .reports;
        views.extend(reports.into_iter().map(|r| report_view(r, today)));
    }
    views.sort_by(|a, b| b.overdue.cmp(&a.overdue).then(a.deadline.cmp(&b.deadline)));
    Ok(views)
}

#[derive(askama::Template)]
#[template(path = "agents/call_centre.html")]
struct HubPage {
    a: AgentPage,
    p: Page,
    form: Form,
    categories: Vec<(&'static str, String)>,
    procedures: Vec<&'static str>,
    reports: Vec<ReportView>,
    status: Option<StatusJson>,
}

impl HubPage {
    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }

    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }
}

async fn hub_page(state: &AppState, w: &Workspace, form: Form) -> Result<HubPage, Response> {
    let reports = waiting_reports(state, "", false)
        .await
        .map_err(|e| w.api_problem(&e))?;
    let a = w.page("agents-ccc-title");
    Ok(HubPage {
        categories: CATEGORIES
            .iter()
            .map(|(code, _)| (*code, a.p.code_text("category", code)))
            .collect(),
        procedures: guichet_dossier::Procedure::ALL
            .iter()
            .map(|p| p.as_str())
            .collect(),
        p: a.p.clone(),
        a,
        form,
        reports,
        status: None,
    })
}

/// `GET /agents/centre-appels`
async fn hub(State(state): State<AppState>, w: Workspace) -> Response {
    match hub_page(&state, &w, Form::default()).await {
        Ok(page) => w.visitor.html(&page),
        Err(r) => r,
    }
}

/// `POST /agents/centre-appels/consultation`: where the caller's file
/// stands; their birth date is the check, and wrong ones are counted as
/// on every look-up.
async fn look_up(
    State(state): State<AppState>,
    w: Workspace,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let reference = form.get("reference").unwrap_or_default().to_uppercase();
    let birth_date = form.get("birth_date").map(|d| iso_date_of(&d));
    let mut page = match hub_page(&state, &w, form).await {
        Ok(page) => page,
        Err(r) => return r,
    };
    let answer = crate::status::status(
        State(state),
        w.access.clone(),
        peer,
        headers,
        ReferenceParam::new(reference),
        QueryParams(StatusQuery { birth_date }),
    )
    .await;
    match answer {
        Ok(Json(status)) => {
            page.status = Some(status);
            w.visitor.html(&page)
        }
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => {
            let status = e.status();
            page.p.add_api_errors(&e, &[("reference", "reference")]);
            if page.p.errors.is_empty() || status == StatusCode::NOT_FOUND {
                page.p.add_error("reference", "lookup.not-found");
            }
            w.visitor.html_with(status, &page)
        }
        Err(e) => w.api_problem(&e),
    }
}

/// The same form sent twice by the same agent (a double click) is one
/// report, or one filing.
fn form_key(uid: &str, form: &Form) -> String {
    form.idempotency_key("ccc-page", uid, &["csrf"])
}

/// `POST /agents/signalements`: opens a report for the caller, then its page.
async fn open_report(State(state): State<AppState>, w: Workspace, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let agent_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    let key = form_key(&agent_id, &form);
    let request = crate::web::blocked::report_request(&form, w.visitor.lang, &agent_id, key);
    match state.ccc.clone().open_report(request).await {
        Ok(r) => w
            .visitor
            .redirect(&format!("/agents/signalements/{}", r.into_inner().id)),
        Err(status) => {
            let e = ApiError::from(status);
            if !e.status().is_client_error() {
                return w.api_problem(&e);
            }
            let mut page = match hub_page(&state, &w, form).await {
                Ok(page) => page,
                Err(r) => return r,
            };
            page.p.add_api_errors(
                &e,
                &[
                    ("contact.phone", "phone"),
                    ("contact.email", "email"),
                    ("contact.address.postal_code", "postal_code"),
                    ("contact.address.city", "city"),
                    ("contact.address.line1", "line1"),
                    ("contact", "phone"),
                ],
            );
            w.visitor.html_with(e.status(), &page)
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    site: Option<String>,
    jour: Option<String>,
}

/// A desk site and the slots of the day shown.
struct SiteSlots {
    id: String,
    name: String,
    slots: Vec<(String, String)>,
}

#[derive(askama::Template)]
#[template(path = "agents/report.html")]
struct ReportPage {
    a: AgentPage,
    p: Page,
    report: ReportView,
    sites: Vec<(String, String)>,
    chosen: Option<SiteSlots>,
    day: String,
    /// The agent may answer the report (the call centre, or its prefecture).
    may_answer: bool,
}

impl ReportPage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn day_typed(&self) -> String {
        crate::web::typed_date(&self.day)
    }
}

/// The report `id`, once the caller may see it.
async fn report_for(state: &AppState, w: &Workspace, id: String) -> Result<pb::Report, ApiError> {
    let r = state
        .ccc
        .clone()
        .get_report(pb::GetReportRequest { id })
        .await?
        .into_inner();
    w.access
        .allow(&Facts::none().report(&r.id).prefecture(&r.prefecture))?;
    Ok(r)
}

/// Whether the agent's roles let them answer this report (the rule of
/// the answering forms, judged on the report).
fn may_answer(w: &Workspace, report: &ReportView) -> bool {
    guichet_access::policy::rest("POST", "/agents/signalements/{id}/rendez-vous").is_some_and(
        |rule| {
            matches!(
                guichet_access::decide(
                    w.access.caller(),
                    rule,
                    &Facts::none()
                        .report(&report.id)
                        .prefecture(&report.prefecture),
                ),
                guichet_access::Decision::Allow(_)
            )
        },
    )
}

async fn report_page(
    state: &AppState,
    w: &Workspace,
    id: String,
    params: ReportParams,
) -> Result<ReportPage, Response> {
    let r = report_for(state, w, id)
        .await
        .map_err(|e| w.api_problem(&e))?;
    let today = today(state);
    let report = report_view(r, today);
    let sites: Vec<(String, String)> = match crate::appointments::sites(
        State(state.clone()),
        QueryParams(SitesQuery {
            prefecture: Some(report.prefecture.clone()),
        }),
    )
    .await
    {
        Ok(Json(sites)) => sites.into_iter().map(|s| (s.id, s.name)).collect(),
        Err(e) => return Err(w.api_problem(&e)),
    };
    let day = params
        .jour
        .map(|d| iso_date_of(&d))
        .filter(|d| guichet_dossier::calendar::parse_iso_date(d).is_some())
        .unwrap_or_else(|| next_working_day(today, &report.prefecture).to_string());
    let site = params
        .site
        .filter(|s| sites.iter().any(|(id, _)| id == s))
        .or_else(|| sites.first().map(|(id, _)| id.clone()));
    let chosen = match site {
        None => None,
        Some(site) => {
            let free = crate::appointments::slots(
                State(state.clone()),
                PathParam(site.clone()),
                QueryParams(SlotsQuery {
                    date: Some(day.clone()),
                }),
            )
            .await
            .map_err(|e| w.api_problem(&e))?;
            Some(SiteSlots {
                name: sites
                    .iter()
                    .find(|(id, _)| *id == site)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default(),
                id: site,
                slots: free
                    .0
                    .into_iter()
                    .map(|s| {
                        (
                            s.starts_at.clone(),
                            paris_words(w.visitor.lang, &s.starts_at).1,
                        )
                    })
                    .collect(),
            })
        }
    };
    let a = w.page("agents-report-title");
    Ok(ReportPage {
        may_answer: may_answer(w, &report),
        p: a.p.clone(),
        a,
        report,
        sites,
        chosen,
        day,
    })
}

/// `GET /agents/signalements/{id}`: the report on its clock, and the ways
/// to answer it.
async fn report(
    State(state): State<AppState>,
    w: Workspace,
    Path(id): Path<String>,
    Query(params): Query<ReportParams>,
) -> Response {
    match report_page(&state, &w, id, params).await {
        Ok(page) => w.visitor.html(&page),
        Err(r) => r,
    }
}

/// `POST /agents/signalements/{id}/rendez-vous`: books the slot chosen for
/// the caller, by phone, on the places kept for reports, and offers it.
async fn offer_appointment(
    State(state): State<AppState>,
    w: Workspace,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let r = match report_for(&state, &w, id.clone()).await {
        Ok(r) => r,
        Err(e) => return w.api_problem(&e),
    };
    let agent_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    let (Some(site), Some(starts_at)) = (form.get("site"), form.get("starts_at")) else {
        return slot_refused(&state, &w, id, &form).await;
    };
    let Some(at) = chrono::DateTime::parse_from_rfc3339(&starts_at).ok() else {
        return slot_refused(&state, &w, id, &form).await;
    };
    let contact = r.contact.clone().unwrap_or_default();
    let booked = state
        .pan
        .clone()
        .book(pb::BookRequest {
            site_id: site,
            starts_at: Some(convert::timestamp_to_pb(at.with_timezone(&chrono::Utc))),
            person: Some(pb::Person {
                family_name: r.family_name.clone(),
                given_names: r.given_names.clone(),
                phone: contact.phone,
                email: contact.email,
            }),
            route: pb::BookingRoute::Phone as i32,
            booked_by: agent_id.clone(),
            report_id: r.id.clone(),
            idempotency_key: format!("report:{}:{starts_at}", r.id),
        })
        .await;
    let appointment = match booked {
        Ok(a) => a.into_inner(),
        Err(status) => {
            let e = ApiError::from(status);
            if e.status().is_client_error() {
                return slot_refused(&state, &w, id, &form).await;
            }
            return w.api_problem(&e);
        }
    };
    offer(
        &state,
        &w,
        pb::OfferAlternativeRequest {
            id: r.id,
            kind: pb::AlternativeKind::PanAppointment as i32,
            appointment_id: appointment.id,
            kit_sent_to: None,
            agent_id,
        },
    )
    .await
}

/// The report's page again, saying the slot could not be booked.
async fn slot_refused(state: &AppState, w: &Workspace, id: String, form: &Form) -> Response {
    let params = ReportParams {
        site: form.get("site"),
        jour: form.get("day"),
    };
    match report_page(state, w, id, params).await {
        Ok(mut page) => {
            page.p.add_error("slot", "report.slot");
            w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(r) => r,
    }
}

/// `POST /agents/signalements/{id}/kit`: a paper filing kit, sent to the
/// address on the report.
async fn offer_kit(
    State(state): State<AppState>,
    w: Workspace,
    Path(id): Path<String>,
) -> Response {
    let r = match report_for(&state, &w, id).await {
        Ok(r) => r,
        Err(e) => return w.api_problem(&e),
    };
    let agent_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    offer(
        &state,
        &w,
        pb::OfferAlternativeRequest {
            id: r.id,
            kind: pb::AlternativeKind::PaperKit as i32,
            appointment_id: String::new(),
            kit_sent_to: None,
            agent_id,
        },
    )
    .await
}

async fn offer(state: &AppState, w: &Workspace, request: pb::OfferAlternativeRequest) -> Response {
    let id = request.id.clone();
    match state.ccc.clone().offer_alternative(request).await {
        Ok(_) => w.visitor.redirect(&format!("/agents/signalements/{id}")),
        Err(status) => w.api_problem(&ApiError::from(status)),
    }
}

#[derive(askama::Template)]
#[template(path = "agents/on_behalf.html")]
struct OnBehalfPage {
    a: AgentPage,
    p: Page,
    form: Form,
    procedures: Vec<&'static str>,
    motifs: Vec<&'static str>,
    titles: Vec<&'static str>,
    answers: Vec<&'static str>,
    /// The receipt, once filed.
    filed: Option<(String, String)>,
}

impl OnBehalfPage {
    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }
}

fn on_behalf_page(w: &Workspace, form: Form) -> OnBehalfPage {
    use guichet_dossier::{AnswerChannel, Motif, Procedure, TitleKind};
    let a = w.page("agents-behalf-title");
    OnBehalfPage {
        p: a.p.clone(),
        a,
        form,
        procedures: Procedure::ALL.iter().map(|c| c.as_str()).collect(),
        motifs: Motif::ALL.iter().map(|c| c.as_str()).collect(),
        titles: TitleKind::ALL.iter().map(|c| c.as_str()).collect(),
        answers: AnswerChannel::ALL.iter().map(|c| c.as_str()).collect(),
        filed: None,
    }
}

/// `GET /agents/centre-appels/depot`: the whole filing on one page, for
/// the agent who fills it in on the phone.
async fn on_behalf_form(w: Workspace) -> Response {
    let page = on_behalf_page(&w, Form::default());
    w.visitor.html(&page)
}

/// `POST /agents/centre-appels/depot`: files for the caller, once they
/// agreed on the recorded call; the same dossier as every channel's.
async fn file_on_behalf(State(state): State<AppState>, w: Workspace, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let agent_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    let mut raw = crate::web::filing::raw_filing_of(&form, w.visitor.lang);
    // The same form sent twice (a double click) files once.
    raw.idempotency_key = Some(form_key(&agent_id, &form));
    let consent = form.get("consent").as_deref() == Some("yes");
    let call_id = form.get("call_id");
    let provenance = guichet_dossier::filing::RawProvenance::Ccc {
        agent_id: Some(agent_id.clone()),
        call_id: call_id.clone(),
        consent_recorded: consent,
    };
    let mut page = on_behalf_page(&w, form);
    let parsed = guichet_dossier::Filing::parse(&raw, &provenance, today(&state));
    let filing = match parsed {
        Ok(filing) => filing,
        Err(v) => {
            super::add_filing_violations(&mut page.p, &v);
            if !consent {
                page.p.add_error("consent", "consent");
            }
            return w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    if !consent {
        page.p.add_error("consent", "consent");
        return w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let answer = state
        .ccc
        .clone()
        .file_on_behalf(pb::FileOnBehalfRequest {
            filing: Some(convert::filing_to_pb(&filing)),
            agent_id,
            call_id: call_id.unwrap_or_default(),
            consent_recorded: consent,
        })
        .await;
    match answer {
        Ok(r) => {
            page.filed = Some(super::filed_of(r.into_inner().receipt));
            page.form = Form::default();
            w.visitor.html(&page)
        }
        Err(status) => {
            let e = ApiError::from(status);
            if !e.status().is_client_error() {
                return w.api_problem(&e);
            }
            super::add_filing_problems(&mut page.p, &e);
            w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}
