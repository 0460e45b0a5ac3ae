//! `tongxin-load`: measuring instruments for Tongxin.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tongxin_loadtests::relay::{Impairment, Relay, RelayConfig, Schedule};

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
    /// Measure 1 publisher → N subscribers against a running server (see --help of fanout).
    Fanout {
        /// --http URL --server-pid PID --publisher-token T --subscriber-token T --room R
        /// [--subscribers 20] [--seconds 30] [--stagger-ms 200] [--settle 2] [--ignore-pli]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tongxin-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Relay(args) => rt.block_on(relay(args)),
        Command::Fanout { args } => return rt.block_on(tongxin_loadtests::fanout::main(args)),
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
