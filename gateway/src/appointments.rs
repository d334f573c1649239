//! REST for what a browser needs of the desk and call-centre channels: find
//! a site and a free slot, book, move or cancel an appointment online, and
//! read a report; and for a prefecture's agent, offer a report its
//! alternative. Agents' software uses the same operations over gRPC.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{self, post};
use chrono::{DateTime, Utc};
use guichet_dossier::Violations;
use guichet_dossier::calendar::parse_iso_date;
use guichet_dossier::signalement::AlternativeKind;
use guichet_proto::{convert, v1 as pb};
use serde::{Deserialize, Serialize};

use guichet_access::{Caller, Facts, Person};

use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJsonBody, PathParam, QueryParams};
use crate::policy::Access;
use crate::state::AppState;

/// Sites, slots, appointments and reports.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sites", routing::get(sites))
        .route("/api/v1/sites/{site}/slots", routing::get(slots))
        .route("/api/v1/appointments", post(book))
        .route("/api/v1/appointments/{id}", routing::get(get))
        .route("/api/v1/appointments/{id}/move", post(move_to))
        .route("/api/v1/appointments/{id}/notice", routing::get(notice))
        .route("/api/v1/appointments/{id}/cancellation", post(cancel))
        .route("/api/v1/reports/{id}", routing::get(report))
        .route(
            "/api/v1/agent/reports/{id}/alternative",
            post(offer_alternative),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesQuery {
    pub prefecture: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OpeningHoursJson {
    pub weekday: u32,
    pub opens: String,
    pub closes: String,
}

#[derive(Debug, Serialize)]
pub struct SiteJson {
    pub id: String,
    pub name: String,
    pub prefecture: String,
    pub kind: &'static str,
    pub opening_hours: Vec<OpeningHoursJson>,
    pub slot_minutes: u32,
}

/// `GET /api/v1/sites?prefecture=59`: where one can be received.
pub async fn sites(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<SitesQuery>,
) -> Result<Json<Vec<SiteJson>>, ApiError> {
    let sites = state
        .pan
        .clone()
        .list_sites(pb::ListSitesRequest {
            prefecture: q.prefecture.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .sites;
    Ok(Json(
        sites
            .into_iter()
            .map(|s| SiteJson {
                kind: match pb::SiteKind::try_from(s.kind) {
                    Ok(pb::SiteKind::SubPrefecture) => "sub_prefecture",
                    _ => "prefecture",
                },
                opening_hours: s
                    .opening_hours
                    .into_iter()
                    .map(|h| OpeningHoursJson {
                        weekday: h.weekday,
                        opens: h.opens,
                        closes: h.closes,
                    })
                    .collect(),
                id: s.id,
                name: s.name,
                prefecture: s.prefecture,
                slot_minutes: s.slot_minutes,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsQuery {
    pub date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SlotJson {
    pub starts_at: String,
    pub free: u32,
}

/// `GET /api/v1/sites/{site}/slots?date=YYYY-MM-DD`: the slots of a day
/// with a place free to book online.
pub async fn slots(
    State(state): State<AppState>,
    PathParam(site): PathParam,
    QueryParams(q): QueryParams<SlotsQuery>,
) -> Result<Json<Vec<SlotJson>>, ApiError> {
    let date = q
        .date
        .as_deref()
        .and_then(parse_iso_date)
        .ok_or_else(|| Violations::one("date", "is required, of the form YYYY-MM-DD"))?;
    let slots = state
        .pan
        .clone()
        .list_slots(pb::ListSlotsRequest {
            site_id: site,
            date: Some(convert::date_to_pb(date)),
        })
        .await?
        .into_inner()
        .slots;
    Ok(Json(
        slots
            .into_iter()
            .filter(|s| s.free > 0)
            .filter_map(|s| {
                let at = s.starts_at.as_ref().and_then(convert::timestamp_from_pb)?;
                Some(SlotJson {
                    starts_at: at.to_rfc3339(),
                    free: s.free,
                })
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonJson {
    pub family_name: String,
    #[serde(default)]
    pub given_names: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookJson {
    pub site_id: String,
    pub starts_at: String,
    pub person: PersonJson,
    /// The blocked-user report this booking answers: it may take a place
    /// kept for reports, once the call-centre service confirms the report.
    #[serde(default)]
    pub report_id: String,
}

#[derive(Debug, Serialize)]
pub struct AppointmentJson {
    pub id: String,
    pub site_id: String,
    pub starts_at: Option<String>,
    pub state: String,
    pub route: String,
    /// In the booking's answer only: the person's own secret, sent back in
    /// `X-Link-Secret` to see, move or cancel the appointment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn appointment_json(a: pb::Appointment) -> AppointmentJson {
    AppointmentJson {
        starts_at: a
            .starts_at
            .as_ref()
            .and_then(convert::timestamp_from_pb)
            .map(|t| t.to_rfc3339()),
        state: convert::appointment_state_text(a.state).unwrap_or_default(),
        route: convert::booking_route_text(a.route).unwrap_or_default(),
        id: a.id,
        site_id: a.site_id,
        secret: None,
    }
}

/// The appointment `id`, once the caller may see it: a booking agent of its
/// prefecture, or the person with its secret link. Anonymous callers
/// without the secret are refused before anything is looked up.
async fn appointment_for(
    state: &AppState,
    access: &Access,
    headers: &HeaderMap,
    id: String,
) -> Result<pb::Appointment, ApiError> {
    let proof = state
        .links
        .proven(headers, "appointment", &id)
        .then(|| Person {
            appointments: [id.clone()].into(),
            ..Person::default()
        });
    refuse_anonymous(access, proof.is_some())?;
    let a = state
        .pan
        .clone()
        .get_appointment(pb::GetAppointmentRequest { id })
        .await?
        .into_inner();
    access.allow_person(
        proof,
        &Facts::none().appointment(&a.id).prefecture(&a.prefecture),
    )?;
    Ok(a)
}

fn refuse_anonymous(access: &Access, proven: bool) -> Result<(), ApiError> {
    if matches!(access.caller(), Caller::Anonymous) && !proven {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("X-Link-Secret"),
            "give the secret of your link, or sign in as an agent",
        ));
    }
    Ok(())
}

/// Who acts, as the desk records it: the agent, or nobody named (the person).
fn acting(access: &Access) -> String {
    access.agent_uid().unwrap_or_default().to_string()
}

fn instant(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Violations::one(
                field,
                "must be a date and time with its offset (2026-12-01T09:00:00+01:00)",
            )
            .into()
        })
}

/// `POST /api/v1/appointments` (with an `Idempotency-Key`): books online.
pub async fn book(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<BookJson>,
) -> Result<(StatusCode, Json<AppointmentJson>), ApiError> {
    let key = crate::extract::header_text(&headers, "idempotency-key", "Idempotency-Key")?
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("Idempotency-Key"),
                "is required, so that a retried booking is not booked twice",
            )
        })?;
    let starts_at = instant("starts_at", &b.starts_at)?;
    let a = state
        .pan
        .clone()
        .book(pb::BookRequest {
            site_id: b.site_id,
            starts_at: Some(convert::timestamp_to_pb(starts_at)),
            person: Some(pb::Person {
                family_name: b.person.family_name,
                given_names: b.person.given_names,
                phone: b.person.phone,
                email: b.person.email,
            }),
            route: pb::BookingRoute::Online as i32,
            booked_by: String::new(),
            report_id: b.report_id,
            idempotency_key: format!("online:{key}"),
        })
        .await?
        .into_inner();
    let secret = state.links.secret("appointment", &a.id);
    let mut json = appointment_json(a);
    json.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(json)))
}

/// `GET /api/v1/appointments/{id}`
pub async fn get(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> Result<Json<AppointmentJson>, ApiError> {
    let a = appointment_for(&state, &access, &headers, id).await?;
    Ok(Json(appointment_json(a)))
}

/// `GET /api/v1/appointments/{id}/notice`: the appointment's notice (its
/// convocation) as a PDF with its signed 2D code, for its person by their
/// link and the agents who book: the latest, after a move.
pub async fn notice(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    PathParam(id): PathParam,
    QueryParams(query): QueryParams<crate::uploads::PaperQuery>,
) -> Result<axum::response::Response, ApiError> {
    let language = crate::uploads::language_of(&query)?;
    let id = appointment_for(&state, &access, &headers, id).await?.id;
    let papers = state
        .notifier
        .clone()
        .list_papers(pb::ListPapersRequest {
            subject_ref: id.clone(),
        })
        .await?
        .into_inner()
        .papers;
    let Some(latest) = papers.into_iter().last() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            "no notice was made for this appointment yet",
        ));
    };
    let file = state
        .notifier
        .clone()
        .get_paper(pb::GetPaperRequest {
            subject_ref: id,
            id: latest.id,
            language,
        })
        .await?
        .into_inner();
    Ok(crate::uploads::pdf_answer(file))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveJson {
    pub starts_at: String,
}

/// `POST /api/v1/appointments/{id}/move`: to another free slot of the same site.
pub async fn move_to(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    PathParam(id): PathParam,
    JsonBody(m): JsonBody<MoveJson>,
) -> Result<Json<AppointmentJson>, ApiError> {
    let starts_at = instant("starts_at", &m.starts_at)?;
    let id = appointment_for(&state, &access, &headers, id).await?.id;
    let a = state
        .pan
        .clone()
        .r#move(pb::MoveRequest {
            id,
            starts_at: Some(convert::timestamp_to_pb(starts_at)),
            route: pb::BookingRoute::Online as i32,
            by: acting(&access),
        })
        .await?
        .into_inner();
    Ok(Json(appointment_json(a)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelJson {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/v1/appointments/{id}/cancellation`
pub async fn cancel(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    PathParam(id): PathParam,
    OptionalJsonBody(c): OptionalJsonBody<CancelJson>,
) -> Result<Json<AppointmentJson>, ApiError> {
    let id = appointment_for(&state, &access, &headers, id).await?.id;
    let a = state
        .pan
        .clone()
        .cancel(pb::CancelRequest {
            id,
            route: pb::BookingRoute::Online as i32,
            by: acting(&access),
            reason: c.reason,
        })
        .await?
        .into_inner();
    Ok(Json(appointment_json(a)))
}

#[derive(Debug, Serialize)]
pub struct ReportJson {
    pub id: String,
    pub state: String,
    pub prefecture: String,
    pub deadline: Option<String>,
    pub overdue: bool,
    pub alternative: Option<String>,
    pub appointment_id: Option<String>,
}

/// `GET /api/v1/reports/{id}`: where a report stands: who must answer, by
/// when, and what was offered.
pub async fn report(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> Result<Json<ReportJson>, ApiError> {
    let proof = state.links.proven(&headers, "report", &id).then(|| Person {
        reports: [id.clone()].into(),
        ..Person::default()
    });
    refuse_anonymous(&access, proof.is_some())?;
    let r = state
        .ccc
        .clone()
        .get_report(pb::GetReportRequest { id })
        .await?
        .into_inner();
    access.allow_person(
        proof,
        &Facts::none().report(&r.id).prefecture(&r.prefecture),
    )?;
    Ok(Json(report_json(r)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressJson {
    #[serde(default)]
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub country: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlternativeJson {
    /// `pan_appointment` or `paper_kit`.
    pub kind: String,
    #[serde(default)]
    pub appointment_id: String,
    /// Where a kit goes; the report's own address when absent.
    pub kit_sent_to: Option<AddressJson>,
}

/// `POST /api/v1/agent/reports/{id}/alternative`: an agent of the report's
/// prefecture offers a desk appointment booked for the report, or a paper
/// kit. The call-centre service checks the appointment with the desk.
pub async fn offer_alternative(
    State(state): State<AppState>,
    access: Access,
    PathParam(id): PathParam,
    JsonBody(a): JsonBody<AlternativeJson>,
) -> Result<Json<ReportJson>, ApiError> {
    let kind = AlternativeKind::parse(&a.kind)
        .map(convert::alternative_kind_to_pb)
        .ok_or_else(|| Violations::one("kind", "must be pan_appointment or paper_kit"))?;
    let report = state
        .ccc
        .clone()
        .get_report(pb::GetReportRequest { id })
        .await?
        .into_inner();
    access.allow(
        &Facts::none()
            .report(&report.id)
            .prefecture(&report.prefecture),
    )?;
    let (id, agent_id) = (report.id, access.acting_agent()?);
    let r = state
        .ccc
        .clone()
        .offer_alternative(pb::OfferAlternativeRequest {
            id,
            kind,
            appointment_id: a.appointment_id,
            kit_sent_to: a.kit_sent_to.map(|k| pb::PostalAddress {
                line1: k.line1,
                line2: k.line2,
                postal_code: k.postal_code,
                city: k.city,
                country: k.country,
            }),
            agent_id,
        })
        .await?
        .into_inner();
    Ok(Json(report_json(r)))
}

fn report_json(r: pb::Report) -> ReportJson {
    ReportJson {
        state: convert::report_state_text(r.state).unwrap_or_default(),
        deadline: r
            .deadline
            .as_ref()
            .and_then(convert::date_from_pb)
            .map(|d| d.to_string()),
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
        id: r.id,
        prefecture: r.prefecture,
    }
}
