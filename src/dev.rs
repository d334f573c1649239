//! `guichet up`'s development sign-in: when no identity provider is
//! configured, a development issuer on loopback (never in production
//! settings: `guichet serve` does not start it), the test agents' roles
//! granted, and a token for each written to the data folder for curl.

use std::path::PathBuf;
use std::time::Duration;

use guichet_access::Role;
use guichet_gateway::directory::{ChangedBy, Directory};
use guichet_identity::dev::{DevConfig, DevIssuer};
use guichet_kit::clock::SharedClock;
use guichet_kit::shutdown::Shutdown;

use crate::Settings;

/// The development agents (the same as `infra/oidc`'s) and their roles.
pub const STANDARD_GRANTS: &[(&str, Role, Option<&str>)] = &[
    ("instructor-59", Role::Instructor, Some("59")),
    ("instructor-75", Role::Instructor, Some("75")),
    ("desk-59", Role::DeskAgent, Some("59")),
    ("ccc-1", Role::CallCentreAgent, None),
    ("mailroom-1", Role::MailroomOperator, None),
    ("supervisor-59", Role::Supervisor, Some("59")),
    ("operator-1", Role::Operator, None),
];

/// The gateway's client secret at the development issuer.
pub const GATEWAY_SECRET: &str = "guichet-gateway-dev-secret";

/// Long enough for an afternoon with curl; this issuer is for development.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

pub struct DevSignIn {
    pub issuer: String,
    pub handle: DevIssuer,
    token_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot start the development issuer")]
    Start(#[source] std::io::Error),
    #[error("the gateway's store")]
    Store(#[from] guichet_kit::db::DbError),
    #[error("granting the development agents' roles")]
    Grant(#[from] guichet_gateway::directory::GrantError),
    #[error("writing the development tokens in {0}")]
    Tokens(PathBuf, #[source] std::io::Error),
}

/// Grants the standard development roles in `directory`.
pub async fn grant_standard_roles(
    directory: &Directory,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), guichet_gateway::directory::GrantError> {
    let by = ChangedBy {
        actor: "dev-issuer".into(),
        agent: None,
        client: "guichet up".into(),
    };
    for (uid, role, prefecture) in STANDARD_GRANTS {
        directory.grant(uid, *role, *prefecture, &by, now).await?;
    }
    Ok(())
}

pub async fn start_issuer(
    config: &Settings,
    clock: SharedClock,
    shutdown: Shutdown,
) -> Result<DevSignIn, DevError> {
    let mut dev = DevConfig::standard(clock.clone());
    dev.token_ttl = DEV_TOKEN_TTL;
    dev.audience = config.access.oidc_audience.clone();
    let handle = DevIssuer::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        dev,
        shutdown,
    )
    .await
    .map_err(DevError::Start)?;
    let directory = Directory::open(
        config.database_url.as_deref(),
        &config.data_dir,
        config.db_pool(),
    )
    .await?;
    grant_standard_roles(&directory, clock.now()).await?;
    directory.db().close().await;
    let token_dir = config.data_dir.join("dev-tokens");
    let fail = |e| DevError::Tokens(token_dir.clone(), e);
    std::fs::create_dir_all(&token_dir).map_err(fail)?;
    for (uid, _, _) in STANDARD_GRANTS {
        std::fs::write(token_dir.join(uid), handle.agent_token(uid)).map_err(fail)?;
    }
    for client in [
        "guichet-ccc-software",
        "guichet-desk-software",
        "guichet-scanner-1",
    ] {
        std::fs::write(token_dir.join(client), handle.client_token(client)).map_err(fail)?;
    }
    Ok(DevSignIn {
        issuer: handle.issuer().to_string(),
        handle,
        token_dir,
    })
}

impl DevSignIn {
    pub fn print_how_to_sign_in(&self, url: &str) {
        let dir = self.token_dir.display();
        println!();
        println!(
            "  DEVELOPMENT sign-in (no GUICHET_OIDC_ISSUER set): issuer {} on loopback, not for production",
            self.issuer
        );
        println!("  in a browser: {url}/auth/login (pick an agent; no password)");
        println!("  with curl, agents each have a token valid 8 hours in {dir}/<uid>:");
        for (uid, role, prefecture) in STANDARD_GRANTS {
            println!(
                "    {uid:<14} {role}{}",
                prefecture.map(|p| format!(" of {p}")).unwrap_or_default()
            );
        }
        println!(
            "  take the next case: curl -s -X POST {url}/api/v1/agent/queue/next -H \"Authorization: Bearer $(cat {dir}/instructor-59)\" -H 'content-type: application/json' -d '{{}}'"
        );
    }
}
