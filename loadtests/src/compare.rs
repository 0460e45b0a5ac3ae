//! `tongxin-load compare`: the same scenario against each server in turn, each started fresh
//! and alone in a network namespace of its own ([`ServerUnderTest`]), pinned to one core; one
//! [`Comparison`] of all the runs.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::bench_net::{Server, ServerUnderTest};
use crate::netns;
use crate::participant::Res;
use crate::report::comparison::{Comparison, ServerRun};
use crate::run;
use crate::scenario::Scenario;

/// What to compare, and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The scenario every server gets.
    pub scenario: Scenario,
    /// The servers, in the order they run.
    pub servers: Vec<Server>,
    /// The core each server is pinned to (`None`: not pinned).
    pub server_core: Option<u32>,
    /// Where encoded media is cached.
    pub cache_dir: PathBuf,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Runs the scenario against every server.
///
/// # Errors
///
/// Not root, a server did not start, or a run failed (with the server's log).
pub async fn compare(config: &CompareConfig) -> Res<Comparison> {
    netns::root_check()?;
    let started_at = SystemTime::now();
    let mut runs = Vec::new();
    for server in &config.servers {
        let name = server.name();
        eprintln!("{name}: starting in a network namespace of its own");
        let sut = ServerUnderTest::start(server.clone(), config.server_core).await?;
        eprintln!("{}: up (pid {}, namespace {}); running the scenario", sut.version(), sut.pid(), sut.netns().name());
        let target = sut.target(&config.cache_dir, config.progress);
        let outcome = run::run(&config.scenario, &target).await.map_err(|e| format!("{name}: {e}\nits log:\n{}", sut.log_tail()))?;
        eprint!("{name}:\n{}", outcome.report.summary_table());
        runs.push(ServerRun { server: name.to_owned(), version: sut.version().to_owned(), report: outcome.report });
        // Stopped and its namespace removed before the next server starts.
        drop(sut);
    }
    let pinned = config.server_core.map_or_else(|| "not pinned".to_owned(), |c| format!("pinned to core {c} (taskset)"));
    let setup = format!(
        "each server alone in a fresh network namespace behind a veth pair, its API and media on the veth address, {pinned}; \
         the generator in the root namespace on cores {}",
        generator_cores()
    );
    Ok(Comparison {
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_unix_ms: started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        setup,
        runs,
    })
}

/// The cores this process may run on, as the kernel lists them (`0-1`, `1`).
fn generator_cores() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "?".to_owned())
}
