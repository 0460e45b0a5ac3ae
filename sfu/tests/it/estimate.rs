//! Simulcast layers chosen from str0m's own send-side estimate, under a fake clock. A room page
//! (a str0m client) publishes a three-layer camera and a microphone; a classroom (another str0m
//! client) receives them through the seeded link model of the load generator, whose rate cap
//! changes over time. The estimate comes from str0m's BWE fed by the classroom's real TWCC
//! feedback over that link: nothing hands the selector a number.
//!
//! Time is event driven: the clock jumps to the next thing due (a packet leaving the link, a
//! str0m timeout, the next frame), so a minute of lesson runs in seconds. The link model's seed
//! is fixed, so each run is the same; `TX_SEED=n` runs another.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tongxin_common::rooms::TrackSource;
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};
use tongxin_loadtests::relay::{Impairment, Link, Verdict};
use tongxin_sfu::signal::{ClientMessage, ConnId, PublishTrack, ServerMessage};
use tongxin_sfu::{Sfu, SfuConfig};

const SERVER: &str = "127.0.0.1:7882";
/// The room page's camera ladder at 15 fps: rid and bytes per delta frame, so q ≈ 56, h ≈ 300
/// and f ≈ 1000 kbit/s between keyframes.
const LADDER: [(&str, usize); 3] = [("q", 470), ("h", 2500), ("f", 8300)];
const FRAME: Duration = Duration::from_micros(66_667);
/// How much bigger a keyframe is than a delta frame (one is sent at the start and whenever the
/// server asks, at each layer switch): a 66 KB keyframe of the top layer tests the server's pacing.
const KEYFRAME_TIMES: usize = 8;
const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// The classroom's WebSocket.
const CLASS_CONN: u64 = 2;

/// One str0m client: a room page's publisher or subscriber connection.
struct Endpoint {
    rtc: Rtc,
    addr: SocketAddr,
    timeout: Instant,
    /// Its datagrams cross the link model (the classroom); the others reach the server at once.
    behind_link: bool,
}

/// A datagram on the link model: when it arrives, a tie-breaker, whether it goes to the
/// classroom (else to the server), and its bytes.
type InFlight = Reverse<(Instant, u64, bool, Vec<u8>)>;

struct Sim {
    sfu: Sfu,
    start: Instant,
    now: Instant,
    endpoints: Vec<Endpoint>,
    /// Server → classroom and classroom → server.
    down: Link,
    up: Link,
    wire: BinaryHeap<InFlight>,
    sent: u64,
    /// Datagrams a client produced, not yet handed on.
    outbox: VecDeque<(usize, Vec<u8>)>,
    events: VecDeque<(usize, Event)>,
    // The teacher's page.
    publisher: usize,
    camera: Option<Mid>,
    microphone: Option<Mid>,
    frames_written: u64,
    next_video: Instant,
    next_audio: Instant,
    paused: Vec<String>,
    keyframe_wanted: HashSet<String>,
    // The classroom's subscriber connection.
    class: usize,
    /// (when, layer index) of every video frame the classroom decoded.
    frames: Vec<(Duration, u8)>,
    audio_frames: Vec<Duration>,
    /// (when, frame number) of every Opus frame the page sent, and the numbers the classroom got
    /// (redundant copies recovered by str0m included).
    audio_sent: Vec<(Duration, u64)>,
    audio_got: HashSet<u64>,
    /// (when, rid) of every keyframe the server asked of a layer: the moment it chose that layer.
    keyframe_requests: Vec<(Duration, String)>,
    /// (when, audio only) of every `reception` frame the classroom's page got.
    reception: Vec<(Duration, bool)>,
}

fn grant(identity: &str, role: RoomRole, publish: bool) -> JoinGrant {
    JoinGrant {
        room: RoomName::parse("lesson-bwe").unwrap(),
        identity: Identity::parse(identity).unwrap(),
        name: None,
        role,
        can_publish: publish,
        can_subscribe: true,
        can_publish_data: true,
        hidden: false,
    }
}

impl Sim {
    fn new(link: Impairment, seed: u64) -> Sim {
        let config = SfuConfig { candidates: vec![SERVER.parse().unwrap()], loopback_only: true, ..SfuConfig::default() };
        let now = Instant::now();
        Sim {
            sfu: Sfu::new(config),
            start: now,
            now,
            endpoints: Vec::new(),
            down: Link::new(link, seed),
            up: Link::new(link, seed + 1),
            wire: BinaryHeap::new(),
            sent: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            publisher: 0,
            camera: None,
            microphone: None,
            frames_written: 0,
            next_video: now,
            next_audio: now,
            paused: Vec::new(),
            keyframe_wanted: LADDER.iter().map(|(rid, _)| rid.to_string()).collect(),
            class: 0,
            frames: Vec::new(),
            audio_frames: Vec::new(),
            audio_sent: Vec::new(),
            audio_got: HashSet::new(),
            reception: Vec::new(),
            keyframe_requests: Vec::new(),
        }
    }

    fn at(&self) -> Duration {
        self.now.duration_since(self.start)
    }

    /// A str0m client; `red`: it takes RFC 2198 redundant Opus, as Chromium does.
    fn endpoint(&mut self, behind_link: bool, red: bool) -> usize {
        let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + self.endpoints.len()).parse().unwrap();
        let mut rtc = RtcConfig::new().enable_opus(true, red).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        self.endpoints.push(Endpoint { rtc, addr, timeout: self.now, behind_link });
        self.endpoints.len() - 1
    }

    /// The newest server message of `conn` that `pick` accepts.
    fn newest<T>(&mut self, conn: u64, pick: impl Fn(&ServerMessage) -> Option<T>) -> T {
        let mut found = None;
        while let Some(s) = self.sfu.poll_signal() {
            if s.conn == ConnId(conn)
                && let Some(m) = &s.message
            {
                found = pick(m).or(found);
            }
        }
        found.unwrap_or_else(|| panic!("no such message for conn {conn}"))
    }

    /// A room participant on WebSocket `conn` whose subscriber connection a new client answers.
    fn join(&mut self, conn: u64, grant: JoinGrant, behind_link: bool, red: bool) -> usize {
        self.sfu.join(self.now, ConnId(conn), Some(grant), None, true);
        let offer = self.newest(conn, |m| match m {
            ServerMessage::Offer { sdp, .. } => Some(sdp.clone()),
            _ => None,
        });
        let i = self.endpoint(behind_link, red);
        let answer = self.endpoints[i].rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer).unwrap()).unwrap();
        // str0m starts its ICE checks from the first input, not from the negotiation.
        self.feed(i, Input::Timeout(self.now));
        self.sfu.client_message(self.now, ConnId(conn), ClientMessage::Answer { sdp: answer.to_sdp_string() });
        i
    }

    /// The teacher's page publishes a microphone and a camera in three layers by rid.
    fn publish(&mut self, conn: u64) {
        let i = self.endpoint(false, false);
        let mut api = self.endpoints[i].rtc.sdp_api();
        let microphone = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let layers = Simulcast { send: LADDER.map(|(rid, _)| SimulcastLayer::new(rid)).to_vec(), recv: vec![] };
        let camera = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(layers));
        let (offer, pending) = api.apply().unwrap();
        let tracks = vec![
            PublishTrack { mid: camera.to_string(), source: TrackSource::Camera },
            PublishTrack { mid: microphone.to_string(), source: TrackSource::Microphone },
        ];
        self.sfu.client_message(self.now, ConnId(conn), ClientMessage::Publish { sdp: offer.to_sdp_string(), tracks });
        let answer = self.newest(conn, |m| match m {
            ServerMessage::PublishAnswer { sdp, .. } => Some(sdp.clone()),
            _ => None,
        });
        self.endpoints[i].rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        self.feed(i, Input::Timeout(self.now));
        (self.publisher, self.camera, self.microphone) = (i, Some(camera), Some(microphone));
    }

    /// Drains client `i` to its timeout (str0m's contract after every change).
    fn drain(&mut self, i: usize) {
        loop {
            match self.endpoints[i].rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.endpoints[i].timeout = t;
                    return;
                }
                Output::Transmit(t) => self.outbox.push_back((i, t.contents.to_vec())),
                Output::Event(e) => self.events.push_back((i, e)),
            }
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        self.endpoints[i].rtc.handle_input(input).unwrap();
        self.drain(i);
    }

    /// A datagram onto the link model, towards the classroom or from it.
    fn onto_link(&mut self, to_class: bool, bytes: Vec<u8>) {
        let link = if to_class { &mut self.down } else { &mut self.up };
        if let Verdict::DeliverAt(at) = link.on_packet(self.now, bytes.len()) {
            self.sent += 1;
            self.wire.push(Reverse((at, self.sent, to_class, bytes)));
        }
    }

    /// Moves everything that is due now until nothing moves.
    fn settle(&mut self) {
        let server: SocketAddr = SERVER.parse().unwrap();
        loop {
            let mut moved = false;
            while let Some((i, bytes)) = self.outbox.pop_front() {
                moved = true;
                if self.endpoints[i].behind_link {
                    self.onto_link(false, bytes);
                } else {
                    let from = self.endpoints[i].addr;
                    self.sfu.handle_datagram(self.now, from, server, &bytes);
                }
            }
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                let Some(i) = self.endpoints.iter().position(|e| e.addr == t.destination) else { continue };
                if self.endpoints[i].behind_link {
                    self.onto_link(true, t.contents);
                } else {
                    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                    self.feed(i, Input::Receive(self.now, r));
                }
            }
            while let Some((i, event)) = self.events.pop_front() {
                moved = true;
                self.on_event(i, event);
            }
            while let Some(s) = self.sfu.poll_signal() {
                match s.message {
                    // The page obeys the server's pause requests, as room.js does.
                    Some(ServerMessage::Layers { paused, .. }) => self.paused = paused,
                    Some(ServerMessage::Reception { audio_only }) if s.conn == ConnId(CLASS_CONN) => {
                        self.reception.push((self.at(), audio_only));
                    }
                    _ => {}
                }
            }
            while self.sfu.poll_event().is_some() {}
            while self.sfu.poll_room_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        match event {
            Event::KeyframeRequest(req) if i == self.publisher => {
                if let Some(rid) = req.rid {
                    self.keyframe_wanted.insert(rid.to_string());
                    self.keyframe_requests.push((self.at(), rid.to_string()));
                }
            }
            Event::MediaData(d) if i == self.class => {
                let kind = self.endpoints[i].rtc.media(d.mid).map(|m| m.kind());
                if kind == Some(MediaKind::Audio) {
                    self.audio_frames.push(self.at());
                    if let Some(n) = d.data.get(1..9) {
                        self.audio_got.insert(u64::from_be_bytes(n.try_into().expect("8 bytes")));
                    }
                } else if let Some(layer) = d.data.iter().find(|b| (0xa0..=0xa2).contains(*b)) {
                    self.frames.push((self.at(), layer - 0xa0));
                }
            }
            _ => {}
        }
    }

    /// One frame of every layer the page was not asked to pause; the byte after each slice's NAL
    /// header names the layer (0xa0 + index), and no other byte falls in that range.
    fn write_video(&mut self) {
        let n = self.frames_written;
        self.frames_written += 1;
        let (Some(camera), i) = (self.camera, self.publisher) else { return };
        for (index, (rid, size)) in LADDER.into_iter().enumerate() {
            if self.paused.iter().any(|p| p == rid) {
                continue;
            }
            let keyframe = n == 0 || self.keyframe_wanted.remove(rid);
            let mut au = if keyframe {
                vec![0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2, 0, 0, 0, 1, 0x65, 0x88]
            } else {
                vec![0, 0, 0, 1, 0x41, 0x9a]
            };
            au.push(0xa0 + index as u8);
            let size = if keyframe { size * KEYFRAME_TIMES } else { size };
            au.extend((0..size as u64).map(|x| ((x * 7 + n) % 90) as u8 + 1));
            let now = self.now;
            let writer = self.endpoints[i].rtc.writer(camera).expect("a writer").rid(Rid::from(rid));
            let pt = writer.payload_params().find(|p| p.spec().codec == Codec::H264).expect("H.264").pt();
            writer.write(pt, now, MediaTime::new(n * 6000, Frequency::NINETY_KHZ), au).expect("write");
            self.drain(i);
        }
    }

    /// One 20 ms Opus frame (24 kbit/s), numbered.
    fn write_audio(&mut self, n: u64) {
        let (Some(microphone), i, now) = (self.microphone, self.publisher, self.now) else { return };
        let writer = self.endpoints[i].rtc.writer(microphone).expect("a writer");
        let pt = writer.payload_params().find(|p| p.spec().codec == Codec::Opus).expect("Opus").pt();
        // A TOC byte, then the frame's number, so the classroom can tell which frames it got.
        let mut frame = vec![0xfc; 60];
        frame[1..9].copy_from_slice(&n.to_be_bytes());
        writer.write(pt, now, MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ), frame).expect("write");
        self.audio_sent.push((self.at(), n));
        self.drain(i);
    }

    /// Runs the lesson until `until` (since the start), the camera and microphone on when `media`.
    fn run(&mut self, until: Duration, media: bool) {
        let end = self.start + until;
        let mut audio_n = 0;
        while self.now < end {
            self.settle();
            let mut next = end;
            next = next.min(self.sfu.poll_timeout().unwrap_or(end));
            for e in &self.endpoints {
                next = next.min(e.timeout);
            }
            if let Some(Reverse((at, ..))) = self.wire.peek() {
                next = next.min(*at);
            }
            if media {
                next = next.min(self.next_video).min(self.next_audio);
            }
            // Always move on a little, so nothing can spin at one instant.
            self.now = next.max(self.now + Duration::from_micros(50));
            while self.wire.peek().is_some_and(|Reverse((at, ..))| *at <= self.now) {
                let Some(Reverse((_, _, to_class, bytes))) = self.wire.pop() else { break };
                let server: SocketAddr = SERVER.parse().unwrap();
                let class = self.endpoints[self.class].addr;
                if to_class {
                    let r = Receive::new(Protocol::Udp, server, class, &bytes).unwrap();
                    self.feed(self.class, Input::Receive(self.now, r));
                } else {
                    self.sfu.handle_datagram(self.now, class, server, &bytes);
                }
            }
            if self.sfu.poll_timeout().is_some_and(|t| t <= self.now) {
                self.sfu.handle_timeout(self.now);
            }
            for i in 0..self.endpoints.len() {
                if self.endpoints[i].timeout <= self.now {
                    self.feed(i, Input::Timeout(self.now));
                }
            }
            if media && self.next_video <= self.now {
                self.next_video += FRAME;
                self.write_video();
            }
            if media && self.next_audio <= self.now {
                self.next_audio += AUDIO_FRAME;
                audio_n += 1;
                self.write_audio(audio_n);
            }
        }
    }

    /// When the classroom first decoded a frame of `layer` in `from..to` (seconds since the start).
    fn first_on(&self, layer: u8, from: Duration, to: Duration) -> Option<Duration> {
        self.frames.iter().find(|(t, l)| *t >= from && *t < to && *l == layer).map(|(t, _)| *t)
    }

    /// The layers decoded in `from..to`, consecutive repeats folded, with when each run began.
    fn runs(&self, from: Duration, to: Duration) -> Vec<(u8, f64)> {
        let mut v: Vec<(u8, f64)> = Vec::new();
        for (t, l) in self.frames.iter().filter(|(t, _)| *t >= from && *t < to) {
            if v.last().is_none_or(|(last, _)| last != l) {
                v.push((*l, t.as_secs_f64()));
            }
        }
        v
    }

    /// The share of the Opus frames sent in `from..to` that the classroom never got.
    fn audio_loss(&self, from: Duration, to: Duration) -> f64 {
        let sent: Vec<u64> = self.audio_sent.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, n)| *n).collect();
        let lost = sent.iter().filter(|n| !self.audio_got.contains(n)).count();
        lost as f64 / sent.len().max(1) as f64
    }

    fn video_fps(&self, from: Duration, to: Duration) -> f64 {
        self.frames.iter().filter(|(t, _)| *t >= from && *t < to).count() as f64 / (to - from).as_secs_f64()
    }
}

/// A capped link like a router's queue: 200 ms of it, drop-tail. Its bucket holds one full
/// packet: the model lets a bucket's worth through at once, at unlimited line rate, and a str0m
/// probe cluster riding a 4 KB bucket reads as several times what the link carries, a reading
/// nothing contradicts while the subscriber sends little (the layer choice then tries a layer the
/// link cannot carry now and then: the known limit in `sfu/src/estimate.rs`).
fn link(rate_bps: u64, delay_ms: u64, loss: f64) -> Impairment {
    Impairment { delay: Duration::from_millis(delay_ms), loss, burst_bytes: 1500, ..Impairment::cap(rate_bps) }
}

/// The teacher publishes, a classroom joins behind the link, everyone connects.
fn lesson(first: Impairment, seed: u64, red: bool) -> Sim {
    let mut sim = Sim::new(first, seed);
    sim.join(1, grant("teacher", RoomRole::Teacher, true), false, false);
    sim.publish(1);
    sim.class = sim.join(CLASS_CONN, grant("class-1", RoomRole::Classroom, false), true, red);
    sim.run(Duration::from_secs(2), false);
    assert!(sim.endpoints.iter().all(|e| e.rtc.is_connected()), "everyone connects over the link");
    sim
}

/// A weak link's way back (server → classroom follows `down`): 5 % loss and 100 ms each way.
fn weaken(sim: &mut Sim, rate_bps: u64) {
    sim.down.set(link(rate_bps, 100, 0.05));
    sim.up.set(Impairment { delay: Duration::from_millis(100), loss: 0.05, ..Impairment::default() });
}

/// What one seeded run of the lesson's schedule showed: times from each change of the link.
struct Outcome {
    top: Option<Duration>,
    top_held: bool,
    chose_lower: Option<Duration>,
    first_down: Option<Duration>,
    lowest: Option<Duration>,
    steady_switches: usize,
    fps: f64,
    audio: f64,
    loss: f64,
    audio_only: Option<Duration>,
    narrow_video: usize,
    narrow_audio: f64,
    up: Option<Duration>,
    figures: String,
}

/// The teacher's lesson over the classroom's link: ample for 20 s, 150 kbit/s with 5 % loss and
/// 100 ms for 40 s, 64 kbit/s for 20 s, ample again for 30 s; `seed` draws the link's losses.
fn follow_the_schedule(seed: u64) -> Outcome {
    let s = Duration::from_secs;
    let ample = link(2_500_000, 40, 0.0);
    let mut sim = lesson(ample, seed, true);
    let began = sim.at();
    sim.run(began + s(20), true);
    let drop_at = sim.at();
    weaken(&mut sim, 150_000);
    sim.run(drop_at + s(40), true);
    let narrow_at = sim.at();
    weaken(&mut sim, 64_000);
    sim.run(narrow_at + s(20), true);
    let recover_at = sim.at();
    sim.down.set(ample);
    sim.up.set(ample);
    sim.run(recover_at + s(30), true);
    let end = sim.at();

    let top = sim.first_on(2, began, drop_at).map(|t| t - began);
    let chose_lower = sim.keyframe_requests.iter().find(|(t, rid)| *t >= drop_at && rid != "f").map(|(t, _)| *t - drop_at);
    let first_down = sim.frames.iter().find(|(t, l)| *t >= drop_at && *l < 2).map(|(t, _)| *t - drop_at);
    let lowest = sim.first_on(0, drop_at, narrow_at).map(|t| t - drop_at);
    let steady = drop_at + s(10)..narrow_at;
    let steady_runs = sim.runs(steady.start, steady.end);
    let fps = sim.video_fps(steady.start, steady.end);
    let audio = sim.audio_frames.iter().filter(|t| steady.contains(*t)).count() as f64 / 30.0;
    let loss = sim.audio_loss(steady.start, steady.end);
    let audio_only = sim.reception.iter().find(|(t, on)| *t >= narrow_at && *on).map(|(t, _)| *t - narrow_at);
    // Frames the link still held when video went off may arrive for a while (str0m's pacer holds
    // up to 2 s; a lost packet is sent again on NACK); in the last 10 s at 64 kbit/s, none.
    let narrow_tail = recover_at - s(10)..recover_at;
    let narrow_frames: Vec<String> = sim
        .frames
        .iter()
        .filter(|(t, _)| narrow_tail.contains(t))
        .map(|(t, l)| format!("{l}@{:.2}s", (*t - narrow_at).as_secs_f64()))
        .collect();
    let narrow_video = narrow_frames.len();
    let narrow_audio =
        sim.audio_frames.iter().filter(|t| narrow_tail.contains(*t)).count() as f64 / (narrow_tail.end - narrow_tail.start).as_secs_f64();
    let video_back = sim.reception.iter().find(|(t, on)| *t >= recover_at && !*on).map(|(t, _)| *t - recover_at);
    let up = sim.first_on(2, recover_at, end).map(|t| t - recover_at);
    let secs = |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    let figures = format!(
        "top layer {} after media started on a 2.5 Mbit/s link; at 150 kbit/s (5 % loss, 100 ms) a lower layer chosen {} \
         and received {}, \
         the lowest layer {}, then {fps:.1} video fps, {audio:.0} audio frames/s and {:.1} % audio lost (with RED); \
         at 64 kbit/s audio only {}, in its last 10 s {narrow_video} video frames {narrow_frames:?} and {narrow_audio:.0} audio frames/s; after recovery \
         video back {}, the top layer {}; layers (layer, from s): ample {:?}, 150k {:?}, 64k {:?}, recovered {:?}; \
         reception {:?}; down link: {} of {} packets dropped",
        secs(top),
        secs(chose_lower),
        secs(first_down),
        secs(lowest),
        loss * 100.0,
        secs(audio_only),
        secs(video_back),
        secs(up),
        sim.runs(began, drop_at),
        sim.runs(drop_at, narrow_at),
        sim.runs(narrow_at, recover_at),
        sim.runs(recover_at, end),
        sim.reception,
        sim.down.stats.queue_drops + sim.down.stats.lost,
        sim.down.stats.offered,
    );
    Outcome {
        top,
        top_held: sim.runs(drop_at - s(4), drop_at).iter().all(|(l, _)| *l == 2),
        chose_lower,
        first_down,
        lowest,
        steady_switches: steady_runs.len().saturating_sub(1),
        fps,
        audio,
        loss,
        audio_only,
        narrow_video,
        narrow_audio,
        up,
        figures,
    }
}

/// The median of `values`, `None` (never) counting as the longest.
fn median(mut values: Vec<Option<Duration>>) -> Option<Duration> {
    values.sort_by_key(|v| v.unwrap_or(Duration::MAX));
    values[values.len() / 2]
}

/// Each seed is one draw of the link's random losses, and str0m's estimator answers each draw a
/// little differently (a report a second later moves a switch by a second): the times are judged
/// on the median of several draws; what must hold in every draw is checked in each. `TX_SEED=n`
/// runs one draw.
#[test]
fn a_classroom_follows_its_links_estimate_down_to_audio_only_and_back_up() {
    let s = Duration::from_secs;
    let seeds: Vec<u64> = std::env::var("TX_SEED").map_or((1..=7).collect(), |s| vec![s.parse().unwrap()]);
    let outcomes: Vec<Outcome> = seeds.iter().map(|seed| follow_the_schedule(*seed)).collect();
    for (seed, o) in seeds.iter().zip(&outcomes) {
        println!("estimate-driven layers, seed {seed}: {}", o.figures);
    }
    let all = outcomes.iter().map(|o| format!("\n  {}", o.figures)).collect::<String>();
    for o in &outcomes {
        let figures = &o.figures;
        assert!(o.top.is_some() && o.top_held, "the top layer on an ample link: {figures}");
        assert!(o.lowest.is_some() && o.audio_only.is_some() && o.up.is_some(), "down, audio only and back up: {figures}");
        assert!(o.steady_switches <= 1, "at most one switch in 30 s at a steady 150 kbit/s: {figures}");
        assert!(o.audio >= 47.0 && o.loss <= 0.03, "audio goes on, redundancy making up for most of the link's 5 % loss: {figures}");
        // A frame left incomplete when video went off can still be completed long after by a
        // packet str0m's padding sends again (it pads up to 50 kbit/s with old packets): one such
        // frame, never a picture that moves.
        assert!(o.narrow_video <= 1 && o.narrow_audio >= 44.0, "audio, and no video, at 64 kbit/s: {figures}");
    }
    let med = |f: fn(&Outcome) -> Option<Duration>| median(outcomes.iter().map(f).collect());
    // Choosing takes str0m's estimate a second or two; the lower layer's keyframe then crosses a
    // link still full of the top layer's packets (a keyframe lost there is sent again on NACK).
    assert!(med(|o| o.chose_lower).is_some_and(|d| d <= s(3)), "a lower layer chosen within 3 s: {all}");
    assert!(med(|o| o.first_down).is_some_and(|d| d <= s(6)), "a lower layer received within 6 s: {all}");
    assert!(med(|o| o.lowest).is_some_and(|d| d <= s(8)), "down to the lowest layer within 8 s: {all}");
    let mut fps: Vec<f64> = outcomes.iter().map(|o| o.fps).collect();
    fps.sort_by(f64::total_cmp);
    assert!(fps[fps.len() / 2] >= 10.0, "the lowest layer keeps its frame rate on the weak link: {all}");
    assert!(med(|o| o.audio_only).is_some_and(|d| d <= s(3)), "audio only within 3 s at 64 kbit/s: {all}");
    assert!(med(|o| o.up).is_some_and(|d| d <= s(15)), "back on top within 15 s of the recovery: {all}");
}

#[test]
fn redundancy_lowers_the_audio_lost_on_a_lossy_link() {
    let s = Duration::from_secs;
    let seed = std::env::var("TX_SEED").map_or(11, |s| s.parse().unwrap());
    let mut figures = Vec::new();
    for red in [false, true] {
        let mut sim = lesson(link(2_500_000, 40, 0.0), seed, red);
        let began = sim.at();
        weaken(&mut sim, 150_000);
        sim.run(began + s(10), true);
        let before = (sim.down.stats.lost, sim.down.stats.offered);
        sim.run(began + s(50), true);
        // What the link itself lost at random over the window, every kind of packet counted.
        let link_loss = (sim.down.stats.lost - before.0) as f64 / (sim.down.stats.offered - before.1).max(1) as f64;
        figures.push((link_loss, sim.audio_loss(began + s(10), began + s(50)), sim.video_fps(began + s(10), began + s(50))));
    }
    let [(plain_link, plain, plain_fps), (red_link, red, red_fps)] = figures[..] else { unreachable!() };
    let figures = format!(
        "at 150 kbit/s with 5 % loss, over 40 s: plain Opus {:.1} % of audio lost (the link lost {:.1} %, video {plain_fps:.1} fps); \
         with RED {:.1} % (the link lost {:.1} %, video {red_fps:.1} fps)",
        plain * 100.0,
        plain_link * 100.0,
        red * 100.0,
        red_link * 100.0
    );
    println!("{figures}");
    assert!(plain <= plain_link + 0.01, "plain audio loses no more than the link and 1 %: {figures}");
    assert!(red < plain / 3.0 && red <= 0.02, "redundancy recovers most of it: {figures}");
    assert!(plain_fps >= 10.0 && red_fps >= 10.0, "video goes on at the lowest layer either way: {figures}");
}
