//! The desk in the browser: a site's appointments of the day, who came and
//! who did not, and the card handed over (which ends the favourable-
//! decision attestation).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use guichet_access::Facts;
use guichet_proto::{convert, v1 as pb};
use serde::Deserialize;

use super::{AgentPage, Workspace};
use crate::agents::CardHandoverBody;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, ReferenceParam};
use crate::state::AppState;
use crate::web::booking::paris_words;
use crate::web::{Form, Page, date_words, iso_date_of, today, typed_date};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/guichet", get(day))
        .route(
            "/agents/guichet/rendez-vous/{id}/presence",
            post(attendance),
        )
        .route("/agents/guichet/remise", post(card))
}

#[derive(Debug, Default, Deserialize)]
struct DayQuery {
    site: Option<String>,
    jour: Option<String>,
}

/// An appointment as the day's list shows it.
struct Row {
    id: String,
    time: String,
    name: String,
    contact: String,
    route: String,
    state: String,
}

#[derive(askama::Template)]
#[template(path = "agents/desk.html")]
struct DayPage {
    a: AgentPage,
    p: Page,
    sites: Vec<(String, String)>,
    site: Option<String>,
    day: String,
    rows: Vec<Row>,
    form: Form,
}

impl DayPage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn day_typed(&self) -> String {
        typed_date(&self.day)
    }

    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }
}

async fn day_page(
    state: &AppState,
    w: &Workspace,
    q: DayQuery,
    form: Form,
) -> Result<DayPage, Response> {
    let mut sites = Vec::new();
    for prefecture in w.access.own_prefectures() {
        let found = state
            .pan
            .clone()
            .list_sites(pb::ListSitesRequest { prefecture })
            .await
            .map_err(|s| w.api_problem(&ApiError::from(s)))?
            .into_inner()
            .sites;
        sites.extend(found.into_iter().map(|s| (s.id, s.name, s.prefecture)));
    }
    let day = q
        .jour
        .map(|d| iso_date_of(&d))
        .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
        .unwrap_or_else(|| today(state).to_string());
    let site = q
        .site
        .filter(|s| sites.iter().any(|(id, _, _)| id == s))
        .or_else(|| sites.first().map(|(id, _, _)| id.clone()));
    let mut rows = Vec::new();
    if let Some(id) = &site {
        let prefecture = sites
            .iter()
            .find(|(s, _, _)| s == id)
            .map(|(_, _, p)| p.clone())
            .unwrap_or_default();
        w.access
            .allow(&Facts::none().prefecture(&prefecture))
            .map_err(|e| w.api_problem(&e))?;
        let date = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| {
            w.api_problem(&ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("jour"),
                "not a date",
            ))
        })?;
        let appointments = state
            .pan
            .clone()
            .list_appointments(pb::ListAppointmentsRequest {
                site_id: id.clone(),
                date: Some(convert::date_to_pb(date)),
            })
            .await
            .map_err(|s| w.api_problem(&ApiError::from(s)))?
            .into_inner()
            .appointments;
        rows = appointments
            .into_iter()
            .map(|a| {
                let person = a.person.unwrap_or_default();
                let starts = a
                    .starts_at
                    .as_ref()
                    .and_then(convert::timestamp_from_pb)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                Row {
                    time: paris_words(w.visitor.lang, &starts).1,
                    name: format!("{} {}", person.family_name, person.given_names)
                        .trim()
                        .to_string(),
                    contact: [person.phone, person.email]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(", "),
                    route: convert::booking_route_text(a.route).unwrap_or_default(),
                    state: convert::appointment_state_text(a.state).unwrap_or_default(),
                    id: a.id,
                }
            })
            .collect();
    } else {
        // No site: still judged, on the agent's own prefectures.
        w.access
            .allow(
                &Facts::none().prefecture(
                    w.access
                        .own_prefectures()
                        .first()
                        .map_or("", String::as_str),
                ),
            )
            .map_err(|e| w.api_problem(&e))?;
    }
    let a = w.page("agents-desk-title");
    Ok(DayPage {
        p: a.p.clone(),
        a,
        sites: sites.into_iter().map(|(id, name, _)| (id, name)).collect(),
        site,
        day,
        rows,
        form,
    })
}

/// `GET /agents/guichet?site=59-lille&jour=02/12/2026`
async fn day(State(state): State<AppState>, w: Workspace, Query(q): Query<DayQuery>) -> Response {
    match day_page(&state, &w, q, Form::default()).await {
        Ok(page) => w.visitor.html(&page),
        Err(r) => r,
    }
}

/// `POST /agents/guichet/rendez-vous/{id}/presence`: came (`present=yes`)
/// or did not.
async fn attendance(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let appointment = match state
        .pan
        .clone()
        .get_appointment(pb::GetAppointmentRequest { id: id.clone() })
        .await
    {
        Ok(a) => a.into_inner(),
        Err(s) => return w.api_problem(&ApiError::from(s)),
    };
    if let Err(e) = w.access.allow(
        &Facts::none()
            .appointment(&appointment.id)
            .prefecture(&appointment.prefecture),
    ) {
        return w.api_problem(&e);
    }
    let by = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    let recorded = state
        .pan
        .clone()
        .record_attendance(pb::RecordAttendanceRequest {
            id,
            attended: form.get("present").as_deref() == Some("yes"),
            by,
        })
        .await;
    let back = format!(
        "/agents/guichet?site={}&jour={}",
        appointment.site_id,
        form.get("day").unwrap_or_default()
    );
    match recorded {
        Ok(_) => w.visitor.redirect(&back),
        Err(s) => w.api_problem(&ApiError::from(s)),
    }
}

/// `POST /agents/guichet/remise`: the card is in the person's hands.
async fn card(State(state): State<AppState>, w: Workspace, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let reference = form
        .get("card-reference")
        .unwrap_or_default()
        .to_uppercase();
    let answer = crate::agents::hand_over_card(
        State(state.clone()),
        w.access.clone(),
        ReferenceParam::new(reference),
        JsonBody(CardHandoverBody {
            card_number: form.get("card-number"),
            valid_until: form.get("card-valid-until").map(|d| iso_date_of(&d)),
        }),
    )
    .await;
    let q = DayQuery {
        site: form.get("site"),
        jour: form.get("day"),
    };
    match answer {
        Ok(_) => match day_page(&state, &w, q, Form::default()).await {
            Ok(mut page) => {
                page.form = Form::from_pairs(vec![("handed".into(), "yes".into())]);
                w.visitor.html(&page)
            }
            Err(r) => r,
        },
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => {
            match day_page(&state, &w, q, form).await {
                Ok(mut page) => {
                    page.p.add_api_errors(
                        &e,
                        &[
                            ("reference", "card-reference"),
                            ("card_number", "card-number"),
                            ("valid_until", "card-valid-until"),
                        ],
                    );
                    if page.p.errors.is_empty() {
                        page.p.add_error("card-reference", "card.state");
                    }
                    w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
                }
                Err(r) => r,
            }
        }
        Err(e) => w.api_problem(&e),
    }
}
