//! The gateway's extractors: every text a REST request carries (path
//! parameters, query parameters, JSON fields, multipart text parts, the
//! headers the API reads) is checked by `guichet_dossier::text` before a
//! handler runs, and a bad one is a 400 that names it. They run before the
//! handler's own checks, so a NUL byte is named whatever else is wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use guichet_dossier::{Reference, Violations, text};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

fn bad_request(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, Some(field), problem)
}

/// The one path parameter of a route (`{reference}`, `{id}`, ...), checked.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = match RawPathParams::from_request_parts(parts, state).await {
            Ok(p) => p,
            Err(rejection) => {
                // Only bytes that are not UTF-8 fail here: name the parameter
                // from the route's template.
                let template = parts
                    .extensions
                    .get::<MatchedPath>()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default();
                let name = template
                    .rsplit('{')
                    .next()
                    .and_then(|rest| rest.split('}').next())
                    .filter(|n| !n.is_empty() && template.contains('{'))
                    .unwrap_or("path");
                return Err(bad_request(name, rejection.body_text()));
            }
        };
        let mut v = Violations::new();
        let mut value = None;
        for (name, raw) in &params {
            text::check(&mut v, name, raw);
            value.get_or_insert_with(|| raw.to_string());
        }
        if !v.is_empty() {
            return Err(v.into());
        }
        value
            .map(PathParam)
            .ok_or_else(|| bad_request("path", "this route takes a path parameter"))
    }
}

/// The `{reference}` path parameter, its text checked. The handler parses
/// it (`parse`) after every other input's text checks have run, so a NUL
/// byte in the body is named even beside a malformed reference.
#[derive(Debug)]
pub struct ReferenceParam(String);

impl ReferenceParam {
    /// A reference as a page's form gave it.
    pub fn new(text: impl Into<String>) -> Self {
        ReferenceParam(text.into())
    }

    /// The reference as the path gave it, unchecked.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(&self) -> Result<Reference, ApiError> {
        Reference::parse(&self.0).map_err(|e| Violations::one("reference", e.to_string()).into())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReferenceParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathParam(text) = PathParam::from_request_parts(parts, state).await?;
        Ok(ReferenceParam(text))
    }
}

/// A code of one of the domain's lists given as a query or body field
/// (`renewal`): its wire number, 0 when not given, and a clear error naming
/// `field` for a code that is not in the list. Case does not matter.
pub fn code_value<T>(
    field: &str,
    text: &Option<String>,
    parse: fn(&str) -> Option<T>,
    to_pb: fn(T) -> i32,
) -> Result<i32, ApiError> {
    let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    parse(&text.to_ascii_lowercase())
        .map(to_pb)
        .ok_or_else(|| Violations::one(field, format!("unknown value {text:?}")).into())
}

/// An optional `YYYY-MM-DD` field, as the wire's date.
pub fn date_param(
    field: &str,
    text: &Option<String>,
) -> Result<Option<guichet_proto::v1::CalendarDate>, ApiError> {
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => guichet_dossier::calendar::parse_iso_date(t)
            .map(|d| Some(guichet_proto::convert::date_to_pb(d)))
            .ok_or_else(|| Violations::one(field, "must be a date of the form YYYY-MM-DD").into()),
    }
}

/// Query parameters into `T`, each value checked under its own name; a
/// value of the wrong type is named too (`limit`).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        check_query(query)?;
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." || path == "?" || path.is_empty() {
                    "query".to_string()
                } else {
                    path
                };
                bad_request(&field, e.inner().to_string())
            })
    }
}

/// Every parameter of a query string, by the rule for its name.
pub fn check_query(query: &str) -> Result<(), ApiError> {
    let mut v = Violations::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if text::check_as(&mut v, "query", &name, text::Kind::Token) {
            text::check(&mut v, &name, &value);
        }
    }
    if v.is_empty() { Ok(()) } else { Err(v.into()) }
}

/// A JSON body into `T`: `application/json` or a 415; every string in it
/// (keys included) checked under its path (`person.family_name`,
/// `kinds[1]`); then read into `T`, naming the field a type error is in.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await;
        let body = body.map_err(|rejection| {
            ApiError::new(rejection.status(), Some("body"), rejection.body_text())
        })?;
        parse_json(&headers, &body).map(JsonBody)
    }
}

/// The same for a body that may be left empty (then `T::default()`).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await;
        let body = body.map_err(|rejection| {
            ApiError::new(rejection.status(), Some("body"), rejection.body_text())
        })?;
        if body.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&headers, &body).map(OptionalJsonBody)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// Reads a JSON body into `T`: the media type, then every string, then the
/// shape, each problem named.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("content-type"),
            "send the body as application/json",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad_request("body", format!("is not JSON: {e}")))?;
    let mut v = Violations::new();
    text::check_json(&mut v, "", &value);
    if !v.is_empty() {
        return Err(v.into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        bad_request(&field, e.inner().to_string())
    })
}

/// A header the API reads as text, checked under the header's name; `None`
/// when absent.
pub fn header_text(
    headers: &HeaderMap,
    name: &str,
    shown_as: &str,
) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(name) else {
        return Ok(None);
    };
    let value = raw
        .to_str()
        .map_err(|_| bad_request(shown_as, "must be plain ASCII"))?;
    match text::problem(value, text::Kind::Token) {
        Some(problem) => Err(bad_request(shown_as, problem)),
        None => Ok(Some(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: ApiError) -> (StatusCode, String) {
        let status = e.status();
        (status, format!("{e:?}"))
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("a header"),
        );
        h
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Booking {
        site_id: String,
        person: Person,
        kinds: Vec<String>,
        limit: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Person {
        family_name: String,
    }

    #[test]
    fn a_nul_anywhere_in_json_is_named_before_the_shape_is_checked() {
        for (body, field) in [
            (r#"{"site_id": "59\u0000"}"#, "site_id"),
            (
                r#"{"person": {"family_name": "a\u0000"}}"#,
                "person.family_name",
            ),
            (r#"{"kinds": ["x", "\u0000"]}"#, "kinds[1]"),
            (r#"{"a\u0000": 1}"#, "body"),
            (r#""\u0000""#, "body"),
        ] {
            let e = parse_json::<Booking>(&json_headers(), body.as_bytes()).expect_err("refused");
            let (status, text) = fields(e);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                text.contains(&format!("field: Some(\"{field}\")")),
                "{body}: {text}"
            );
        }
    }

    #[test]
    fn shape_and_media_type_errors_are_named() {
        let e = parse_json::<Booking>(
            &json_headers(),
            br#"{"site_id": "1", "person": {"family_name": "B"}, "kinds": [], "limit": "x"}"#,
        )
        .expect_err("refused");
        assert!(fields(e).1.contains("Some(\"limit\")"));
        let e = parse_json::<Booking>(&HeaderMap::new(), b"{}").expect_err("refused");
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = parse_json::<Booking>(&json_headers(), b"{").expect_err("refused");
        assert!(fields(e).1.contains("Some(\"body\")"));
    }

    #[test]
    fn query_values_are_checked_under_their_names() {
        assert!(check_query("prefecture=59&limit=10").is_ok());
        let e = check_query("prefecture=%00").expect_err("refused");
        assert!(fields(e).1.contains("Some(\"prefecture\")"));
        let e = check_query("a%00=1").expect_err("refused");
        assert!(fields(e).1.contains("Some(\"query\")"));
        let e = check_query("reason=%E2%80%AEabc").expect_err("refused");
        assert!(fields(e).1.contains("Some(\"reason\")"));
    }
}
