//! `guichet`: run the mesh, or one service of it.

use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use guichet::Settings;
use guichet_kit::service::Shared;
use guichet_kit::shutdown::{Shutdown, cancel_on_signal};
use guichet_kit::{Config, Metrics, clock, telemetry};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    name = "guichet",
    version,
    about = "Residence-permit intake on every channel, one equal-rights queue"
)]
struct Cli {
    #[command(flatten)]
    config: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every service in this process.
    Up,
    /// Run one service alone (the production shape: one process each).
    Serve {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(guichet::SERVICE_NAMES))]
        service: String,
    },
    /// End-to-end throughput and latency of the mesh on RabbitMQ and
    /// PostgreSQL, beside the bare pipeline measured in the same run.
    Bench(guichet_tools::bench::BenchArgs),
    /// Pages per minute per postal scanning station, on the real mesh.
    BenchPostal(guichet_tools::bench::postal::PostalBenchArgs),
    /// Replay a synthetic year of filings through the real rules: days to
    /// decision and gap days per channel (by the attestations issued and by
    /// those that reached the person), Guichet beside the manual baseline.
    Simulate(guichet_tools::simulate::SimulateArgs),
    /// Titles known to the system, whose holders are warned before expiry.
    Titles {
        #[command(subcommand)]
        command: TitlesCommand,
    },
    /// Agents' roles, as Guichet assigns them: the first supervisor and the
    /// national roles are granted here; supervisors grant the rest of their
    /// prefectures' through the API. Every change is in the audit log.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Is this receipt or attestation genuine? Reads its signed 2D code
    /// (PDF, or a scan or photo), checks the signature with the published
    /// keys, and that the paper prints what the code says. Exit status 0
    /// genuine, 1 altered or refused, 2 no code found.
    Verify(guichet_tools::verify::VerifyArgs),
    /// The keys persons' documents are signed with.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The dead-letter queue (guichet.dead.letters): what is in it and why,
    /// replay to where it came from, or drop.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every dead letter: message id, routing key, reason, first death, size.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Look at this many messages at most.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// Publish the selected messages again to the exchange and routing key
    /// they were first published with; each leaves the dead-letter queue
    /// only once that publish is confirmed.
    Replay {
        #[command(flatten)]
        selection: DlqSelection,
    },
    /// Remove the selected messages for good. Without --yes, only says what
    /// would be dropped.
    Drop {
        #[command(flatten)]
        selection: DlqSelection,
        /// Really drop them.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args)]
struct DlqSelection {
    /// Message ids, as `guichet dlq list` shows them.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Every message in the dead-letter queue.
    #[arg(long)]
    all: bool,
    /// Look at this many messages at most.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
}

impl DlqSelection {
    fn selection(&self) -> guichet_tools::dlq::Selection {
        if self.all {
            guichet_tools::dlq::Selection::All
        } else {
            guichet_tools::dlq::Selection::Ids(self.ids.iter().cloned().collect())
        }
    }
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Give an agent (their identity provider's uid) a role; a
    /// prefecture's role (instructor, desk_agent, supervisor) needs the
    /// department code, a national one (call_centre_agent,
    /// mailroom_operator, operator) none.
    Grant {
        uid: String,
        role: guichet_access::Role,
        prefecture: Option<String>,
    },
    /// Take a role back.
    Revoke {
        uid: String,
        role: guichet_access::Role,
        prefecture: Option<String>,
    },
    /// Every agent with their roles.
    List {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// A new key signs from now on; earlier keys stay published, so papers
    /// they signed still check. Restart the notifier afterwards: it signs
    /// with the key it loaded (the gateway publishes the new set at once).
    Rotate,
    /// The published keys (the JWKS the gateway serves).
    Show,
}

#[derive(Subcommand)]
enum TitlesCommand {
    /// Import titles from the legacy system: a CSV file with a header line,
    /// or a JSON array, one title per row (see examples/titles/).
    Import { file: std::path::PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let service_name = match &cli.command {
        Command::Serve { service } => guichet::service(service).map_or("guichet", |s| s.log_name),
        _ => "guichet",
    };
    let _telemetry = match cli.command {
        // Their standard output is the answer (a table, or JSON): logs go to
        // standard error, warnings only unless RUST_LOG says otherwise.
        Command::Dlq { .. }
        | Command::Bench(_)
        | Command::BenchPostal(_)
        | Command::Verify(_)
        | Command::Keys { .. } => telemetry::init_for_tool(cli.config.log_format),
        _ => telemetry::init(&cli.config, service_name),
    };
    let shutdown = Shutdown::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let mut config = cli.config;
    let clock = clock::system();
    let started = Instant::now();
    let metrics = Metrics::new();
    let supervised = match cli.command {
        Command::Up => {
            let dev = match config.access.oidc_issuer {
                Some(_) => None,
                None => {
                    let dev = guichet::dev::start_issuer(&config, clock.clone(), shutdown.clone())
                        .await
                        .context("starting the development issuer")?;
                    config.access.oidc_issuer = Some(dev.issuer.clone());
                    // The development issuer knows the gateway as its
                    // client, on loopback.
                    config
                        .access
                        .oidc_client_secret
                        .get_or_insert_with(|| guichet::dev::GATEWAY_SECRET.to_string());
                    let port = config.http_addr.port();
                    config
                        .access
                        .public_url
                        .get_or_insert_with(|| format!("http://127.0.0.1:{port}"));
                    Some(dev)
                }
            };
            let shared = Shared {
                bus: guichet_kit::service::open_bus(&config, "guichet").await?,
                clock,
                shutdown: shutdown.clone(),
                metrics,
            };
            let mesh = guichet::start_mesh(&config, config.http_addr, &shared)
                .await
                .context("starting the mesh")?;
            let url = format!("http://{}", mesh.http_addr);
            println!(
                "Guichet is up at {url} ({}; ready in {} ms)",
                backends(&config),
                started.elapsed().as_millis()
            );
            println!("  persons' pages:  {url}/ (French) and {url}/en/ (English)");
            println!("  API description: {url}/api/openapi.json");
            println!("  agents:          {url}/agents (sign in as a development agent)");
            println!("  open data:       {url}/donnees");
            println!("  operators:       {url}/ops and {url}/metrics");
            println!(
                "  mailroom:        {url}/api/v1/postal/keying (forms: POST {url}/api/v1/postal/forms)"
            );
            println!(
                "  file a dossier:  curl -s -X POST {url}/api/v1/dossiers -H 'content-type: application/json' --data @examples/filings/renewal-employee.json"
            );
            let data = config.data_dir.display();
            println!(
                "  what people are sent: {}, {}",
                match &config.notifier.smtp_url {
                    Some(_) => "e-mail to GUICHET_SMTP_URL".to_string(),
                    None => format!("e-mail as .eml files in {data}/mail"),
                },
                match &config.notifier.sms_url {
                    Some(_) => "SMS to GUICHET_SMS_URL".to_string(),
                    None => format!("SMS as text files in {data}/sms"),
                }
            );
            if let Some(dev) = &dev {
                dev.print_how_to_sign_in(&url);
            }
            mesh.tasks
        }
        Command::Bench(args) => {
            let report = guichet_tools::bench::run(&args)
                .await
                .context("benchmarking")?;
            if args.json {
                guichet_tools::print(&serde_json::to_string_pretty(&report)?)?;
            } else {
                guichet_tools::print(&report.table())?;
            }
            return Ok(());
        }
        Command::BenchPostal(args) => {
            let report = guichet_tools::bench::postal::run(&args)
                .await
                .context("benchmarking the postal stations")?;
            if args.json {
                guichet_tools::print(&serde_json::to_string_pretty(&report)?)?;
            } else {
                guichet_tools::print(&report.table())?;
            }
            return Ok(());
        }
        Command::Simulate(args) => {
            guichet_tools::print(&guichet_tools::simulate::run(&args).context("simulating")?)?;
            return Ok(());
        }
        Command::Titles {
            command: TitlesCommand::Import { file },
        } => {
            return import_titles(&config, &file, clock.as_ref()).await;
        }
        Command::Dlq { command } => return dead_letters(&config, command).await,
        Command::Verify(args) => {
            let code = guichet_tools::verify::run(args, config.access.public_url.as_deref())
                .await
                .context("verifying")?;
            std::process::exit(i32::from(code));
        }
        Command::Keys { command } => {
            let path = config.signing_keys_path();
            match command {
                KeysCommand::Rotate => {
                    guichet_kit::seal::KeySet::load_or_create(&path, clock.now())?;
                    let kid = guichet_kit::seal::KeySet::rotate(&path, clock.now())?;
                    println!(
                        "{kid} signs from now on (in {}); earlier keys stay published. Restart the notifier.",
                        path.display()
                    );
                }
                KeysCommand::Show => {
                    let keys = guichet_kit::seal::KeySet::load(&path)?;
                    println!("{}", serde_json::to_string_pretty(&keys.jwks())?);
                }
            }
            return Ok(());
        }
        Command::Agents { command } => return agents(&config, command, clock.as_ref()).await,
        Command::Serve { service } => {
            let service = guichet::service(&service).context("no such service")?;
            serve_alone(service, &config, clock, metrics, &shutdown).await?
        }
    };
    // Until a signal, or until a service fails: then the process exits
    // non-zero, for its supervisor to start it again.
    guichet_kit::service::wait_supervised(supervised, shutdown, config.shutdown_grace())
        .await
        .context("a service stopped")?;
    Ok(())
}

/// `guichet agents …`, on the gateway's store directly.
async fn agents(
    config: &Settings,
    command: AgentsCommand,
    clock: &dyn guichet_kit::clock::Clock,
) -> anyhow::Result<()> {
    use guichet_gateway::directory::{ChangedBy, Directory};
    let directory = Directory::open(
        config.database_url.as_deref(),
        &config.data_dir,
        config.db_pool(),
    )
    .await
    .context("opening the gateway's store")?;
    let by = ChangedBy {
        actor: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        agent: None,
        client: "command line".into(),
    };
    match command {
        AgentsCommand::Grant {
            uid,
            role,
            prefecture,
        } => {
            let added = directory
                .grant(&uid, role, prefecture.as_deref(), &by, clock.now())
                .await?;
            println!(
                "{uid}: {role}{} {}",
                prefecture.map(|p| format!(" in {p}")).unwrap_or_default(),
                if added { "granted" } else { "was already held" }
            );
        }
        AgentsCommand::Revoke {
            uid,
            role,
            prefecture,
        } => {
            let removed = directory
                .revoke(&uid, role, prefecture.as_deref(), &by, clock.now())
                .await?;
            println!(
                "{uid}: {role}{} {}",
                prefecture.map(|p| format!(" in {p}")).unwrap_or_default(),
                if removed { "revoked" } else { "was not held" }
            );
        }
        AgentsCommand::List { json } => {
            let all = directory.grants(None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no agent has a role yet: guichet agents grant <uid> <role> [prefecture]");
            } else {
                for (uid, grants) in all {
                    let roles: Vec<String> = grants
                        .iter()
                        .map(|g| {
                            if g.prefecture.is_empty() {
                                g.role.clone()
                            } else {
                                format!("{} {}", g.role, g.prefecture)
                            }
                        })
                        .collect();
                    println!("{uid:<24} {}", roles.join(", "));
                }
            }
        }
    }
    Ok(())
}

/// `guichet serve <service>`: the service alone, on its own shutdown token
/// (a child of the process's) so its supervisor can stop it, with
/// `/metrics` on its own address.
async fn serve_alone(
    service: &'static guichet::Service,
    config: &Settings,
    clock: guichet_kit::clock::SharedClock,
    metrics: Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<JoinSet<Result<(), guichet_kit::service::TaskEnded>>> {
    let stop = shutdown.child_token();
    let bus = if service.uses_bus {
        shared_broker(config, service.name).await?
    } else {
        std::sync::Arc::new(guichet_kit::bus::NoBus(service.name))
    };
    let shared = Shared {
        bus,
        clock,
        shutdown: stop.clone(),
        metrics,
    };
    let addr = (service.listen_on)(config);
    let (listener, _) = guichet_kit::service::Listen::Addr(addr)
        .open()
        .await
        .map_err(|(addr, source)| guichet_kit::service::StartError::Bind { addr, source })
        .with_context(|| format!("starting {}", service.name))?;
    let peers = guichet::configured_peers(config);
    let mut started = (service.start)(config, listener, &peers, &shared)
        .await
        .with_context(|| format!("starting {}", service.name))?;
    if let Some(port) = service.metrics_port {
        let default = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        serve_metrics(config, &shared, default, &mut started.tasks).await?;
    }
    let mut supervised = JoinSet::new();
    supervised.spawn(guichet_kit::service::supervise(
        service.name,
        started.tasks,
        started.health,
        stop,
        shutdown.clone(),
    ));
    Ok(supervised)
}

/// A service run alone answers `/metrics` on its own address.
async fn serve_metrics(
    config: &Config,
    shared: &Shared,
    default: std::net::SocketAddr,
    tasks: &mut guichet_kit::service::Tasks,
) -> anyhow::Result<()> {
    let addr = config.metrics_addr.unwrap_or(default);
    let (listener, bound) = guichet_kit::grpc::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    tracing::info!(%bound, "metrics at /metrics");
    tasks.spawn(
        "metrics",
        guichet_kit::metrics::serve(shared.metrics.clone(), listener, shared.shutdown.clone()),
    );
    Ok(())
}

/// `serve` runs one service per process: they can only meet on a real broker.
async fn shared_broker(config: &Config, name: &str) -> anyhow::Result<guichet_kit::bus::SharedBus> {
    if config.amqp_url.is_none() {
        return Err(guichet_kit::service::StartError::NeedsBroker(name.to_string()).into());
    }
    Ok(guichet_kit::service::open_bus(config, name).await?)
}

/// What `up` runs on, in words.
fn backends(config: &Config) -> String {
    let dir = config.data_dir.display();
    match (&config.database_url, &config.amqp_url) {
        (None, None) => format!("embedded: SQLite and the in-process bus in {dir}"),
        (Some(_), Some(_)) => "PostgreSQL and RabbitMQ".to_string(),
        (Some(_), None) => format!("PostgreSQL, and the in-process bus in {dir}"),
        (None, Some(_)) => format!("RabbitMQ, and SQLite in {dir}"),
    }
}

/// Titles written per transaction by `guichet titles import`.
const IMPORT_CHUNK: usize = 1_000;

/// `guichet titles import FILE`: checks every row, records the good ones,
/// and says which lines were refused and why.
async fn import_titles(
    config: &Config,
    file: &std::path::Path,
    clock: &dyn guichet_kit::Clock,
) -> anyhow::Result<()> {
    use guichet_instruction::titles;
    let (records, rejected) = titles::read_file(file, clock.today())?;
    let db = guichet_instruction::server::open_database(config)
        .await
        .context("opening the instruction database")?;
    // In chunks, so a large export shows how far it got (on a terminal).
    let (mut imported, mut known) = (0, 0);
    let mut progress =
        guichet_tools::progress::Progress::new("importing titles", Some(records.len() as u64));
    for chunk in records.chunks(IMPORT_CHUNK) {
        let (i, k) = titles::record(&db, chunk, "imported", None, clock.now()).await?;
        (imported, known) = (imported + i, known + k);
        progress.add(chunk.len() as u64);
    }
    progress.finish();
    println!(
        "{imported} titles imported, {known} already known, {} rows refused",
        rejected.len()
    );
    for r in &rejected {
        println!("  line {}: {}", r.line, r.problems);
    }
    db.close().await;
    if !rejected.is_empty() {
        anyhow::bail!("{} rows of {} were refused", rejected.len(), file.display());
    }
    Ok(())
}

/// `guichet dlq list|replay|drop`, on the configured bus (RabbitMQ, or the
/// embedded bus in the data folder, which only one process may open: stop
/// `guichet up` first).
async fn dead_letters(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    use guichet_tools::dlq;
    let bus = guichet_kit::service::open_bus(config, "guichet-dlq")
        .await
        .context("opening the bus")?;
    bus.ensure_ready().await.context("connecting to the bus")?;
    let result = match command {
        DlqCommand::List { json, limit } => {
            let (letters, more) = dlq::list(&bus, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print_letters(&letters);
                println!("{} dead letters", letters.len());
                if more > 0 {
                    println!("{more} more not shown (raise --limit)");
                }
            }
            Ok(())
        }
        DlqCommand::Replay { selection } => {
            let outcome = dlq::replay(&bus, &selection.selection(), selection.limit).await?;
            report("replayed", &outcome)
        }
        DlqCommand::Drop {
            selection,
            yes: false,
        } => {
            let (letters, _) = dlq::list(&bus, selection.limit).await?;
            let chosen = selection.selection();
            let would: Vec<_> = letters
                .into_iter()
                .filter(|l| match &chosen {
                    dlq::Selection::All => true,
                    dlq::Selection::Ids(ids) => ids.contains(&l.message_id),
                })
                .collect();
            print_letters(&would);
            Err(anyhow::anyhow!(
                "nothing dropped: add --yes to drop these {} messages for good",
                would.len()
            ))
        }
        DlqCommand::Drop {
            selection,
            yes: true,
        } => {
            let outcome = dlq::discard(&bus, &selection.selection(), selection.limit).await?;
            report("dropped", &outcome)
        }
    };
    bus.close().await;
    result
}

fn print_letters(letters: &[guichet_tools::dlq::DeadLetter]) {
    println!(
        "{:<38} {:<28} {:<26} {:>7}  reason",
        "message id", "routing key", "first death", "bytes"
    );
    for l in letters {
        println!(
            "{:<38} {:<28} {:<26} {:>7}  {}",
            l.message_id,
            l.routing_key,
            l.first_death.as_deref().unwrap_or("-"),
            l.size,
            l.reason
        );
    }
}

fn report(done: &str, outcome: &guichet_tools::dlq::Outcome) -> anyhow::Result<()> {
    for l in &outcome.done {
        println!("{done} {} ({})", l.message_id, l.routing_key);
    }
    for (l, why) in &outcome.failed {
        println!("kept {}: {why}", l.message_id);
    }
    println!(
        "{} {done}, {} kept",
        outcome.done.len(),
        outcome.failed.len()
    );
    if outcome.failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} messages stay in the dead-letter queue",
            outcome.failed.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and section fits together (unique names, ids and groups):
    /// otherwise `guichet --help` itself would panic.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
