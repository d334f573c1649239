//! "Appointments": find a desk of one's prefecture, a free slot on a day,
//! book it, then follow it by its secret link (its convocation to
//! download, or cancel it). Booking goes through the same desk service as
//! the API and the agents' software.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};

use super::{Form, Page, Visitor, date_words};
use crate::appointments::{
    AppointmentJson, BookJson, CancelJson, MoveJson, PersonJson, SiteJson, SitesQuery, SlotJson,
    SlotsQuery,
};
use crate::extract::{JsonBody, OptionalJsonBody, PathParam, QueryParams};
use crate::policy::Access;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rendez-vous", get(sites))
        .route("/rendez-vous/lieu/{site}", get(slots).post(book))
        .route("/rendez-vous/suivi/{id}", get(follow))
        .route("/rendez-vous/suivi/{id}/annulation", post(cancel))
        .route("/rendez-vous/suivi/{id}/deplacement", post(move_to))
}

#[derive(serde::Deserialize, Default)]
struct SitesParams {
    departement: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "booking_sites.html")]
struct SitesPage {
    p: Page,
    prefecture: String,
    sites: Option<Vec<SiteJson>>,
    /// The day each site's slots open on: the prefecture's next working day.
    first_day: String,
}

async fn sites(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(params): Query<SitesParams>,
) -> Response {
    let prefecture = params.departement.unwrap_or_default().trim().to_uppercase();
    let mut page = SitesPage {
        p: visitor.page("booking-title"),
        first_day: next_working_day(super::today(&state), &prefecture).to_string(),
        prefecture: prefecture.clone(),
        sites: None,
    };
    if !prefecture.is_empty() {
        if !crate::directory::is_department_code(&prefecture) {
            page.p.add_error("departement", "booking.departement");
            return visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        match crate::appointments::sites(
            State(state),
            QueryParams(SitesQuery {
                prefecture: Some(prefecture),
            }),
        )
        .await
        {
            Ok(Json(sites)) => page.sites = Some(sites),
            Err(e) => return visitor.api_problem(&e),
        }
    }
    visitor.html(&page)
}

#[derive(serde::Deserialize, Default)]
struct SlotsParams {
    jour: Option<String>,
}

/// A free slot as the page offers it.
struct Slot {
    value: String,
    label: String,
}

#[derive(askama::Template)]
#[template(path = "booking_slots.html")]
struct SlotsPage {
    p: Page,
    site: String,
    day: String,
    slots: Vec<Slot>,
    form: Form,
}

impl SlotsPage {
    fn day_typed(&self) -> String {
        super::typed_date(&self.day)
    }

    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }
}

/// An instant as the page shows it: its date and time in Paris.
pub(crate) fn paris_words(lang: super::Lang, starts_at: &str) -> (String, String) {
    match DateTime::parse_from_rfc3339(starts_at) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            let day = guichet_dossier::calendar::paris_date(t).to_string();
            (
                date_words(lang, &day),
                guichet_dossier::calendar::paris_time_of_day(t),
            )
        }
        Err(_) => (starts_at.to_string(), String::new()),
    }
}

async fn slots_page(
    state: &AppState,
    visitor: &Visitor,
    site: &str,
    day: String,
    form: Form,
) -> Result<SlotsPage, Response> {
    let free: Vec<SlotJson> = match crate::appointments::slots(
        State(state.clone()),
        PathParam(site.to_string()),
        QueryParams(SlotsQuery {
            date: Some(day.clone()),
        }),
    )
    .await
    {
        Ok(Json(s)) => s,
        Err(e) => return Err(visitor.api_problem(&e)),
    };
    Ok(SlotsPage {
        p: visitor.page("booking-slots-title"),
        site: site.to_string(),
        slots: free
            .into_iter()
            .map(|s| Slot {
                label: paris_words(visitor.lang, &s.starts_at).1,
                value: s.starts_at,
            })
            .collect(),
        day,
        form,
    })
}

/// The first working day of `department` after `today`: what the slots
/// page opens on.
pub(crate) fn next_working_day(today: chrono::NaiveDate, department: &str) -> chrono::NaiveDate {
    let mut day = today + chrono::Days::new(1);
    while !guichet_dossier::calendar::is_working_day(day, department) {
        day = day + chrono::Days::new(1);
    }
    day
}

async fn slots(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(site): Path<String>,
    Query(params): Query<SlotsParams>,
) -> Response {
    let day = params
        .jour
        .map(|d| super::iso_date_of(&d))
        .filter(|d| guichet_dossier::calendar::parse_iso_date(d).is_some())
        // The sites page's links name the day; a link without one opens on
        // the next day worked nationally (a local holiday shows no slot, and
        // the page lets another day be chosen).
        .unwrap_or_else(|| next_working_day(super::today(&state), "").to_string());
    match slots_page(&state, &visitor, &site, day, Form::default()).await {
        Ok(page) => visitor.html(&page),
        Err(r) => r,
    }
}

/// `POST /rendez-vous/lieu/{site}`: books the slot chosen.
async fn book(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let day = form.get("day").unwrap_or_default();
    let starts_at = form.get("starts_at");
    let family_name = form.get("family_name");
    let (email, phone) = (form.get("email"), form.get("phone"));
    let mut problems: Vec<(&str, &str)> = Vec::new();
    if starts_at.is_none() {
        problems.push(("starts_at", "booking.starts_at"));
    }
    if family_name.is_none() {
        problems.push(("family_name", "report.family_name"));
    }
    if email.is_none() && phone.is_none() {
        problems.push(("phone", "report.contact"));
    }
    let mut headers = HeaderMap::new();
    let key = format!(
        "{}-{}",
        form.csrf().unwrap_or_default(),
        starts_at.clone().unwrap_or_default()
    );
    if let Ok(v) = HeaderValue::from_str(&key) {
        headers.insert("idempotency-key", v);
    }
    let booked = if problems.is_empty() {
        Some(
            crate::appointments::book(
                State(state.clone()),
                headers,
                JsonBody(BookJson {
                    site_id: site.clone(),
                    starts_at: starts_at.clone().unwrap_or_default(),
                    person: PersonJson {
                        family_name: family_name.clone().unwrap_or_default(),
                        given_names: form.get("given_names").unwrap_or_default(),
                        phone: phone.clone().unwrap_or_default(),
                        email: email.clone().unwrap_or_default(),
                    },
                    report_id: String::new(),
                }),
            )
            .await,
        )
    } else {
        None
    };
    let error = match booked {
        Some(Ok((_, Json(a)))) => {
            let secret = a.secret.clone().unwrap_or_default();
            return visitor.redirect(&format!("/rendez-vous/suivi/{}?cle={secret}", a.id));
        }
        Some(Err(e)) if e.status().is_server_error() => return visitor.api_problem(&e),
        Some(Err(e)) => Some(e),
        None => None,
    };
    let mut page = match slots_page(&state, &visitor, &site, day, form).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    for (id, field) in problems {
        page.p.add_error(id, field);
    }
    if let Some(e) = &error {
        page.p.add_api_errors(
            e,
            &[
                ("person.phone", "phone"),
                ("person.email", "email"),
                ("person.family_name", "family_name"),
                ("starts_at", "starts_at"),
            ],
        );
        if page.p.errors.is_empty() {
            page.p.add_error("starts_at", "booking.taken");
        }
    }
    visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[derive(serde::Deserialize, Default)]
struct Key {
    cle: Option<String>,
    /// A day to move the appointment to: its free slots are shown.
    jour: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "booking_follow.html")]
struct FollowPage {
    p: Page,
    appointment: AppointmentJson,
    key: String,
    when: String,
    /// The day asked for a move, and its free slots.
    day: String,
    slots: Vec<Slot>,
}

impl FollowPage {
    fn day_typed(&self) -> String {
        super::typed_date(&self.day)
    }
}

fn follow_page(visitor: &Visitor, appointment: AppointmentJson, key: String) -> FollowPage {
    let p = visitor.page("booking-follow-title");
    let when = appointment
        .starts_at
        .as_deref()
        .map(|t| {
            let (day, time) = paris_words(p.lang, t);
            format!("{day} {time}")
        })
        .unwrap_or_default();
    FollowPage {
        p,
        appointment,
        key,
        when,
        day: String::new(),
        slots: Vec::new(),
    }
}

async fn follow(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    Path(id): Path<String>,
    Query(key): Query<Key>,
) -> Response {
    let a = match crate::appointments::get(
        State(state.clone()),
        access,
        super::link_headers(&key.cle),
        PathParam(id),
    )
    .await
    {
        Ok(Json(a)) => a,
        Err(e) => return visitor.api_problem(&e),
    };
    let site = a.site_id.clone();
    let mut page = follow_page(&visitor, a, key.cle.unwrap_or_default());
    let day = key
        .jour
        .map(|d| super::iso_date_of(&d))
        .filter(|d| guichet_dossier::calendar::parse_iso_date(d).is_some());
    if let Some(day) = day {
        match slots_page(&state, &visitor, &site, day.clone(), Form::default()).await {
            Ok(slots) => page.slots = slots.slots,
            Err(r) => return r,
        }
        page.day = day;
    }
    visitor.html(&page)
}

/// `POST /rendez-vous/suivi/{id}/deplacement`: to the slot chosen.
async fn move_to(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let key = form.get("cle");
    let Some(starts_at) = form.get("starts_at") else {
        return visitor.refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "error-invalid-title",
            "field-booking-starts-at",
        );
    };
    match crate::appointments::move_to(
        State(state),
        access,
        super::link_headers(&key),
        PathParam(id),
        JsonBody(MoveJson { starts_at }),
    )
    .await
    {
        Ok(Json(a)) => visitor.html(&follow_page(&visitor, a, key.unwrap_or_default())),
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => visitor
            .refusal(
                StatusCode::CONFLICT,
                "error-invalid-title",
                "field-booking-taken",
            ),
        Err(e) => visitor.api_problem(&e),
    }
}

async fn cancel(
    State(state): State<AppState>,
    visitor: Visitor,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let key = form.get("cle");
    match crate::appointments::cancel(
        State(state),
        access,
        super::link_headers(&key),
        PathParam(id),
        OptionalJsonBody(CancelJson {
            reason: "cancelled by the person on the web".to_string(),
        }),
    )
    .await
    {
        Ok(Json(a)) => visitor.html(&follow_page(&visitor, a, key.unwrap_or_default())),
        Err(e) => visitor.api_problem(&e),
    }
}
