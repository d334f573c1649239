//! The figures of a bench run, as one JSON object (`--json`) or as tables.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::bare::BareRun;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(50.0),
            p95_ms: at(95.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

/// The smallest, middle and largest of a figure measured several times.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub runs: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Self {
            runs: n,
            min: values[0],
            median,
            max: values[n - 1],
        }
    }
}

/// The servers' work per filing committed, over one phase: where the
/// commits, row writes and messages go.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkPerFiling {
    pub commits: f64,
    /// Per `schema.table` with any writes: rows inserted, updated, deleted
    /// per filing.
    pub rows: Vec<(String, [f64; 3])>,
    pub published: f64,
    pub confirmed: f64,
    pub delivered: f64,
    pub acked: f64,
    /// E-mails the notifier handed to the bench's relay (receipts mostly;
    /// a filing without an address gets a letter or an SMS instead).
    pub emails: f64,
}

/// CPU and memory of one process over one phase.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub process: String,
    /// User + system CPU seconds during the phase.
    pub cpu_s: f64,
    /// `cpu_s` over the phase's wall time: 1.0 is one core busy throughout.
    pub cores_busy: f64,
    /// CPU milliseconds per filing committed.
    pub cpu_ms_per_filing: f64,
    /// Peak resident memory since the process started (VmHWM), in MiB.
    pub peak_rss_mib: Option<f64>,
}

/// One phase: a number of filings at one offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Filings per second offered; 0 means as fast as the mesh answers.
    pub offered_per_s: f64,
    /// Requests in flight the load generator allowed itself.
    pub concurrency: usize,
    pub filings: usize,
    pub accepted: usize,
    /// Refused at once because the mesh was at capacity (503 with
    /// `Retry-After`, gRPC `UNAVAILABLE`): not lost, the sender knows.
    pub shed: usize,
    /// Neither accepted nor shed.
    pub failed: usize,
    /// Accepted (a receipt was given) but not in instruction when the
    /// phase's wait ended. Must be 0.
    pub lost: usize,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// Receipts per second given by intake over the load.
    pub intake_per_s: f64,
    /// Dossiers committed in instruction per second, from the first
    /// filing's receipt to the last dossier's commit (instruction's clock).
    pub end_to_end_per_s: f64,
    pub end_to_end_seconds: f64,
    pub intake_ack: Latency,
    pub intake_ack_by_channel: Vec<(String, Latency)>,
    /// Receipt to commit in instruction, per dossier.
    pub filing_to_instruction: Latency,
    pub processes: Vec<ProcessFigures>,
    pub work_per_filing: WorkPerFiling,
    /// Share of the whole machine's CPU (all cores) busy during the phase.
    pub machine_busy: f64,
    /// Busy CPU (in cores) not accounted for by the mesh, its database
    /// backends, the broker or the bench itself: other work on the machine.
    pub others_cores_busy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// Most other work (in cores) a measured run may see for its ratio to
    /// be reported (`--max-other-work`).
    pub other_work_limit_cores: f64,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Median end to end rate of the maximum-rate phases.
    pub filings_per_s: f64,
    /// Median of the bare pipeline runs.
    pub bare_pipeline_per_s: f64,
    /// Median of each maximum-rate phase over the bare run just before it;
    /// `None` when other work on the machine was above the limit in one of
    /// them (see `ratio_withheld`), unless `--allow-noise`.
    pub ratio_to_bare: Option<f64>,
    /// Why the ratio is not given.
    pub ratio_withheld: Option<String>,
    /// Every paired ratio, and the two rates they come from.
    pub ratio_spread: Spread,
    pub filings_per_s_spread: Spread,
    pub bare_pipeline_spread: Spread,
    pub bare_pipeline_runs: Vec<BareRun>,
    /// Bytes of each bare-pipeline message: an encoded dossier's size.
    pub message_bytes: usize,
    pub mix: String,
    pub concurrency: usize,
    /// Processes of intake-web and of instruction in the mesh.
    pub instances: usize,
    pub build: &'static str,
    pub machine: Machine,
    pub phases: Vec<Phase>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "Guichet bench: mix {}, {} in flight at most, {} instance(s) of intake-web and instruction, {} build, {} cores, load average {} before, {} after",
            self.mix,
            self.concurrency,
            self.instances,
            self.build,
            self.machine.cores,
            opt(self.machine.load_average_before),
            opt(self.machine.load_average_after),
        );
        let _ = writeln!(w);
        let f = &self.filings_per_s_spread;
        let _ = writeln!(
            w,
            "end to end              {:>9.0} filings/s (median of {} maximum-rate phases: min {:.0}, max {:.0})",
            self.filings_per_s, f.runs, f.min, f.max
        );
        let runs: Vec<String> = self
            .bare_pipeline_runs
            .iter()
            .map(|r| format!("{:.0}", r.per_s))
            .collect();
        let _ = writeln!(
            w,
            "bare pipeline           {:>9.0} msg/s     (median; runs: {}; {} B messages)",
            self.bare_pipeline_per_s,
            runs.join(", "),
            self.message_bytes
        );
        let r = &self.ratio_spread;
        match (self.ratio_to_bare, &self.ratio_withheld) {
            (Some(ratio), _) => {
                let _ = writeln!(
                    w,
                    "ratio to bare           {:>9.1} % (median of {} paired runs: min {:.1} %, max {:.1} %)",
                    ratio * 100.0,
                    r.runs,
                    r.min * 100.0,
                    r.max * 100.0
                );
            }
            (None, why) => {
                let _ = writeln!(
                    w,
                    "ratio to bare           withheld: {}",
                    why.as_deref().unwrap_or("no maximum-rate phase")
                );
            }
        }
        for p in &self.phases {
            let _ = writeln!(w);
            let offered = if p.offered_per_s > 0.0 {
                format!("{:.0} filings/s offered", p.offered_per_s)
            } else {
                "maximum rate".to_string()
            };
            let _ = writeln!(
                w,
                "-- {} filings at {offered}, {} in flight at most: {} accepted, {} shed, {} failed, {} lost{}",
                p.filings,
                p.concurrency,
                p.accepted,
                p.shed,
                p.failed,
                p.lost,
                p.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                w,
                "   intake {:.0} receipts/s; end to end {:.0} filings/s over {:.2} s",
                p.intake_per_s, p.end_to_end_per_s, p.end_to_end_seconds
            );
            let _ = writeln!(
                w,
                "   {:<34} {:>8} {:>8} {:>8} {:>8}",
                "latency (ms)", "p50", "p95", "p99", "max"
            );
            let mut rows = vec![("intake ack, all".to_string(), p.intake_ack)];
            for (channel, l) in &p.intake_ack_by_channel {
                rows.push((format!("intake ack, {channel}"), *l));
            }
            rows.push(("filing to instruction".to_string(), p.filing_to_instruction));
            for (name, l) in rows {
                let _ = writeln!(
                    w,
                    "   {name:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
                );
            }
            let _ = writeln!(
                w,
                "   {:<34} {:>8} {:>8} {:>10} {:>9}",
                "process", "cpu s", "cores", "cpu ms/fil", "peak MiB"
            );
            for pr in &p.processes {
                let _ = writeln!(
                    w,
                    "   {:<34} {:>8.2} {:>8.2} {:>10.3} {:>9}",
                    pr.process,
                    pr.cpu_s,
                    pr.cores_busy,
                    pr.cpu_ms_per_filing,
                    pr.peak_rss_mib
                        .map(|m| format!("{m:.0}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
            let work = &p.work_per_filing;
            let _ = writeln!(
                w,
                "   per filing: {:.2} PostgreSQL commits; messages {:.2} published, {:.2} confirmed, {:.2} delivered, {:.2} acked; {:.2} e-mails sent",
                work.commits,
                work.published,
                work.confirmed,
                work.delivered,
                work.acked,
                work.emails
            );
            for (table, [ins, upd, del]) in &work.rows {
                let _ = writeln!(
                    w,
                    "   {table:<34} {ins:>6.2} inserted {upd:>6.2} updated {del:>6.2} deleted"
                );
            }
            let _ = writeln!(
                w,
                "   machine {:.0} % busy; other work on the machine: {:.2} cores",
                p.machine_busy * 100.0,
                p.others_cores_busy
            );
        }
        out
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        for (values, (min, median, max)) in [
            (vec![3.0, 1.0, 2.0], (1.0, 2.0, 3.0)),
            (vec![4.0, 1.0, 2.0, 3.0], (1.0, 2.5, 4.0)),
            (vec![5.0], (5.0, 5.0, 5.0)),
            (vec![f64::NAN, 2.0], (2.0, 2.0, 2.0)),
        ] {
            let s = Spread::of(values.clone());
            assert_eq!((s.min, s.median, s.max), (min, median, max), "{values:?}");
        }
        assert_eq!(Spread::of(vec![]).runs, 0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p95_ms, 95.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::of(vec![]).count, 0);
        let one = Latency::of(vec![Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }
}
