//! `tongxin-load`: measuring instruments for Tongxin.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tongxin_loadtests::bench_net::Server;
use tongxin_loadtests::compare::CompareConfig;
use tongxin_loadtests::relay::{Impairment, Relay, RelayConfig, Schedule};
use tongxin_loadtests::run::{Signalling, Target};
use tongxin_loadtests::scenario::{RampSpec, Scenario};

/// Measuring instruments for Tongxin.
#[derive(Debug, Parser)]
#[command(name = "tongxin-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay UDP between clients and a server through an emulated weak link.
    Relay(RelayArgs),
    /// Run a load scenario against a running server; writes report.json and report.html.
    Run(RunArgs),
    /// Run the same scenario against Janus and Tongxin, each alone in a network namespace
    /// (root); writes comparison.json and comparison.html, and each server's report.
    Compare(CompareArgs),
}

/// Which server `run` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// Tongxin: WHIP and WHEP with join tokens.
    Tongxin,
    /// Janus's VideoRoom over its HTTP JSON API (rooms from `scripts/janus.sh config`).
    Janus,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The server.
    #[arg(long, value_enum, default_value = "tongxin")]
    target: TargetKind,
    /// The server's HTTP address: loopback, or a namespace's 10.199.x.y (Janus: port 8088).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// The server's process id, for its CPU and memory (e.g. `$(pgrep -f 'tongxin serve')`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's join-token key file (`<data_dir>/join-token.key`); or set TONGXIN_AUTH_TOKEN_SECRET.
    #[arg(long, default_value = "data/join-token.key")]
    token_key_file: std::path::PathBuf,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "load-report")]
    out: std::path::PathBuf,
    /// Where encoded media is cached (default ~/.cache/tongxin-load).
    #[arg(long)]
    cache_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The servers, in the order they run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "janus,tongxin")]
    servers: Vec<TargetKind>,
    /// The `tongxin` binary (default: next to this one).
    #[arg(long)]
    tongxin_bin: Option<std::path::PathBuf>,
    /// The core each server is pinned to; run the generator on another (`taskset -c 1 tongxin-load …`).
    #[arg(long, default_value_t = 0)]
    server_core: u32,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Where comparison.{json,html} and each server's report.{json,html} (in a subdirectory) go.
    #[arg(long, default_value = "compare-report")]
    out: std::path::PathBuf,
    /// Where encoded media is cached (default ~/.cache/tongxin-load).
    #[arg(long)]
    cache_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// A TOML scenario; the flags below override its fields.
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// Scenario name in the report.
    #[arg(long)]
    name: Option<String>,
    /// Rooms.
    #[arg(long)]
    rooms: Option<u32>,
    /// WHIP publishers per room.
    #[arg(long)]
    publishers: Option<u32>,
    /// Subscribers per room at each step, e.g. 10,25,50,100.
    #[arg(long, value_delimiter = ',')]
    subscribers: Option<Vec<u32>>,
    /// Video bitrate, kbit/s.
    #[arg(long)]
    video_kbps: Option<u32>,
    /// Video size, e.g. 1280x720.
    #[arg(long)]
    size: Option<String>,
    /// Publishers send three simulcast layers by rid (q 320x180, h 640x360, f 1280x720);
    /// --video-kbps and --size are then ignored.
    #[arg(long)]
    simulcast: bool,
    /// Measuring window per step, seconds.
    #[arg(long)]
    seconds: Option<u32>,
    /// Quiet seconds between the joins and the window.
    #[arg(long)]
    settle: Option<u32>,
    /// Joins per second.
    #[arg(long)]
    join_rate: Option<f64>,
    /// Every subscriber's link: random loss 0-1 (through the seeded relay).
    #[arg(long)]
    loss: Option<f64>,
    /// Every subscriber's link: one-way delay, ms.
    #[arg(long)]
    delay_ms: Option<u32>,
    /// Every subscriber's link: jitter, ms.
    #[arg(long)]
    jitter_ms: Option<u32>,
    /// Every subscriber's link: rate cap towards it, kbit/s.
    #[arg(long)]
    cap_kbps: Option<u32>,
    /// Seed of the link's random decisions.
    #[arg(long)]
    seed: Option<u64>,
    /// After the steps, add subscribers until frame loss passes 1 %, the server's core
    /// saturates or the generator is bound.
    #[arg(long)]
    ramp: bool,
    /// Subscribers per room added at each ramp step (implies --ramp).
    #[arg(long)]
    ramp_step: Option<u32>,
    /// Subscribers per room at most in the ramp (implies --ramp).
    #[arg(long)]
    ramp_max: Option<u32>,
}

impl ScenarioArgs {
    /// The scenario from the file (if any) with the flags applied, checked.
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut s = match &self.scenario {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => Scenario::default(),
        };
        if let Some(v) = &self.name {
            s.name.clone_from(v);
        }
        s.rooms = self.rooms.unwrap_or(s.rooms);
        s.publishers_per_room = self.publishers.unwrap_or(s.publishers_per_room);
        if let Some(v) = &self.subscribers {
            s.subscribers.clone_from(v);
        }
        s.video_kbps = self.video_kbps.unwrap_or(s.video_kbps);
        if let Some(size) = &self.size {
            let (w, h) = size.split_once('x').context("--size: expected WIDTHxHEIGHT, e.g. 1280x720")?;
            s.width = w.parse().context("--size width")?;
            s.height = h.parse().context("--size height")?;
        }
        s.simulcast |= self.simulcast;
        s.seconds = self.seconds.unwrap_or(s.seconds);
        s.settle_seconds = self.settle.unwrap_or(s.settle_seconds);
        s.join_rate = self.join_rate.unwrap_or(s.join_rate);
        if self.loss.is_some() || self.delay_ms.is_some() || self.jitter_ms.is_some() || self.cap_kbps.is_some() || self.seed.is_some() {
            let mut link = s.link.unwrap_or_default();
            link.loss = self.loss.unwrap_or(link.loss);
            link.delay_ms = self.delay_ms.unwrap_or(link.delay_ms);
            link.jitter_ms = self.jitter_ms.unwrap_or(link.jitter_ms);
            link.cap_kbps = self.cap_kbps.or(link.cap_kbps);
            link.seed = self.seed.unwrap_or(link.seed);
            s.link = Some(link);
        }
        if self.ramp || self.ramp_step.is_some() || self.ramp_max.is_some() {
            let mut ramp: RampSpec = s.ramp.unwrap_or_default();
            ramp.step = self.ramp_step.unwrap_or(ramp.step);
            ramp.max = self.ramp_max.unwrap_or(ramp.max);
            s.ramp = Some(ramp);
        }
        s.validate().map_err(|e| anyhow::anyhow!("scenario: {e}"))?;
        Ok(s)
    }
}

fn cache_dir(flag: &Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    match flag {
        Some(d) => Ok(d.clone()),
        None => tongxin_loadtests::media::default_cache_dir().context("no cache directory: pass --cache-dir"),
    }
}

/// The local address that routes to `to` (a UDP socket's source after connect; nothing is sent).
fn local_ip_towards(to: SocketAddr) -> anyhow::Result<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(to).with_context(|| format!("no route to {to}"))?;
    Ok(socket.local_addr()?.ip())
}

impl RunArgs {
    fn target(&self) -> anyhow::Result<Target> {
        let hostport = self.http.strip_prefix("http://").unwrap_or(&self.http).trim_end_matches('/');
        let http: SocketAddr = hostport.parse().with_context(|| format!("--http {}: expected http://127.0.0.1:PORT", self.http))?;
        anyhow::ensure!(
            http.ip().is_loopback() || tongxin_loadtests::netns::is_namespace_addr(http.ip()),
            "--http must be a loopback address or a namespace's 10.199.x.y (load stays on this machine)"
        );
        let signalling = match self.target {
            TargetKind::Janus => Signalling::Janus,
            TargetKind::Tongxin => {
                let secret = match std::env::var("TONGXIN_AUTH_TOKEN_SECRET") {
                    Ok(s) => s,
                    Err(_) => std::fs::read_to_string(&self.token_key_file)
                        .with_context(|| format!("cannot read the server's token key {}", self.token_key_file.display()))?,
                };
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret.trim())
                    .context("the token key is not base64")?;
                Signalling::WhipWhep { token_key: tongxin_common::TokenKey::from_secret(&bytes).context("the token key")? }
            }
        };
        let local_ip = if http.ip().is_loopback() { http.ip() } else { local_ip_towards(http)? };
        Ok(Target { http, server_pid: self.server_pid, signalling, local_ip, cache_dir: cache_dir(&self.cache_dir)?, progress: true })
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario.scenario()?;
    let target = args.target()?;
    let outcome = tongxin_loadtests::run::run(&scenario, &target).await.map_err(|e| anyhow::anyhow!("the run failed: {e}"))?;
    let (json, html) = outcome.report.write(&args.out).context("cannot write the report")?;
    print!("{}", outcome.report.summary_table());
    println!("report: {} and {}", json.display(), html.display());
    Ok(if outcome.report.verdict.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// Where clients send to.
    #[arg(long, default_value = "127.0.0.1:9882")]
    listen: SocketAddr,
    /// Where packets go on (the SFU's media port).
    #[arg(long)]
    upstream: SocketAddr,
    /// Rate cap for both directions, e.g. 150kbit or 2mbit (none by default).
    #[arg(long)]
    rate: Option<String>,
    /// Random loss for both directions, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// One-way delay for both directions, e.g. 80ms.
    #[arg(long, default_value = "0ms")]
    delay: String,
    /// Extra random delay up to this, e.g. 20ms.
    #[arg(long, default_value = "0ms")]
    jitter: String,
    /// Queue behind the cap before drops, e.g. 200ms.
    #[arg(long, default_value = "200ms")]
    queue: String,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A TOML file of impairment changes over time ([[step]] at = "10s" down = { ... }).
    #[arg(long)]
    schedule: Option<std::path::PathBuf>,
}

/// Parses "150kbit", "2mbit", "64000" (bits per second).
fn parse_rate(s: &str) -> anyhow::Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix("kbit") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix("mbit") {
        (n, 1_000_000)
    } else if let Some(n) = s.strip_suffix("bit") {
        (n, 1)
    } else {
        (s.as_str(), 1)
    };
    let value: f64 = num.trim().parse().with_context(|| format!("--rate {s:?}: expected e.g. 150kbit or 2mbit"))?;
    anyhow::ensure!(value > 0.0, "--rate must be above 0");
    Ok((value * mult as f64) as u64)
}

async fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario.scenario()?;
    let tongxin_bin = match &args.tongxin_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("tongxin"),
    };
    let servers = args
        .servers
        .iter()
        .map(|k| match k {
            TargetKind::Janus => Server::Janus,
            TargetKind::Tongxin => Server::Tongxin { binary: tongxin_bin.clone() },
        })
        .collect();
    let config =
        CompareConfig { scenario, servers, server_core: Some(args.server_core), cache_dir: cache_dir(&args.cache_dir)?, progress: true };
    // On Ctrl-C or SIGTERM the comparison is dropped: servers stop and their namespaces go.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let comparison = tokio::select! {
        c = tongxin_loadtests::compare::compare(&config) => c.map_err(|e| anyhow::anyhow!("the comparison failed: {e}"))?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    };
    for run in &comparison.runs {
        run.report.write(&args.out.join(run.server.to_lowercase())).context("cannot write a server's report")?;
    }
    let (json, html) = comparison.write(&args.out).context("cannot write the comparison")?;
    print!("{}", comparison.summary_table());
    println!("report: {} and {}", json.display(), html.display());
    let ok = comparison.runs.iter().all(|r| r.report.verdict.ok);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let d = |flag: &str, v: &str| humantime::parse_duration(v).with_context(|| format!("{flag} {v:?}: expected e.g. 80ms"));
    let impairment = Impairment {
        rate_bps: args.rate.as_deref().map(parse_rate).transpose()?,
        burst_bytes: 4096,
        queue_limit: d("--queue", &args.queue)?,
        loss: args.loss,
        delay: d("--delay", &args.delay)?,
        jitter: d("--jitter", &args.jitter)?,
    };
    impairment.validate().map_err(|e| anyhow::anyhow!("--loss/--rate: {e}"))?;
    let schedule = match &args.schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Schedule::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Schedule::default(),
    };
    let relay = Relay::start(RelayConfig {
        listen: args.listen,
        upstream: args.upstream,
        up: impairment,
        down: impairment,
        seed: args.seed,
        schedule,
    })
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("relaying {} -> {} (Ctrl-C to stop)", relay.local_addr(), args.upstream);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let s = relay.stats();
                eprintln!("clients {} | up: {} offered, {} lost, {} queue-dropped | down: {} offered, {} lost, {} queue-dropped",
                    s.clients, s.up.offered, s.up.lost, s.up.queue_drops, s.down.offered, s.down.lost, s.down.queue_drops);
            }
        }
    }
    relay.stop();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The webrtc crate warns about every answering peer before its first ICE check and about
    // every retransmission that arrives after the original (SRTP replay): noise under load.
    let filter = tracing_subscriber::EnvFilter::new("warn,rtc_ice=error,rtc_dtls=error,rtc::peer_connection::handler=error");
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tongxin-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Relay(args) => rt.block_on(relay(args)),
        Command::Run(args) => match rt.block_on(run(args)) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Compare(args) => match rt.block_on(compare(args)) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tongxin-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("150kbit").unwrap(), 150_000);
        assert_eq!(parse_rate("2mbit").unwrap(), 2_000_000);
        assert_eq!(parse_rate("64000").unwrap(), 64_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0kbit").is_err());
    }
}
