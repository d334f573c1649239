//! CPU time and peak memory of processes, and how busy the whole machine
//! was, read from Linux's /proc. Elsewhere the figures are simply absent.

use std::time::Duration;

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on
/// every Linux the project runs on).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU time a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields
    // after the last `)`. utime and stime are fields 14 and 15 of the line.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) / ticks_per_second(),
    ))
}

/// The most resident memory the process has held (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    pids_where(|comm| comm == name)
}

/// The kernel's worker threads that do a run's network and disk work on
/// its behalf (loopback traffic, WAL flushes), so it is the run's CPU and
/// not other work: `ksoftirqd/N` and `kworker/...`.
pub fn kernel_workers() -> Vec<u32> {
    pids_where(|comm| comm.starts_with("ksoftirqd/") || comm.starts_with("kworker/"))
}

fn pids_where(keep: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| keep(c.trim_end()))
        })
        .collect()
}

/// Whether a PostgreSQL process works for every database (the postmaster,
/// WAL writer, checkpointer, background writer, autovacuum), not one client.
pub fn is_postgres_helper(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    if !cmdline.starts_with("postgres: ") {
        return true; // the postmaster: its command line is its binary
    }
    [
        "walwriter",
        "checkpointer",
        "background writer",
        "autovacuum",
        "logical replication launcher",
        "archiver",
        "walsummarizer",
        "io worker",
    ]
    .iter()
    .any(|helper| cmdline.contains(helper))
}

/// Cumulative busy, idle and I/O-wait CPU time of the whole machine, all
/// cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    busy: f64,
    idle: f64,
    iowait: f64,
}

impl MachineCpu {
    pub fn now() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest is in user).
        let field = |i: usize| v.get(i).copied().unwrap_or(0.0) / ticks_per_second();
        Self {
            busy: [0, 1, 2, 5, 6, 7].into_iter().map(field).sum(),
            idle: field(3),
            iowait: field(4),
        }
    }

    /// Busy CPU seconds (all cores) between `earlier` and `self`, and the
    /// share of the machine's capacity that was. The kernel's I/O-wait
    /// counter can go back (proc(5)); a fall is no time at all, not negative
    /// idle time, or two close readings would give a share above one.
    pub fn since(&self, earlier: &MachineCpu) -> (f64, f64) {
        let busy = self.busy - earlier.busy;
        let idle = (self.idle - earlier.idle) + (self.iowait - earlier.iowait).max(0.0);
        let total = busy + idle;
        let share = if total > 0.0 { busy / total } else { 0.0 };
        (busy, share)
    }
}

/// The one-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let me = std::process::id();
        // Spin a little so there is CPU time to see.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time(me).is_some());
        assert!(peak_rss(me).is_some_and(|b| b > 1024 * 1024));
        let a = MachineCpu::now();
        let b = MachineCpu::now();
        let (_, share) = b.since(&a);
        assert!((0.0..=1.0).contains(&share));
    }
}
