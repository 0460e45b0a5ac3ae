//! `tongxin-load run`: a scenario against a running server, measured step by step.
//!
//! Each room gets its WHIP publishers (pre-encoded H.264 with a frame counter in every access
//! unit, and Opus; with `simulcast`, three layers by rid carrying the same counter in each frame
//! slot, so a subscriber measures whichever layer reaches it); subscribers join over WHEP at the
//! join rate, optionally each behind the seeded relay. Every step adds subscribers up to its
//! count, waits for them to settle, and measures a window: per subscriber (join time, bitrate,
//! frame and packet loss, jitter, freezes, latency), for the server (`/proc/<pid>` CPU and RSS,
//! forwarded packets and bytes counted at the subscribers) and for the generator itself (its own
//! CPU: above 85 % of a core the step is generator-bound, and the report says so instead of
//! blaming the server).
//!
//! The same scenario runs against Tongxin (WHIP/WHEP with join tokens) or Janus (its VideoRoom
//! over the JSON API, [`crate::janus`]): only the signalling differs, media and measurement are
//! the same. With a [`Ramp`](crate::scenario::RampSpec), steps of subscribers are added after the
//! scenario's own until frame loss passes its limit, the server's core saturates or the generator
//! runs out of CPU, and the report says which.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole, TokenKey};

use crate::janus;
use crate::media::{self, EncodedVideo, OPUS_FRAME_DURATION, VideoSpec};
use crate::participant::{self, Peer, Res, Rx};
use crate::probe::{self, CpuClock};
use crate::relay::{Relay, RelayConfig, Schedule};
use crate::report::{
    self, GeneratorFigures, ImpairmentSummary, Limit, RampOutcome, Report, ScenarioSummary, ServerFigures, StepReport, SubscriberFigures,
    Verdict,
};
use crate::scenario::Scenario;

/// A keyframe every 2 s at 30 fps.
const GOP_FRAMES: u32 = 60;
/// The clip the publishers loop over.
const CLIP_SECONDS: u32 = 10;
/// After a window, how long late frames may still arrive (beyond the link's own delay): the
/// receive buffer holds a frame up to 1 s, and a retransmission takes a round trip.
const DRAIN: Duration = Duration::from_secs(2);

/// How participants reach the server's media.
#[derive(Clone)]
pub enum Signalling {
    /// Tongxin: WHIP publishers and WHEP players, with join tokens minted with the server's key.
    WhipWhep {
        /// The server's join-token key.
        token_key: TokenKey,
    },
    /// Janus's VideoRoom over its HTTP JSON API, scenario room `r` in room
    /// [`janus::FIRST_ROOM`]` + r` of [`janus::config_files`].
    Janus,
}

/// Where and how to run.
#[derive(Clone)]
pub struct Target {
    /// The server's HTTP address (loopback, or in a namespace of [`crate::netns`]).
    pub http: SocketAddr,
    /// The server's process, for CPU and RSS (none: those figures are left empty).
    pub server_pid: Option<u32>,
    /// How participants signal.
    pub signalling: Signalling,
    /// The address participants' media sockets bind to (one the server can reach).
    pub local_ip: IpAddr,
    /// Where encoded media is cached.
    pub cache_dir: PathBuf,
    /// Show a progress line on stderr.
    pub progress: bool,
}

/// What the generator counted itself, per step and subscriber, next to the report's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted {
    /// Access units with a counter sent in the window that reached the subscriber.
    pub frames_in_window: u64,
    /// RTP bytes the subscriber received during the window.
    pub bytes_in_window: u64,
}

/// A finished run.
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// Per step, per subscriber: the raw counts the report's figures come from.
    pub counted: Vec<Vec<Counted>>,
}

/// One clip a publisher loops over, and the rid of its simulcast layer (`None`: no simulcast).
struct Layer {
    rid: Option<&'static str>,
    clip: EncodedVideo,
}

/// A participant's signalling session, ended when the run ends.
enum Session {
    /// A WHIP or WHEP resource.
    Http { location: String, token: String },
    /// A Janus session (its long poll and keepalives run until it is destroyed).
    Janus(janus::Session),
}

impl Session {
    async fn end(self, http: SocketAddr) {
        match self {
            Session::Http { location, token } => {
                let _ = participant::delete(http, &location, &token).await;
            }
            Session::Janus(session) => session.destroy().await,
        }
    }
}

struct Publisher {
    peer: Arc<Peer>,
    /// Send time of each counter value.
    sent: Arc<Mutex<Vec<Instant>>>,
    session: Session,
    /// Janus's id of this publisher's feed (what subscribers ask for).
    feed: Option<u64>,
}

struct Subscriber {
    index: u32,
    room: usize,
    started: Instant,
    peer: Option<Peer>,
    session: Option<Session>,
    error: Option<String>,
}

fn mint(key: &TokenKey, room: &RoomName, identity: &str, publish: bool) -> Res<String> {
    let grant = JoinGrant {
        room: room.clone(),
        identity: Identity::parse(identity)?,
        name: None,
        role: if publish { RoomRole::Teacher } else { RoomRole::Classroom },
        can_publish: publish,
        can_subscribe: !publish,
        can_publish_data: false,
        hidden: false,
    };
    Ok(key.mint(&grant, SystemTime::now(), Duration::from_secs(6 * 3600))?)
}

async fn start_publisher(target: &Target, room: &RoomName, room_index: usize, n: u32, video: &[Layer]) -> Res<Publisher> {
    let rids: Vec<&str> = video.iter().filter_map(|l| l.rid).collect();
    let mut peer = match (&target.signalling, rids.is_empty()) {
        (_, true) => Peer::publisher_on(target.local_ip).await?,
        (Signalling::WhipWhep { .. }, false) if target.local_ip.is_loopback() => Peer::simulcast_publisher(&rids).await?,
        _ => return Err("simulcast runs only against Tongxin on loopback".into()),
    };
    let (session, feed) = match &target.signalling {
        Signalling::WhipWhep { token_key } => {
            let token = mint(token_key, room, &format!("publisher-{n}"), true)?;
            let offer = peer.offer().await?;
            let (location, answer) = participant::post_offer(target.http, &format!("/whip/{room}"), &token, &offer).await?;
            peer.accept_answer(&answer).await?;
            peer.wait_connected().await?;
            (Session::Http { location, token }, None)
        }
        Signalling::Janus => {
            let (session, feed) =
                janus::publish(target.http, janus::FIRST_ROOM + room_index as u64, &format!("publisher-{n}"), &mut peer).await?;
            (Session::Janus(session), Some(feed))
        }
    };
    Ok(Publisher { peer: Arc::new(peer), sent: Arc::default(), session, feed })
}

/// Sends the clip (every layer's, in step) in a loop with counters, the same counter in every
/// layer's access unit of a frame slot; a keyframe request makes the next frame slot the clips'
/// IDR, in every layer.
fn spawn_senders(p: &Publisher, video: Arc<Vec<Layer>>, audio: Arc<Vec<Bytes>>, stop: Arc<AtomicBool>) {
    let want_keyframe = Arc::new(AtomicBool::new(false));
    let (peer, sent, flag) = (p.peer.clone(), p.sent.clone(), want_keyframe.clone());
    let stop_video = stop.clone();
    tokio::spawn(async move {
        let Some(frame) = video.first().map(|l| l.clip.spec.frame_duration()) else { return };
        let start = tokio::time::Instant::now();
        let (mut counter, mut position) = (0u64, 0u64);
        while !stop_video.load(Ordering::Relaxed) {
            if flag.swap(false, Ordering::Relaxed) {
                position = 0;
            }
            sent.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
            for layer in video.iter() {
                let Some(f) = layer.clip.frame(position) else { return };
                let au = media::with_counter(&f.data, counter);
                let written = match layer.rid {
                    Some(rid) => peer.write_video_layer(rid, au, frame).await,
                    None => peer.write_video(au, frame).await,
                };
                if written.is_err() {
                    return;
                }
            }
            counter += 1;
            position += 1;
            tokio::time::sleep_until(start + frame * u32::try_from(counter).unwrap_or(u32::MAX)).await;
        }
    });
    let peer = p.peer.clone();
    let stop_audio = stop.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut i = 0u32;
        while !stop_audio.load(Ordering::Relaxed) {
            let f = audio[i as usize % audio.len().max(1)].clone();
            if peer.write_audio(f, OPUS_FRAME_DURATION).await.is_err() {
                return;
            }
            i += 1;
            tokio::time::sleep_until(start + OPUS_FRAME_DURATION * i).await;
        }
    });
    let peer = p.peer.clone();
    tokio::spawn(async move {
        while let Some(n) = peer.keyframe_requests().await {
            if n > 0 {
                want_keyframe.store(true, Ordering::Relaxed);
            }
        }
    });
}

async fn start_subscriber(
    target: &Target,
    room: &RoomName,
    room_index: usize,
    index: u32,
    relay: Option<SocketAddr>,
    feed: Option<u64>,
) -> Subscriber {
    let started = Instant::now();
    let mut sub = Subscriber { index, room: room_index, started, peer: None, session: None, error: None };
    let result: Res<Peer> = async {
        match &target.signalling {
            Signalling::WhipWhep { token_key } => {
                let token = mint(token_key, room, &format!("subscriber-{index}"), false)?;
                let mut peer = Peer::player_on(target.local_ip).await?;
                let offer = peer.offer().await?;
                let (location, answer) = participant::post_offer(target.http, &format!("/whep/{room}"), &token, &offer).await?;
                sub.session = Some(Session::Http { location, token });
                let answer = match (relay, participant::answer_candidate(&answer)) {
                    (Some(relay), Some(server)) => participant::rewrite_candidate(&answer, server, relay),
                    _ => answer,
                };
                peer.accept_answer(&answer).await?;
                peer.wait_connected().await?;
                Ok(peer)
            }
            Signalling::Janus => {
                let mut peer = Peer::answering_player_on(target.local_ip).await?;
                let feed = feed.ok_or("the room's publisher has no Janus feed")?;
                let session = janus::subscribe(target.http, janus::FIRST_ROOM + room_index as u64, feed, &mut peer).await?;
                sub.session = Some(Session::Janus(session));
                Ok(peer)
            }
        }
    }
    .await;
    match result {
        Ok(peer) => sub.peer = Some(peer),
        Err(e) => sub.error = Some(e.to_string()),
    }
    sub
}

/// A subscriber's counters at one instant.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    pkts: u64,
    bytes: u64,
    video_expected: u64,
    video_lost: u64,
}

fn snapshot(rx: &Rx) -> Snapshot {
    let (pkts, bytes) = rx.totals();
    Snapshot { pkts, bytes, video_expected: rx.video_expected, video_lost: rx.video_lost }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One subscriber's figures for the window `[w0, w1)`, and its latency samples.
fn figures(
    sub: &Subscriber,
    sent: &[Instant],
    window: (Instant, Instant),
    s0: Snapshot,
    s1: Snapshot,
) -> (SubscriberFigures, Vec<f64>, Counted) {
    let secs = window.1.duration_since(window.0).as_secs_f64().max(1e-9);
    let mut f = SubscriberFigures {
        index: sub.index,
        room: format!("room-{}", sub.room),
        join_ms: None,
        received_kbps: (s1.bytes - s0.bytes) as f64 * 8.0 / secs / 1000.0,
        frames_expected: 0,
        frames_received: 0,
        frame_loss: f64::NAN,
        packet_loss: f64::NAN,
        jitter_ms: f64::NAN,
        freezes: 0,
        longest_freeze_ms: 0.0,
        latency_ms: report::Percentiles::default(),
        error: sub.error.clone(),
    };
    let mut latencies = Vec::new();
    let mut counted = Counted { frames_in_window: 0, bytes_in_window: s1.bytes - s0.bytes };
    let sent_in_window = |c: u64| sent.get(c as usize).is_some_and(|t| *t >= window.0 && *t < window.1);
    // A subscriber that never joined, or never got a frame, saw nothing: every frame is lost.
    let nothing = |f: &mut SubscriberFigures| {
        f.frames_expected = (0..sent.len() as u64).filter(|c| sent_in_window(*c)).count() as u64;
        f.frame_loss = report::frame_loss(f.frames_expected, 0);
        f.freezes = u32::from(f.frames_expected > 0);
        f.longest_freeze_ms = ms(window.1.duration_since(window.0));
    };
    let Some(peer) = &sub.peer else {
        nothing(&mut f);
        return (f, latencies, counted);
    };
    let rx = peer.rx.lock().unwrap_or_else(|e| e.into_inner());
    let expected_pkts = s1.video_expected - s0.video_expected;
    if expected_pkts > 0 {
        f.packet_loss = (s1.video_lost - s0.video_lost) as f64 / expected_pkts as f64;
    }
    let first = rx.units.iter().find(|u| u.counter.is_some());
    f.join_ms = first.map(|u| ms(u.complete_at.duration_since(sub.started)));
    let Some(first_counter) = first.and_then(|u| u.counter) else {
        nothing(&mut f);
        return (f, latencies, counted);
    };
    // Frames sent in the window from this subscriber's first frame on.
    let in_window = |c: u64| c >= first_counter && sent_in_window(c);
    let expected = (0..sent.len() as u64).filter(|c| in_window(*c)).count() as u64;
    let mut arrivals: HashMap<u64, (Instant, bool)> = HashMap::new();
    for u in rx.units.iter().filter(|u| u.counter.is_some_and(|c| c >= first_counter)) {
        if let Some(c) = u.counter {
            arrivals.entry(c).or_insert((u.complete_at, u.keyframe));
        }
    }
    // A frame after a missing one cannot be decoded until the next keyframe: it is lost too.
    let last = arrivals.keys().max().copied().unwrap_or(first_counter);
    let mut broken = false;
    let mut ordered: Vec<(u64, Instant)> = Vec::new();
    for c in first_counter..=last {
        match arrivals.get(&c) {
            None => broken = true,
            Some((_, true)) => broken = false,
            Some(_) => {}
        }
        if let Some((at, _)) = arrivals.get(&c)
            && !broken
            && in_window(c)
        {
            ordered.push((c, *at));
        }
    }
    let mut jitter = 0.0f64;
    for pair in ordered.windows(2) {
        let ((c0, a0), (c1, a1)) = (pair[0], pair[1]);
        let transit = |c: u64, a: Instant| ms(a.saturating_duration_since(sent[c as usize]));
        jitter += ((transit(c1, a1) - transit(c0, a0)).abs() - jitter) / 16.0;
    }
    if ordered.is_empty() && expected > 0 {
        // Frames were due and none could be shown: one freeze as long as the window.
        f.freezes = 1;
        f.longest_freeze_ms = ms(window.1.duration_since(window.0));
    }
    let mut arrival_times: Vec<Instant> = ordered.iter().map(|(_, a)| *a).collect();
    arrival_times.sort();
    for gap in arrival_times.windows(2).map(|w| ms(w[1].duration_since(w[0]))) {
        if gap > report::FREEZE_GAP_MS {
            f.freezes += 1;
        }
        f.longest_freeze_ms = f.longest_freeze_ms.max(gap);
    }
    latencies = ordered.iter().map(|(c, a)| ms(a.saturating_duration_since(sent[*c as usize]))).collect();
    f.frames_expected = expected;
    f.frames_received = ordered.len() as u64;
    f.frame_loss = report::frame_loss(expected, f.frames_received);
    f.jitter_ms = if ordered.len() > 1 { jitter } else { f64::NAN };
    f.latency_ms = report::percentiles(&mut latencies.clone());
    // The raw count, decodable or not: equals frames_received unless something was lost.
    counted.frames_in_window =
        rx.units.iter().filter(|u| u.counter.is_some_and(in_window)).map(|u| u.counter).collect::<std::collections::HashSet<_>>().len()
            as u64;
    (f, latencies, counted)
}

fn progress(on: bool, text: &str) {
    if on {
        eprint!("\r\x1b[2K{text}");
    }
}

/// Runs `scenario` against `target`.
pub async fn run(scenario: &Scenario, target: &Target) -> Res<Outcome> {
    scenario.validate()?;
    if matches!(target.signalling, Signalling::Janus) && scenario.link.is_some() {
        return Err("link impairments (the relay) run only against Tongxin".into());
    }
    let started_at = SystemTime::now();
    let show = target.progress && std::io::stderr().is_terminal();
    progress(show, "encoding media (cached after the first run)…");
    let video: Vec<Layer> = if scenario.simulcast {
        VideoSpec::simulcast_ladder(CLIP_SECONDS, GOP_FRAMES)
            .iter()
            .map(|l| Ok(Layer { rid: Some(l.rid), clip: media::cached_video(&target.cache_dir, &l.spec)? }))
            .collect::<Result<_, media::MediaError>>()?
    } else {
        let spec = VideoSpec {
            width: scenario.width,
            height: scenario.height,
            fps: 30,
            bitrate_bps: scenario.video_kbps * 1000,
            seconds: CLIP_SECONDS,
            keyframe_interval_frames: GOP_FRAMES,
        };
        vec![Layer { rid: None, clip: media::cached_video(&target.cache_dir, &spec)? }]
    };
    // What each publisher aims to send, all layers together.
    let video_kbps = video.iter().map(|l| l.clip.spec.bitrate_bps / 1000).sum();
    let video = Arc::new(video);
    let audio = Arc::new(media::cached_tone(&target.cache_dir, CLIP_SECONDS, 32_000)?);
    let relay = match &scenario.link {
        Some(link) => {
            let (down, up) = link.impairments();
            // The upstream is learnt from the first answer; every WHEP answer names the same port.
            Some((link, down, up))
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rooms: Vec<RoomName> = (0..scenario.rooms).map(|r| RoomName::parse(&format!("load-{r}"))).collect::<Result<_, _>>()?;
    let mut publishers: Vec<Vec<Publisher>> = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        progress(show, &format!("starting publishers in {room}"));
        let mut list = Vec::new();
        for n in 0..scenario.publishers_per_room {
            let p = start_publisher(target, room, r, n, &video).await.map_err(|e| format!("publisher {n} of room {r}: {e}"))?;
            spawn_senders(&p, video.clone(), audio.clone(), stop.clone());
            list.push(p);
        }
        publishers.push(list);
    }
    // A relay in front of the media port, set up once the media port is known.
    let relay = match relay {
        Some((link, down, up)) => {
            let media_port = media_candidate(target, &rooms[0]).await?;
            let config = RelayConfig {
                listen: "127.0.0.1:0".parse()?,
                upstream: media_port,
                up,
                down,
                seed: link.seed,
                schedule: Schedule::default(),
            };
            Some(Relay::start(config).await?)
        }
        None => None,
    };
    let mut subscribers: Vec<Subscriber> = Vec::new();
    let mut steps = Vec::new();
    let mut counted = Vec::new();
    let pause = Duration::from_secs_f64(1.0 / scenario.join_rate);
    let cpu = CpuClock::new();
    // Steps per room: the scenario's, then the ramp's while no limit was reached.
    let mut counts = scenario.subscribers.clone();
    let mut ramp_outcome: Option<RampOutcome> = None;
    let mut contended = Vec::new();
    let mut step_index = 0;
    while let Some(&per_room) = counts.get(step_index) {
        let steps_planned = if scenario.ramp.is_some() { "ramp".to_owned() } else { counts.len().to_string() };
        // Join up to the step's count, room by room in turn, at the join rate.
        let mut joining = Vec::new();
        for k in subscribers.len() as u32 / scenario.rooms..per_room {
            for (r, room) in rooms.iter().enumerate() {
                let index = k * scenario.rooms + r as u32;
                progress(show, &format!("step {}/{steps_planned}: subscriber {} joining", step_index + 1, index + 1));
                let (target, room) = (target.clone(), room.clone());
                let via = relay.as_ref().map(Relay::local_addr);
                let feed = publishers[r][0].feed;
                joining.push(tokio::spawn(async move { start_subscriber(&target, &room, r, index, via, feed).await }));
                tokio::time::sleep(pause).await;
            }
        }
        for j in joining {
            subscribers.push(j.await?);
        }
        tokio::time::sleep(Duration::from_secs(u64::from(scenario.settle_seconds))).await;
        // The window.
        let before: Vec<Snapshot> = subscribers
            .iter()
            .map(|s| s.peer.as_ref().map(|p| snapshot(&p.rx.lock().unwrap_or_else(|e| e.into_inner()))).unwrap_or_default())
            .collect();
        let c0 = cpu.sample(target.server_pid);
        let w0 = Instant::now();
        let window = Duration::from_secs(u64::from(scenario.seconds));
        while w0.elapsed() < window {
            progress(
                show,
                &format!(
                    "step {}/{steps_planned}: {} subscribers, measuring {}/{} s",
                    step_index + 1,
                    subscribers.len(),
                    w0.elapsed().as_secs(),
                    scenario.seconds
                ),
            );
            tokio::time::sleep(Duration::from_millis(500).min(window.saturating_sub(w0.elapsed()))).await;
        }
        let w1 = Instant::now();
        let c1 = cpu.sample(target.server_pid);
        let after: Vec<Snapshot> = subscribers
            .iter()
            .map(|s| s.peer.as_ref().map(|p| snapshot(&p.rx.lock().unwrap_or_else(|e| e.into_inner()))).unwrap_or_default())
            .collect();
        let link_delay = scenario.link.map_or(0, |l| u64::from(l.delay_ms + l.jitter_ms) * 2);
        tokio::time::sleep(DRAIN + Duration::from_millis(link_delay)).await;
        let mut detail = Vec::new();
        let mut all_latency = Vec::new();
        let mut step_counted = Vec::new();
        for (i, sub) in subscribers.iter().enumerate() {
            let sent = publishers[sub.room][0].sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (f, lat, c) = figures(sub, &sent, (w0, w1), before[i], after[i]);
            all_latency.extend(lat);
            detail.push(f);
            step_counted.push(c);
        }
        let secs = w1.duration_since(w0).as_secs_f64();
        let pkts: u64 = before.iter().zip(&after).map(|(b, a)| a.pkts - b.pkts).sum();
        let bytes: u64 = before.iter().zip(&after).map(|(b, a)| a.bytes - b.bytes).sum();
        let server = ServerFigures::new(
            target.server_pid,
            probe::cpu_percent(c0.server, c1.server, secs),
            target.server_pid.and_then(probe::rss_mib).unwrap_or(f64::NAN),
            pkts as f64 / secs,
            bytes as f64 * 8.0 / secs / 1e6,
        );
        // The generator is bound when its busiest share passes 85 % of the cores it may run on
        // (one when pinned with taskset, as the fixed-load runs are).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let generator_cpu = probe::cpu_percent(c0.generator, c1.generator, secs);
        let generator =
            GeneratorFigures { bound: generator_cpu > report::GENERATOR_BOUND_CPU_PERCENT * cores, ..GeneratorFigures::new(generator_cpu) };
        let totals = report::summarize_step(&detail, &mut all_latency);
        let machine_cpu = probe::cpu_percent(c0.machine, c1.machine, secs);
        let others_cpu_percent = machine_cpu - generator_cpu - server.cpu_percent_of_core;
        if others_cpu_percent > report::CONTENDED_CPU_PERCENT {
            contended.push(subscribers.len() as u32);
        }
        let step = StepReport {
            subscribers: subscribers.len() as u32,
            ramp: step_index >= scenario.subscribers.len(),
            others_cpu_percent,
            server,
            generator,
            subscribers_detail: detail,
            totals,
        };
        if let Some(ramp) = &scenario.ramp {
            if ramp_outcome.is_none()
                && let Some(limit) = ramp.limit(&step)
            {
                ramp_outcome = Some(RampOutcome::new(&step, limit, ramp.saturated_cpu_percent));
            }
            // After the scenario's own steps, one more step while no limit is reached.
            let next = per_room + ramp.step;
            if step_index + 1 == counts.len() && ramp_outcome.is_none() {
                if next <= ramp.max {
                    counts.push(next);
                } else {
                    ramp_outcome = Some(RampOutcome::new(&step, Limit::Ceiling, ramp.saturated_cpu_percent));
                }
            }
        }
        steps.push(step);
        counted.push(step_counted);
        step_index += 1;
    }
    progress(show, "stopping\n");
    stop.store(true, Ordering::Relaxed);
    for sub in subscribers.iter_mut() {
        if let Some(session) = sub.session.take() {
            session.end(target.http).await;
        }
        if let Some(peer) = &sub.peer {
            peer.close().await;
        }
    }
    for p in publishers.into_iter().flatten() {
        p.session.end(target.http).await;
        p.peer.close().await;
    }
    if let Some(relay) = relay {
        relay.stop();
    }
    let generator_bound_at = report::generator_bound_at(&steps);
    let mut notes = Vec::new();
    let errors = subscribers.iter().filter(|s| s.error.is_some()).count();
    if errors > 0 {
        notes.push(format!("{errors} subscribers failed to join"));
    }
    if let Some(n) = generator_bound_at {
        notes.push(format!("generator-bound at {n} subscribers: figures from there on measure the generator, not the server"));
    }
    if let Some(r) = &ramp_outcome {
        notes.push(format!("ramp: {}", r.describe()));
    }
    if !contended.is_empty() {
        notes.push(format!(
            "contended at {contended:?} subscribers: the rest of the machine used more than {:.0} % of a core",
            report::CONTENDED_CPU_PERCENT
        ));
    }
    let report = Report {
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_unix_ms: started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        scenario: ScenarioSummary {
            name: scenario.name.clone(),
            rooms: scenario.rooms,
            publishers_per_room: scenario.publishers_per_room,
            subscribers_per_room: scenario.subscribers.clone(),
            video_bitrate_kbps: video_kbps,
            simulcast: scenario.simulcast,
            seconds_per_step: scenario.seconds,
            join_rate_per_s: scenario.join_rate,
            impairment: scenario.link.map(|l| ImpairmentSummary {
                loss: l.loss,
                delay_ms: l.delay_ms,
                jitter_ms: l.jitter_ms,
                cap_kbps: l.cap_kbps,
                seed: l.seed,
            }),
        },
        steps,
        verdict: Verdict { ok: errors == 0, generator_bound_at, ramp: ramp_outcome, notes },
    };
    Ok(Outcome { report, counted })
}

/// The server's media address, from a throwaway WHEP answer in `room` (its publisher is up).
async fn media_candidate(target: &Target, room: &RoomName) -> Res<SocketAddr> {
    let Signalling::WhipWhep { token_key } = &target.signalling else {
        return Err("a relay needs WHEP".into());
    };
    let token = mint(token_key, room, "probe", false)?;
    let mut peer = Peer::player_on(target.local_ip).await?;
    let offer = peer.offer().await?;
    let (location, answer) = participant::post_offer(target.http, &format!("/whep/{room}"), &token, &offer).await?;
    let _ = participant::delete(target.http, &location, &token).await;
    peer.close().await;
    participant::answer_candidate(&answer).ok_or_else(|| "the server's answer holds no UDP candidate".into())
}
