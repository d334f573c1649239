//! gRPC through the gateway: calls to the channel services are passed on
//! as they are (metadata, deadline and trace context included), so
//! call-centre, desk and mailroom software need one address, the gateway's, for REST
//! and gRPC alike. The gateway also answers the standard health and
//! reflection services, so grpcurl and generated clients can discover it.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use guichet_kit::grpc::TracedChannel;
use tower::ServiceExt;

use crate::server::AppState;

/// The services the gateway passes on, and where each one is.
pub const PASSED_ON: [&str; 3] = [
    "guichet.v1.CallCentre",
    "guichet.v1.Desk",
    "guichet.v1.Postal",
];

fn target(state: &AppState, path: &str) -> Option<TracedChannel> {
    let service = path.trim_start_matches('/').split('/').next()?;
    match service {
        "guichet.v1.CallCentre" => Some(state.ccc_channel.clone()),
        "guichet.v1.Desk" => Some(state.pan_channel.clone()),
        "guichet.v1.Postal" => Some(state.postal_channel.clone()),
        _ => None,
    }
}

/// Passes one gRPC call on to the service that answers it.
pub async fn pass_on(State(state): State<AppState>, request: Request) -> Response {
    let Some(channel) = target(&state, request.uri().path()) else {
        return tonic::Status::unimplemented("no such service at this gateway")
            .into_http::<Body>()
            .into_response();
    };
    let request = request.map(tonic::body::Body::new);
    match channel.oneshot(request).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a channel service is unreachable");
            tonic::Status::unavailable("the service behind the gateway is unreachable; try again")
                .into_http::<Body>()
                .into_response()
        }
    }
}

/// The gateway's own health service: serving once it is up; `/readyz`
/// tells whether the services behind it answer.
pub async fn health()
-> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in PASSED_ON.iter().chain([&""]) {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    service
}
