//! A network namespace joined to the root namespace by a veth pair, with a kernel rate cap
//! (`tbf`) on the path towards it — a real bottleneck for real peers (a browser run with
//! `ip netns exec`), where the seeded [`relay`](crate::relay) adds loss and delay in user space.
//!
//! Needs root (`ip` and `tc` from iproute2). Names and addresses are unique per process and per
//! namespace, so a leftover of a crashed run never collides with the next one; [`Drop`] removes
//! the namespace and the link, also when a test panics.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A failed `ip` or `tc` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The command could not be started (iproute2 missing?).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Whether this process may create namespaces: `Ok(())` as root; otherwise the reason to skip.
///
/// # Errors
///
/// The reason, for a test to print when it skips.
pub fn root_check() -> Result<(), String> {
    // The effective uid is the second field of `Uid:` in /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    match euid {
        Some("0") => Ok(()),
        Some(uid) => Err(format!("needs root to create network namespaces (running as uid {uid})")),
        None => Err("cannot tell the effective uid from /proc/self/status".into()),
    }
}

/// For a test that needs root: `true` when it can go on. Off CI (`CI` unset) it prints why it
/// skips and returns `false`; with `CI=true` it panics instead, so CI never passes by skipping.
#[must_use]
pub fn root_or_skip(test: &str) -> bool {
    match root_check() {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test} cannot run on CI: {reason}"),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            false
        }
    }
}

/// Whether `ip` lies in 10.199.0.0/16, where [`Netns::create`] puts its veth pairs: a server
/// reached there runs in a namespace on this machine.
#[must_use]
pub fn is_namespace_addr(ip: std::net::IpAddr) -> bool {
    matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..2] == [10, 199])
}

/// A network namespace with a veth pair to the root namespace on a private /30
/// (`10.199.x.y/30`): [`Netns::host_addr`] on the root side, [`Netns::ns_addr`] inside. Traffic
/// from the root side towards the namespace leaves through the root-side veth, where
/// [`Netns::set_cap`] puts its `tbf`.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_addr: Ipv4Addr,
    ns_addr: Ipv4Addr,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates the namespace, the veth pair and their addresses, all links up (loopback inside
    /// too). No cap yet.
    ///
    /// # Errors
    ///
    /// The first `ip` command that failed; what was created is removed again.
    pub fn create() -> Result<Netns, NetnsError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // 16384 /30 subnets in 10.199.0.0/16; pid and counter spread runs over them.
        let slot = (pid.wrapping_mul(8).wrapping_add(n)) % 16_384;
        let base = u32::from(Ipv4Addr::new(10, 199, 0, 0)) + slot * 4;
        // Interface names are at most 15 bytes: "txh" + pid (≤ 7 digits) + "n" + counter.
        let netns = Netns {
            name: format!("tongxin-{pid}-{n}"),
            host_if: format!("txh{pid}n{}", n % 1000),
            ns_if: format!("txn{pid}n{}", n % 1000),
            host_addr: Ipv4Addr::from(base + 1),
            ns_addr: Ipv4Addr::from(base + 2),
        };
        // From here on, Drop cleans up whatever step fails.
        netns.setup()?;
        Ok(netns)
    }

    fn setup(&self) -> Result<(), NetnsError> {
        let (name, host_if, ns_if) = (self.name.as_str(), self.host_if.as_str(), self.ns_if.as_str());
        run("ip", &["netns", "add", name])?;
        run("ip", &["link", "add", host_if, "type", "veth", "peer", "name", ns_if])?;
        run("ip", &["link", "set", ns_if, "netns", name])?;
        run("ip", &["addr", "add", &format!("{}/30", self.host_addr), "dev", host_if])?;
        run("ip", &["link", "set", host_if, "up"])?;
        run("ip", &["-n", name, "addr", "add", &format!("{}/30", self.ns_addr), "dev", ns_if])?;
        run("ip", &["-n", name, "link", "set", ns_if, "up"])?;
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace's name (for `ip netns exec`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root side's veth interface, where the cap sits (for `tc -s qdisc show dev …`).
    #[must_use]
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// The root side's address: where servers listen for peers inside the namespace.
    #[must_use]
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The address inside the namespace.
    #[must_use]
    pub fn ns_addr(&self) -> Ipv4Addr {
        self.ns_addr
    }

    /// Caps traffic towards the namespace at `rate_bps` with a token bucket (4 KiB burst,
    /// packets queued at most 200 ms, then dropped), replacing any cap before.
    ///
    /// # Errors
    ///
    /// `tc` failed.
    pub fn set_cap(&self, rate_bps: u64) -> Result<(), NetnsError> {
        let rate = format!("{rate_bps}bit");
        run("tc", &["qdisc", "replace", "dev", &self.host_if, "root", "tbf", "rate", &rate, "burst", "4kb", "latency", "200ms"])
    }

    /// Removes the cap: the link runs at veth speed again.
    ///
    /// # Errors
    ///
    /// `tc` failed (for example, there was no cap).
    pub fn lift_cap(&self) -> Result<(), NetnsError> {
        run("tc", &["qdisc", "del", "dev", &self.host_if, "root"])
    }

    /// Bytes received so far by the namespace's end of the veth pair (its kernel counter).
    ///
    /// # Errors
    ///
    /// `ip` failed or printed something unexpected.
    pub fn ns_rx_bytes(&self) -> Result<u64, NetnsError> {
        let command = format!("ip netns exec {} cat /sys/class/net/{}/statistics/rx_bytes", self.name, self.ns_if);
        let path = format!("/sys/class/net/{}/statistics/rx_bytes", self.ns_if);
        let out = output("ip", &["netns", "exec", &self.name, "cat", &path])?;
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| NetnsError::Failed { command, stderr: format!("not a count: {e}") })
    }

    /// `program` to be run inside the namespace (`ip netns exec <name> <program>`); add its
    /// arguments and spawn it.
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, and with it the pair; the explicit
        // delete covers a failure before the end was moved. Errors here only mean "already gone".
        let _ = output("ip", &["link", "del", &self.host_if]);
        let _ = output("ip", &["netns", "del", &self.name]);
    }
}

fn output(program: &str, args: &[&str]) -> Result<Output, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program).args(args).output().map_err(|source| NetnsError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(NetnsError::Failed { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), NetnsError> {
    output(program, args).map(|_| ())
}
