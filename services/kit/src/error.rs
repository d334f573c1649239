//! The one table from error kinds to HTTP statuses and gRPC codes, and the
//! error every service returns at its boundary.

use guichet_dossier::{FieldViolation, Violations};
use http::StatusCode;
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    Conflict,
    WrongState,
    Unauthenticated,
    Forbidden,
    TooMany,
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorKind {
    /// The table of STYLE.md: one place, used by every service.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict | ErrorKind::WrongState => StatusCode::CONFLICT,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidInput => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Conflict => Code::AlreadyExists,
            ErrorKind::WrongState => Code::FailedPrecondition,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Forbidden => Code::PermissionDenied,
            ErrorKind::TooMany => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::Internal => Code::Internal,
        }
    }

    pub fn from_grpc_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists | Code::Aborted => ErrorKind::Conflict,
            Code::FailedPrecondition => ErrorKind::WrongState,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::Forbidden,
            Code::ResourceExhausted => ErrorKind::TooMany,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        }
    }
}

/// What a service answers when it cannot do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    pub violations: Vec<FieldViolation>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            violations: Vec::new(),
        }
    }

    pub fn invalid(violations: Violations) -> Self {
        Self {
            kind: ErrorKind::InvalidInput,
            message: format!("invalid input: {violations}"),
            violations: violations.into_vec(),
        }
    }

    /// `kind`, naming the one field at fault: an id that names nothing
    /// (`NotFound`) or a thing that cannot be used as it stands (`WrongState`).
    pub fn on_field(kind: ErrorKind, field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        Self {
            kind,
            message: format!("{field}: {problem}"),
            violations: vec![FieldViolation {
                field: field.to_string(),
                problem,
            }],
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A database error, the one rule for every service: unreachable or busy
    /// is UNAVAILABLE (503 with Retry-After: the person tries again and
    /// nothing was half-recorded), anything else internal. `service` names
    /// who cannot reach its database, `context` what it was doing.
    pub fn database(service: &str, context: &str, err: &sqlx::Error) -> Self {
        if crate::db::is_unavailable(err) {
            tracing::warn!(error = %error_chain(err), "{context}: database unavailable");
            Self::unavailable(format!(
                "{service} cannot reach its database; try again shortly"
            ))
        } else {
            Self::internal(context, err)
        }
    }

    /// A bug or an unexpected failure: logged with its whole cause chain here,
    /// answered without internals.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(err), "{context}");
        Self::new(ErrorKind::Internal, "internal error")
    }

    /// The gRPC status, with field violations as `google.rpc.BadRequest` details.
    pub fn to_status(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        if self.violations.is_empty() {
            return tonic::Status::new(self.kind.grpc_code(), self.message.clone());
        }
        let mut details = ErrorDetails::new();
        for v in &self.violations {
            details.add_bad_request_violation(v.field.clone(), v.problem.clone());
        }
        tonic::Status::with_error_details(self.kind.grpc_code(), self.message.clone(), details)
    }

    /// Reads a gRPC status back, field violations included.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let violations = status
            .get_details_bad_request()
            .map(|br| {
                br.field_violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        field: v.field,
                        problem: v.description,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            kind: ErrorKind::from_grpc_code(status.code()),
            message: status.message().to_string(),
            violations,
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        e.to_status()
    }
}

impl From<Violations> for ServiceError {
    fn from(v: Violations) -> Self {
        ServiceError::invalid(v)
    }
}

/// "outer: inner: root" for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_and_round_trips_through_grpc() {
        let table = [
            (ErrorKind::InvalidInput, 400, Code::InvalidArgument),
            (ErrorKind::NotFound, 404, Code::NotFound),
            (ErrorKind::Conflict, 409, Code::AlreadyExists),
            (ErrorKind::WrongState, 409, Code::FailedPrecondition),
            (ErrorKind::Unauthenticated, 401, Code::Unauthenticated),
            (ErrorKind::Forbidden, 403, Code::PermissionDenied),
            (ErrorKind::TooMany, 429, Code::ResourceExhausted),
            (ErrorKind::Unavailable, 503, Code::Unavailable),
            (ErrorKind::Timeout, 504, Code::DeadlineExceeded),
            (ErrorKind::Internal, 500, Code::Internal),
        ];
        for (kind, http, grpc) in table {
            assert_eq!(kind.http_status().as_u16(), http, "{kind:?}");
            assert_eq!(kind.grpc_code(), grpc, "{kind:?}");
            assert_eq!(ErrorKind::from_grpc_code(grpc), kind, "{kind:?}");
        }
    }

    #[test]
    fn field_violations_survive_a_grpc_status() {
        let e = ServiceError::invalid(Violations::one("applicant.birth_date", "is in the future"));
        let back = ServiceError::from_status(&e.to_status());
        assert_eq!(back.kind, ErrorKind::InvalidInput);
        assert_eq!(back.violations.len(), 1);
        assert_eq!(back.violations[0].field, "applicant.birth_date");
        assert_eq!(back.violations[0].problem, "is in the future");
        let e = ServiceError::on_field(ErrorKind::NotFound, "appointment_id", "names nothing");
        let back = ServiceError::from_status(&e.to_status());
        assert_eq!(back.kind, ErrorKind::NotFound);
        assert_eq!(back.violations[0].field, "appointment_id");
    }
}
