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
        .route("/agents/guichet/depot", get(assisted_form))
}

/// The assisted filing, whose documents are uploaded with it.
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/agents/guichet/depot", post(file_assisted))
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
        .filter(|d| guichet_dossier::calendar::parse_iso_date(d).is_some())
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

#[derive(Debug, Default, Deserialize)]
struct AssistedQuery {
    rdv: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "agents/assisted.html")]
struct AssistedPage {
    a: AgentPage,
    p: Page,
    form: Form,
    appointment: Option<(String, String, String)>,
    sites: Vec<(String, String)>,
    procedures: Vec<&'static str>,
    motifs: Vec<&'static str>,
    titles: Vec<&'static str>,
    answers: Vec<&'static str>,
    kinds: Vec<&'static str>,
    filed: Option<(String, String)>,
}

impl AssistedPage {
    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }
}

async fn assisted_page(
    state: &AppState,
    w: &Workspace,
    rdv: Option<String>,
    form: Form,
) -> Result<AssistedPage, Response> {
    use guichet_dossier::{AnswerChannel, DocumentKind, Motif, Procedure, TitleKind};
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
        sites.extend(found.into_iter().map(|s| (s.id, s.name)));
    }
    let appointment = match rdv.filter(|r| !r.is_empty()) {
        None => None,
        Some(id) => {
            let a = state
                .pan
                .clone()
                .get_appointment(pb::GetAppointmentRequest { id })
                .await
                .map_err(|s| w.api_problem(&ApiError::from(s)))?
                .into_inner();
            w.access
                .allow(&Facts::none().appointment(&a.id).prefecture(&a.prefecture))
                .map_err(|e| w.api_problem(&e))?;
            let person = a.person.unwrap_or_default();
            Some((
                a.id,
                a.site_id,
                format!("{} {}", person.family_name, person.given_names),
            ))
        }
    };
    let a = w.page("agents-assisted-title");
    Ok(AssistedPage {
        p: a.p.clone(),
        a,
        form,
        appointment,
        sites,
        procedures: Procedure::ALL.iter().map(|c| c.as_str()).collect(),
        motifs: Motif::ALL.iter().map(|c| c.as_str()).collect(),
        titles: TitleKind::ALL.iter().map(|c| c.as_str()).collect(),
        answers: AnswerChannel::ALL.iter().map(|c| c.as_str()).collect(),
        kinds: DocumentKind::ALL.iter().map(|c| c.as_str()).collect(),
        filed: None,
    })
}

/// `GET /agents/guichet/depot?rdv={appointment}`: the whole filing on one
/// page, with the documents scanned at the desk.
async fn assisted_form(
    State(state): State<AppState>,
    w: Workspace,
    Query(q): Query<AssistedQuery>,
) -> Response {
    if q.rdv.is_none()
        && let Err(e) = w.access.allow(
            &Facts::none().prefecture(
                w.access
                    .own_prefectures()
                    .first()
                    .map_or("", String::as_str),
            ),
        )
    {
        return w.api_problem(&e);
    }
    match assisted_page(&state, &w, q.rdv, Form::default()).await {
        Ok(page) => w.visitor.html(&page),
        Err(r) => r,
    }
}

/// `POST /agents/guichet/depot` (multipart: the CSRF token first, the
/// fields, then one file input per document kind): the filing made at the
/// desk with the person present, each document checked and virus-scanned
/// as it streams, and kept only once the filing is accepted.
async fn file_assisted(
    State(state): State<AppState>,
    w: Workspace,
    request: axum::extract::Request,
) -> Response {
    let mut multipart = match crate::uploads::multipart_of(request, &state).await {
        Ok(m) => m,
        Err(e) => return w.api_problem(&e),
    };
    let mut pairs = Vec::new();
    let mut files = Vec::new();
    let mut refused: Option<(String, ApiError)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                refused = Some((
                    "documents".into(),
                    ApiError::new(e.status(), None, e.body_text()),
                ));
                break;
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name() {
            None => match crate::uploads::text_part(field, &name, 4096).await {
                Ok(text) => pairs.push((name, text)),
                Err(e) => {
                    refused = Some((name, e));
                    break;
                }
            },
            // An input left empty still sends a part, with no file name.
            Some("") => {
                let mut field = field;
                while let Ok(Some(_)) = field.chunk().await {}
            }
            Some(_) => {
                let total = files
                    .iter()
                    .map(|f: &crate::uploads::File| f.checked.size())
                    .sum();
                match crate::uploads::check_part(&state, field, &name, total).await {
                    Ok(file) => files.push(file),
                    Err(e) => {
                        refused = Some((name, e));
                        break;
                    }
                }
            }
        }
    }
    let form = Form::from_pairs(pairs);
    let rdv = form.get("appointment_id");
    let mut page = match assisted_page(&state, &w, rdv.clone(), form).await {
        Ok(page) => page,
        Err(r) => {
            crate::uploads::drain(&mut multipart).await;
            crate::uploads::discard(&state, files).await;
            return r;
        }
    };
    if let Some((name, e)) = refused {
        crate::uploads::drain(&mut multipart).await;
        crate::uploads::discard(&state, files).await;
        if e.status() == StatusCode::SERVICE_UNAVAILABLE {
            return w.api_problem(&e);
        }
        page.p.add_error(&format!("file-{name}"), "upload-refused");
        return w.visitor.html_with(e.status(), &page);
    }
    let site_id = page.form.get("site_id").unwrap_or_default();
    let prefecture = match crate::grpc_access::site_prefecture(&state, &site_id).await {
        Ok(prefecture) => prefecture,
        Err(s) => {
            crate::uploads::discard(&state, files).await;
            return w.api_problem(&ApiError::from(s));
        }
    };
    let Some(prefecture) = prefecture else {
        crate::uploads::discard(&state, files).await;
        page.p.add_error("site_id", "site");
        return w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    if let Err(e) = w.access.allow(&Facts::none().prefecture(&prefecture)) {
        crate::uploads::discard(&state, files).await;
        return w.api_problem(&e);
    }
    let agent_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => {
            crate::uploads::discard(&state, files).await;
            return w.api_problem(&e);
        }
    };
    let identity_checked = page.form.get("identity_checked").as_deref() == Some("yes");
    let mut raw = crate::web::filing::raw_filing_of(&page.form, w.visitor.lang);
    raw.documents = files
        .iter()
        .map(|f| guichet_dossier::filing::RawDocument {
            kind: Some(f.kind.as_str().to_string()),
            sha256: Some(f.checked.sha256().to_string()),
            media_type: Some(f.checked.media_type.as_str().to_string()),
            size_bytes: Some(f.checked.size()),
            filename: f.filename.clone(),
        })
        .collect();
    raw.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let provenance = guichet_dossier::filing::RawProvenance::Pan {
        site_id: Some(site_id.clone()),
        desk_agent_id: Some(agent_id.clone()),
        appointment_id: rdv.clone(),
        identity_checked,
    };
    let filing = match guichet_dossier::Filing::parse(&raw, &provenance, today(&state)) {
        Ok(f) if identity_checked => f,
        parsed => {
            if let Err(v) = parsed {
                super::add_filing_violations(&mut page.p, &v);
            }
            if !identity_checked {
                page.p.add_error("identity_checked", "identity_checked");
            }
            crate::uploads::discard(&state, files).await;
            return w.visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    // The documents are kept before the filing names them.
    for file in files {
        if let Err(e) = state.uploads.store.commit_upload(file.checked).await {
            return w.api_problem(&crate::uploads::store_unavailable(
                "a document could not be kept",
                &e,
            ));
        }
        state.metrics.count_upload("accepted");
    }
    let answer = state
        .pan
        .clone()
        .file_assisted(pb::FileAssistedRequest {
            filing: Some(convert::filing_to_pb(&filing)),
            site_id,
            desk_agent_id: agent_id,
            appointment_id: rdv.unwrap_or_default(),
            identity_checked,
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
