//! The fair set-up for comparing servers: each server under test runs alone in a network
//! namespace of its own ([`Netns`]), its API and media bound to the namespace's veth address,
//! optionally pinned to one core; the generator stays in the root namespace and reaches it
//! through the veth pair. Janus needs this (Debian's 1.1.2 never offers a loopback candidate);
//! Tongxin runs the same way so both see the same path.
//!
//! Needs root. Dropping a [`ServerUnderTest`] kills the server, then removes its namespace.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tongxin_common::TokenKey;

use crate::janus;
use crate::netns::Netns;
use crate::participant::{self, Res};
use crate::run::{Signalling, Target};

/// Tongxin's HTTP port in its namespace.
const TONGXIN_HTTP_PORT: u16 = 8080;
/// Tongxin's media port in its namespace.
const TONGXIN_MEDIA_PORT: u16 = 7882;
/// How long a server may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Which server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// Debian's Janus (`/usr/bin/janus`) with the VideoRoom plugin.
    Janus,
    /// `tongxin serve`, this binary.
    Tongxin {
        /// The `tongxin` binary.
        binary: PathBuf,
    },
}

impl Server {
    /// The server's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Server::Janus => "Janus",
            Server::Tongxin { .. } => "Tongxin",
        }
    }
}

/// A server running in its namespace. Fields drop in order: the process is killed (in `Drop`)
/// before the namespace and the temporary directory go.
pub struct ServerUnderTest {
    child: Child,
    netns: Netns,
    dir: tempfile::TempDir,
    server: Server,
    http: SocketAddr,
    signalling: Signalling,
    version: String,
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        // Already exited is fine; a benchmark server needs no graceful shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerUnderTest {
    /// Starts `server` in a new namespace, pinned to `core` when given (`taskset`), and waits
    /// until its API answers.
    ///
    /// # Errors
    ///
    /// Not root, the server is not installed, or it did not come up (its log is in the message).
    pub async fn start(server: Server, core: Option<u32>) -> Res<ServerUnderTest> {
        let dir = tempfile::tempdir()?;
        let netns = Netns::create()?;
        let addr = IpAddr::V4(netns.ns_addr());
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let (program, args, http, signalling) = match &server {
            Server::Janus => {
                let (binary, libdir) = janus::installed().ok_or("Janus is not installed (scripts/janus.sh install)")?;
                janus::write_config(dir.path(), addr, &libdir)?;
                let config = dir.path().join("janus.jcfg");
                let args = vec![
                    format!("--configs-folder={}", dir.path().display()),
                    format!("--config={}", config.display()),
                    "--disable-colors".to_owned(),
                ];
                (binary, args, SocketAddr::new(addr, janus::HTTP_PORT), Signalling::Janus)
            }
            Server::Tongxin { binary } => {
                let secret: [u8; 32] = rand::random();
                let secret_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret);
                let token_key = TokenKey::from_secret(&secret)?;
                let http = SocketAddr::new(addr, TONGXIN_HTTP_PORT);
                let config = dir.path().join("tongxin.toml");
                std::fs::write(&config, tongxin_config(dir.path(), http, SocketAddr::new(addr, TONGXIN_MEDIA_PORT), &secret_b64))?;
                let args = vec![format!("--config={}", config.display()), "serve".to_owned()];
                (binary.clone(), args, http, Signalling::WhipWhep { token_key })
            }
        };
        if !program.is_file() {
            return Err(format!("{} not found", program.display()).into());
        }
        let mut cmd = match core {
            Some(core) => {
                let mut c = netns.command("taskset");
                c.args(["-c", &core.to_string()]).arg(&program);
                c
            }
            None => netns.command(&program.to_string_lossy()),
        };
        // `ip netns exec` and `taskset` exec the server in place: the child's pid is the server's.
        let child = cmd.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        let mut sut = ServerUnderTest { child, netns, dir, server, http, signalling, version: String::new() };
        sut.wait_ready().await?;
        Ok(sut)
    }

    async fn wait_ready(&mut self) -> Res<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{} exited ({status}) at start:\n{}", self.server.name(), self.log_tail()).into());
            }
            let ready = match self.server {
                Server::Janus => {
                    janus::info(self.http).await.ok().map(|info| format!("Janus {}", info["version_string"].as_str().unwrap_or("?")))
                }
                Server::Tongxin { .. } => match participant::request(self.http, "GET", "/healthz", &[], "").await {
                    Ok((200, _, _)) => Some(format!("Tongxin {}", tongxin_version(&self.server))),
                    _ => None,
                },
            };
            if let Some(version) = ready {
                self.version = version;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not answer within {READY_WITHIN:?}:\n{}", self.server.name(), self.log_tail()).into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The server's name and version, e.g. `Janus 1.1.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The namespace the server runs in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// A load target for this server: participants bind to the root side of the veth pair.
    pub fn target(&self, cache_dir: &Path, progress: bool) -> Target {
        Target {
            http: self.http,
            server_pid: Some(self.pid()),
            signalling: self.signalling.clone(),
            local_ip: IpAddr::V4(self.netns.host_addr()),
            cache_dir: cache_dir.to_owned(),
            progress,
        }
    }
}

/// `tongxin.toml` for a server listening on `http` and `media` in its namespace. Renditions are
/// off: Janus only forwards, and a transcoder job (0.1-0.3 of a core, started while a new
/// subscriber's bandwidth estimate is still low) would be measured as forwarding cost.
fn tongxin_config(dir: &Path, http: SocketAddr, media: SocketAddr, secret_b64: &str) -> String {
    format!(
        "[http]\nlisten = \"{http}\"\n\n[storage]\ndata_dir = \"{}\"\n\n[auth]\ntoken_secret = \"{secret_b64}\"\n\n\
         [media]\nlisten = \"{media}\"\n\n[rooms]\nmax_participants = 450\n\n[transcode]\nenabled = false\n\n\
         [log]\nlevel = \"warn\"\n",
        dir.join("data").display()
    )
}

fn tongxin_version(server: &Server) -> String {
    let Server::Tongxin { binary } = server else { return String::new() };
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default()
}
