//! "Check an attestation", for employers and benefits offices: by the
//! verification code printed on it (the API's check, rate-limited the
//! same), or by the text its 2D code holds, read by any scanner app:
//! the signature is checked against Guichet's published keys, then the
//! code it carries is checked as if typed.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::{Form, Page, Visitor, date_words};
use crate::extract::PathParam;
use crate::state::AppState;
use crate::status::AttestationCheckJson;

pub fn routes() -> Router<AppState> {
    Router::new().route("/verifier", get(ask).post(check))
}

#[derive(askama::Template)]
#[template(path = "check.html")]
struct CheckPage {
    p: Page,
    code: String,
    scanned: String,
    result: Option<AttestationCheckJson>,
    sealed_by_guichet: bool,
}

impl CheckPage {
    fn date(&self, iso: &str) -> String {
        date_words(self.p.lang, iso)
    }

    fn attestation_text(&self, kind: &str) -> String {
        self.p.code_text("attestation", kind)
    }
}

async fn ask(visitor: Visitor) -> Response {
    visitor.html(&CheckPage {
        p: visitor.page("check-title"),
        code: String::new(),
        scanned: String::new(),
        result: None,
        sealed_by_guichet: false,
    })
}

/// `POST /verifier`: a code typed, or a 2D code's text pasted.
async fn check(
    State(state): State<AppState>,
    visitor: Visitor,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = visitor.check_csrf(form.csrf().as_deref()) {
        return *r;
    }
    let mut page = CheckPage {
        p: visitor.page("check-title"),
        code: form.get("code").unwrap_or_default(),
        scanned: form.get("scanned").unwrap_or_default(),
        result: None,
        sealed_by_guichet: false,
    };
    let mut code = page.code.clone();
    if !page.scanned.is_empty() {
        let opened = guichet_kit::seal::KeySet::load(&state.signing_keys)
            .ok()
            .and_then(|keys| keys.open(&page.scanned).ok());
        match opened
            .as_ref()
            .and_then(|s| s.field("code").or(s.field("verification_code")))
        {
            Some(c) => {
                page.sealed_by_guichet = true;
                code = c.to_string();
            }
            None => {
                page.p.add_error("scanned", "check.scanned");
                return visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        }
    }
    if code.is_empty() {
        page.p.add_error("code", "check.code");
        return visitor.html_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    match crate::status::verify_attestation(State(state), peer, PathParam(code)).await {
        Ok(Json(result)) => {
            page.result = Some(result);
            visitor.html(&page)
        }
        Err(e) if e.status() == StatusCode::NOT_FOUND || e.status() == StatusCode::BAD_REQUEST => {
            page.p.add_error("code", "check.unknown");
            visitor.html_with(e.status(), &page)
        }
        Err(e) => visitor.api_problem(&e),
    }
}
