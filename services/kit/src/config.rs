//! One typed configuration, read from `GUICHET_*` environment variables, each
//! also a command-line flag. The same names in every service and every doc.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, clap::Args)]
pub struct Config {
    /// RabbitMQ URL: amqps://user:pass@host:port/vhost (TLS), or amqp://
    /// to a broker on this machine (or with GUICHET_AMQP_ALLOW_PLAINTEXT).
    /// Unset: in-process bus.
    #[arg(long, env = "GUICHET_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// PEM file of the authorities that sign the broker's certificate
    /// (amqps://), trusted beside the system's.
    #[arg(long, env = "GUICHET_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,

    /// Accept amqp:// (no TLS) to a broker on another host: a private
    /// network only (the compose file's).
    #[arg(long, env = "GUICHET_AMQP_ALLOW_PLAINTEXT", default_value_t = false)]
    pub amqp_allow_plaintext: bool,

    /// Each service's own user on the broker (`GUICHET_AMQP_USER_<SERVICE>`).
    #[command(flatten)]
    pub bus_users: crate::bus::BusUsers,

    /// PostgreSQL URL. Unset: SQLite files in the data folder.
    #[arg(long, env = "GUICHET_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Folder for embedded storage and documents.
    #[arg(long, env = "GUICHET_DATA_DIR", default_value = "./.guichet")]
    pub data_dir: PathBuf,

    /// Where documents are kept: `GUICHET_DOCUMENT_STORE` (S3), or the
    /// `documents` folder of the data folder.
    #[command(flatten)]
    pub documents: crate::documents::DocumentSettings,

    /// The key persons' own links (to an appointment, a report) and their
    /// codes are signed with: at least 32 characters, the same for every
    /// gateway instance and the notifier (which sends the links). Unset:
    /// one is made once and kept in the data folder.
    #[arg(long, env = "GUICHET_LINK_KEY", hide_env_values = true)]
    pub link_key: Option<String>,

    /// The key set persons' documents (receipts, attestations) are signed
    /// with: a JSON file holding the current Ed25519 key and the public
    /// halves of earlier ones (`guichet keys rotate`). The gateway publishes
    /// the public keys at /.well-known/jwks.json. Unset: <data>/signing-keys.json,
    /// made on first use.
    #[arg(long, env = "GUICHET_SIGNING_KEYS")]
    pub signing_keys: Option<PathBuf>,

    /// Gateway HTTP address: REST, pages, gRPC.
    #[arg(long, env = "GUICHET_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Where `serve intake-web` listens for gRPC.
    #[arg(
        long,
        env = "GUICHET_INTAKE_WEB_ADDR",
        default_value = "127.0.0.1:50061"
    )]
    pub intake_web_addr: SocketAddr,

    /// Where `serve instruction` listens for gRPC.
    #[arg(
        long,
        env = "GUICHET_INSTRUCTION_ADDR",
        default_value = "127.0.0.1:50062"
    )]
    pub instruction_addr: SocketAddr,

    /// Where `serve gateway` finds the online intake service.
    #[arg(
        long,
        env = "GUICHET_INTAKE_WEB_URL",
        default_value = "http://127.0.0.1:50061"
    )]
    pub intake_web_url: String,

    /// Where `serve gateway` finds the instruction service.
    #[arg(
        long,
        env = "GUICHET_INSTRUCTION_URL",
        default_value = "http://127.0.0.1:50062"
    )]
    pub instruction_url: String,

    /// Deliveries of one message before the broker dead-letters it.
    #[arg(long, env = "GUICHET_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,

    /// Unacknowledged messages a consumer may hold at once.
    #[arg(long, env = "GUICHET_CONSUMER_PREFETCH", default_value_t = 256)]
    pub consumer_prefetch: u16,

    /// Messages the outbox relay publishes per round trip.
    #[arg(long, env = "GUICHET_OUTBOX_BATCH", default_value_t = 256)]
    pub outbox_batch: u32,

    /// Connections per service to PostgreSQL.
    #[arg(long, env = "GUICHET_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// Longest a PostgreSQL statement may run, lock waits included, and
    /// longest a transaction may sit idle, in milliseconds; 0 for no bound.
    /// Past it the server cancels the statement (or ends the session) and
    /// the caller answers 503 or tries again, instead of waiting for ever on
    /// a lock or a stuck server. Migrations are not bound.
    #[arg(
        long,
        env = "GUICHET_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub db_statement_timeout_ms: u64,

    /// Longest time a request may take at the gateway, in milliseconds.
    #[arg(long, env = "GUICHET_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Most requests the gateway works on at once, uploads apart; one more
    /// is refused at once (503 with `Retry-After`, gRPC `UNAVAILABLE`)
    /// rather than queued. Under it the bound adapts to
    /// `GUICHET_LATENCY_TARGET_MS`. Health checks and metrics are never
    /// refused. Past what the machine serves, more places only make the
    /// requests accepted wait longer (see BENCHMARKS.md).
    #[arg(long, env = "GUICHET_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Most uploads the gateway takes at once: requests with a body over
    /// 64 KiB or of unknown length, and the mailroom's scanned batches,
    /// whose time is the client's link. They have their own places, so
    /// slow lines never hold the filings' and looks' places; one more is
    /// refused at once (503 with `Retry-After`).
    #[arg(long, env = "GUICHET_MAX_UPLOADS_IN_FLIGHT", default_value_t = 128)]
    pub max_uploads_in_flight: usize,

    /// The answer time the gateway and each gRPC service keep nine answers
    /// in ten under, in milliseconds: while more take longer, they take
    /// fewer requests at once and refuse the rest (503, `UNAVAILABLE`);
    /// while they are fast they take more, up to their maximum.
    #[arg(long, env = "GUICHET_LATENCY_TARGET_MS", default_value_t = 200)]
    pub latency_target_ms: u64,

    /// Most calls each gRPC service (intake, instruction, notifier) works on
    /// at once (under it the bound adapts to `GUICHET_LATENCY_TARGET_MS`); one
    /// more is refused at once with `UNAVAILABLE` and a
    /// `retry-after` of one second, instead of waiting in line.
    #[arg(long, env = "GUICHET_GRPC_MAX_IN_FLIGHT", default_value_t = 64)]
    pub grpc_max_in_flight: usize,

    /// Wrong birth dates the status look-up takes per reference, and per
    /// client address, within `GUICHET_STATUS_WINDOW_S`; then 429.
    #[arg(long, env = "GUICHET_STATUS_TRIES", default_value_t = 5)]
    pub status_tries: u32,

    /// Unknown codes the public attestation check takes per client address
    /// within `GUICHET_STATUS_WINDOW_S`; then 429.
    #[arg(long, env = "GUICHET_ATTESTATION_TRIES", default_value_t = 20)]
    pub attestation_tries: u32,

    /// The window, in seconds, over which wrong birth dates and unknown
    /// attestation codes are counted.
    #[arg(long, env = "GUICHET_STATUS_WINDOW_S", default_value_t = 900)]
    pub status_window_s: u64,

    /// Seconds between two sweeps that issue due attestations and close files
    /// whose deadline passed.
    #[arg(long, env = "GUICHET_SWEEP_INTERVAL_S", default_value_t = 300)]
    pub sweep_interval_s: u64,

    /// Where `serve intake-ccc` listens for gRPC.
    #[arg(
        long,
        env = "GUICHET_INTAKE_CCC_ADDR",
        default_value = "127.0.0.1:50063"
    )]
    pub intake_ccc_addr: std::net::SocketAddr,

    /// Where `serve intake-pan` listens for gRPC.
    #[arg(
        long,
        env = "GUICHET_INTAKE_PAN_ADDR",
        default_value = "127.0.0.1:50064"
    )]
    pub intake_pan_addr: std::net::SocketAddr,

    /// Where `serve gateway` and `serve intake-pan` (checking the report a
    /// booking names) find the call-centre service.
    #[arg(
        long,
        env = "GUICHET_INTAKE_CCC_URL",
        default_value = "http://127.0.0.1:50063"
    )]
    pub intake_ccc_url: String,

    /// Where `serve gateway` and `serve intake-ccc` (checking the appointment
    /// offered to a report) find the desk service.
    #[arg(
        long,
        env = "GUICHET_INTAKE_PAN_URL",
        default_value = "http://127.0.0.1:50064"
    )]
    pub intake_pan_url: String,

    /// Where `serve intake-postal` listens for gRPC.
    #[arg(
        long,
        env = "GUICHET_INTAKE_POSTAL_ADDR",
        default_value = "127.0.0.1:50065"
    )]
    pub intake_postal_addr: std::net::SocketAddr,

    /// Where `serve gateway` finds the postal service.
    #[arg(
        long,
        env = "GUICHET_INTAKE_POSTAL_URL",
        default_value = "http://127.0.0.1:50065"
    )]
    pub intake_postal_url: String,

    /// Where `serve notifier` listens for gRPC.
    #[arg(long, env = "GUICHET_NOTIFIER_ADDR", default_value = "127.0.0.1:50066")]
    pub notifier_addr: std::net::SocketAddr,

    /// Where `serve gateway` finds the notifier (what was sent to whom).
    #[arg(
        long,
        env = "GUICHET_NOTIFIER_URL",
        default_value = "http://127.0.0.1:50066"
    )]
    pub notifier_url: String,

    /// Where `serve intake-web` and `serve instruction` answer `/metrics`
    /// (the gateway serves it on its HTTP address). Unset: 127.0.0.1:9161
    /// for intake-web, 127.0.0.1:9162 for instruction.
    #[arg(long, env = "GUICHET_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// OTLP/gRPC collector to export traces to (`http://127.0.0.1:4317`).
    /// Unset: spans still carry trace ids through every hop, nothing is exported.
    #[arg(long, env = "GUICHET_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Log format: `text` for a terminal, `json` for collectors.
    #[arg(long, env = "GUICHET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Grace period to drain in-flight work at shutdown, in milliseconds.
    #[arg(long, env = "GUICHET_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
}

/// Written out by hand so that a password in a URL never reaches a log line
/// or a panic message.
impl Config {
    /// Where the document signing keys are.
    pub fn signing_keys_path(&self) -> PathBuf {
        self.signing_keys
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing-keys.json"))
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("amqp_ca_file", &self.amqp_ca_file)
            .field("amqp_allow_plaintext", &self.amqp_allow_plaintext)
            .field("bus_users", &self.bus_users)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field("documents", &self.documents)
            .field("link_key", &self.link_key.as_ref().map(|_| "(set)"))
            .field("signing_keys", &self.signing_keys)
            .field("http_addr", &self.http_addr)
            .field("intake_web_addr", &self.intake_web_addr)
            .field("instruction_addr", &self.instruction_addr)
            .field("intake_web_url", &self.intake_web_url)
            .field("instruction_url", &self.instruction_url)
            .field("delivery_limit", &self.delivery_limit)
            .field("consumer_prefetch", &self.consumer_prefetch)
            .field("outbox_batch", &self.outbox_batch)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_statement_timeout_ms", &self.db_statement_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_uploads_in_flight", &self.max_uploads_in_flight)
            .field("latency_target_ms", &self.latency_target_ms)
            .field("grpc_max_in_flight", &self.grpc_max_in_flight)
            .field("status_tries", &self.status_tries)
            .field("attestation_tries", &self.attestation_tries)
            .field("status_window_s", &self.status_window_s)
            .field("sweep_interval_s", &self.sweep_interval_s)
            .field("intake_ccc_addr", &self.intake_ccc_addr)
            .field("intake_pan_addr", &self.intake_pan_addr)
            .field("intake_ccc_url", &self.intake_ccc_url)
            .field("intake_pan_url", &self.intake_pan_url)
            .field("intake_postal_addr", &self.intake_postal_addr)
            .field("intake_postal_url", &self.intake_postal_url)
            .field("notifier_addr", &self.notifier_addr)
            .field("notifier_url", &self.notifier_url)
            .field("metrics_addr", &self.metrics_addr)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("log_format", &self.log_format)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .finish()
    }
}

/// `scheme://user:password@host/...` with the password replaced, for what is
/// shown or logged; a URL without one, or not a URL, as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A set of settings (the common one, or a service's own section) from the
/// environment alone, with the defaults for what is not set.
pub fn from_env<T: clap::Args>() -> Result<T, clap::Error> {
    #[derive(clap::Parser)]
    struct Only<T: clap::Args> {
        #[command(flatten)]
        settings: T,
    }
    <Only<T> as clap::Parser>::try_parse_from(["guichet"]).map(|o| o.settings)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The configuration from the environment alone (no flags), as tests and
    /// embedders use it.
    pub fn from_env() -> Result<Self, clap::Error> {
        from_env()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The database pool this configuration asks for: its size and bound.
    pub fn db_pool(&self) -> crate::db::Pool {
        crate::db::Pool {
            size: self.db_pool_size,
            statement_timeout: (self.db_statement_timeout_ms > 0)
                .then(|| Duration::from_millis(self.db_statement_timeout_ms)),
        }
    }

    pub fn latency_target(&self) -> Duration {
        Duration::from_millis(self.latency_target_ms.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_never_shown() {
        for (url, shown) in [
            (
                "postgres://guichet:s3cret@db:5432/guichet",
                "postgres://guichet:***@db:5432/guichet",
            ),
            (
                "amqp://svc:p%40ss@rabbit/guichet",
                "amqp://svc:***@rabbit/guichet",
            ),
            ("smtp://relay:25", "smtp://relay:25"),
            ("amqp://user@host/vhost", "amqp://user@host/vhost"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let mut config: Config = from_env().expect("defaults");
        config.database_url = Some("postgres://guichet:s3cret@db/guichet".into());
        config.amqp_url = Some("amqp://svc:hunter2@rabbit/guichet".into());
        config.documents.s3_access_key_id = Some("AKIDEXAMPLE".into());
        config.documents.s3_secret_access_key = Some("wJalrXUtnFEMI".into());
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret")
                && !debug.contains("hunter2")
                && !debug.contains("AKIDEXAMPLE")
                && !debug.contains("wJalrXUtnFEMI"),
            "{debug}"
        );
        assert!(
            debug.contains("postgres://guichet:***@db/guichet"),
            "{debug}"
        );
    }
}
