//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: every
//! service behind the gateway answers its gRPC health check).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::server::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, service, client) in [
        (
            "intake-web",
            "guichet.v1.OnlineIntake",
            state.intake_health.clone(),
        ),
        (
            "instruction",
            "guichet.v1.InstructionReader",
            state.instruction_health.clone(),
        ),
        (
            "intake-ccc",
            "guichet.v1.CallCentre",
            HealthClient::new(state.ccc_channel.clone()),
        ),
        (
            "intake-pan",
            "guichet.v1.Desk",
            HealthClient::new(state.pan_channel.clone()),
        ),
        (
            "intake-postal",
            "guichet.v1.Postal",
            HealthClient::new(state.postal_channel.clone()),
        ),
    ] {
        let mut client = client;
        let call = client.check(HealthCheckRequest {
            service: service.to_string(),
        });
        let serving = matches!(
            tokio::time::timeout(Duration::from_secs(2), call).await,
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
        );
        ready &= serving;
        checks.insert(
            name.into(),
            json!(if serving { "ready" } else { "unavailable" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "services": checks})))
}
