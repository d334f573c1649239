//! `guichet bench`: end-to-end throughput and latency of the real mesh on
//! RabbitMQ and PostgreSQL, side by side with the bare pipeline measured in
//! the same run on the same machine. See BENCHMARKS.md.
//!
//! One run: the bare pipeline; then the mesh (one process per service) is
//! started and given each phase of load in turn (by default as fast as it
//! answers, then 1,000 filings/s offered), each phase waiting until every
//! accepted filing is committed in instruction; then the bare pipeline again,
//! so a machine that got busier or quieter meanwhile shows in its two runs.
//!
//! - `mix`: which channels the filings come through;
//! - `scratch`: the run's own vhosts and databases, dropped after;
//! - `mesh`: the service processes;
//! - `load`: the filings and the load generator (intake latency);
//! - `bare`: the bare pipeline;
//! - `procfs`: CPU time and memory per process;
//! - `report`: the figures, as tables or JSON.

mod bare;
mod load;
mod mesh;
pub mod mix;
pub mod postal;
mod procfs;
mod report;
mod scratch;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use mix::Mix;
pub use report::Report;

use report::{Latency, Machine, Phase, ProcessFigures};
use scratch::{Scratch, Servers};

/// `guichet bench [--filings N] [--rate R,...] [--concurrency C] [--mix web=80,grpc=20] [--smoke] [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Filings in each phase (and messages in each bare-pipeline run).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    pub filings: u32,
    /// Offered rate of each phase, in filings per second; 0 is as fast as
    /// the mesh answers. One phase per value, in order.
    #[arg(long, value_delimiter = ',', default_value = "0,1000")]
    pub rate: Vec<f64>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Channels the filings come through, with relative weights. `web` is
    /// JSON through the gateway, `grpc` is SubmitFiling straight to intake-web.
    #[arg(long, default_value = "web=80,grpc=20")]
    pub mix: Mix,
    /// A short run that only checks everything works (for CI): 200 filings
    /// per phase, phases at maximum rate and at 200 filings/s.
    #[arg(long)]
    pub smoke: bool,
    /// Print the figures as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Log filter of the mesh's processes (their logs go to files).
    #[arg(long, default_value = "info")]
    pub service_log: String,
    #[command(flatten)]
    pub servers: Servers,
}

impl BenchArgs {
    fn filings(&self) -> usize {
        if self.smoke {
            200
        } else {
            self.filings as usize
        }
    }

    fn rates(&self) -> Vec<f64> {
        if self.smoke {
            vec![0.0, 200.0]
        } else {
            self.rate.iter().map(|r| r.max(0.0)).collect()
        }
    }
}

/// Runs the bench; the vhosts and databases it made are dropped whatever
/// the outcome.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let name = format!("guichet_bench_{}", std::process::id());
    let work = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&work)?;
    let mesh_scratch = Scratch::create(&args.servers, &name).await?;
    let bare_scratch = match Scratch::create(&args.servers, &format!("{name}_bare")).await {
        Ok(s) => s,
        Err(e) => {
            mesh_scratch.drop_all().await;
            return Err(e);
        }
    };
    let outcome = run_in(args, &mesh_scratch, &bare_scratch, &work).await;
    mesh_scratch.drop_all().await;
    bare_scratch.drop_all().await;
    tidy_work(&outcome, &work);
    outcome
}

/// A run's work directory goes once the run succeeded; after a failure the
/// mesh's logs stay there to be read.
fn tidy_work<T>(outcome: &anyhow::Result<T>, work: &std::path::Path) {
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(work);
    } else {
        eprintln!("the mesh's logs are kept in {}", work.display());
    }
}

async fn run_in(
    args: &BenchArgs,
    mesh_scratch: &Scratch,
    bare_scratch: &Scratch,
    work: &std::path::Path,
) -> anyhow::Result<Report> {
    let defaults = guichet_kit::Config::from_env().context("reading GUICHET_* settings")?;
    let today = chrono::Utc::now().date_naive();
    let filings = args.filings();
    let load_before = procfs::load_average();
    let message_bytes = load::dossier_message_bytes(today)?;
    let bare_settings = bare::Settings {
        messages: filings,
        message_bytes,
        publish_batch: defaults.outbox_batch.max(1) as usize,
        prefetch: defaults.consumer_prefetch,
    };
    let progress = |what: &str| {
        if !args.json {
            eprintln!("bench: {what}");
        }
    };

    progress("bare pipeline, first run");
    let mut bare_runs = vec![
        bare::run(
            &bare_scratch.amqp_url,
            &bare_scratch.database_url,
            &bare_settings,
        )
        .await?,
    ];

    progress("starting the mesh");
    let mesh = mesh::Mesh::start(
        &mesh_scratch.database_url,
        &mesh_scratch.amqp_url,
        work,
        &args.service_log,
    )
    .await?;
    let phases = run_phases(args, mesh_scratch, &mesh, filings, today, &progress).await;
    mesh.stop();
    let phases = phases?;

    progress("bare pipeline, second run");
    bare_runs.push(
        bare::run(
            &bare_scratch.amqp_url,
            &bare_scratch.database_url,
            &bare_settings,
        )
        .await?,
    );

    let bare_per_s = bare_runs.iter().map(|r| r.per_s).sum::<f64>() / bare_runs.len() as f64;
    let filings_per_s = phases
        .iter()
        .find(|p| p.offered_per_s == 0.0)
        .or(phases.first())
        .map_or(0.0, |p| p.end_to_end_per_s);
    Ok(Report {
        filings_per_s,
        bare_pipeline_per_s: bare_per_s,
        ratio_to_bare: if bare_per_s > 0.0 {
            filings_per_s / bare_per_s
        } else {
            0.0
        },
        bare_pipeline_runs: bare_runs,
        message_bytes,
        mix: args.mix.to_string(),
        concurrency: args.concurrency as usize,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine: Machine {
            cores: procfs::cores(),
            load_average_before: load_before,
            load_average_after: procfs::load_average(),
        },
        phases,
    })
}

async fn run_phases(
    args: &BenchArgs,
    scratch: &Scratch,
    mesh: &mesh::Mesh,
    filings: usize,
    today: chrono::NaiveDate,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Phase>> {
    let targets = load::Targets::connect(&mesh.gateway_url, &mesh.intake_web_url).await?;
    let instruction = guichet_kit::db::postgres_pool(&scratch.database_url, "instruction", 2)
        .await
        .context("reading the instruction database")?;
    let routes = args.mix.plan(filings);
    let mut phases = Vec::new();
    let mut expected_total = 0;
    for (k, rate) in args.rates().into_iter().enumerate() {
        let offered = if rate > 0.0 {
            format!("{rate} filings/s")
        } else {
            "maximum rate".into()
        };
        progress(&format!("phase {}: {filings} filings at {offered}", k + 1));
        let prepared = load::prepare(&scratch.name, &routes, k * filings, today)?;
        let before = Sample::take(scratch, mesh).await;
        let driven = load::drive(&targets, prepared, rate, args.concurrency as usize).await;
        let references: Vec<String> = driven
            .outcomes
            .iter()
            .filter_map(|o| o.reference.clone())
            .collect();
        expected_total += references.len() as i64;
        let times = committed(&instruction, &references, expected_total).await?;
        let after = Sample::take(scratch, mesh).await;
        phases.push(phase_figures(
            rate, filings, &driven, &times, &before, &after,
        ));
    }
    instruction.close().await;
    Ok(phases)
}

/// Waits until every referenced dossier is committed in instruction, then
/// gives each one's receipt time and commit time (seconds since the epoch).
/// The database is this run's alone, so waiting only counts its rows: the
/// bench must not load the database it measures.
async fn committed(
    db: &sqlx::PgPool,
    references: &[String],
    expected_total: i64,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_millis(5 * references.len() as u64);
    loop {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dossiers")
            .fetch_one(db)
            .await?;
        if total >= expected_total {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {expected_total} accepted filings reached instruction in time",
            total
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM received_at)::float8, EXTRACT(EPOCH FROM recorded_at)::float8 \
         FROM dossiers WHERE reference = ANY($1)",
    )
    .bind(references)
    .fetch_all(db)
    .await?)
}

/// CPU times of everything that works for the mesh, at one moment.
struct Sample {
    at: Instant,
    machine: procfs::MachineCpu,
    /// Per process: name, pid, CPU seconds so far.
    processes: Vec<(String, u32, f64)>,
}

impl Sample {
    async fn take(scratch: &Scratch, mesh: &mesh::Mesh) -> Self {
        let mut processes = Vec::new();
        let mut add = |name: String, pid: u32| {
            if let Some(cpu) = procfs::cpu_time(pid) {
                processes.push((name, pid, cpu.as_secs_f64()));
            }
        };
        for s in &mesh.services {
            add(s.name.to_string(), s.pid());
        }
        for pid in scratch.backend_pids().await {
            add("postgresql (this run's backends)".into(), pid);
        }
        for pid in procfs::pids_named("beam.smp") {
            add("rabbitmq (whole broker, shared)".into(), pid);
        }
        add("bench load generator".into(), std::process::id());
        Self {
            at: Instant::now(),
            machine: procfs::MachineCpu::now(),
            processes,
        }
    }
}

fn phase_figures(
    rate: f64,
    filings: usize,
    driven: &load::Driven,
    times: &[(f64, f64)],
    before: &Sample,
    after: &Sample,
) -> Phase {
    let accepted: Vec<&load::Outcome> = driven
        .outcomes
        .iter()
        .filter(|o| o.reference.is_some())
        .collect();
    let failed = driven.outcomes.len() - accepted.len() + (filings - driven.outcomes.len());
    let mut by_channel: Vec<(String, Latency)> = Vec::new();
    let mut channels: Vec<_> = accepted.iter().map(|o| o.route).collect();
    channels.sort();
    channels.dedup();
    for route in channels {
        let samples = accepted
            .iter()
            .filter(|o| o.route == route)
            .map(|o| o.latency)
            .collect();
        by_channel.push((route.to_string(), Latency::of(samples)));
    }
    let first_received = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let last_recorded = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
    let span = (last_recorded - first_received).max(1e-6);
    let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-6);

    // CPU per process name (PostgreSQL has one backend per connection).
    let earlier: HashMap<u32, f64> = before.processes.iter().map(|(_, p, c)| (*p, *c)).collect();
    let mut per_name: Vec<(String, f64, Option<u64>)> = Vec::new();
    for (name, pid, cpu) in &after.processes {
        let used = cpu - earlier.get(pid).copied().unwrap_or(0.0);
        let peak = procfs::peak_rss(*pid);
        match per_name.iter_mut().find(|(n, _, _)| n == name) {
            Some(entry) => {
                entry.1 += used;
                entry.2 = match (entry.2, peak) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            None => per_name.push((name.clone(), used, peak)),
        }
    }
    let accounted: f64 = per_name.iter().map(|(_, c, _)| c).sum();
    let (machine_busy_s, machine_busy) = after.machine.since(&before.machine);
    let committed = times.len().max(1) as f64;
    let processes = per_name
        .into_iter()
        .map(|(process, cpu_s, peak)| ProcessFigures {
            // A PostgreSQL backend's VmHWM counts shared buffers it touched:
            // not this run's memory, so it is left out.
            peak_rss_mib: peak
                .filter(|_| !process.starts_with("postgresql"))
                .map(|b| b as f64 / (1024.0 * 1024.0)),
            cores_busy: cpu_s / wall,
            cpu_ms_per_filing: cpu_s * 1000.0 / committed,
            process,
            cpu_s,
        })
        .collect();
    Phase {
        offered_per_s: rate,
        filings,
        accepted: accepted.len(),
        failed,
        first_error: driven.outcomes.iter().find_map(|o| o.error.clone()),
        intake_per_s: accepted.len() as f64 / driven.elapsed.as_secs_f64().max(1e-6),
        end_to_end_per_s: times.len() as f64 / span,
        end_to_end_seconds: span,
        intake_ack: Latency::of(accepted.iter().map(|o| o.latency).collect()),
        intake_ack_by_channel: by_channel,
        filing_to_instruction: Latency::of(
            times
                .iter()
                .map(|(received, recorded)| Duration::from_secs_f64((recorded - received).max(0.0)))
                .collect(),
        ),
        processes,
        machine_busy,
        others_cores_busy: ((machine_busy_s - accounted) / wall).max(0.0),
    }
}
