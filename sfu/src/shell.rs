//! The I/O shell: one UDP socket for every peer, one task that owns the [`Sfu`] core and feeds it
//! datagrams, timeouts and commands. Handlers talk to it through a cloneable [`MediaServer`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tongxin_common::rooms::{Audience, BoxFuture, Permissions, RoomControl, RoomError, RoomEvent, RoomInfo, TrackSource};
use tongxin_common::{Identity, JoinGrant, RoomName};

use tongxin_transcoder::{AudioJob, AudioJobStats, ReencodedPacket, RungFrame, VideoJob, VideoJobConfig, VideoJobStats};

use crate::core::{CodecPolicy, PeerId, Session, Sfu, SfuConfig, SfuError, SfuEvent};
use crate::renditions::{JobId, TranscodeOp};
use crate::signal::{ClientMessage, ConnId, ServerMessage};
use crate::tcp::{self, TcpEvent};

/// What the media task sends to one WebSocket.
#[derive(Debug)]
pub enum Outbound {
    /// A frame.
    Message(ServerMessage),
    /// Close the socket.
    Close,
}

/// How many frames may wait for a slow WebSocket before it is treated as gone.
pub(crate) const OUTBOUND_QUEUE: usize = 512;

type Reply<T> = oneshot::Sender<T>;

/// A service's room operation, run on the core.
enum RoomOp {
    Create(RoomName, Reply<Result<(), RoomError>>),
    Close(RoomName, Reply<Result<(), RoomError>>),
    Permissions(RoomName, Identity, Permissions, Reply<Result<(), RoomError>>),
    Remove(RoomName, Identity, Reply<Result<(), RoomError>>),
    Mute(RoomName, Identity, TrackSource, bool, Reply<Result<(), RoomError>>),
    Data(RoomName, serde_json::Value, Reply<Result<(), RoomError>>),
    Audience(RoomName, Identity, Audience, Reply<Result<(), RoomError>>),
    Rooms(Reply<Vec<RoomInfo>>),
}

enum Command {
    Join {
        conn: ConnId,
        grant: Option<JoinGrant>,
        resume: Option<String>,
        auto_subscribe: bool,
        tx: mpsc::Sender<Outbound>,
    },
    Client {
        conn: ConnId,
        message: ClientMessage,
    },
    ConnClosed {
        conn: ConnId,
    },
    Room(RoomOp),
    Publish {
        grant: JoinGrant,
        offer: String,
        reply: oneshot::Sender<Result<Session, SfuError>>,
    },
    Subscribe {
        grant: JoinGrant,
        target: Option<Identity>,
        offer: String,
        reply: oneshot::Sender<Result<Session, SfuError>>,
    },
    Probe {
        grant: JoinGrant,
        offer: String,
        reply: oneshot::Sender<Result<Session, SfuError>>,
    },
    End {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Policy {
        room: RoomName,
        policy: CodecPolicy,
    },
    Stats {
        reply: oneshot::Sender<MediaStats>,
    },
    #[cfg(feature = "testing")]
    InjectTranscoderPanic {
        reply: oneshot::Sender<usize>,
    },
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
    /// Open rooms.
    pub rooms: usize,
    /// Participants in all rooms (WHIP and WHEP sessions included).
    pub participants: usize,
    /// The transcoder: jobs running, jobs refused for want of a slot, and over every job since
    /// the start, frames in, rendition frames out, frames dropped (a full queue, or waiting for a
    /// keyframe after a loss), encode time (µs) and restarts after a panic.
    pub transcode: TranscodeStats,
}

/// The transcoder's counters ([`MediaStats::transcode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Jobs running now.
    pub jobs: usize,
    /// Jobs refused for want of a slot (`transcode.max_jobs`).
    pub refusals: u64,
    /// Source frames the jobs took in.
    pub frames_in: u64,
    /// Rendition frames they made.
    pub frames_out: u64,
    /// Source frames dropped.
    pub frames_dropped: u64,
    /// Time spent scaling and encoding, µs.
    pub encode_micros: u64,
    /// Workers restarted after a panic.
    pub restarts: u64,
    /// Keyframes of a rendition asked of its job (a subscriber switching to it, or one that
    /// lost packets of it).
    pub keyframe_requests: u64,
    /// Opus re-encoding jobs running now (not counted in `jobs`).
    pub audio_jobs: usize,
    /// Opus packets they made.
    pub audio_packets_out: u64,
}

impl TranscodeStats {
    fn add(&mut self, job: &VideoJobStats) {
        self.frames_in += job.frames_in;
        self.frames_out += job.rungs.iter().map(|r| r.frames_out).sum::<u64>();
        self.frames_dropped += job.frames_dropped_queue_full + job.frames_dropped_before_queue;
        self.encode_micros += job.rungs.iter().map(|r| r.encode_micros).sum::<u64>();
        self.restarts += job.restarts;
    }

    fn add_audio(&mut self, job: &AudioJobStats) {
        self.audio_packets_out += job.packets_out;
        self.restarts += job.restarts;
    }
}

/// What a job hands back to the media task.
enum JobOutput {
    Frame(RungFrame),
    Audio(ReencodedPacket),
}

/// Source packets an Opus job may hold before it drops them: a second of 20 ms frames.
const AUDIO_QUEUE_PACKETS: usize = 50;

/// The transcoder jobs the media task runs, and what the finished ones counted (with every
/// rendition keyframe request, which no job counts itself).
struct Jobs {
    running: HashMap<JobId, VideoJob>,
    audio: HashMap<JobId, AudioJob>,
    finished: TranscodeStats,
    outputs: mpsc::Sender<(JobId, JobOutput)>,
}

impl Jobs {
    fn stats(&self, refusals: u64) -> TranscodeStats {
        let mut all = self.finished;
        for job in self.running.values() {
            all.add(&job.stats());
        }
        for job in self.audio.values() {
            all.add_audio(&job.stats());
        }
        all.jobs = self.running.len();
        all.audio_jobs = self.audio.len();
        all.refusals = refusals;
        all
    }

    #[cfg(feature = "testing")]
    fn inject_panic(&self) -> usize {
        self.running.values().for_each(VideoJob::inject_panic);
        self.audio.values().for_each(AudioJob::inject_panic);
        self.running.len() + self.audio.len()
    }

    /// Carries out the core's transcoder instructions. A job's frames and packets come back
    /// through `outputs` (dropped when the media task is that far behind: a rendition frame late
    /// by 256 frames is of no use).
    fn run_ops(&mut self, sfu: &mut Sfu, now: Instant) {
        while let Some(op) = sfu.poll_transcode() {
            match op {
                TranscodeOp::Start { job, rungs } => {
                    let outputs = self.outputs.clone();
                    let sink = move |frame: RungFrame| drop(outputs.try_send((job, JobOutput::Frame(frame))));
                    match VideoJob::start(VideoJobConfig::new(rungs), sink) {
                        Ok(j) => drop(self.running.insert(job, j)),
                        Err(e) => tracing::error!(job, error = %e, "cannot start a transcoder job"),
                    }
                }
                TranscodeOp::StartAudio { job, target_bps } => {
                    let outputs = self.outputs.clone();
                    let sink = move |packet: ReencodedPacket| drop(outputs.try_send((job, JobOutput::Audio(packet))));
                    match AudioJob::start(target_bps, AUDIO_QUEUE_PACKETS, sink) {
                        Ok(j) => drop(self.audio.insert(job, j)),
                        Err(e) => tracing::error!(job, error = %e, "cannot start an opus job"),
                    }
                }
                TranscodeOp::Packet { job, packet } => {
                    if let Some(j) = self.audio.get(&job) {
                        j.push_rtp(packet);
                    } else if let Some(j) = self.running.get_mut(&job)
                        && j.push_rtp(packet).request_keyframe
                    {
                        sfu.rendition_lost_source(now, job);
                    }
                }
                TranscodeOp::Keyframe { job, rung } => {
                    if let Some(j) = self.running.get(&job) {
                        j.request_keyframe(rung);
                        self.finished.keyframe_requests += 1;
                    }
                }
                TranscodeOp::Stop { job } => {
                    if let Some(j) = self.running.remove(&job) {
                        self.finished.add(&j.stats());
                    }
                    if let Some(j) = self.audio.remove(&job) {
                        self.finished.add_audio(&j.stats());
                    }
                }
            }
        }
    }
}

/// Why the media server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP port (or the ICE-TCP port) could not be bound.
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
    room_events: broadcast::Sender<RoomEvent>,
    next_conn: Arc<AtomicU64>,
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
    pub async fn start(listen: SocketAddr, public_ip: Option<IpAddr>, config: SfuConfig) -> Result<MediaServer, StartError> {
        MediaServer::start_with_tcp(listen, None, public_ip, config).await
    }

    /// [`MediaServer::start`], and ICE over TCP on `tcp_listen` when given: a passive TCP
    /// candidate at `public_ip` (or the TCP listen address) and that port is announced next to
    /// the UDP one, with a lower priority.
    pub async fn start_with_tcp(
        listen: SocketAddr,
        tcp_listen: Option<SocketAddr>,
        public_ip: Option<IpAddr>,
        mut config: SfuConfig,
    ) -> Result<MediaServer, StartError> {
        let socket = UdpSocket::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        let local_addr = socket.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
        let ip = public_ip.unwrap_or(local_addr.ip());
        if ip.is_unspecified() {
            return Err(StartError::NoPublicIp);
        }
        let candidate = SocketAddr::new(ip, local_addr.port());
        if config.announce_udp {
            config.candidates = vec![candidate];
        }
        config.loopback_only = config.loopback_only || ip.is_loopback();
        let mut tcp = None;
        if let Some(tcp_listen) = tcp_listen {
            let listener =
                tokio::net::TcpListener::bind(tcp_listen).await.map_err(|source| StartError::Bind { addr: tcp_listen, source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Bind { addr: tcp_listen, source })?;
            let tcp_candidate = SocketAddr::new(public_ip.unwrap_or(bound.ip()), bound.port());
            config.tcp_candidates = vec![tcp_candidate];
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(tcp::accept(listener, tx));
            tracing::info!(port = bound.port(), "media server listening (ICE-TCP)");
            tcp = Some((rx, tcp_candidate));
        }
        let (tx, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(1024);
        let (room_events, _) = broadcast::channel(4096);
        let outputs = Outputs { events: events.clone(), room_events: room_events.clone(), conns: HashMap::new(), tcp: HashMap::new() };
        tokio::spawn(run(Sfu::new(config), socket, candidate, tcp, rx, outputs));
        tracing::info!(port = local_addr.port(), "media server listening (UDP)");
        Ok(MediaServer { tx, events, room_events, next_conn: Arc::new(AtomicU64::new(1)), local_addr, candidate })
    }

    /// A fresh id for a WebSocket connection.
    pub fn new_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// A `join` from a WebSocket: frames for it arrive on `tx` from now on.
    pub async fn join(
        &self,
        conn: ConnId,
        grant: Option<JoinGrant>,
        resume: Option<String>,
        auto_subscribe: bool,
        tx: mpsc::Sender<Outbound>,
    ) {
        let _ = self.tx.send(Command::Join { conn, grant, resume, auto_subscribe, tx }).await;
    }

    /// Any other frame from a WebSocket.
    pub async fn client_message(&self, conn: ConnId, message: ClientMessage) {
        let _ = self.tx.send(Command::Client { conn, message }).await;
    }

    /// The WebSocket closed.
    pub async fn conn_closed(&self, conn: ConnId) {
        let _ = self.tx.send(Command::ConnClosed { conn }).await;
    }

    async fn room_op<T>(&self, op: impl FnOnce(Reply<T>) -> RoomOp, gone: T) -> T {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Room(op(reply))).await.is_err() {
            return gone;
        }
        rx.await.unwrap_or(gone)
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

    /// Starts a network check (see [`Sfu::probe`]).
    pub async fn probe(&self, grant: JoinGrant, offer: String) -> Result<Session, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Probe { grant, offer, reply }).await.map_err(|_| gone())?;
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

    /// Makes every running transcoder job's worker panic on its next frame or packet (fault
    /// tests); returns how many jobs were hit.
    #[cfg(feature = "testing")]
    pub async fn inject_transcoder_panic(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::InjectTranscoderPanic { reply }).await.is_err() {
            return 0;
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

impl RoomControl for MediaServer {
    fn create_room<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(|r| RoomOp::Create(room.clone(), r), Err(RoomError::Unavailable)))
    }

    fn close_room<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(|r| RoomOp::Close(room.clone(), r), Err(RoomError::Unavailable)))
    }

    fn set_permissions<'a>(
        &'a self,
        room: &'a RoomName,
        identity: &'a Identity,
        permissions: Permissions,
    ) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(move |r| RoomOp::Permissions(room.clone(), identity.clone(), permissions, r), Err(RoomError::Unavailable)))
    }

    fn remove_participant<'a>(&'a self, room: &'a RoomName, identity: &'a Identity) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(|r| RoomOp::Remove(room.clone(), identity.clone(), r), Err(RoomError::Unavailable)))
    }

    fn mute_track<'a>(
        &'a self,
        room: &'a RoomName,
        identity: &'a Identity,
        source: TrackSource,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(move |r| RoomOp::Mute(room.clone(), identity.clone(), source, muted, r), Err(RoomError::Unavailable)))
    }

    fn set_audience<'a>(&'a self, room: &'a RoomName, identity: &'a Identity, audience: Audience) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(move |r| RoomOp::Audience(room.clone(), identity.clone(), audience, r), Err(RoomError::Unavailable)))
    }

    fn send_data<'a>(&'a self, room: &'a RoomName, message: serde_json::Value) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(self.room_op(move |r| RoomOp::Data(room.clone(), message, r), Err(RoomError::Unavailable)))
    }

    fn rooms(&self) -> BoxFuture<'_, Vec<RoomInfo>> {
        Box::pin(self.room_op(RoomOp::Rooms, Vec::new()))
    }

    fn events(&self) -> broadcast::Receiver<RoomEvent> {
        self.room_events.subscribe()
    }
}

/// Where the core's outputs go: event streams and the joined WebSockets.
struct Outputs {
    events: broadcast::Sender<SfuEvent>,
    room_events: broadcast::Sender<RoomEvent>,
    conns: HashMap<ConnId, mpsc::Sender<Outbound>>,
    /// Open ICE-TCP connections by remote address.
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

fn room_op(sfu: &mut Sfu, now: Instant, op: RoomOp) {
    match op {
        RoomOp::Create(room, reply) => drop(reply.send(sfu.create_room(now, &room))),
        RoomOp::Close(room, reply) => drop(reply.send(sfu.close_room(now, &room))),
        RoomOp::Permissions(room, identity, p, reply) => drop(reply.send(sfu.set_permissions(now, &room, &identity, p))),
        RoomOp::Remove(room, identity, reply) => drop(reply.send(sfu.remove_participant(now, &room, &identity))),
        RoomOp::Mute(room, identity, source, muted, reply) => drop(reply.send(sfu.set_muted(now, &room, &identity, source, muted))),
        RoomOp::Data(room, message, reply) => drop(reply.send(sfu.send_data(now, &room, message))),
        RoomOp::Audience(room, identity, audience, reply) => drop(reply.send(sfu.set_audience(now, &room, &identity, audience))),
        RoomOp::Rooms(reply) => drop(reply.send(sfu.room_infos())),
    }
}

/// Hands the core's signals to their WebSockets; a socket that cannot keep up is treated as
/// closed (its participant enters the grace period) rather than buffering without bound.
fn deliver_signals(sfu: &mut Sfu, outputs: &mut Outputs) {
    while let Some(signal) = sfu.poll_signal() {
        let Some(tx) = outputs.conns.get(&signal.conn) else { continue };
        let mut ok = true;
        if let Some(message) = signal.message {
            ok = tx.try_send(Outbound::Message(message)).is_ok();
        }
        if signal.close || !ok {
            if let Some(tx) = outputs.conns.remove(&signal.conn) {
                let _ = tx.try_send(Outbound::Close);
            }
            if !ok {
                sfu.conn_closed(Instant::now(), signal.conn);
            }
        }
    }
}

async fn run(
    mut sfu: Sfu,
    socket: UdpSocket,
    candidate: SocketAddr,
    tcp: Option<(mpsc::Receiver<TcpEvent>, SocketAddr)>,
    mut rx: mpsc::Receiver<Command>,
    mut outputs: Outputs,
) {
    let mut buf = vec![0u8; 2048];
    let mut panics = 0u64;
    let (job_outputs, mut rendition_rx) = mpsc::channel(256);
    let mut jobs = Jobs { running: HashMap::new(), audio: HashMap::new(), finished: TranscodeStats::default(), outputs: job_outputs };
    let (mut tcp_rx, tcp_candidate) = match tcp {
        Some((rx, addr)) => (Some(rx), addr),
        None => (None, candidate),
    };
    loop {
        let wake = sfu.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let tcp_event = async {
            match tcp_rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = tcp_event => match event {
                Some(TcpEvent::Opened(remote, tx)) => drop(outputs.tcp.insert(remote, tx)),
                Some(TcpEvent::Frame(remote, packet)) => {
                    let now = Instant::now();
                    guarded(&mut panics, "tcp frame", || sfu.handle_tcp_frame(now, remote, tcp_candidate, &packet));
                }
                Some(TcpEvent::Closed(remote)) => drop(outputs.tcp.remove(&remote)),
                None => tcp_rx = None,
            },
            Some((job, output)) = rendition_rx.recv() => {
                let now = Instant::now();
                match output {
                    JobOutput::Frame(frame) => guarded(&mut panics, "rendition", || sfu.handle_rendition(now, job, &frame)),
                    JobOutput::Audio(packet) => guarded(&mut panics, "opus rendition", || sfu.handle_audio_rendition(now, job, &packet)),
                };
            }
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
                    Command::Probe { grant, offer, reply } => {
                        let r = guarded(&mut panics, "probe", || sfu.probe(now, &grant, &offer));
                        let _ = reply.send(r.unwrap_or(Err(SfuError::Internal)));
                    }
                    Command::End { peer, reply } => {
                        let r = guarded(&mut panics, "end", || sfu.end(now, peer));
                        let _ = reply.send(r.unwrap_or(Err(SfuError::Internal)));
                    }
                    Command::Policy { room, policy } => sfu.set_room_policy(&room, policy),
                    Command::Join { conn, grant, resume, auto_subscribe, tx } => {
                        outputs.conns.insert(conn, tx);
                        guarded(&mut panics, "join", || sfu.join(now, conn, grant, resume, auto_subscribe));
                    }
                    Command::Client { conn, message } => {
                        guarded(&mut panics, "signal", || sfu.client_message(now, conn, message));
                    }
                    Command::ConnClosed { conn } => {
                        outputs.conns.remove(&conn);
                        guarded(&mut panics, "close", || sfu.conn_closed(now, conn));
                    }
                    Command::Room(op) => {
                        guarded(&mut panics, "room", || room_op(&mut sfu, now, op));
                    }
                    #[cfg(feature = "testing")]
                    Command::InjectTranscoderPanic { reply } => {
                        let _ = reply.send(jobs.inject_panic());
                    }
                    Command::Stats { reply } => {
                        let (rooms, participants) = sfu.room_counts();
                        let transcode = jobs.stats(sfu.transcode_refusals());
                        let _ = reply.send(MediaStats { peers: sfu.peer_count(), dropped: sfu.dropped, panics, rooms, participants, transcode });
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                guarded(&mut panics, "timeout", || sfu.handle_timeout(now));
            }
        }
        let now = Instant::now();
        guarded(&mut panics, "transcode", || jobs.run_ops(&mut sfu, now));
        while let Some(t) = sfu.poll_transmit() {
            if t.proto == str0m::net::Protocol::Tcp {
                // A full or closed connection drops the packet, as a congested UDP path would.
                if let Some(conn) = outputs.tcp.get(&t.destination) {
                    let _ = conn.try_send(t.contents);
                }
            } else if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                tracing::debug!(error = %e, "media send failed");
            }
        }
        while let Some(event) = sfu.poll_event() {
            tracing::debug!(?event, "sfu event");
            // No receiver is fine: nobody is interested right now.
            let _ = outputs.events.send(event);
        }
        while let Some(event) = sfu.poll_room_event() {
            let _ = outputs.room_events.send(event);
        }
        deliver_signals(&mut sfu, &mut outputs);
    }
    tracing::info!("media server stopped");
}
