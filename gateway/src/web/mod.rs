//! The applicants' pages: server-rendered HTML in French (`/`) and English
//! (`/en/`), styled with the State's design system (DSFR), usable without
//! JavaScript (every form posts and redirects; no page runs a script).
//!
//! The pages are another face of the API: each handler calls the same
//! functions the JSON routes call, under its own row of the policy table
//! (an English page is judged as its French one), and renders the answer.
//! Every form carries a CSRF token that must match the visitor's cookie,
//! on top of the gateway's cross-site check.

pub mod agents;
pub mod assets;
pub(crate) mod blocked;
pub(crate) mod booking;
mod check;
pub mod drafts;
pub(crate) mod filing;
mod my_file;
mod open_data;
pub mod texts;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use fluent_bundle::FluentArgs;
use tower_http::compression::CompressionLayer;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// What the English pages' paths start with.
    pub fn prefix(self) -> &'static str {
        match self {
            Lang::Fr => "",
            Lang::En => "/en",
        }
    }

    fn of_path(path: &str) -> Lang {
        if path == "/en" || path.starts_with("/en/") {
            Lang::En
        } else {
            Lang::Fr
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::Fr => Lang::En,
            Lang::En => Lang::Fr,
        }
    }
}

const CSRF_COOKIE: &str = "guichet_csrf";

/// Who is looking at a page: their language (from the path), the page's
/// path without its language, and their CSRF token (a new one when they
/// had none; it is then set with the answer).
#[derive(Debug, Clone)]
pub struct Visitor {
    pub lang: Lang,
    pub here: String,
    pub query: Option<String>,
    pub csrf: String,
    new_token: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Under `/en` the router is nested: the URI it hands on lost its
        // prefix, the original keeps it.
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let path = uri.path();
        let lang = Lang::of_path(path);
        let here = match path.strip_prefix(lang.prefix()) {
            Some("") | None => "/".to_string(),
            Some(rest) => rest.to_string(),
        };
        let token = cookie(&parts.headers, CSRF_COOKIE).filter(|t| is_token(t));
        Ok(Visitor {
            lang,
            here,
            query: uri.query().map(str::to_string),
            new_token: token.is_none(),
            csrf: token.unwrap_or_else(crate::session::random_secret),
        })
    }
}

fn is_token(t: &str) -> bool {
    (20..=100).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl Visitor {
    /// A page for this visitor, titled by the message `title`.
    pub fn page(&self, title: &str) -> Page {
        Page {
            lang: self.lang,
            here: self.here.clone(),
            query: self.query.clone(),
            csrf: self.csrf.clone(),
            title: texts::text(self.lang, title, None),
            errors: Vec::new(),
        }
    }

    /// Whether the form's token is the visitor's own.
    pub fn check_csrf(&self, form_token: Option<&str>) -> Result<(), Box<Response>> {
        match form_token {
            Some(t) if !self.new_token && t == self.csrf => Ok(()),
            _ => Err(Box::new(self.refusal(
                StatusCode::FORBIDDEN,
                "error-csrf-title",
                "error-csrf-body",
            ))),
        }
    }

    /// A page saying why nothing was done, with `status`.
    pub fn refusal(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let page = self.page(title);
        let message = texts::text(self.lang, body, None);
        self.html_with(status, &ProblemPage { p: page, message })
    }

    /// The template rendered as this visitor's page (and their CSRF cookie
    /// set if it is new).
    pub fn html<T: askama::Template>(&self, template: &T) -> Response {
        let mut response = match template.render() {
            Ok(body) => {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "a page could not be rendered");
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
                    .into_response();
            }
        };
        self.set_cookie(&mut response);
        response
    }

    /// The template as this visitor's page, answered with `status` (a form
    /// sent back with its problems, say).
    pub fn html_with<T: askama::Template>(&self, status: StatusCode, template: &T) -> Response {
        let mut response = self.html(template);
        if response.status().is_success() {
            *response.status_mut() = status;
        }
        response
    }

    fn set_cookie(&self, response: &mut Response) {
        if !self.new_token {
            return;
        }
        let value = format!(
            "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            self.csrf
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// See-other to `path` in the visitor's language.
    pub fn redirect(&self, path: &str) -> Response {
        let mut response = Redirect::to(&format!("{}{path}", self.lang.prefix())).into_response();
        self.set_cookie(&mut response);
        response
    }

    /// An answer of the API refused: a page saying why, in words, with
    /// the fields named when the request was the visitor's form's.
    pub fn api_problem(&self, e: &ApiError) -> Response {
        let (status, title, body) = problem_of(e.status());
        self.refusal(status, title, body)
    }
}

/// How a page words a refusal with `status`: the status it answers (a
/// server's failure is "unavailable, try again"), its title and its text.
pub fn problem_of(status: StatusCode) -> (StatusCode, &'static str, &'static str) {
    let (title, body) = match status.as_u16() {
        404 => ("error-not-found-title", "error-not-found-body"),
        401 | 403 => ("error-refused-title", "error-refused-body"),
        413 => ("error-too-large-title", "error-too-large-body"),
        429 => ("error-too-many-title", "error-too-many-body"),
        400..=499 => ("error-invalid-title", "error-invalid-body"),
        _ => ("error-unavailable-title", "error-unavailable-body"),
    };
    let status = if status.is_server_error() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    (status, title, body)
}

/// A field at fault, as the page shows it: its input's id and what to do.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub id: String,
    pub message: String,
}

/// What every page template holds: the language, where it is, the CSRF
/// token for its forms, its title and the errors to show.
#[derive(Debug, Clone)]
pub struct Page {
    pub lang: Lang,
    pub here: String,
    pub query: Option<String>,
    pub csrf: String,
    pub title: String,
    pub errors: Vec<FieldError>,
}

impl Page {
    pub fn code(&self) -> &'static str {
        self.lang.code()
    }

    /// The message `id`.
    pub fn t(&self, id: &str) -> String {
        texts::text(self.lang, id, None)
    }

    /// The message `id` with one variable.
    pub fn t1(&self, id: &str, name: &str, value: &str) -> String {
        let mut args = FluentArgs::new();
        args.set(name.to_string(), value.to_string());
        texts::text(self.lang, id, Some(&args))
    }

    /// The message `id` with two variables.
    pub fn t2(&self, id: &str, a: &(&str, &str), b: &(&str, &str)) -> String {
        let mut args = FluentArgs::new();
        args.set(a.0.to_string(), a.1.to_string());
        args.set(b.0.to_string(), b.1.to_string());
        texts::text(self.lang, id, Some(&args))
    }

    /// The name of a code (`procedure-renewal`, `kind-passport`, ...).
    pub fn code_text(&self, family: &str, code: &str) -> String {
        let id = format!("{family}-{}", code.replace('_', "-"));
        if texts::has(self.lang, &id) {
            self.t(&id)
        } else {
            code.to_string()
        }
    }

    /// `path` in this page's language.
    pub fn href(&self, path: &str) -> String {
        match (self.lang, path) {
            (Lang::En, "/") => "/en/".to_string(),
            _ => format!("{}{path}", self.lang.prefix()),
        }
    }

    /// This page in the other language.
    pub fn switch_href(&self) -> String {
        let other = self.lang.other();
        let path = match (other, self.here.as_str()) {
            (Lang::En, "/") => "/en/".to_string(),
            (_, here) => format!("{}{here}", other.prefix()),
        };
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
    }

    pub fn switch_code(&self) -> &'static str {
        self.lang.other().code()
    }

    pub fn switch_name(&self) -> &'static str {
        match self.lang {
            Lang::Fr => "English",
            Lang::En => "Français",
        }
    }

    /// The navigation entry for `path` is the current page's section.
    pub fn is_current(&self, path: &str) -> bool {
        if path == "/" {
            self.here == "/"
        } else {
            self.here.starts_with(path)
        }
    }

    /// The error to show next to field `id`, if any.
    pub fn error(&self, id: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.message.as_str())
    }

    pub fn stylesheet(&self) -> &'static str {
        &assets::STYLESHEET.href
    }

    pub fn dsfr(&self) -> &'static str {
        assets::DSFR_VERSION
    }

    /// The field errors of a refusal of the API, each in words: the field's
    /// own message when the files have one, a general one otherwise.
    pub fn add_api_errors(&mut self, e: &ApiError, ids: &[(&str, &str)]) {
        for (field, _) in e.problems() {
            let field = field.unwrap_or_default();
            let id = ids
                .iter()
                .find(|(f, _)| *f == field)
                .map_or(field.replace('.', "-"), |(_, id)| (*id).to_string());
            self.add_error(&id, field);
        }
    }

    /// An error on the input `id`, worded by the message for `field`.
    pub fn add_error(&mut self, id: &str, field: &str) {
        let message_id = format!("field-{}", field.replace(['.', '_'], "-"));
        let message = if texts::has(self.lang, &message_id) {
            self.t(&message_id)
        } else {
            self.t("field-generic")
        };
        if self.error(id).is_none() {
            self.errors.push(FieldError {
                id: id.to_string(),
                message,
            });
        }
    }
}

#[derive(askama::Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    p: Page,
    message: String,
}

#[derive(askama::Template)]
#[template(path = "home.html")]
struct HomePage {
    p: Page,
}

/// `GET /formulaire`: the blank paper form, to print and send by post with
/// copies of the documents. Nothing is kept: each print has its own id in
/// its signed code, which the mailroom reads back.
async fn paper_form(
    axum::extract::State(state): axum::extract::State<AppState>,
    visitor: Visitor,
) -> Response {
    match crate::postal::print_form(
        axum::extract::State(state),
        crate::extract::JsonBody(crate::postal::FormJson {
            procedure: String::new(),
            prefill: Default::default(),
        }),
    )
    .await
    {
        Ok(mut pdf) => {
            pdf.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            pdf
        }
        Err(e) => visitor.api_problem(&e),
    }
}

/// A refusal the policy table made before a page's handler ran (JSON, as
/// for the API) becomes a page in words, in the visitor's language.
pub async fn refusals_as_pages(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    // Data files under a page's root (the open data's CSV and JSON) are
    // read by programs: their refusals stay JSON.
    let data_file = path.ends_with(".json") || path.ends_with(".csv");
    if !guichet_access::policy::is_page(&path) || data_file {
        return next.run(request).await;
    }
    let lang = Lang::of_path(&path);
    let token = cookie(request.headers(), CSRF_COOKIE).filter(|t| is_token(t));
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // The time bound's answer has no body: the page says the service is
    // unavailable, as for any failure past the person's reach.
    let timed_out = response.status() == StatusCode::GATEWAY_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !timed_out && (!json || !response.status().is_client_error()) {
        return response;
    }
    let visitor = Visitor {
        lang,
        here: "/".to_string(),
        query: None,
        new_token: token.is_none(),
        csrf: token.unwrap_or_else(crate::session::random_secret),
    };
    let (status, title, body) = problem_of(response.status());
    let mut page = if agents::is_workspace(&path) {
        agents::refusal(&visitor, status, title, body)
    } else {
        visitor.refusal(status, title, body)
    };
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = response.headers().get(&name) {
            page.headers_mut().insert(name, v.clone());
        }
    }
    page
}

async fn home(visitor: Visitor) -> Response {
    visitor.html(&HomePage {
        p: visitor.page("home-title"),
    })
}

/// A form's fields, as posted (`application/x-www-form-urlencoded`).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The field's value, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form(pairs)
    }

    /// Every field as sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// A key naming this form's content (and `salt`, who sent it), the
    /// fields `leave_out` aside: the same form sent twice gives the same key.
    pub fn idempotency_key(&self, prefix: &str, salt: &str, leave_out: &[&str]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        for (k, v) in self
            .0
            .iter()
            .filter(|(k, _)| !leave_out.contains(&k.as_str()))
        {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        let digest: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{prefix}:{digest}")
    }

    pub fn csrf(&self) -> Option<String> {
        self.get("csrf")
    }
}

/// What a page may load: its own styles, images and fonts; no script, no
/// frame, forms posted to Guichet only.
pub const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every page carries on top of the gateway's: a policy that
/// runs no script and loads nothing from elsewhere, no referrer (persons'
/// links hold secrets), and no framing.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    // A page that needs more (the document viewer) sets its own.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    response
}

/// Every page, in French and under `/en` in English, with the design
/// system's files.
///
/// Every page has a time bound, `request_timeout` as the API's routes, and
/// uploads the upload bound: a service that takes the call and never
/// answers must not hold the person's page (and a place among the
/// gateway's requests in flight) until the browser gives up.
pub fn routes(upload_bytes: usize, request_timeout: Duration) -> Router<AppState> {
    let pages = || {
        Router::new()
            .merge(filing::routes())
            .merge(my_file::routes())
            .merge(booking::routes())
            .merge(blocked::routes())
            .merge(check::routes())
            .merge(open_data::routes())
            .route_layer(crate::server::timeout(request_timeout))
            .merge(
                Router::new()
                    .merge(filing::upload_routes())
                    .merge(my_file::upload_routes())
                    .layer(axum::extract::DefaultBodyLimit::max(upload_bytes))
                    .route_layer(crate::server::timeout(crate::server::UPLOAD_TIMEOUT)),
            )
    };
    Router::new()
        .route("/", get(home))
        .route("/en/", get(home))
        .route("/formulaire", get(paper_form))
        .route("/en/formulaire", get(paper_form))
        .route("/static/{file}", get(assets::static_file))
        .route("/dsfr/{version}/{*path}", get(assets::dsfr_file))
        .route_layer(crate::server::timeout(request_timeout))
        .merge(pages())
        .nest("/en", pages())
        .merge(agents::routes(upload_bytes, request_timeout))
        .layer(axum::middleware::from_fn(page_headers))
        .layer(CompressionLayer::new())
}

/// A person's link's secret (`?cle=` on their appointment's or report's
/// page) as the API's routes take it.
pub fn link_headers(key: &Option<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(v) = key.as_deref().and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(guichet_kit::links::LINK_SECRET_HEADER, v);
    }
    headers
}

/// Today in Paris, as the services date things.
pub fn today(state: &AppState) -> chrono::NaiveDate {
    guichet_dossier::calendar::paris_date(state.clock.now())
}

/// A date as a person types it (`15/06/1979`, `15-06-1979`, `15 06 1979`,
/// or `1979-06-15`) in the ISO form the rules read; anything else is kept
/// as typed, for the rules to refuse in words. Dates are text fields, not
/// the browser's date picker: the same on every phone, and typed with the
/// keyboard in one order.
pub fn iso_date_of(typed: &str) -> String {
    let t = typed.trim();
    let parts: Vec<&str> = t
        .split(['/', '-', '.', ' '])
        .filter(|p| !p.is_empty())
        .collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    let date = match (parts.as_slice(), numbers.as_deref()) {
        ([_, _, y], Some(&[d, m, year])) if y.len() == 4 => {
            chrono::NaiveDate::from_ymd_opt(year as i32, m, d)
        }
        ([y, _, _], Some(&[year, m, d])) if y.len() == 4 => {
            chrono::NaiveDate::from_ymd_opt(year as i32, m, d)
        }
        _ => None,
    };
    date.map_or_else(|| t.to_string(), |d| d.to_string())
}

/// An ISO date as the form shows it back (`15/06/1979`).
pub fn typed_date(iso: &str) -> String {
    chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d")
        .map_or_else(|_| iso.to_string(), |d| d.format("%d/%m/%Y").to_string())
}

/// A date as the page's language writes it.
pub fn date_words(lang: Lang, iso: &str) -> String {
    let Ok(d) = chrono::NaiveDate::parse_from_str(iso.get(..10).unwrap_or(iso), "%Y-%m-%d") else {
        return iso.to_string();
    };
    match lang {
        Lang::Fr => d.format("%d/%m/%Y").to_string(),
        Lang::En => d.format("%-d %B %Y").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_people_type_them() {
        let table = [
            ("15/06/1979", "1979-06-15"),
            ("5/6/1979", "1979-06-05"),
            ("15-06-1979", "1979-06-15"),
            (" 15 06 1979 ", "1979-06-15"),
            ("15.06.1979", "1979-06-15"),
            ("1979-06-15", "1979-06-15"),
            ("31/02/1979", "31/02/1979"),
            ("15/06/79", "15/06/79"),
            ("yesterday", "yesterday"),
            ("", ""),
        ];
        for (typed, iso) in table {
            assert_eq!(iso_date_of(typed), iso, "{typed:?}");
        }
        assert_eq!(typed_date("1979-06-15"), "15/06/1979");
        assert_eq!(typed_date("15/06/79"), "15/06/79");
    }
}
