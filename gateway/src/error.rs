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
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
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
        e.into()
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
