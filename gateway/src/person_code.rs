//! A person's code: the reference and birth date show where a file stands;
//! its personal details need more. The person asks for a code, sent at once
//! to the e-mail address and mobile number on the file (never to one given
//! in the request), and gives it back in the `X-Person-Code` header within
//! its minutes. Only an HMAC of the code under the gateway's link key is
//! kept, in the directory every gateway shares; a new code replaces the
//! last; five wrong codes end it, and wrong codes count with wrong birth
//! dates against the file and the client's address. At most three codes
//! are sent per file in fifteen minutes, so nobody can flood a person's
//! phone.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{Duration, SecondsFormat};
use guichet_access::Person;
use guichet_dossier::{Reference, Violations};
use guichet_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{JsonBody, ReferenceParam, date_param};
use crate::state::AppState;

pub const PERSON_CODE_HEADER: &str = "x-person-code";
/// How long a code opens the file.
pub const VALID_MINUTES: u32 = 15;
/// Wrong codes after which the code is dead, right or not.
pub const MAX_WRONG: i32 = 5;
/// Codes sent per file within `SENDS_WINDOW`.
pub const SENDS_PER_WINDOW: u32 = 3;
pub const SENDS_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub birth_date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CodeSent {
    /// Where it went, masked: enough for the person to know which phone or
    /// mailbox to look at, too little to learn the address.
    pub sent_to: Vec<SentTo>,
    pub valid_minutes: u32,
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct SentTo {
    pub medium: String,
    pub to: String,
}

/// `POST /api/v1/dossiers/{reference}/code` with `{"birth_date": …}`:
/// sends the person a code to see their own file.
pub async fn ask(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    reference: ReferenceParam,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let reference = reference.parse()?;
    let birth_date = date_param("birth_date", &body.birth_date)?.ok_or_else(|| {
        ApiError::from(Violations::one(
            "birth_date",
            "is required, as an identity check",
        ))
    })?;
    crate::status::check_birth_date(&state, peer.as_ref(), &reference, birth_date).await?;
    let now = state.clock.now();
    let sends = [format!("code:{reference}")];
    if let Some(wait) = state.code_sends.wait(&sends, now) {
        return Err(ApiError::too_many(
            "reference",
            "codes were sent for this file a moment ago: use the last one, or ask again later",
            wait,
        ));
    }
    let view = state
        .instruction
        .clone()
        .get_dossier(pb::GetDossierRequest {
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    // A recorded dossier always has its filing: one without is damaged
    // data, not a file without contact.
    let Some(filing) = view.dossier.and_then(|d| d.filing) else {
        tracing::error!(%reference, "instruction answered a dossier without its filing");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "this file cannot be read just now",
        ));
    };
    // No contact at all is the same as an empty one: nothing to send to.
    let contact = filing.contact.unwrap_or_default();
    if contact.email.trim().is_empty() && contact.phone.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("contact"),
            "this file gives no e-mail address or mobile number to send a code to; \
             the call centre or a desk can show you your file",
        ));
    }
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let expires_at = now + Duration::minutes(i64::from(VALID_MINUTES));
    state
        .auth
        .directory()
        .save_person_code(
            reference.as_str(),
            &code_hash(&state, &reference, &code),
            now,
            expires_at,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot keep a person's code");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the code cannot be sent just now; try again shortly",
            )
        })?;
    state.code_sends.fail(&sends, now);
    let media = state
        .notifier
        .clone()
        .send_code(pb::SendCodeRequest {
            reference: reference.to_string(),
            code,
            valid_minutes: VALID_MINUTES,
            email: contact.email.clone(),
            phone: contact.phone.clone(),
            language: contact.language.clone(),
        })
        .await?
        .into_inner()
        .media;
    if media.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the code could not be sent just now; try again shortly",
        ));
    }
    let sent_to = media
        .into_iter()
        .map(|medium| {
            let to = match medium.as_str() {
                "email" => mask_email(&contact.email),
                _ => mask_phone(&contact.phone),
            };
            SentTo { medium, to }
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeSent {
            sent_to,
            valid_minutes: VALID_MINUTES,
            expires_at: expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        }),
    ))
}

fn code_hash(state: &AppState, reference: &Reference, code: &str) -> String {
    state
        .links
        .secret("person-code", &format!("{reference}:{code}"))
}

/// What the request proves of the person: `None` without a code; the
/// person of `reference` with a right code; a 401 (counted like a wrong
/// birth date) with a wrong or dead one.
pub async fn proof(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
    reference: &Reference,
) -> Result<Option<Person>, ApiError> {
    let Some(code) = crate::extract::header_text(headers, PERSON_CODE_HEADER, "X-Person-Code")?
    else {
        return Ok(None);
    };
    let keys = crate::status::try_keys(peer, reference);
    let now = state.clock.now();
    if let Some(wait) = state.status_tries.wait(&keys, now) {
        return Err(ApiError::too_many(
            "X-Person-Code",
            "too many wrong codes or birth dates for this file or from this address; try again later",
            wait,
        ));
    }
    let right = state
        .auth
        .directory()
        .check_person_code(
            reference.as_str(),
            &code_hash(state, reference, code.trim()),
            MAX_WRONG,
            now,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot check a person's code");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the code cannot be checked just now; try again shortly",
            )
        })?;
    if !right {
        state.status_tries.fail(&keys, now);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("X-Person-Code"),
            "is not the code sent for this file, or it has expired: ask for a new one",
        ));
    }
    Ok(Some(Person {
        dossiers: [reference.to_string()].into(),
        one_time_code: true,
        ..Person::default()
    }))
}

/// `amina.benali@example.org` → `a•••@example.org`.
pub fn mask_email(email: &str) -> String {
    match email.trim().split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_string(),
    }
}

/// `+33612345678` → `•••••••••78`: the last two digits only.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let shown = digits.len().saturating_sub(2);
    digits
        .iter()
        .enumerate()
        .map(|(i, d)| if i < shown { '•' } else { *d })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_to_what_tells_the_person_where_to_look() {
        let table = [
            (mask_email("amina.benali@example.org"), "a•••@example.org"),
            (mask_email("x@y.fr"), "x•••@y.fr"),
            (mask_email("not-an-address"), "•••"),
            (mask_phone("+33612345678"), "•••••••••78"),
            (mask_phone("+262692000001"), "••••••••••01"),
        ];
        for (masked, expected) in table {
            assert_eq!(masked, expected);
        }
    }
}
