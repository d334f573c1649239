//! What every handler shares: clients of the services behind the gateway,
//! the clock and the figures. Built once at start-up from the services'
//! addresses.

use std::sync::Arc;

use guichet_kit::Metrics;
use guichet_kit::clock::SharedClock;
use guichet_kit::grpc::{self, TracedChannel};
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_client::DeskClient;
use guichet_proto::v1::instruction_desk_client::InstructionDeskClient;
use guichet_proto::v1::instruction_reader_client::InstructionReaderClient;
use guichet_proto::v1::notifier_client::NotifierClient;
use guichet_proto::v1::online_intake_client::OnlineIntakeClient;
use guichet_proto::v1::postal_client::PostalClient;

use crate::caller::Authenticator;
use crate::tries::Tries;

/// Largest scanned batch accepted: a stack of envelopes at 300 dpi.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;

/// Where the services behind the gateway listen (`http://host:port`).
#[derive(Debug, Clone)]
pub struct Targets {
    pub intake_web: String,
    pub instruction: String,
    pub intake_ccc: String,
    pub intake_pan: String,
    pub intake_postal: String,
    pub notifier: String,
}

/// A service address that is not a usable URL.
#[derive(Debug, thiserror::Error)]
#[error("{url} is not a usable service URL")]
pub struct BadTarget {
    pub url: String,
    #[source]
    pub source: guichet_kit::grpc::TargetError,
}

/// What the gateway holds besides its clients: the persons' links' key,
/// the documents' (public) signing keys, and where uploads go.
pub struct Resources {
    pub links: Arc<crate::links::LinkKey>,
    pub signing_keys: std::path::PathBuf,
    pub uploads: Arc<crate::uploads::Uploads>,
}

/// What every handler shares, behind one pointer: a request's layers and
/// its handler each take the state, and a copy of every client (eleven
/// channels, each a queue's sender) per taking was a tenth of the
/// gateway's CPU per filing (`BENCHMARKS.md`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub intake: OnlineIntakeClient<TracedChannel>,
    pub instruction: InstructionReaderClient<TracedChannel>,
    pub desk: InstructionDeskClient<TracedChannel>,
    pub intake_channel: TracedChannel,
    pub instruction_channel: TracedChannel,
    pub ccc: CallCentreClient<TracedChannel>,
    pub ccc_channel: TracedChannel,
    pub pan: DeskClient<TracedChannel>,
    pub pan_channel: TracedChannel,
    pub postal: PostalClient<TracedChannel>,
    pub postal_channel: TracedChannel,
    /// What was sent to people, and where each message stands.
    pub notifier: NotifierClient<TracedChannel>,
    pub clock: SharedClock,
    /// This process's figures: in `guichet up`, every service's.
    pub metrics: Metrics,
    /// Wrong birth dates per reference and per client address.
    pub status_tries: Arc<Tries>,
    /// Unknown attestation codes per client address.
    pub attestation_tries: Arc<Tries>,
    /// Persons' codes sent per file (so a phone cannot be flooded).
    pub code_sends: Arc<Tries>,
    /// Who is asking: tokens, agents' roles, the audit log.
    pub auth: Arc<Authenticator>,
    /// The key of persons' own links (appointments, reports).
    pub links: Arc<crate::links::LinkKey>,
    /// The documents' signing key set, read at each request for its public
    /// keys: a rotation is published without a restart.
    pub signing_keys: std::path::PathBuf,
    /// Where uploads go, and what they may be.
    pub uploads: Arc<crate::uploads::Uploads>,
}

impl AppState {
    /// Clients of every service at `targets`. Channels connect lazily: a
    /// service that is not up yet makes its routes answer 503, not the
    /// gateway fail to start.
    pub fn connect(
        targets: &Targets,
        clock: SharedClock,
        metrics: Metrics,
        status_tries: Arc<Tries>,
        attestation_tries: Arc<Tries>,
        auth: Arc<Authenticator>,
        keys: Resources,
    ) -> Result<Self, BadTarget> {
        let connect = |url: &str| {
            grpc::channel(url).map_err(|source| BadTarget {
                url: url.to_string(),
                source,
            })
        };
        let intake = connect(&targets.intake_web)?;
        let instruction = connect(&targets.instruction)?;
        let ccc = connect(&targets.intake_ccc)?;
        let pan = connect(&targets.intake_pan)?;
        let postal = connect(&targets.intake_postal)?;
        let notifier = connect(&targets.notifier)?;
        Ok(AppState(Arc::new(Shared {
            intake: OnlineIntakeClient::new(intake.clone()),
            instruction: InstructionReaderClient::new(instruction.clone()),
            desk: InstructionDeskClient::new(instruction.clone()),
            intake_channel: intake,
            instruction_channel: instruction,
            ccc: CallCentreClient::new(ccc.clone()),
            ccc_channel: ccc,
            pan: DeskClient::new(pan.clone()),
            pan_channel: pan,
            postal: PostalClient::new(postal.clone())
                .max_decoding_message_size(MAX_UPLOAD_BYTES)
                .max_encoding_message_size(MAX_UPLOAD_BYTES),
            postal_channel: postal,
            notifier: NotifierClient::new(notifier),
            clock,
            metrics,
            status_tries,
            attestation_tries,
            code_sends: Arc::new(Tries::new(
                crate::person_code::SENDS_PER_WINDOW,
                crate::person_code::SENDS_WINDOW,
            )),
            auth,
            links: keys.links,
            signing_keys: keys.signing_keys,
            uploads: keys.uploads,
        })))
    }
}
