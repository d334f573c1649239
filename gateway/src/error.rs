//! HTTP errors: the status from the one table in the kit, and a body that
//! names every problem, `{"errors": [{"field": ..., "problem": ...}]}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guichet_kit::{ErrorKind, ServiceError};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<Problem>,
    /// Seconds to say in `Retry-After`, when the caller is to wait.
    retry_after: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Problem {
    field: Option<String>,
    problem: String,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: &'a [Problem],
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, problem: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![Problem {
                field: field.map(str::to_string),
                problem: problem.into(),
            }],
            retry_after: None,
        }
    }

    /// A 429: the caller may try again after `wait` (rounded up to a second).
    pub fn too_many(field: &str, problem: &str, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, Some(field), problem)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Each problem: the field at fault (if one is) and what is wrong.
    pub fn problems(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        self.errors
            .iter()
            .map(|p| (p.field.as_deref(), p.problem.as_str()))
    }

    /// The same refusal as a gRPC status, for a call passed on.
    pub fn into_grpc(self) -> tonic::Status {
        let message = self
            .errors
            .iter()
            .map(|p| match &p.field {
                Some(f) => format!("{f}: {}", p.problem),
                None => p.problem.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let code = match self.status {
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            s if s.is_client_error() => tonic::Code::InvalidArgument,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let errors = if e.violations.is_empty() {
            vec![Problem {
                field: None,
                problem: e.message,
            }]
        } else {
            e.violations
                .into_iter()
                .map(|v| Problem {
                    field: Some(v.field),
                    problem: v.problem,
                })
                .collect()
        };
        Self {
            status: e.kind.http_status(),
            errors,
            retry_after: None,
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let mut e = ServiceError::from_status(&status);
        if e.kind == ErrorKind::Internal {
            tracing::error!(code = ?status.code(), message = status.message(), "service call failed");
            e.message = "internal error".into();
        }
        if e.kind == ErrorKind::Unavailable && e.message.contains("tcp connect error") {
            e.message = "the service is unavailable; try again shortly".into();
        }
        // A service at capacity says when to come back; the caller hears it.
        let retry_after = status
            .metadata()
            .get(guichet_kit::capacity::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut error: Self = e.into();
        if retry_after.is_some() {
            error.retry_after = retry_after;
        }
        error
    }
}

impl From<guichet_dossier::Violations> for ApiError {
    fn from(v: guichet_dossier::Violations) -> Self {
        ServiceError::invalid(v).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(Body {
                errors: &self.errors,
            }),
        )
            .into_response();
        let retry_after = match self.retry_after {
            Some(seconds) => Some(HeaderValue::from(seconds)),
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                Some(HeaderValue::from_static("5"))
            }
            None => None,
        };
        if let Some(v) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // RFC 6750: a 401 says how to authenticate.
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"guichet\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_at_capacity_is_a_503_that_says_when_to_come_back() {
        let response = ApiError::from(guichet_kit::capacity::at_capacity(
            "guichet.v1.OnlineIntake",
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        // Unavailable for another reason: the general advice.
        let response = ApiError::from(tonic::Status::unavailable("down")).into_response();
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("5"))
        );
    }
}
