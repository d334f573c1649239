//! Start-up and the gRPC face of the online intake service.

use guichet_dossier::Channel;
use guichet_dossier::filing::{RawFiling, RawProvenance};
use guichet_intake::{Intake, MIGRATIONS, prepare_channel};
use guichet_kit::service::{Listen, Running, Shared, StartError, Tasks};
use guichet_kit::{Config, ServiceError};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use guichet_proto::v1::online_intake_server::{OnlineIntake, OnlineIntakeServer};

pub const SCHEMA: &str = "intake_web";

pub async fn start(
    config: &Config,
    listen: impl Into<Listen>,
    shared: &Shared,
) -> Result<Running, StartError> {
    let channel =
        prepare_channel(config, SCHEMA, &MIGRATIONS, listen, shared, Channel::Web).await?;
    let service = IntakeService {
        intake: channel.intake.clone(),
    };
    let routes = tonic::service::Routes::new(OnlineIntakeServer::new(service));
    let mut tasks = Tasks::new();
    Ok(channel
        .with_relay(&mut tasks, &shared.shutdown)
        .serve(tasks, routes, "guichet.v1.OnlineIntake", &shared.shutdown)
        .await)
}

struct IntakeService {
    intake: Intake,
}

#[tonic::async_trait]
impl OnlineIntake for IntakeService {
    async fn submit_filing(
        &self,
        request: tonic::Request<pb::SubmitFilingRequest>,
    ) -> Result<tonic::Response<pb::SubmitFilingResponse>, tonic::Status> {
        let request = request.into_inner();
        let (raw, provenance) = match (request.filing, request.raw_json.is_empty()) {
            (Some(_), false) => {
                return Err(invalid("raw_json", "send the filing or raw_json, not both"));
            }
            (None, true) => return Err(invalid("filing", "is required")),
            // From the gateway: the person's JSON, parsed here and only here.
            (None, false) => (
                raw_filing(&request.raw_json)?,
                RawProvenance::Web { account_id: None },
            ),
            (Some(filing), true) => match convert::raw_filing_from_pb(&filing) {
                (raw, None) => (raw, RawProvenance::Web { account_id: None }),
                (raw, Some(p @ RawProvenance::Web { .. })) => (raw, p),
                (_, Some(_)) => {
                    return Err(invalid(
                        "filing.provenance",
                        "the online intake service takes web filings only",
                    ));
                }
            },
        };
        let accepted = self.intake.accept(&raw, &provenance).await?;
        Ok(tonic::Response::new(pb::SubmitFilingResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }
}

/// The person's JSON, its texts checked like every other input's, then read
/// as a filing (the gateway has checked both already; another caller may not
/// have).
fn raw_filing(json: &str) -> Result<RawFiling, tonic::Status> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| invalid("raw_json", format!("is not JSON: {e}")))?;
    let mut v = guichet_dossier::Violations::new();
    guichet_dossier::text::check_json(&mut v, "", &value);
    if !v.is_empty() {
        return Err(ServiceError::invalid(v).into());
    }
    serde_json::from_value(value).map_err(|e| invalid("raw_json", format!("is not a filing: {e}")))
}

fn invalid(field: &str, problem: impl Into<String>) -> tonic::Status {
    ServiceError::invalid(guichet_dossier::Violations::one(field, problem)).into()
}
