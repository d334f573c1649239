//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: every
//! service behind the gateway answers its gRPC health check).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use guichet_kit::grpc::TracedChannel;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::state::AppState;

/// How long a service behind the gateway has to answer its health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Whether the service at `channel` says `service` is serving, within
/// `CHECK_TIMEOUT`: an unreachable or silent service is not.
pub(crate) async fn serving(channel: TracedChannel, service: &str) -> bool {
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: service.to_string(),
    });
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, call).await,
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, service, channel) in [
        (
            "intake-web",
            "guichet.v1.OnlineIntake",
            state.intake_channel.clone(),
        ),
        (
            "instruction",
            "guichet.v1.InstructionReader",
            state.instruction_channel.clone(),
        ),
        (
            "intake-ccc",
            "guichet.v1.CallCentre",
            state.ccc_channel.clone(),
        ),
        ("intake-pan", "guichet.v1.Desk", state.pan_channel.clone()),
        (
            "intake-postal",
            "guichet.v1.Postal",
            state.postal_channel.clone(),
        ),
    ] {
        let up = serving(channel, service).await;
        ready &= up;
        checks.insert(name.into(), json!(if up { "ready" } else { "unavailable" }));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "services": checks})))
}
