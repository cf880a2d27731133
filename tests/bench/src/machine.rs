//! The machine a run measured (for the header) and how busy its CPUs were while a part of the
//! bench ran, from `/proc`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// CPU model, CPU count, this process's CPU affinity, rustc and openssl versions.
pub(crate) fn describe() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
        })
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!("{cmd}: unknown"))
    };
    let openssl = version("openssl", "version");
    // "OpenSSL 3.0.19 27 Jan 2026 (Library: …)": the first three words are enough.
    let openssl: Vec<&str> = openssl.split_whitespace().take(2).collect();
    format!(
        "{model}, {cpus} CPUs ({usable} usable by this process); {}; {}",
        version("rustc", "--version"),
        openssl.join(" ")
    )
}

/// Clock ticks since boot: busy on any CPU, and in all over all CPUs (first line of
/// `/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The fields of a `/proc/PID/stat` line after the command name (which is in parentheses and
/// may hold spaces): index 0 is the state (field 3 of the line), 1 the parent pid, 11 utime.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(
        stat.get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect(),
    )
}

/// utime + stime + cutime + cstime of one `/proc/PID/stat` (fields 14–17).
fn cpu_of(fields: &[&str]) -> Option<u64> {
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Clock ticks this process and its child processes (the `rekey` processes) ran so far, in the
/// unit of `/proc/stat`: its own utime and stime, the children it reaped (cutime, cstime), and
/// those still running (read from their `/proc/PID/stat`), so a long `rekey run` counts while
/// it runs.
fn own_ticks() -> Option<u64> {
    let own = cpu_of(&stat_fields(
        &std::fs::read_to_string("/proc/self/stat").ok()?,
    )?)?;
    let me = std::process::id().to_string();
    let running: u64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let fields = stat_fields(&stat)?;
            (fields.get(1) == Some(&me.as_str()))
                .then(|| cpu_of(&fields))
                .flatten()
        })
        .sum();
    Some(own + running)
}

/// One reading: (own ticks, machine busy ticks, machine total ticks).
fn ticks() -> Option<(u64, u64, u64)> {
    let own = own_ticks()?;
    let (busy, total) = machine_ticks()?;
    Some((own, busy, total))
}

/// How busy the CPUs were over a stretch of time, as shares of all CPUs (0..=1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Load {
    /// This process (emulators, in-process consumers) and its `rekey` processes, over the
    /// whole stretch.
    pub(crate) average: f64,
    /// The same in the busiest sample interval.
    pub(crate) peak: f64,
    /// Every process on the machine, over the whole stretch (more than `average` means
    /// something else was running).
    pub(crate) machine: f64,
}

impl Load {
    /// `37 % / 61 %` (average / peak).
    pub(crate) fn render(&self) -> String {
        format!("{:.0} % / {:.0} %", self.average * 100.0, self.peak * 100.0)
    }
}

/// (own share, machine share) between two readings.
fn shares(from: (u64, u64, u64), to: (u64, u64, u64)) -> (f64, f64) {
    let total = to.2.saturating_sub(from.2);
    if total == 0 {
        return (0.0, 0.0);
    }
    let own = to.0.saturating_sub(from.0) as f64 / total as f64;
    let machine = to.1.saturating_sub(from.1) as f64 / total as f64;
    (own.min(1.0), machine.min(1.0))
}

/// Samples the CPU counters every [`CpuMeter::INTERVAL`] until stopped.
pub(crate) struct CpuMeter {
    first: Option<(u64, u64, u64)>,
    peak: Arc<Mutex<f64>>,
    task: tokio::task::JoinHandle<()>,
}

impl CpuMeter {
    /// Sample interval for the peak.
    const INTERVAL: Duration = Duration::from_millis(500);

    /// Starts sampling.
    pub(crate) fn start() -> CpuMeter {
        let first = ticks();
        let peak = Arc::new(Mutex::new(0.0_f64));
        let task = tokio::spawn({
            let peak = peak.clone();
            async move {
                let mut last = first;
                loop {
                    tokio::time::sleep(Self::INTERVAL).await;
                    let now = ticks();
                    if let (Some(a), Some(b)) = (last, now) {
                        let mut p = peak.lock().unwrap();
                        *p = p.max(shares(a, b).0);
                    }
                    last = now;
                }
            }
        });
        CpuMeter { first, peak, task }
    }

    /// Stops sampling; the load since [`CpuMeter::start`].
    pub(crate) fn stop(self) -> Load {
        self.task.abort();
        let (average, machine) = match (self.first, ticks()) {
            (Some(a), Some(b)) => shares(a, b),
            _ => (0.0, 0.0),
        };
        let peak = *self.peak.lock().unwrap();
        Load {
            average,
            peak: peak.max(average),
            machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_rendering() {
        assert_eq!(shares((10, 100, 1000), (35, 150, 1100)), (0.25, 0.5));
        assert_eq!(shares((10, 100, 1000), (10, 100, 1000)), (0.0, 0.0));
        let load = Load {
            average: 0.372,
            peak: 0.61,
            machine: 0.9,
        };
        assert_eq!(load.render(), "37 % / 61 %");
        let (own, busy, total) = ticks().expect("/proc is readable on Linux");
        assert!(own <= busy && busy <= total);
        let fields = stat_fields("42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15").unwrap();
        assert_eq!((fields[0], fields[1]), ("S", "1"));
        assert_eq!(cpu_of(&fields), Some(11 + 12 + 13 + 14));
    }
}
