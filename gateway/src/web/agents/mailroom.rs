//! The mailroom in the browser: the envelopes waiting for keying, the
//! keying screen (the page images beside the fields read off them, the
//! doubtful readings marked, a forged or altered code flagged), and what
//! an operator does with an envelope: confirm it into a dossier, route it
//! elsewhere with a reason, or attach its pages to a dossier already filed.
//! The letters to print are listed with their PDF.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use guichet_dossier::postal::FORM_FIELDS;

use super::{AgentPage, Workspace};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::postal::{
    AttachJson, AttachedPageJson, ConfirmJson, EnvelopeJson, LetterJson, LimitQuery, RouteJson,
};
use crate::state::AppState;
use crate::web::{Form, Page, date_words, iso_date_of};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents/courrier", get(hub))
        .route("/agents/courrier/plis/{id}", get(envelope))
        .route("/agents/courrier/plis/{id}/saisie", post(confirm))
        .route("/agents/courrier/plis/{id}/orientation", post(route))
        .route("/agents/courrier/plis/{id}/rattachement", post(attach))
        .route("/agents/courrier/lettres/{id}/impression", post(printed))
        .route("/agents/courrier/lettres/{id}/envoi", post(posted))
}

/// Below this, a field read by OCR is shown as doubtful: the operator
/// checks it against the page.
pub const DOUBTFUL_BELOW: f64 = 0.80;

#[derive(askama::Template)]
#[template(path = "agents/mailroom.html")]
struct HubPage {
    a: AgentPage,
    p: Page,
    waiting: Vec<EnvelopeJson>,
    letters: Vec<LetterJson>,
}

impl HubPage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    /// The mark a letter waits for: printed, then posted.
    fn next_mark(&self, l: &LetterJson) -> &'static str {
        if l.printed_by.is_some() {
            "envoi"
        } else {
            "impression"
        }
    }
}

/// `GET /agents/courrier`
async fn hub(State(state): State<AppState>, w: Workspace) -> Response {
    let waiting = crate::postal::keying(
        State(state.clone()),
        QueryParams(LimitQuery {
            limit: Some(100),
            reference: None,
        }),
    )
    .await;
    let letters = crate::postal::letters(
        State(state),
        QueryParams(LimitQuery {
            limit: Some(100),
            reference: None,
        }),
    )
    .await;
    match (waiting, letters) {
        (Ok(axum::Json(waiting)), Ok(axum::Json(letters))) => {
            let a = w.page("agents-mailroom-title");
            w.visitor.html(&HubPage {
                p: a.p.clone(),
                a,
                waiting,
                letters,
            })
        }
        (Err(e), _) | (_, Err(e)) => w.api_problem(&e),
    }
}

/// A field of the keying form: what was read, how sure, from where.
struct KeyedField {
    key: &'static str,
    label: &'static str,
    value: String,
    /// As a percentage; `None` when nothing was read.
    confidence: Option<u32>,
    /// `code` (the form's signed code) or `ocr`.
    source: String,
    doubtful: bool,
    /// The codes to choose from, for a field that takes one (procedure,
    /// motif, title); empty for a field typed as read.
    options: Vec<&'static str>,
    /// The family of their names in the message files.
    family: &'static str,
}

/// The codes a keyed field takes, and the family naming them.
fn choices(key: &str) -> (Vec<&'static str>, &'static str) {
    use guichet_dossier::{Motif, Procedure, TitleKind};
    match key {
        "procedure" => (
            Procedure::ALL.iter().map(|c| c.as_str()).collect(),
            "procedure",
        ),
        "motif" => (Motif::ALL.iter().map(|c| c.as_str()).collect(), "motif"),
        "title_kind" => (TitleKind::ALL.iter().map(|c| c.as_str()).collect(), "title"),
        _ => (Vec::new(), ""),
    }
}

/// Where the rules name a keyed field (the filing's path) and the form's
/// key it was keyed in: a refusal shows next to the input.
const FILING_PATHS: &[(&str, &str)] = &[
    ("procedure", "procedure"),
    ("motif", "motif"),
    ("applicant.family_name", "family_name"),
    ("applicant.given_names", "given_names"),
    ("applicant.birth_date", "birth_date"),
    ("applicant.birth_place", "birth_place"),
    ("applicant.nationality", "nationality"),
    ("applicant.foreigner_number", "foreigner_number"),
    ("contact", "phone"),
    ("contact.email", "email"),
    ("contact.phone", "phone"),
    ("contact.address", "address_line1"),
    ("contact.address.line1", "address_line1"),
    ("contact.address.postal_code", "postal_code"),
    ("contact.address.city", "city"),
    ("current_title", "title_kind"),
    ("current_title.kind", "title_kind"),
    ("current_title.number", "title_number"),
    ("current_title.expires_on", "title_expires_on"),
];

#[derive(askama::Template)]
#[template(path = "agents/envelope.html")]
struct EnvelopePage {
    a: AgentPage,
    p: Page,
    envelope: EnvelopeJson,
    fields: Vec<KeyedField>,
    form: Form,
    kinds: Vec<&'static str>,
}

impl EnvelopePage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn value(&self, name: &str) -> String {
        self.form.get(name).unwrap_or_default()
    }

    fn typed(&self, iso: &str) -> String {
        crate::web::typed_date(iso)
    }

    /// The form's code was there and did not check (altered or forged):
    /// nothing pre-filled from it is trusted.
    fn code_untrusted(&self) -> bool {
        self.envelope
            .code_problem
            .as_deref()
            .is_some_and(|p| p != guichet_dossier::postal::NO_FORM)
    }

    fn open(&self) -> bool {
        matches!(self.envelope.state.as_str(), "keying" | "postmark_check")
    }
}

fn envelope_page(w: &Workspace, envelope: EnvelopeJson, form: Form) -> EnvelopePage {
    let fields = FORM_FIELDS
        .iter()
        .map(|f| {
            let read = envelope.fields.iter().find(|r| r.key == f.key);
            // What the operator typed wins over what was read.
            let typed = form.get(&format!("f.{}", f.key));
            let (options, family) = choices(f.key);
            KeyedField {
                options,
                family,
                key: f.key,
                label: f.label,
                value: typed
                    .or_else(|| read.map(|r| r.value.clone()))
                    .unwrap_or_default(),
                confidence: read.map(|r| (r.confidence * 100.0).round() as u32),
                source: read.map(|r| r.source.clone()).unwrap_or_default(),
                doubtful: read.is_some_and(|r| r.source != "code" && r.confidence < DOUBTFUL_BELOW),
            }
        })
        .collect();
    let a = w.page("agents-envelope-title");
    EnvelopePage {
        p: a.p.clone(),
        a,
        envelope,
        fields,
        form,
        kinds: guichet_dossier::DocumentKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect(),
    }
}

async fn read_envelope(state: &AppState, id: &str) -> Result<EnvelopeJson, ApiError> {
    crate::postal::envelope(State(state.clone()), PathParam(id.to_string()))
        .await
        .map(|j| j.0)
}

/// `GET /agents/courrier/plis/{id}`: the keying screen.
async fn envelope(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
) -> Response {
    match read_envelope(&state, &id).await {
        Ok(e) => {
            let page = envelope_page(&w, e, Form::default());
            w.visitor.html(&page)
        }
        Err(e) => w.api_problem(&e),
    }
}

/// After an act on an envelope: its screen again, or the form's problems.
async fn after(
    state: &AppState,
    w: &Workspace,
    id: &str,
    answer: Result<(), ApiError>,
    form: Form,
    ids: &[(&str, &str)],
) -> Response {
    let e = match answer {
        Ok(()) => return w.visitor.redirect(&format!("/agents/courrier/plis/{id}")),
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => e,
        Err(e) => return w.api_problem(&e),
    };
    match read_envelope(state, id).await {
        Ok(envelope) => {
            let mut page = envelope_page(w, envelope, form);
            page.p.add_api_errors(&e, ids);
            if page.p.errors.is_empty() {
                page.p.add_error("envelope-title", "envelope.state");
            }
            let status = if e.status() == StatusCode::CONFLICT {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            w.visitor.html_with(status, &page)
        }
        Err(e) => w.api_problem(&e),
    }
}

/// The form's fields named by their key in the keying queue.
fn typed_fields(form: &Form) -> BTreeMap<String, String> {
    FORM_FIELDS
        .iter()
        .filter_map(|f| {
            let v = form.get(&format!("f.{}", f.key))?;
            let v = if f.key.ends_with("date") || f.key.ends_with("expires_on") {
                iso_date_of(&v)
            } else {
                v
            };
            Some((f.key.to_string(), v))
        })
        .collect()
}

/// `POST /agents/courrier/plis/{id}/saisie`: the fields as keyed; the
/// envelope becomes a dossier (or waits for a second operator when its
/// postmark is in doubt).
async fn confirm(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let answer = crate::postal::confirm(
        State(state.clone()),
        w.access.clone(),
        PathParam(id.clone()),
        JsonBody(ConfirmJson {
            operator_id: None,
            fields: typed_fields(&form),
            postmark_date: form
                .get("postmark_date")
                .map(|d| iso_date_of(&d))
                .unwrap_or_default(),
            postmark_reason: form.get("postmark_reason").unwrap_or_default(),
        }),
    )
    .await
    .map(|_| ());
    let mut ids: Vec<(String, String)> = FORM_FIELDS
        .iter()
        .map(|f| (format!("fields.{}", f.key), format!("f-{}", f.key)))
        .chain(
            FILING_PATHS
                .iter()
                .map(|(path, key)| ((*path).to_string(), format!("f-{key}"))),
        )
        .collect();
    ids.push(("postmark_date".into(), "postmark_date".into()));
    ids.push(("postmark_reason".into(), "postmark_reason".into()));
    let ids: Vec<(&str, &str)> = ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    after(&state, &w, &id, answer, form, &ids).await
}

/// `POST /agents/courrier/plis/{id}/orientation`: not a filing; sent on.
async fn route(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let answer = crate::postal::route(
        State(state.clone()),
        w.access.clone(),
        PathParam(id.clone()),
        JsonBody(RouteJson {
            operator_id: None,
            reason: form.get("route_reason").unwrap_or_default(),
            destination: form.get("destination").unwrap_or_default(),
        }),
    )
    .await
    .map(|_| ());
    after(
        &state,
        &w,
        &id,
        answer,
        form,
        &[("reason", "route_reason"), ("destination", "destination")],
    )
    .await
}

/// `POST /agents/courrier/plis/{id}/rattachement`: the envelope's pages are
/// documents of a dossier already filed.
async fn attach(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    // One select a page, `page.<sha256>`: the kind it is, or nothing for a
    // page that is no document (a covering letter).
    let pages = form
        .pairs()
        .iter()
        .filter_map(|(k, v)| {
            let sha256 = k.strip_prefix("page.")?;
            (!v.trim().is_empty()).then(|| AttachedPageJson {
                sha256: sha256.to_string(),
                kind: v.trim().to_string(),
            })
        })
        .collect();
    let answer = crate::postal::attach(
        State(state.clone()),
        w.access.clone(),
        PathParam(id.clone()),
        JsonBody(AttachJson {
            operator_id: None,
            reference: form.get("reference").unwrap_or_default().to_uppercase(),
            pages,
        }),
    )
    .await
    .map(|_| ());
    after(
        &state,
        &w,
        &id,
        answer,
        form,
        &[("reference", "attach-reference"), ("pages", "attach-pages")],
    )
    .await
}

/// `POST /agents/courrier/lettres/{id}/impression`
async fn printed(
    State(state): State<AppState>,
    w: Workspace,
    PathParam(id): PathParam,
) -> Response {
    mark(&state, &w, id, false).await
}

/// `POST /agents/courrier/lettres/{id}/envoi`
async fn posted(State(state): State<AppState>, w: Workspace, PathParam(id): PathParam) -> Response {
    mark(&state, &w, id, true).await
}

/// A letter marked printed or posted by the operator signed in; back to
/// the list.
async fn mark(state: &AppState, w: &Workspace, id: String, posted: bool) -> Response {
    let operator_id = match w.access.acting_agent() {
        Ok(uid) => uid,
        Err(e) => return w.api_problem(&e),
    };
    let marked = state
        .postal
        .clone()
        .mark_letter(guichet_proto::v1::MarkLetterRequest {
            letter_id: id,
            posted,
            operator_id,
        })
        .await;
    match marked {
        Ok(_) => w.visitor.redirect("/agents/courrier#letters-title"),
        Err(status) => w.api_problem(&ApiError::from(status)),
    }
}
