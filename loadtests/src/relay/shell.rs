//! The relay's I/O: one listening UDP socket for clients; per client, a socket of its own toward
//! the upstream (so the server sees one 5-tuple per client, as behind a NAT) and a [`Link`] per
//! direction. Delayed packets wait in a timer queue; nothing blocks on a slow path.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::model::{Impairment, Link, LinkStats, Verdict};

/// One change of the impairment at a point of the run.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// When, from the relay's start (e.g. "10s").
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    /// Client → upstream from then on.
    pub up: Option<Impairment>,
    /// Upstream → client from then on.
    pub down: Option<Impairment>,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Impairment changes over time, in order.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The steps.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Parses a TOML schedule (`[[step]] at = "10s" down = { rate_bps = 150000, loss = 0.05 }`).
    pub fn from_toml(text: &str) -> Result<Schedule, String> {
        let s: Schedule = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, step) in s.steps.iter().enumerate() {
            for imp in [&step.up, &step.down].into_iter().flatten() {
                imp.validate().map_err(|e| format!("step {}: {e}", i + 1))?;
            }
            if i > 0 && step.at < s.steps[i - 1].at {
                return Err(format!("step {}: steps must be in time order", i + 1));
            }
        }
        Ok(s)
    }
}

/// How a relay is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients send to.
    pub listen: SocketAddr,
    /// Where packets go on (the SFU's media port).
    pub upstream: SocketAddr,
    /// Client → upstream at the start.
    pub up: Impairment,
    /// Upstream → client at the start.
    pub down: Impairment,
    /// The seed of every random decision (each client's links derive theirs from it).
    pub seed: u64,
    /// Changes over time.
    pub schedule: Schedule,
}

/// Totals over every client, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client → upstream.
    pub up: LinkStats,
    /// Upstream → client.
    pub down: LinkStats,
    /// Clients seen.
    pub clients: usize,
}

/// A running relay.
pub struct Relay {
    local_addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Binds and starts relaying.
    pub async fn start(config: RelayConfig) -> std::io::Result<Relay> {
        config.up.validate().map_err(std::io::Error::other)?;
        config.down.validate().map_err(std::io::Error::other)?;
        let listen = Arc::new(UdpSocket::bind(config.listen).await?);
        let local_addr = listen.local_addr()?;
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let task = tokio::spawn(run(config, listen, stats.clone()));
        Ok(Relay { local_addr, stats, task })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops relaying.
    pub fn stop(self) {
        self.task.abort();
    }
}

struct Client {
    upstream: Arc<UdpSocket>,
    up: Link,
    down: Link,
}

/// A packet waiting for its departure time.
struct Pending {
    at: Instant,
    order: u64,
    to_upstream: bool,
    client: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

async fn run(config: RelayConfig, listen: Arc<UdpSocket>, stats: Arc<Mutex<RelayStats>>) {
    let started = Instant::now();
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut next_step = 0;
    let (from_upstream_tx, mut from_upstream) = mpsc::channel::<(SocketAddr, Vec<u8>)>(4096);
    let mut buf = vec![0u8; 65536];
    let (mut up_now, mut down_now) = (config.up, config.down);
    loop {
        let wake = queue.peek().map(|p| p.0.at);
        let step_at = config.schedule.steps.get(next_step).map(|s| started + s.at);
        let deadline = [wake, step_at].into_iter().flatten().min().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            got = listen.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let now = Instant::now();
                let client = match clients.get_mut(&from) {
                    Some(c) => c,
                    None => {
                        let bind: SocketAddr = if config.upstream.is_ipv4() { "127.0.0.1:0".parse().expect("literal") } else { "[::1]:0".parse().expect("literal") };
                        let Ok(upstream) = UdpSocket::bind(bind).await else { continue };
                        let upstream = Arc::new(upstream);
                        spawn_reader(upstream.clone(), from, from_upstream_tx.clone());
                        let seed = config.seed.wrapping_add(clients.len() as u64 * 2);
                        clients.insert(from, Client { upstream, up: Link::new(up_now, seed), down: Link::new(down_now, seed + 1) });
                        clients.get_mut(&from).expect("just inserted")
                    }
                };
                if let Verdict::DeliverAt(at) = client.up.on_packet(now, n) {
                    order += 1;
                    queue.push(Reverse(Pending { at, order, to_upstream: true, client: from, bytes: buf[..n].to_vec() }));
                }
            }
            Some((client_addr, bytes)) = from_upstream.recv() => {
                let now = Instant::now();
                if let Some(client) = clients.get_mut(&client_addr)
                    && let Verdict::DeliverAt(at) = client.down.on_packet(now, bytes.len())
                {
                    order += 1;
                    queue.push(Reverse(Pending { at, order, to_upstream: false, client: client_addr, bytes }));
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        let now = Instant::now();
        while let Some(step) = config.schedule.steps.get(next_step).filter(|s| started + s.at <= now) {
            up_now = step.up.unwrap_or(up_now);
            down_now = step.down.unwrap_or(down_now);
            for c in clients.values_mut() {
                c.up.set(up_now);
                c.down.set(down_now);
            }
            tracing::info!(step = next_step + 1, "relay impairment changed");
            next_step += 1;
        }
        while queue.peek().is_some_and(|p| p.0.at <= now) {
            let Some(Reverse(p)) = queue.pop() else { break };
            let Some(client) = clients.get(&p.client) else { continue };
            let _ = if p.to_upstream {
                client.upstream.send_to(&p.bytes, config.upstream).await
            } else {
                listen.send_to(&p.bytes, p.client).await
            };
        }
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        s.clients = clients.len();
        s.up = sum(clients.values().map(|c| c.up.stats));
        s.down = sum(clients.values().map(|c| c.down.stats));
    }
}

fn sum(all: impl Iterator<Item = LinkStats>) -> LinkStats {
    all.fold(LinkStats::default(), |a, b| LinkStats {
        offered: a.offered + b.offered,
        lost: a.lost + b.lost,
        queue_drops: a.queue_drops + b.queue_drops,
        delivered: a.delivered + b.delivered,
        delivered_bytes: a.delivered_bytes + b.delivered_bytes,
    })
}

fn spawn_reader(socket: Arc<UdpSocket>, client: SocketAddr, tx: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            if tx.send((client, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}
