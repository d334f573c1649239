//! The gateway's own section of the configuration: the identity provider
//! agents and machine clients sign in with, which clients are which kind of
//! software, and how long the audit log is kept.

use std::collections::HashMap;

/// What kind of software a machine client is (`GUICHET_MACHINE_CLIENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Call-centre or desk software: acts for the agent it names.
    Software(guichet_access::ClientKind),
    /// A mailroom scanning station: uploads batches and nothing else.
    ScanningStation,
}

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Sign-in and access")]
pub struct AccessSettings {
    /// The OpenID provider agents and machine clients sign in with (its
    /// issuer URL). Unset: nobody can sign in, and every agent's route
    /// answers 401 (`guichet up` starts a development issuer instead).
    #[arg(long, env = "GUICHET_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience Guichet's access tokens must be issued for.
    #[arg(long, env = "GUICHET_OIDC_AUDIENCE", default_value = "guichet")]
    pub oidc_audience: String,
    /// The gateway's client id at the provider, for agents' browser sign-in.
    #[arg(
        long,
        env = "GUICHET_OIDC_CLIENT_ID",
        default_value = "guichet-gateway"
    )]
    pub oidc_client_id: String,
    /// Its client secret (unset: browser sign-in is off; bearer tokens
    /// still work).
    #[arg(long, env = "GUICHET_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Where browsers reach the gateway (`https://guichet.example.gouv.fr`):
    /// the sign-in's redirect URI is `<this>/auth/callback`. Unset: the
    /// address the gateway listens on.
    #[arg(long, env = "GUICHET_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Hours an agent's browser session lasts.
    #[arg(long, env = "GUICHET_SESSION_HOURS", default_value_t = 8)]
    pub session_hours: u32,
    /// Machine clients, as `client_id=kind` separated by commas; kinds:
    /// call_centre_software, desk_software, scanning_station. A client
    /// token from a client not listed has no rights.
    #[arg(
        long,
        env = "GUICHET_MACHINE_CLIENTS",
        value_delimiter = ',',
        default_value = "guichet-ccc-software=call_centre_software,guichet-desk-software=desk_software,guichet-scanner-1=scanning_station"
    )]
    pub machine_clients: Vec<String>,
    /// Days the audit log keeps a row.
    #[arg(long, env = "GUICHET_AUDIT_RETENTION_DAYS", default_value_t = crate::directory::DEFAULT_AUDIT_RETENTION_DAYS)]
    pub audit_retention_days: u32,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "GUICHET_MACHINE_CLIENTS: {0:?} is not client_id=kind with kind call_centre_software, desk_software or scanning_station"
)]
pub struct BadMachineClient(pub String);

impl AccessSettings {
    /// The section from the environment alone, defaults for what is unset.
    pub fn from_env() -> Result<Self, clap::Error> {
        guichet_kit::config::from_env()
    }

    /// `GUICHET_MACHINE_CLIENTS`, read.
    pub fn clients(&self) -> Result<HashMap<String, ClientRole>, BadMachineClient> {
        use guichet_access::ClientKind;
        self.machine_clients
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (id, kind) = entry
                    .split_once('=')
                    .ok_or_else(|| BadMachineClient(entry.to_string()))?;
                let role = match kind.trim() {
                    "call_centre_software" => ClientRole::Software(ClientKind::CallCentreSoftware),
                    "desk_software" => ClientRole::Software(ClientKind::DeskSoftware),
                    "scanning_station" => ClientRole::ScanningStation,
                    _ => return Err(BadMachineClient(entry.to_string())),
                };
                Ok((id.trim().to_string(), role))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_clients_are_read_and_bad_ones_named() {
        let mut s = AccessSettings::from_env().expect("defaults");
        let clients = s.clients().expect("the defaults read");
        assert_eq!(
            clients.get("guichet-scanner-1"),
            Some(&ClientRole::ScanningStation)
        );
        s.machine_clients = vec!["x=robot".into()];
        assert!(s.clients().unwrap_err().to_string().contains("x=robot"));
    }
}
