//! "File online": a step-by-step form (procedure and motif, identity,
//! contact, current title, documents, summary), saved at every step in a
//! draft the person can come back to by its link, ending on the receipt.
//!
//! Each step is checked by the same rules intake applies
//! (`Filing::parse`), keeping the problems of the step's own fields, so the
//! person hears of a mistake on the page where they made it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use guichet_dossier::codes::{AnswerChannel, DocumentKind, Motif, Procedure, TitleKind};
use guichet_dossier::filing::{
    Filing, RawAddress, RawApplicant, RawContact, RawCurrentTitle, RawDocument, RawProvenance,
};
use guichet_proto::v1 as pb;

use super::drafts::{self, Draft, DraftDocument, Filed};
use super::{Form, Page, Visitor, date_words};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deposer", get(start).post(begin))
        .route("/deposer/reprendre", post(resume))
        .route("/deposer/{draft}/etape/{step}", get(step).post(save_step))
        .route("/deposer/{draft}/envoi", post(send))
        .route("/deposer/{draft}/recepisse", get(receipt))
        .route("/deposer/{draft}/recepisse/pdf", get(receipt_pdf))
}

/// The documents step posts files: its own body limit.
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/deposer/{draft}/documents", post(upload))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Procedure,
    Identity,
    Contact,
    Title,
    Documents,
    Summary,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Procedure,
        Step::Identity,
        Step::Contact,
        Step::Title,
        Step::Documents,
        Step::Summary,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Step::Procedure => "demarche",
            Step::Identity => "identite",
            Step::Contact => "contact",
            Step::Title => "titre",
            Step::Documents => "documents",
            Step::Summary => "recapitulatif",
        }
    }

    fn parse(slug: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.slug() == slug)
    }

    pub fn title(self) -> &'static str {
        match self {
            Step::Procedure => "step-procedure",
            Step::Identity => "step-identity",
            Step::Contact => "step-contact",
            Step::Title => "step-title",
            Step::Documents => "step-documents",
            Step::Summary => "step-summary",
        }
    }

    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    fn next(self) -> Step {
        Step::ALL
            .get(self.number())
            .copied()
            .unwrap_or(Step::Summary)
    }

    /// The step whose form holds `field` (a path as the rules name it).
    fn of_field(field: &str) -> Step {
        let root = field.split(['.', '[']).next().unwrap_or_default();
        match root {
            "procedure" | "motif" => Step::Procedure,
            "applicant" => Step::Identity,
            "contact" => Step::Contact,
            "current_title" => Step::Title,
            "documents" => Step::Documents,
            _ => Step::Summary,
        }
    }
}

/// The input showing `field`: a whole part's problem ("contact is
/// required") goes on its first input.
pub(crate) fn input_id(field: &str) -> String {
    let first = match field {
        "applicant" => "applicant.family_name",
        "contact" => "contact.email",
        "contact.address" => "contact.address.line1",
        "current_title" => "current_title.kind",
        other => other,
    };
    first.replace('.', "-")
}

/// One choice of a radio group or a select.
pub struct Choice {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

fn choices(
    page: &Page,
    family: &str,
    codes: &[&'static str],
    current: Option<&str>,
) -> Vec<Choice> {
    codes
        .iter()
        .map(|code| Choice {
            value: code,
            label: page.code_text(family, code),
            selected: current == Some(*code),
        })
        .collect()
}

/// A document the filing needs, and whether it came.
pub struct Needed {
    pub kind: &'static str,
    pub label: String,
    pub received: Option<DraftDocument>,
}

/// What the draft's procedure and motif need, from the requirements table.
fn needed(page: &Page, draft: &Draft) -> Vec<Needed> {
    let procedure = draft.filing.procedure.as_deref().and_then(Procedure::parse);
    let motif = draft.filing.motif.as_deref().and_then(Motif::parse);
    let mut kinds: Vec<DocumentKind> = match (procedure, motif) {
        (Some(p), Some(m)) => guichet_dossier::requirements::required(p, m),
        _ => Vec::new(),
    };
    // A document sent though the table does not ask for it is listed too.
    for d in &draft.documents {
        if let Some(k) = DocumentKind::parse(&d.kind)
            && !kinds.contains(&k)
        {
            kinds.push(k);
        }
    }
    kinds
        .into_iter()
        .map(|k| Needed {
            kind: k.as_str(),
            label: page.code_text("kind", k.as_str()),
            received: draft
                .documents
                .iter()
                .find(|d| d.kind == k.as_str())
                .cloned(),
        })
        .collect()
}

fn one(value: &Option<String>) -> Option<&str> {
    value.as_deref()
}

/// The step's page: its form, filled with the draft.
#[derive(askama::Template)]
#[template(path = "filing_step.html")]
struct StepPage {
    p: Page,
    draft: String,
    step: Step,
    steps: [Step; 6],
    procedures: Vec<Choice>,
    motifs: Vec<Choice>,
    answer_channels: Vec<Choice>,
    title_kinds: Vec<Choice>,
    f: Draft,
    needed: Vec<Needed>,
    max_file_mib: u64,
}

impl StepPage {
    fn value(&self, field: &str) -> String {
        let f = &self.f.filing;
        let a = f.applicant.as_ref();
        let c = f.contact.as_ref();
        let addr = c.and_then(|c| c.address.as_ref());
        let t = f.current_title.as_ref();
        let v = match field {
            "applicant.family_name" => a.and_then(|a| a.family_name.as_ref()),
            "applicant.given_names" => a.and_then(|a| a.given_names.as_ref()),
            "applicant.birth_date" => a.and_then(|a| a.birth_date.as_ref()),
            "applicant.birth_place" => a.and_then(|a| a.birth_place.as_ref()),
            "applicant.nationality" => a.and_then(|a| a.nationality.as_ref()),
            "applicant.foreigner_number" => a.and_then(|a| a.foreigner_number.as_ref()),
            "contact.email" => c.and_then(|c| c.email.as_ref()),
            "contact.phone" => c.and_then(|c| c.phone.as_ref()),
            "contact.address.line1" => addr.and_then(|a| a.line1.as_ref()),
            "contact.address.line2" => addr.and_then(|a| a.line2.as_ref()),
            "contact.address.postal_code" => addr.and_then(|a| a.postal_code.as_ref()),
            "contact.address.city" => addr.and_then(|a| a.city.as_ref()),
            "current_title.number" => t.and_then(|t| t.number.as_ref()),
            "current_title.expires_on" => t.and_then(|t| t.expires_on.as_ref()),
            _ => None,
        };
        // A field not filled yet is shown empty.
        let v = v.cloned().unwrap_or_default();
        if field.ends_with("birth_date") || field.ends_with("expires_on") {
            super::typed_date(&v)
        } else {
            v
        }
    }

    fn missing_count(&self) -> usize {
        self.needed.iter().filter(|n| n.received.is_none()).count()
    }

    fn procedure_text(&self) -> String {
        one(&self.f.filing.procedure).map_or_else(String::new, |c| self.p.code_text("procedure", c))
    }

    fn motif_text(&self) -> String {
        one(&self.f.filing.motif).map_or_else(String::new, |c| self.p.code_text("motif", c))
    }

    fn answer_text(&self) -> String {
        self.f
            .filing
            .contact
            .as_ref()
            .and_then(|c| c.answer_channel.as_deref())
            .map_or_else(String::new, |c| self.p.code_text("answer", c))
    }

    fn title_text(&self) -> String {
        self.f
            .filing
            .current_title
            .as_ref()
            .and_then(|t| t.kind.as_deref())
            .map_or_else(|| self.p.t("title-none"), |c| self.p.code_text("title", c))
    }

    fn date_text(&self, field: &str) -> String {
        let v = super::iso_date_of(&self.value(field));
        if v.is_empty() {
            v
        } else {
            date_words(self.p.lang, &v)
        }
    }

    fn size_text(&self, bytes: &u64) -> String {
        size_words(*bytes)
    }
}

pub fn size_words(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

#[derive(askama::Template)]
#[template(path = "filing_start.html")]
struct StartPage {
    p: Page,
}

#[derive(askama::Template)]
#[template(path = "filing_receipt.html")]
struct ReceiptPage {
    p: Page,
    draft: String,
    filed: Filed,
    documents: Vec<DraftDocument>,
    filing_date: String,
}

impl ReceiptPage {
    fn kind_text(&self, kind: &str) -> String {
        self.p.code_text("kind", kind)
    }
}

async fn start(visitor: Visitor) -> Response {
    visitor.html(&StartPage {
        p: visitor.page("filing-start-title"),
    })
}

fn store_down(visitor: &Visitor, e: &sqlx::Error) -> Response {
    tracing::error!(error = %e, "the drafts' store failed");
    visitor.refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "error-unavailable-title",
        "error-unavailable-body",
    )
}

/// `POST /deposer`: a new draft, and its first step.
async fn begin(State(state): State<AppState>, visitor: Visitor, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    match drafts::create(state.auth.directory(), state.clock.now()).await {
        Ok(secret) => visitor.redirect(&format!("/deposer/{secret}/etape/demarche")),
        Err(e) => store_down(&visitor, &e),
    }
}

/// `POST /deposer/reprendre`: back to a saved draft by the code of its link.
async fn resume(State(state): State<AppState>, visitor: Visitor, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let code = form
        .get("code")
        .and_then(|c| drafts::normalize(&c))
        .unwrap_or_default();
    match drafts::load(state.auth.directory(), &code, state.clock.now()).await {
        Ok(Some(d)) if d.filed.is_some() => visitor.redirect(&format!("/deposer/{code}/recepisse")),
        Ok(Some(_)) => visitor.redirect(&format!("/deposer/{code}/etape/recapitulatif")),
        Ok(None) => {
            let mut p = visitor.page("filing-start-title");
            p.add_error("code", "draft-code");
            visitor.html_with(StatusCode::NOT_FOUND, &StartPage { p })
        }
        Err(e) => store_down(&visitor, &e),
    }
}

async fn open(state: &AppState, visitor: &Visitor, secret: &str) -> Result<Draft, Response> {
    match drafts::load(state.auth.directory(), secret, state.clock.now()).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(visitor.refusal(
            StatusCode::NOT_FOUND,
            "error-draft-title",
            "error-draft-body",
        )),
        Err(e) => Err(store_down(visitor, &e)),
    }
}

fn step_page(
    state: &AppState,
    visitor: &Visitor,
    secret: &str,
    step: Step,
    draft: Draft,
) -> StepPage {
    let p = visitor.page(step.title());
    let needed = needed(&p, &draft);
    let f = &draft.filing;
    StepPage {
        procedures: choices(
            &p,
            "procedure",
            &Procedure::ALL
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            one(&f.procedure),
        ),
        motifs: choices(
            &p,
            "motif",
            &Motif::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            one(&f.motif),
        ),
        answer_channels: choices(
            &p,
            "answer",
            &AnswerChannel::ALL
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            f.contact.as_ref().and_then(|c| c.answer_channel.as_deref()),
        ),
        title_kinds: choices(
            &p,
            "title",
            &TitleKind::ALL
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            f.current_title.as_ref().and_then(|t| t.kind.as_deref()),
        ),
        p,
        draft: secret.to_string(),
        step,
        steps: Step::ALL,
        needed,
        max_file_mib: state.uploads.rules.max_file_bytes / (1024 * 1024),
        f: draft,
    }
}

async fn step(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((secret, slug)): Path<(String, String)>,
) -> Response {
    let Some(step) = Step::parse(&slug) else {
        return visitor.refusal(
            StatusCode::NOT_FOUND,
            "error-not-found-title",
            "error-not-found-body",
        );
    };
    let draft = match open(&state, &visitor, &secret).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if draft.filed.is_some() {
        return visitor.redirect(&format!("/deposer/{secret}/recepisse"));
    }
    visitor.html(&step_page(&state, &visitor, &secret, step, draft))
}

/// The problems of the step's own fields, by the intake's rules.
fn problems_of(state: &AppState, draft: &Draft, step: Step) -> Vec<String> {
    let mut raw = draft.filing.clone();
    raw.idempotency_key = Some(draft.idempotency_key.clone());
    match Filing::parse(
        &raw,
        &RawProvenance::Web { account_id: None },
        super::today(state),
    ) {
        Ok(_) => Vec::new(),
        Err(v) => v
            .iter()
            .filter(|p| Step::of_field(&p.field) == step && !p.field.starts_with("documents"))
            .map(|p| p.field.clone())
            .collect(),
    }
}

fn text(form: &Form, name: &str) -> Option<String> {
    form.get(name)
}

/// A filing as one form gives it whole (the call centre's, the desk's),
/// with the same field names as the steps.
pub(crate) fn raw_filing_of(form: &Form, lang: super::Lang) -> guichet_dossier::RawFiling {
    let mut draft = Draft::default();
    for step in [Step::Procedure, Step::Identity, Step::Contact, Step::Title] {
        apply(&mut draft, step, form, lang);
    }
    draft.filing
}

/// Writes the step's fields into the draft.
fn apply(draft: &mut Draft, step: Step, form: &Form, lang: super::Lang) {
    let f = &mut draft.filing;
    match step {
        Step::Procedure => {
            f.procedure = text(form, "procedure");
            f.motif = text(form, "motif");
        }
        Step::Identity => {
            f.applicant = Some(RawApplicant {
                family_name: text(form, "applicant.family_name"),
                given_names: text(form, "applicant.given_names"),
                birth_date: text(form, "applicant.birth_date").map(|d| super::iso_date_of(&d)),
                birth_place: text(form, "applicant.birth_place"),
                nationality: text(form, "applicant.nationality"),
                foreigner_number: text(form, "applicant.foreigner_number"),
            });
        }
        Step::Contact => {
            f.contact = Some(RawContact {
                email: text(form, "contact.email"),
                phone: text(form, "contact.phone"),
                address: Some(RawAddress {
                    line1: text(form, "contact.address.line1"),
                    line2: text(form, "contact.address.line2"),
                    postal_code: text(form, "contact.address.postal_code"),
                    city: text(form, "contact.address.city"),
                    country: Some("FR".to_string()),
                }),
                answer_channel: text(form, "contact.answer_channel"),
                language: Some(lang.code().to_string()),
            });
        }
        Step::Title => {
            let kind = text(form, "current_title.kind");
            f.current_title = kind.map(|kind| RawCurrentTitle {
                kind: Some(kind),
                number: text(form, "current_title.number"),
                expires_on: text(form, "current_title.expires_on").map(|d| super::iso_date_of(&d)),
            });
        }
        Step::Documents | Step::Summary => {}
    }
}

async fn save_step(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((secret, slug)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let Some(step) = Step::parse(&slug) else {
        return visitor.refusal(
            StatusCode::NOT_FOUND,
            "error-not-found-title",
            "error-not-found-body",
        );
    };
    let mut draft = match open(&state, &visitor, &secret).await {
        Ok(d) if d.filed.is_some() => {
            return visitor.redirect(&format!("/deposer/{secret}/recepisse"));
        }
        Ok(d) => d,
        Err(r) => return r,
    };
    apply(&mut draft, step, &form, visitor.lang);
    if let Err(e) = drafts::save(state.auth.directory(), &secret, &draft, state.clock.now()).await {
        return store_down(&visitor, &e);
    }
    let problems = problems_of(&state, &draft, step);
    if problems.is_empty() {
        return visitor.redirect(&format!("/deposer/{secret}/etape/{}", step.next().slug()));
    }
    let mut page = step_page(&state, &visitor, &secret, step, draft);
    for field in &problems {
        page.p.add_error(&input_id(field), field);
    }
    visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// `POST /deposer/{draft}/documents` (multipart: the CSRF token first, then
/// one file input per document kind): each file checked and virus-scanned
/// as it streams, kept in the document store, and noted in the draft.
async fn upload(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(secret): Path<String>,
    request: Request,
) -> Response {
    let mut multipart = match crate::uploads::multipart_of(request, &state).await {
        Ok(m) => m,
        Err(e) => return visitor.api_problem(&e),
    };
    let token = match multipart.next_field().await {
        Ok(Some(f)) if f.name() == Some("csrf") => {
            crate::uploads::text_part(f, "csrf", 200).await.ok()
        }
        _ => None,
    };
    if let Err(r) = visitor.check_csrf(token.as_deref()) {
        crate::uploads::drain(&mut multipart).await;
        return *r;
    }
    let mut draft = match open(&state, &visitor, &secret).await {
        Ok(d) if d.filed.is_none() => d,
        Ok(_) => {
            crate::uploads::drain(&mut multipart).await;
            return visitor.redirect(&format!("/deposer/{secret}/recepisse"));
        }
        Err(r) => {
            crate::uploads::drain(&mut multipart).await;
            return r;
        }
    };
    let mut refused: Option<(String, ApiError)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                refused = Some((
                    "documents".into(),
                    ApiError::new(e.status(), Some("documents"), e.body_text()),
                ));
                break;
            }
        };
        // An input left empty still sends a part, with no file name.
        if field.file_name().is_none_or(str::is_empty) {
            let mut field = field;
            while let Ok(Some(_)) = field.chunk().await {}
            continue;
        }
        let kind = field.name().unwrap_or_default().to_string();
        let total: u64 = draft
            .documents
            .iter()
            .filter(|d| d.kind != kind)
            .map(|d| d.size_bytes)
            .sum();
        match crate::uploads::check_part(&state, field, &kind, total).await {
            Ok(file) => {
                let document = DraftDocument {
                    kind: file.kind.as_str().to_string(),
                    sha256: file.checked.sha256().to_string(),
                    media_type: file.checked.media_type.as_str().to_string(),
                    size_bytes: file.checked.size(),
                    filename: file.filename.clone(),
                };
                if let Err(e) = state.uploads.store.commit_upload(file.checked).await {
                    refused = Some((
                        kind,
                        crate::uploads::store_unavailable("a document could not be kept", &e),
                    ));
                    break;
                }
                state.metrics.count_upload("accepted");
                draft.documents.retain(|d| d.kind != document.kind);
                draft.documents.push(document);
            }
            Err(e) => {
                refused = Some((kind, e));
                break;
            }
        }
    }
    if refused.is_some() {
        crate::uploads::drain(&mut multipart).await;
    }
    if let Err(e) = drafts::save(state.auth.directory(), &secret, &draft, state.clock.now()).await {
        return store_down(&visitor, &e);
    }
    let Some((kind, e)) = refused else {
        return visitor.redirect(&format!("/deposer/{secret}/etape/documents"));
    };
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        return visitor.api_problem(&e);
    }
    let mut page = step_page(&state, &visitor, &secret, Step::Documents, draft);
    let id = format!("file-{kind}");
    let reason = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "upload-too-large"
    } else {
        "upload-refused"
    };
    page.p.add_error(&id, reason);
    visitor.html_with(e.status(), &page)
}

/// `POST /deposer/{draft}/envoi`: the filing, with its documents, to intake.
async fn send(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(secret): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let mut draft = match open(&state, &visitor, &secret).await {
        Ok(d) if d.filed.is_some() => {
            return visitor.redirect(&format!("/deposer/{secret}/recepisse"));
        }
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut raw = draft.filing.clone();
    raw.idempotency_key = Some(draft.idempotency_key.clone());
    raw.documents = draft
        .documents
        .iter()
        .map(|d| RawDocument {
            kind: Some(d.kind.clone()),
            sha256: Some(d.sha256.clone()),
            media_type: Some(d.media_type.clone()),
            size_bytes: Some(d.size_bytes),
            filename: d.filename.clone(),
        })
        .collect();
    match crate::dossiers::file(&state, &HeaderMap::new(), raw).await {
        Ok((view, _)) => {
            draft.filed = Some(Filed {
                reference: view.reference,
                legal_filing_date: view.legal_filing_date,
                verification_code: view.verification_code,
            });
            if let Err(e) =
                drafts::save(state.auth.directory(), &secret, &draft, state.clock.now()).await
            {
                return store_down(&visitor, &e);
            }
            visitor.redirect(&format!("/deposer/{secret}/recepisse"))
        }
        Err(e)
            if e.status() == StatusCode::UNPROCESSABLE_ENTITY
                || e.status() == StatusCode::BAD_REQUEST =>
        {
            let mut page = step_page(&state, &visitor, &secret, Step::Summary, draft);
            page.p.add_api_errors(&e, &[]);
            visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => visitor.api_problem(&e),
    }
}

async fn receipt(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(secret): Path<String>,
) -> Response {
    let draft = match open(&state, &visitor, &secret).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(filed) = draft.filed else {
        return visitor.redirect(&format!("/deposer/{secret}/etape/recapitulatif"));
    };
    let p = visitor.page("receipt-title");
    visitor.html(&ReceiptPage {
        filing_date: date_words(p.lang, &filed.legal_filing_date),
        p,
        draft: secret,
        filed,
        documents: draft.documents,
    })
}

/// `GET /deposer/{draft}/recepisse/pdf`: the filing receipt, sealed, in
/// the page's language. The draft's link proves the person who filed.
async fn receipt_pdf(
    State(state): State<AppState>,
    visitor: Visitor,
    access: crate::policy::Access,
    Path(secret): Path<String>,
) -> Response {
    let draft = match open(&state, &visitor, &secret).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(filed) = draft.filed else {
        return visitor.redirect(&format!("/deposer/{secret}/etape/recapitulatif"));
    };
    let person = guichet_access::Person {
        dossiers: [filed.reference.clone()].into(),
        ..guichet_access::Person::default()
    };
    if let Err(e) = access.allow_person(
        Some(person),
        &guichet_access::Facts::none().dossier(&filed.reference),
    ) {
        return visitor.api_problem(&e);
    }
    let papers = match state
        .notifier
        .clone()
        .list_papers(pb::ListPapersRequest {
            subject_ref: filed.reference.clone(),
        })
        .await
    {
        Ok(p) => p.into_inner().papers,
        Err(e) => return visitor.api_problem(&ApiError::from(e)),
    };
    let Some(first) = papers.into_iter().find(|p| p.kind == "receipt") else {
        return visitor.refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "receipt-pending-title",
            "receipt-pending-body",
        );
    };
    match state
        .notifier
        .clone()
        .get_paper(pb::GetPaperRequest {
            subject_ref: filed.reference,
            id: first.id,
            language: visitor.lang.code().to_string(),
        })
        .await
    {
        Ok(file) => crate::uploads::pdf_answer(file.into_inner()),
        Err(e) => visitor.api_problem(&ApiError::from(e)),
    }
}
