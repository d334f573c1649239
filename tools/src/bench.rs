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
mod mail_relay;
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
    /// How many times the maximum-rate phase runs, each paired with a bare
    /// pipeline run just before it: the figures given are the medians, with
    /// their spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// A last phase offered this many times the measured maximum rate, to
    /// see the mesh shed what it cannot take (0: no such phase).
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,
    /// Requests in flight the load generator allows itself in the overload
    /// phase: high, so that the mesh's own bounds do the refusing.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub overload_concurrency: u32,
    /// Most other work on the machine (busy CPU, in cores, that none of the
    /// run's processes account for) under which the ratio is reported.
    #[arg(long, default_value_t = 0.1)]
    pub max_other_work: f64,
    /// Report the ratio even when other work went above `--max-other-work`.
    #[arg(long)]
    pub allow_noise: bool,
    /// Run the mesh from another `guichet` binary (an earlier build), driven
    /// by this one's load generator: a before and after from one machine
    /// state.
    #[arg(long)]
    pub mesh_binary: Option<std::path::PathBuf>,
    /// Log filter of the mesh's processes (their logs go to files).
    #[arg(long, default_value = "info")]
    pub service_log: String,
    /// Processes of intake-web and of instruction in the mesh (1 to 4): the
    /// scaling figure. The gateway balances over the intake-web ones; the
    /// load generator's direct gRPC share goes to the first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub instances: u32,
    /// The mesh's SMTP relay (in the bench) waits this long before each
    /// answer, as a site's relay across a network would; 0: on this machine.
    #[arg(long, default_value_t = 0)]
    pub mail_latency_ms: u64,
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

    fn repeat(&self) -> usize {
        if self.smoke { 1 } else { self.repeat as usize }
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
        batches_at_once: guichet_instruction::settings::InstructionSettings::from_env()
            .context("reading instruction's GUICHET_* settings")?
            .dossier_batches_at_once,
    };
    let progress = |what: &str| {
        if !args.json {
            eprintln!("bench: {what}");
        }
    };

    progress("starting the mesh");
    let mesh = mesh::Mesh::start(
        &mesh_scratch.database_url,
        &mesh_scratch.amqp_url,
        work,
        &args.service_log,
        args.mesh_binary.as_deref(),
        args.instances as usize,
        Duration::from_millis(args.mail_latency_ms),
    )
    .await?;
    let runs = Runs {
        args,
        mesh_scratch,
        bare_scratch,
        bare_settings: &bare_settings,
        mesh: &mesh,
        filings,
        today,
        progress: &progress,
    };
    let measured = runs.all().await;
    mesh.stop();
    let (bare_runs, phases) = measured?;

    // Each maximum-rate phase against the bare run just before it.
    let max_phases: Vec<&Phase> = phases
        .iter()
        .filter(|p| p.offered_per_s == 0.0 && p.concurrency == args.concurrency as usize)
        .collect();
    let ratios: Vec<f64> = max_phases
        .iter()
        .zip(&bare_runs)
        .filter(|(_, b)| b.per_s > 0.0)
        .map(|(p, b)| p.end_to_end_per_s / b.per_s)
        .collect();
    let noisiest = max_phases
        .iter()
        .map(|p| p.others_cores_busy)
        .chain(bare_runs.iter().map(|b| b.others_cores_busy))
        .fold(0.0_f64, f64::max);
    let ratio_spread = report::Spread::of(ratios);
    let (ratio_to_bare, ratio_withheld) = if ratio_spread.runs == 0 {
        (None, Some("no maximum-rate phase was run".to_string()))
    } else if noisiest > args.max_other_work && !args.allow_noise {
        (
            None,
            Some(format!(
                "other work on the machine took {noisiest:.2} cores in a measured run, more than \
                 the {:.2} allowed (--max-other-work); the figures below are not comparable \
                 (--allow-noise gives the ratio anyway)",
                args.max_other_work
            )),
        )
    } else {
        (Some(ratio_spread.median), None)
    };
    let filings_per_s_spread =
        report::Spread::of(max_phases.iter().map(|p| p.end_to_end_per_s).collect());
    let bare_pipeline_spread = report::Spread::of(bare_runs.iter().map(|r| r.per_s).collect());
    Ok(Report {
        filings_per_s: filings_per_s_spread.median,
        bare_pipeline_per_s: bare_pipeline_spread.median,
        ratio_to_bare,
        ratio_withheld,
        ratio_spread,
        filings_per_s_spread,
        bare_pipeline_spread,
        bare_pipeline_runs: bare_runs,
        message_bytes,
        mix: args.mix.to_string(),
        concurrency: args.concurrency as usize,
        instances: args.instances as usize,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine: Machine {
            cores: procfs::cores(),
            other_work_limit_cores: args.max_other_work,
            load_average_before: load_before,
            load_average_after: procfs::load_average(),
        },
        phases,
    })
}

/// Everything one run measures, in order.
struct Runs<'a> {
    args: &'a BenchArgs,
    mesh_scratch: &'a Scratch,
    bare_scratch: &'a Scratch,
    bare_settings: &'a bare::Settings,
    mesh: &'a mesh::Mesh,
    filings: usize,
    today: chrono::NaiveDate,
    progress: &'a dyn Fn(&str),
}

impl Runs<'_> {
    /// The maximum-rate phase `--repeat` times, each just after a bare
    /// pipeline run (the mesh idle meanwhile), so each pair saw the same
    /// machine; then the fixed-rate phases; then the overload phase at
    /// `--overload` times the median maximum.
    async fn all(&self) -> anyhow::Result<(Vec<bare::BareRun>, Vec<Phase>)> {
        let args = self.args;
        let targets =
            load::Targets::connect(&self.mesh.gateway_url, &self.mesh.intake_web_url).await?;
        let instruction = guichet_kit::db::postgres_pool(
            &self.mesh_scratch.database_url,
            "instruction",
            guichet_kit::db::Pool::sized(2),
        )
        .await
        .context("reading the instruction database")?;
        let mut bare_runs = Vec::new();
        let mut phases = Vec::new();
        let mut numbered = Numbered {
            next_applicant: 0,
            expected_total: 0,
        };
        let rates = args.rates();
        let concurrency = args.concurrency as usize;
        if rates.contains(&0.0) {
            for k in 0..args.repeat() {
                (self.progress)(&format!("bare pipeline, run {}", k + 1));
                bare_runs.push(self.bare().await?);
                (self.progress)(&format!(
                    "maximum rate, run {}: {} filings",
                    k + 1,
                    self.filings
                ));
                phases.push(
                    self.phase(&targets, &instruction, &mut numbered, 0.0, concurrency)
                        .await?,
                );
            }
        } else {
            for k in 0..args.repeat() {
                (self.progress)(&format!("bare pipeline, run {}", k + 1));
                bare_runs.push(self.bare().await?);
            }
        }
        for rate in rates.into_iter().filter(|r| *r > 0.0) {
            (self.progress)(&format!("{} filings at {rate} filings/s", self.filings));
            phases.push(
                self.phase(&targets, &instruction, &mut numbered, rate, concurrency)
                    .await?,
            );
        }
        let maximum = report::Spread::of(
            phases
                .iter()
                .filter(|p| p.offered_per_s == 0.0)
                .map(|p| p.end_to_end_per_s)
                .collect(),
        )
        .median;
        if args.overload > 0.0 && maximum > 0.0 {
            let rate = (maximum * args.overload).round();
            (self.progress)(&format!(
                "overload: {} filings at {rate} filings/s ({}x the maximum)",
                self.filings, args.overload
            ));
            phases.push(
                self.phase(
                    &targets,
                    &instruction,
                    &mut numbered,
                    rate,
                    args.overload_concurrency as usize,
                )
                .await?,
            );
        }
        instruction.close().await;
        Ok((bare_runs, phases))
    }

    /// One bare pipeline run, with the other work on the machine meanwhile.
    /// The mesh first finishes what the last phase left it (receipts to
    /// mail, events to publish): the bare run has the machine to itself.
    async fn bare(&self) -> anyhow::Result<bare::BareRun> {
        self.mesh_settled().await;
        // The idle mesh's own ticks (sweeps, samplers) are the run's, not
        // other work.
        let before = Sample::take(None, Some(self.mesh)).await;
        let mut run = bare::run(
            &self.bare_scratch.amqp_url,
            &self.bare_scratch.database_url,
            self.bare_settings,
        )
        .await?;
        let after = Sample::take(None, Some(self.mesh)).await;
        run.others_cores_busy = after.others_since(&before);
        Ok(run)
    }

    async fn phase(
        &self,
        targets: &load::Targets,
        instruction: &sqlx::PgPool,
        numbered: &mut Numbered,
        rate: f64,
        concurrency: usize,
    ) -> anyhow::Result<Phase> {
        let routes = self.args.mix.plan(self.filings);
        let prepared = load::prepare(
            &self.mesh_scratch.name,
            &routes,
            numbered.next_applicant,
            self.today,
        )?;
        numbered.next_applicant += self.filings;
        let work_before = self.mesh_scratch.work_done(instruction).await?;
        let emails_before = self.mesh.mail.received();
        let before = Sample::take(Some(self.mesh_scratch), Some(self.mesh)).await;
        let driven = load::drive(targets, prepared, rate, concurrency).await;
        let references: Vec<String> = driven
            .outcomes
            .iter()
            .filter_map(|o| o.reference.clone())
            .collect();
        numbered.expected_total += references.len() as i64;
        let times = committed(instruction, &references, numbered.expected_total).await?;
        let wall = before.at.elapsed();
        // What the filings set off after their commit (receipts mailed,
        // events published) is theirs too: wait for it before counting.
        self.mesh_settled().await;
        let after = Sample::take(Some(self.mesh_scratch), Some(self.mesh)).await;
        tokio::time::sleep(BROKER_STATS_EVERY).await;
        let work = self.mesh_scratch.work_done(instruction).await?;
        let offered = Offered {
            rate,
            concurrency,
            filings: self.filings,
        };
        let mut phase = phase_figures(offered, &driven, &times, &before, &after, wall);
        let emails = self.mesh.mail.received() - emails_before;
        phase.work_per_filing = work_per_filing(&work_before, &work, emails, times.len());
        Ok(phase)
    }
}

impl Runs<'_> {
    /// Waits (a minute at most) until the mesh's processes use less than
    /// 5 % of a core over a second.
    async fn mesh_settled(&self) {
        // Only the mesh's own processes are read: no scan of /proc.
        let mesh_cpu = || -> f64 {
            self.mesh
                .services
                .iter()
                .filter_map(|s| procfs::cpu_time(s.pid()))
                .map(|t| t.as_secs_f64())
                .sum()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (at, before) = (Instant::now(), mesh_cpu());
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used = (mesh_cpu() - before).max(0.0);
            if used / at.elapsed().as_secs_f64().max(1e-6) < 0.05 {
                return;
            }
        }
    }
}

/// RabbitMQ's management figures are sampled this often (its default).
const BROKER_STATS_EVERY: Duration = Duration::from_millis(5_500);

fn work_per_filing(
    before: &scratch::WorkDone,
    after: &scratch::WorkDone,
    emails: u64,
    filings: usize,
) -> report::WorkPerFiling {
    let n = filings.max(1) as f64;
    let per = |a: i64, b: i64| (a - b).max(0) as f64 / n;
    report::WorkPerFiling {
        commits: per(after.commits, before.commits),
        rows: after
            .rows
            .iter()
            .map(|(table, now)| {
                let was = before.rows.get(table).copied().unwrap_or_default();
                (
                    table.clone(),
                    [
                        per(now[0], was[0]),
                        per(now[1], was[1]),
                        per(now[2], was[2]),
                    ],
                )
            })
            .filter(|(_, r)| r.iter().any(|v| *v > 0.0))
            .collect(),
        published: per(after.published, before.published),
        confirmed: per(after.confirmed, before.confirmed),
        delivered: per(after.delivered, before.delivered),
        acked: per(after.acked, before.acked),
        emails: emails as f64 / n,
    }
}

/// Applicants are numbered across the run, so no phase files again for an
/// earlier phase's applicants; dossiers are counted across the run too.
struct Numbered {
    next_applicant: usize,
    expected_total: i64,
}

/// Waits until every referenced dossier is committed in instruction, then
/// gives each one's receipt time and commit time (seconds since the epoch).
/// The database is this run's alone, so waiting only counts its rows: the
/// bench must not load the database it measures. Past the deadline it gives
/// what is there: the phase then counts the missing ones as lost.
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
        if Instant::now() >= deadline {
            eprintln!(
                "bench: only {total} of {expected_total} accepted filings reached instruction in time"
            );
            break;
        }
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

/// CPU times of everything that works for the run, at one moment.
struct Sample {
    at: Instant,
    machine: procfs::MachineCpu,
    /// Per process: name, pid, CPU seconds so far.
    processes: Vec<(String, u32, f64)>,
}

impl Sample {
    /// The mesh's processes and this run's PostgreSQL backends when given;
    /// always the broker, PostgreSQL's own helpers (WAL writer,
    /// checkpointer, ...) and the bench itself.
    async fn take(scratch: Option<&Scratch>, mesh: Option<&mesh::Mesh>) -> Self {
        let mut processes = Vec::new();
        let mut add = |name: String, pid: u32| {
            if let Some(cpu) = procfs::cpu_time(pid) {
                processes.push((name, pid, cpu.as_secs_f64()));
            }
        };
        for s in mesh.iter().flat_map(|m| &m.services) {
            add(s.name.to_string(), s.pid());
        }
        let backends = match scratch {
            Some(scratch) => scratch.backend_pids().await,
            None => Vec::new(),
        };
        for pid in procfs::pids_named("postgres") {
            if backends.contains(&pid) {
                add("postgresql (this run's backends)".into(), pid);
            } else if scratch.is_none() || procfs::is_postgres_helper(pid) {
                // Without a mesh (the bare run), every PostgreSQL process
                // is counted as the run's: its backends come and go with
                // its pool.
                add("postgresql (shared helpers)".into(), pid);
            }
        }
        for pid in procfs::pids_named("beam.smp") {
            add("rabbitmq (whole broker, shared)".into(), pid);
        }
        for pid in procfs::kernel_workers() {
            add("kernel workers (network, disk)".into(), pid);
        }
        add("bench load generator".into(), std::process::id());
        Self {
            at: Instant::now(),
            machine: procfs::MachineCpu::now(),
            processes,
        }
    }

    /// CPU seconds each process used since `earlier` (a process that
    /// started meanwhile counts from zero).
    fn used_since(&self, earlier: &Sample) -> Vec<(&str, u32, f64)> {
        let before: HashMap<u32, f64> =
            earlier.processes.iter().map(|(_, p, c)| (*p, *c)).collect();
        self.processes
            .iter()
            .map(|(name, pid, cpu)| {
                (
                    name.as_str(),
                    *pid,
                    (cpu - before.get(pid).copied().unwrap_or(0.0)).max(0.0),
                )
            })
            .collect()
    }

    /// Busy CPU, in cores, that none of the sampled processes account for.
    fn others_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-6);
        let accounted: f64 = self.used_since(earlier).iter().map(|(_, _, c)| c).sum();
        let (busy, _) = self.machine.since(&earlier.machine);
        ((busy - accounted) / wall).max(0.0)
    }
}

/// What a phase offered.
struct Offered {
    /// Filings per second; 0 is as fast as the mesh answers.
    rate: f64,
    /// Requests in flight at most.
    concurrency: usize,
    filings: usize,
}

/// `wall`: from the phase's start to its last commit; `after` may be
/// later (the mesh's work after the commits is counted in its CPU).
fn phase_figures(
    offered: Offered,
    driven: &load::Driven,
    times: &[(f64, f64)],
    before: &Sample,
    after: &Sample,
    wall: Duration,
) -> Phase {
    let Offered {
        rate,
        concurrency,
        filings,
    } = offered;
    let accepted: Vec<&load::Outcome> = driven
        .outcomes
        .iter()
        .filter(|o| o.reference.is_some())
        .collect();
    let shed = driven.outcomes.iter().filter(|o| o.shed).count();
    let failed = driven.outcomes.len() - accepted.len() - shed + (filings - driven.outcomes.len());
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
    let wall = wall.as_secs_f64().max(1e-6);

    // CPU per process name (PostgreSQL has one backend per connection).
    let mut per_name: Vec<(String, f64, Option<u64>)> = Vec::new();
    for (name, pid, used) in after.used_since(before) {
        let peak = procfs::peak_rss(pid);
        match per_name.iter_mut().find(|(n, _, _)| n == name) {
            Some(entry) => {
                entry.1 += used;
                entry.2 = match (entry.2, peak) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            None => per_name.push((name.to_string(), used, peak)),
        }
    }
    let (_, machine_busy) = after.machine.since(&before.machine);
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
        concurrency,
        filings,
        accepted: accepted.len(),
        shed,
        failed,
        lost: accepted.len().saturating_sub(times.len()),
        first_error: driven
            .outcomes
            .iter()
            .filter(|o| !o.shed)
            .find_map(|o| o.error.clone()),
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
        work_per_filing: report::WorkPerFiling::default(),
        machine_busy,
        others_cores_busy: after.others_since(before),
    }
}
