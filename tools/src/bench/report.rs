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
    pub filings: usize,
    pub accepted: usize,
    pub failed: usize,
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
    /// Share of the whole machine's CPU (all cores) busy during the phase.
    pub machine_busy: f64,
    /// Busy CPU (in cores) not accounted for by the mesh, its database
    /// backends, the broker or the bench itself: other work on the machine.
    pub others_cores_busy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub filings_per_s: f64,
    pub bare_pipeline_per_s: f64,
    pub ratio_to_bare: f64,
    pub bare_pipeline_runs: Vec<BareRun>,
    /// Bytes of each bare-pipeline message: an encoded dossier's size.
    pub message_bytes: usize,
    pub mix: String,
    pub concurrency: usize,
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
            "Guichet bench: mix {}, {} in flight at most, {} build, {} cores, load average {} before, {} after",
            self.mix,
            self.concurrency,
            self.build,
            self.machine.cores,
            opt(self.machine.load_average_before),
            opt(self.machine.load_average_after),
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "end to end              {:>9.0} filings/s (maximum-rate phase, else the first)",
            self.filings_per_s
        );
        let runs: Vec<String> = self
            .bare_pipeline_runs
            .iter()
            .map(|r| format!("{:.0}", r.per_s))
            .collect();
        let _ = writeln!(
            w,
            "bare pipeline           {:>9.0} msg/s     (runs: {}; {} B messages)",
            self.bare_pipeline_per_s,
            runs.join(", "),
            self.message_bytes
        );
        let _ = writeln!(
            w,
            "ratio to bare           {:>9.1} %",
            self.ratio_to_bare * 100.0
        );
        for p in &self.phases {
            let _ = writeln!(w);
            let offered = if p.offered_per_s > 0.0 {
                format!("{:.0} filings/s offered", p.offered_per_s)
            } else {
                "maximum rate".to_string()
            };
            let _ = writeln!(
                w,
                "-- {} filings at {offered}: {} accepted, {} failed{}",
                p.filings,
                p.accepted,
                p.failed,
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
