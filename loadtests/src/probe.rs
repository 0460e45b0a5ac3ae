//! CPU and memory of processes from `/proc`: the server's (by pid) and the generator's own.

use std::time::Instant;

/// utime + stime of a process (`self` or a pid), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: field 3 is [0].
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A process's resident memory, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time of the server and of this process at one instant, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// When.
    pub at: Instant,
    /// The server's CPU seconds so far (`NaN` without a pid or once it is gone).
    pub server: f64,
    /// This process's CPU seconds so far.
    pub generator: f64,
    /// Busy CPU seconds of the whole machine so far, all cores (`/proc/stat`; `NaN` if unreadable).
    pub machine: f64,
}

/// Reads CPU times; knows the kernel's clock tick.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    ticks_per_second: f64,
}

impl Default for CpuClock {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuClock {
    /// Asks `getconf CLK_TCK` once (100 on every Linux this runs on, the fallback).
    pub fn new() -> CpuClock {
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0);
        CpuClock { ticks_per_second: ticks }
    }

    /// The server's and this process's CPU time now.
    pub fn sample(&self, server_pid: Option<u32>) -> CpuSample {
        let seconds = |pid: &str| cpu_ticks(pid).map_or(f64::NAN, |t| t as f64 / self.ticks_per_second);
        CpuSample {
            at: Instant::now(),
            server: server_pid.map_or(f64::NAN, |p| seconds(&p.to_string())),
            generator: seconds("self"),
            machine: machine_busy_ticks().map_or(f64::NAN, |t| t as f64 / self.ticks_per_second),
        }
    }
}

/// Busy ticks of all cores: user, nice, system, irq, softirq and steal of `/proc/stat`'s `cpu` line.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).copied().unwrap_or(0))
}

/// CPU use between two readings as a percentage of one core.
pub fn cpu_percent(before: f64, after: f64, wall_seconds: f64) -> f64 {
    if wall_seconds > 0.0 { (after - before) / wall_seconds * 100.0 } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_visible_and_busy_work_shows() {
        let clock = CpuClock::new();
        let a = clock.sample(Some(std::process::id()));
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = clock.sample(Some(std::process::id()));
        assert!(b.generator > a.generator, "a busy loop uses CPU");
        assert!(b.machine - a.machine >= (b.generator - a.generator) * 0.5, "and the machine sees it");
        assert!(b.server >= a.server);
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 1.0));
        assert!(clock.sample(None).server.is_nan());
        assert!(cpu_percent(1.0, 1.5, 1.0) - 50.0 < 1e-9);
    }
}
