//! The I/O shell: one UDP socket for every peer, one task that owns the [`Sfu`] core and feeds it
//! datagrams, timeouts and commands. Handlers talk to it through a cloneable [`MediaServer`].

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tongxin_common::{Identity, JoinGrant, RoomName};

use crate::core::{CodecPolicy, PeerId, Session, Sfu, SfuConfig, SfuError, SfuEvent};

enum Command {
    Publish { grant: JoinGrant, offer: String, reply: oneshot::Sender<Result<Session, SfuError>> },
    Subscribe { grant: JoinGrant, target: Option<Identity>, offer: String, reply: oneshot::Sender<Result<Session, SfuError>> },
    End { peer: PeerId, reply: oneshot::Sender<Result<(), SfuError>> },
    Policy { room: RoomName, policy: CodecPolicy },
    Stats { reply: oneshot::Sender<MediaStats> },
}

/// Counters of the media task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Live peer connections.
    pub peers: usize,
    /// Datagrams dropped before reaching a peer.
    pub dropped: u64,
    /// Panics caught in the core (each one a bug).
    pub panics: u64,
}

/// Why the media server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP port could not be bound.
    #[error("cannot bind the media port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Listening on all interfaces without saying which address clients reach.
    #[error("media.listen is a wildcard address; set media.public_ip to the address clients reach")]
    NoPublicIp,
}

/// A handle to the media task; cheap to clone.
#[derive(Clone)]
pub struct MediaServer {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<SfuEvent>,
    local_addr: SocketAddr,
    candidate: SocketAddr,
}

/// The media task stopped (the server is shutting down).
fn gone() -> SfuError {
    SfuError::Internal
}

impl MediaServer {
    /// Binds `listen` and starts the media task. `public_ip` is the address announced to clients
    /// (default: the listen address). A loopback candidate makes the server ignore anything that
    /// does not come from loopback.
    pub async fn start(listen: SocketAddr, public_ip: Option<IpAddr>, mut config: SfuConfig) -> Result<MediaServer, StartError> {
        let socket = UdpSocket::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        let local_addr = socket.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
        let ip = public_ip.unwrap_or(local_addr.ip());
        if ip.is_unspecified() {
            return Err(StartError::NoPublicIp);
        }
        let candidate = SocketAddr::new(ip, local_addr.port());
        config.candidates = vec![candidate];
        config.loopback_only = config.loopback_only || ip.is_loopback();
        let (tx, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(1024);
        tokio::spawn(run(Sfu::new(config), socket, candidate, rx, events.clone()));
        tracing::info!(port = local_addr.port(), "media server listening (UDP)");
        Ok(MediaServer { tx, events, local_addr, candidate })
    }

    /// A stream of the core's events (peers connected, removed with a reason). A receiver that
    /// falls more than 1024 events behind misses some and is told so.
    pub fn events(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address announced in ICE candidates.
    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    /// Starts a publisher (WHIP).
    pub async fn publish(&self, grant: JoinGrant, offer: String) -> Result<Session, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Publish { grant, offer, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Starts a subscriber (WHEP).
    pub async fn subscribe(&self, grant: JoinGrant, target: Option<Identity>, offer: String) -> Result<Session, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Subscribe { grant, target, offer, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Ends a session.
    pub async fn end(&self, peer: PeerId) -> Result<(), SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::End { peer, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Sets a room's codec policy.
    pub async fn set_room_policy(&self, room: RoomName, policy: CodecPolicy) {
        let _ = self.tx.send(Command::Policy { room, policy }).await;
    }

    /// The media task's counters.
    pub async fn stats(&self) -> MediaStats {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Stats { reply }).await.is_err() {
            return MediaStats::default();
        }
        rx.await.unwrap_or_default()
    }
}

/// Runs `f` on the core; a panic is logged and counted instead of killing every session.
fn guarded<T>(panics: &mut u64, what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            *panics += 1;
            tracing::error!(what, "the media core panicked; this is a bug");
            None
        }
    }
}

async fn run(mut sfu: Sfu, socket: UdpSocket, candidate: SocketAddr, mut rx: mpsc::Receiver<Command>, events: broadcast::Sender<SfuEvent>) {
    let mut buf = vec![0u8; 2048];
    let mut panics = 0u64;
    loop {
        let wake = sfu.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    let now = Instant::now();
                    guarded(&mut panics, "datagram", || sfu.handle_datagram(now, source, candidate, &buf[..n]));
                }
                Err(e) => tracing::debug!(error = %e, "media socket receive error"),
            },
            command = rx.recv() => {
                let Some(command) = command else { break };
                let now = Instant::now();
                match command {
                    Command::Publish { grant, offer, reply } => {
                        let r = guarded(&mut panics, "publish", || sfu.publish(now, &grant, &offer));
                        let _ = reply.send(r.unwrap_or(Err(SfuError::Internal)));
                    }
                    Command::Subscribe { grant, target, offer, reply } => {
                        let r = guarded(&mut panics, "subscribe", || sfu.subscribe(now, &grant, target, &offer));
                        let _ = reply.send(r.unwrap_or(Err(SfuError::Internal)));
                    }
                    Command::End { peer, reply } => {
                        let r = guarded(&mut panics, "end", || sfu.end(now, peer));
                        let _ = reply.send(r.unwrap_or(Err(SfuError::Internal)));
                    }
                    Command::Policy { room, policy } => sfu.set_room_policy(&room, policy),
                    Command::Stats { reply } => {
                        let _ = reply.send(MediaStats { peers: sfu.peer_count(), dropped: sfu.dropped, panics });
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                guarded(&mut panics, "timeout", || sfu.handle_timeout(now));
            }
        }
        while let Some(t) = sfu.poll_transmit() {
            if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                tracing::debug!(error = %e, "media send failed");
            }
        }
        while let Some(event) = sfu.poll_event() {
            tracing::debug!(?event, "sfu event");
            // No receiver is fine: nobody is interested right now.
            let _ = events.send(event);
        }
    }
    tracing::info!("media server stopped");
}
