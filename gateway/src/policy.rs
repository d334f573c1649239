//! The policy table, applied to every route the gateway serves (REST and
//! gRPC alike), and the audit log written for every agent's call.
//!
//! For each request [`enforce`] finds the route's rule (`guichet_access`'s
//! one table), establishes the caller, and:
//! - refuses at once a caller no fact could admit (401 or 403), before any
//!   look-up, so a refusal says nothing of the resource;
//! - decides at once when no grant needs facts about the resource;
//! - otherwise leaves the [`Access`] to the handler, which looks up the
//!   facts (a dossier's prefecture and holder, a report's prefecture) and
//!   calls [`Access::allow`] before it answers anything. A handler that
//!   answers successfully without having asked is refused after the fact
//!   (and logged as a defect): the table fails closed.
//!
//! A route with no rule is refused (403), never served.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guichet_access::{Caller, Decision, Facts, Grant, Rule, Who, admissible, decide, policy};

use crate::directory::AuditEntry;
use crate::error::ApiError;
use crate::grpc_proxy;
use crate::state::AppState;

/// What the policy decided for this request, for its handler.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    caller: Caller,
    /// The CSRF token of the browser session the caller came with.
    session_csrf: Option<String>,
    rule: &'static Rule,
    judged: Mutex<Judged>,
}

/// The grant that admitted the call (none yet: not judged, or refused),
/// and the resource it was judged on, for the audit log (refusals too).
#[derive(Debug, Clone, Default)]
struct Judged {
    grant: Option<Grant>,
    prefecture: Option<String>,
    dossier: Option<String>,
}

impl Access {
    pub fn caller(&self) -> &Caller {
        &self.inner.caller
    }

    /// The CSRF token of the browser session this request came with (none
    /// for a token, a machine client or nobody): what pages put in forms.
    pub fn session_csrf(&self) -> Option<&str> {
        self.inner.session_csrf.as_deref()
    }

    /// The agent acting, as recorded on the case: the signed-in agent, or
    /// the one a machine client acts for.
    pub fn agent_uid(&self) -> Option<&str> {
        self.inner
            .caller
            .effective_agent()
            .map(|(agent, _)| agent.uid.as_str())
    }

    /// The acting agent's uid, or 401 when there is none.
    pub fn acting_agent(&self) -> Result<String, ApiError> {
        self.agent_uid().map(str::to_string).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("Authorization"),
                "sign in as an agent",
            )
        })
    }

    /// The caller may act on the resource the `facts` describe, by the
    /// grant returned; otherwise the refusal to answer.
    pub fn allow(&self, facts: &Facts<'_>) -> Result<Grant, ApiError> {
        self.record(&self.inner.caller, facts)
    }

    fn record(&self, caller: &Caller, facts: &Facts<'_>) -> Result<Grant, ApiError> {
        let decided = refusal(decide(caller, self.inner.rule, facts));
        let mut judged = self.inner.judged.lock().unwrap_or_else(|e| e.into_inner());
        judged.prefecture = facts.prefecture.map(str::to_string);
        judged.dossier = facts.dossier.map(str::to_string);
        if let Ok(grant) = &decided {
            judged.grant = Some(*grant);
        }
        decided
    }

    /// The same, for a caller who proved in this request to be the person
    /// concerned (a secret link): judged as that person when they did not
    /// sign in as anyone else.
    pub fn allow_person(
        &self,
        proof: Option<guichet_access::Person>,
        facts: &Facts<'_>,
    ) -> Result<Grant, ApiError> {
        match (&self.inner.caller, proof) {
            (Caller::Anonymous, Some(person)) => self.record(&Caller::Person(person), facts),
            _ => self.allow(facts),
        }
    }

    /// Names the dossier a call turned out to be about (the case taken
    /// from the queue), for the audit log.
    pub fn note_dossier(&self, reference: &str) {
        self.inner
            .judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dossier = Some(reference.to_string());
    }

    /// The prefectures where the caller holds a role this rule grants in
    /// their own prefecture: what a listing is narrowed to.
    pub fn own_prefectures(&self) -> Vec<String> {
        let Some((agent, holds)) = self.inner.caller.effective_agent() else {
            return Vec::new();
        };
        let mut places: Vec<String> = self
            .inner
            .rule
            .grants
            .iter()
            .filter_map(|g| match g.who {
                Who::Role(role) if holds(role) => Some(role),
                _ => None,
            })
            .flat_map(|role| agent.prefectures_of(role).map(str::to_string))
            .collect();
        places.sort();
        places.dedup();
        places
    }

    fn judged(&self) -> Judged {
        self.inner
            .judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Access>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "a handler asked for access outside the policy layer");
            ApiError::new(StatusCode::FORBIDDEN, None, "not allowed")
        })
    }
}

fn refusal(decision: Decision) -> Result<Grant, ApiError> {
    match decision {
        Decision::Allow(grant) => Ok(grant),
        Decision::Unauthenticated => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("Authorization"),
            "sign in (or name the agent acting) to do this",
        )),
        Decision::Forbidden => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            None,
            "you are not allowed to do this",
        )),
    }
}

/// The rule of this request: by gRPC path for a gRPC call, by method and
/// route template otherwise. `Err(())`: the path is served for other
/// methods only (axum answers 405, nothing runs).
fn rule_of(request: &Request, matched: Option<&MatchedPath>) -> Result<Option<&'static Rule>, ()> {
    if grpc_proxy::is_grpc(request) {
        return Ok(policy::grpc_method(request.uri().path()));
    }
    let Some(path) = matched.map(MatchedPath::as_str) else {
        return Ok(None);
    };
    match policy::rest(request.method().as_str(), path) {
        Some(rule) => Ok(Some(rule)),
        None if policy::TABLE.iter().any(
            |r| matches!(r.operation, policy::Operation::Rest { path: p, .. } if p == path),
        ) =>
        {
            Err(())
        }
        None => Ok(None),
    }
}

/// The policy layer (a `route_layer`: it sees the route matched).
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let grpc = grpc_proxy::is_grpc(&request);
    let answer = |e: ApiError| -> Response {
        if grpc {
            e.into_grpc()
                .into_http::<axum::body::Body>()
                .into_response()
        } else {
            e.into_response()
        }
    };
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let rule = match rule_of(&request, matched.as_ref()) {
        Ok(Some(rule)) => rule,
        Err(()) => return next.run(request).await,
        // A gRPC method the table does not know is not served.
        Ok(None) if grpc => return grpc_proxy::unimplemented(request.uri().path()),
        Ok(None) => {
            tracing::error!(
                method = %request.method(),
                path = %request.uri().path(),
                "a route without a row in the policy table was refused"
            );
            return answer(ApiError::new(
                StatusCode::FORBIDDEN,
                None,
                "this operation has no access rule",
            ));
        }
    };
    let (caller, session_csrf) = match state.auth.caller(request.method(), request.headers()).await
    {
        Ok(found) => found,
        Err(e) => return answer(e),
    };
    // A caller no fact could admit is refused before anything is looked up.
    if let Err(e) = refusal(admissible(&caller, rule)) {
        return answer(e);
    }
    let access = Access {
        inner: Arc::new(Inner {
            caller,
            session_csrf,
            rule,
            judged: Mutex::new(Judged::default()),
        }),
    };
    // Judged now when no grant needs a fact; otherwise by the handler.
    if !rule.needs_facts()
        && let Err(e) = access.allow(&Facts::none())
    {
        return answer(e);
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    let target = request.uri().path().to_string();
    let mut request = request;
    request.extensions_mut().insert(access.clone());
    let response = next.run(request).await;
    let judged = access.judged();
    // A gRPC error is an HTTP 200 with its status in the head.
    let answered = response.status().is_success()
        && !(grpc
            && response
                .headers()
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() != b"0"));
    if judged.grant.is_none() && answered {
        tracing::error!(
            operation = %rule.operation,
            "a handler answered without checking access: refused"
        );
        return answer(ApiError::new(
            StatusCode::FORBIDDEN,
            None,
            "you are not allowed to do this",
        ));
    }
    // Agents' calls are audited, public ones are not (nobody is named).
    let audited = matches!(
        access.caller(),
        Caller::Agent(_) | Caller::Machine(_) | Caller::Station(_)
    ) && judged.grant.is_none_or(|g| g.who != Who::Anyone);
    if audited {
        let entry = AuditEntry {
            at: state.clock.now(),
            actor: access.caller().actor(),
            agent: access.agent_uid().map(str::to_string),
            operation: rule.operation.to_string(),
            target,
            dossier: judged.dossier,
            prefecture: judged.prefecture,
            client,
            status: response.status().as_u16(),
        };
        if let Err(e) = state.auth.directory().audit(&entry).await {
            // Nothing an agent reads leaves unrecorded.
            tracing::error!(error = %e, "cannot write the audit log: answer withheld");
            return answer(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the audit log cannot be written; try again shortly",
            ));
        }
    }
    response
}
