//! gRPC through the gateway: calls to the channel services are passed on
//! as they are (metadata, deadline and trace context included), so
//! call-centre, desk and mailroom software need one address, the gateway's, for REST
//! and gRPC alike. The gateway also answers the standard health and
//! reflection services, so grpcurl and generated clients can discover it.
//!
//! What it advertises is exactly what it serves: reflection lists the
//! services passed on (and health and reflection themselves), health
//! answers for each of them with the state of the service behind, and any
//! other gRPC call is `UNIMPLEMENTED`.
//!
//! Every call passed on is judged against the policy table first, on the
//! facts its message holds (`grpc_access`).
//!
//! The instruction services are not passed on. `InstructionReader` answers
//! with whole filings (names, birth dates, addresses) where the REST routes
//! show a reference's holder only what the reference and birth date entitle
//! them to; `InstructionDesk` acts as an agent, and the gateway has no
//! sign-in for agents yet (issue #17). Until it has, both stay on
//! instruction's own address, inside the network, and the gateway does not
//! advertise them.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use guichet_kit::grpc::{REFLECTION_SERVICES, TracedChannel};
use guichet_kit::shutdown::Shutdown;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceExt;

use crate::state::AppState;

/// gRPC for call-centre and desk software, passed on as it is, and the
/// gateway's own health and reflection. (The mailroom's `Postal` service
/// takes large bodies: see `postal::upload_routes`.)
pub fn routes(grpc_health: HealthServer<GatewayHealth>) -> Router<AppState> {
    let (reflection_v1, reflection_v1alpha) = reflection();
    Router::new()
        .route("/guichet.v1.CallCentre/{method}", post(pass_on))
        .route("/guichet.v1.Desk/{method}", post(pass_on))
        .route_service("/grpc.health.v1.Health/{method}", grpc_health)
        .route_service(
            "/grpc.reflection.v1.ServerReflection/{method}",
            reflection_v1,
        )
        .route_service(
            "/grpc.reflection.v1alpha.ServerReflection/{method}",
            reflection_v1alpha,
        )
}

/// The services the gateway passes on.
pub const PASSED_ON: [&str; 3] = [
    "guichet.v1.CallCentre",
    "guichet.v1.Desk",
    "guichet.v1.Postal",
];

/// The gRPC health service's own name.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// How often a health watch looks at the service behind again.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The channel to the service that answers `service` (a full name).
fn channel_of(state: &AppState, service: &str) -> Option<TracedChannel> {
    match service {
        "guichet.v1.CallCentre" => Some(state.ccc_channel.clone()),
        "guichet.v1.Desk" => Some(state.pan_channel.clone()),
        "guichet.v1.Postal" => Some(state.postal_channel.clone()),
        _ => None,
    }
}

/// `/package.Service/Method` → `package.Service`.
fn service_of(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// A gRPC call the gateway does not serve: `UNIMPLEMENTED`, as a gRPC
/// answer (HTTP 200, `grpc-status: 12`), which every gRPC client reads.
pub fn unimplemented(path: &str) -> Response {
    tonic::Status::unimplemented(format!(
        "{} is not served at this gateway; reflection lists what is",
        path.trim_start_matches('/')
    ))
    .into_http::<Body>()
    .into_response()
}

/// Whether a request is a gRPC call (by its content type).
pub fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Passes one gRPC call on to the service that answers it, once the
/// policy table admits the caller on the facts its message holds
/// (`grpc_access`), with the acting agent written into the message.
pub async fn pass_on(
    State(state): State<AppState>,
    access: crate::policy::Access,
    request: Request,
) -> Response {
    let Some(channel) = channel_of(&state, service_of(request.uri().path())) else {
        return unimplemented(request.uri().path());
    };
    let (mut parts, body) = request.into_parts();
    let method = parts.uri.path().trim_start_matches('/').to_string();
    let judged = match crate::grpc_access::judge(&state, &access, &method, body).await {
        Ok(judged) => judged,
        Err(refused) => return refused.into_http::<Body>().into_response(),
    };
    let body = judged.body;
    // The message may have been rewritten: its length is the body's.
    parts.headers.remove(header::CONTENT_LENGTH);
    let request = Request::from_parts(parts, body);
    let request = request.map(tonic::body::Body::new);
    match channel.oneshot(request).await {
        Ok(response) => {
            // A wrong birth date: answered NOT_FOUND at once (trailers only).
            if let Some(keys) = &judged.tries
                && response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s.as_bytes() == b"5")
            {
                state.status_tries.fail(keys, state.clock.now());
            }
            response.map(Body::new).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "a channel service is unreachable");
            tonic::Status::unavailable("the service behind the gateway is unreachable; try again")
                .into_http::<Body>()
                .into_response()
        }
    }
}

/// Reflection for the gateway: the services passed on, and its own.
pub fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let mut listed: Vec<&str> = PASSED_ON.to_vec();
    listed.push(HEALTH_SERVICE);
    guichet_kit::grpc::reflection_listing(&listed)
}

/// Every service reflection lists: what health answers for.
pub fn listed() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = PASSED_ON.to_vec();
    all.push(HEALTH_SERVICE);
    all.extend(REFLECTION_SERVICES);
    all
}

/// The gateway's health service. A service passed on is as healthy as the
/// service behind says it is, asked at the time of the check (as `/readyz`
/// does); the services the gateway answers itself, and the gateway as a
/// whole (the empty name), serve while it answers. Any other name is
/// unknown (`NOT_FOUND`, as the health protocol says).
pub struct GatewayHealth {
    state: AppState,
    /// Ends the watch streams, so they do not hold up a graceful stop.
    shutdown: Shutdown,
}

impl GatewayHealth {
    pub fn server(state: AppState, shutdown: Shutdown) -> HealthServer<Self> {
        HealthServer::new(Self { state, shutdown })
    }

    async fn status(&self, service: &str) -> Result<ServingStatus, tonic::Status> {
        if let Some(channel) = channel_of(&self.state, service) {
            let serving = crate::health::serving(channel, service).await;
            return Ok(if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            });
        }
        if service.is_empty() || listed().contains(&service) {
            return Ok(ServingStatus::Serving);
        }
        Err(tonic::Status::not_found(format!(
            "{service} is not a service of this gateway"
        )))
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for GatewayHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let status = self.status(&request.get_ref().service).await?;
        Ok(tonic::Response::new(answer(status)))
    }

    type WatchStream = tonic::codegen::BoxStream<HealthCheckResponse>;

    /// The state now, then each change, looked at every few seconds; an
    /// unknown service is `SERVICE_UNKNOWN` without ending the call, as the
    /// protocol asks.
    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let service = request.into_inner().service;
        let health = Self {
            state: self.state.clone(),
            shutdown: self.shutdown.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = health
                    .status(&service)
                    .await
                    .unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(now) {
                    last = Some(now);
                    if tx.send(Ok(answer(now))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = tx.closed() => return,
                    _ = health.shutdown.cancelled() => return,
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
