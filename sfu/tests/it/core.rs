//! The sans-IO core under a fake clock: str0m clients and the `Sfu` on an in-memory network,
//! time advanced by hand, so minutes of protocol run in milliseconds and always the same way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tongxin_common::rooms::{LeaveReason, RoomEvent};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};
use tongxin_sfu::core::RemoveReason;
use tongxin_sfu::layers::PAUSE_AFTER;
use tongxin_sfu::renditions::{TranscodeConfig, TranscodeOp};
use tongxin_sfu::signal::{ClientMessage, ConnId, PublishTrack, ServerMessage, VideoQuality};
use tongxin_sfu::{PeerId, Sfu, SfuConfig, SfuError, SfuEvent, Signal};
use tongxin_transcoder::ReencodedPacket;

const SERVER: &str = "127.0.0.1:7882";

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    /// False simulates a dead link: nothing in or out.
    online: bool,
    mids: Vec<(Mid, MediaKind)>,
    connected: bool,
    video_frames: Vec<Vec<u8>>,
    audio_frames: usize,
    /// The first byte of each audio frame received.
    audio_heads: Vec<u8>,
    /// The RTP time (90 kHz) of each video frame received, and when it arrived.
    video_times: Vec<(u64, Instant)>,
    keyframe_requests: usize,
}

struct Net {
    sfu: Sfu,
    clients: Vec<Client>,
    now: Instant,
    events: Vec<SfuEvent>,
    signals: Vec<Signal>,
    room_events: Vec<RoomEvent>,
    /// Whether the room participants' subscriber clients send TWCC feedback (str0m's default),
    /// from which the server estimates their links.
    feedback: bool,
    /// Bytes in each Opus frame publishers send (5: quiet speech; hundreds: OBS's music-sized
    /// audio).
    opus_bytes: usize,
}

fn grant(identity: &str, publish: bool, subscribe: bool) -> JoinGrant {
    JoinGrant {
        room: RoomName::parse("lesson-9").unwrap(),
        identity: Identity::parse(identity).unwrap(),
        name: None,
        // In this room the "teacher" is the teacher; everyone else is a classroom.
        role: if identity == "teacher" { RoomRole::Teacher } else { RoomRole::Classroom },
        can_publish: publish,
        can_subscribe: subscribe,
        can_publish_data: true,
        hidden: false,
    }
}

impl Net {
    fn new() -> Net {
        let config = SfuConfig { candidates: vec![SERVER.parse().unwrap()], loopback_only: true, ..SfuConfig::default() };
        Net::with(config)
    }

    fn with(config: SfuConfig) -> Net {
        let config = SfuConfig { candidates: vec![SERVER.parse().unwrap()], loopback_only: true, ..config };
        Net {
            sfu: Sfu::new(config),
            clients: Vec::new(),
            now: Instant::now(),
            events: Vec::new(),
            signals: Vec::new(),
            room_events: Vec::new(),
            feedback: true,
            opus_bytes: 5,
        }
    }

    /// Messages the server sent to `conn` so far.
    fn messages(&self, conn: u64) -> Vec<&ServerMessage> {
        self.signals.iter().filter(|s| s.conn == ConnId(conn)).filter_map(|s| s.message.as_ref()).collect()
    }

    fn left(&self, identity: &str) -> Vec<LeaveReason> {
        self.room_events
            .iter()
            .filter_map(|e| match e {
                RoomEvent::ParticipantLeft { identity: who, reason, .. } if who.as_str() == identity => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// A room participant joining on WebSocket `conn`; a str0m client answers its subscriber
    /// connection. Returns the client's index and the resume credential.
    fn join(&mut self, conn: u64, grant: Option<JoinGrant>, resume: Option<String>) -> (usize, String) {
        self.sfu.join(self.now, ConnId(conn), grant, resume, true);
        self.collect();
        let (credential, offer) = {
            let msgs = self.messages(conn);
            let credential = msgs.iter().rev().find_map(|m| match m {
                ServerMessage::Joined { resume, .. } => Some(resume.clone()),
                _ => None,
            });
            let offer = msgs.iter().rev().find_map(|m| match m {
                ServerMessage::Offer { sdp, .. } => Some(sdp.clone()),
                _ => None,
            });
            (credential.unwrap_or_else(|| panic!("no joined for conn {conn}: {msgs:?}")), offer.expect("an offer"))
        };
        let i = self.clients.len();
        let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + i).parse().unwrap();
        let config = if self.feedback { RtcConfig::new() } else { RtcConfig::new().set_extension_map(without_twcc()) };
        let mut rtc = config.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer).unwrap()).unwrap();
        self.clients.push(Client {
            rtc,
            addr,
            online: true,
            mids: vec![],
            connected: false,
            video_frames: vec![],
            audio_frames: 0,
            audio_heads: vec![],
            video_times: vec![],
            keyframe_requests: 0,
        });
        self.sfu.client_message(self.now, ConnId(conn), ClientMessage::Answer { sdp: answer.to_sdp_string() });
        self.collect();
        (i, credential)
    }

    /// Room participant `conn` publishes audio + video from a new str0m client; returns its index
    /// and the ids the server gave its tracks (`publish_answer`).
    fn publish_room(&mut self, conn: u64) -> (usize, Vec<String>) {
        let (i, offer, pending) = self.client(Direction::SendOnly);
        self.sfu.client_message(self.now, ConnId(conn), ClientMessage::Publish { sdp: offer, tracks: vec![] });
        self.collect();
        let (answer, ids) = self
            .messages(conn)
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMessage::PublishAnswer { sdp, tracks } => Some((sdp.clone(), tracks.values().map(|t| format!("t{}", t.0)).collect())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no publish_answer: {:?}", self.messages(conn)));
        self.accept(i, pending, &answer);
        (i, ids)
    }

    /// Answers the newest offer on `conn` from subscriber client `i`.
    fn answer_latest(&mut self, conn: u64, i: usize) {
        let offer = self
            .messages(conn)
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMessage::Offer { sdp, .. } => Some(sdp.clone()),
                _ => None,
            })
            .expect("an offer");
        let answer = self.clients[i].rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer).unwrap()).unwrap();
        self.sfu.client_message(self.now, ConnId(conn), ClientMessage::Answer { sdp: answer.to_sdp_string() });
        self.collect();
    }

    /// Sends frames from publisher `p` for `seconds` of simulated time, a keyframe each second.
    fn stream(&mut self, p: usize, from: u64, seconds: u64) -> u64 {
        let frames = seconds * 30;
        for n in from..from + frames {
            self.send_frame(p, n, n.is_multiple_of(30));
            self.tick(Duration::from_millis(33));
        }
        from + frames
    }

    fn collect(&mut self) {
        while let Some(s) = self.sfu.poll_signal() {
            self.signals.push(s);
        }
        while let Some(e) = self.sfu.poll_room_event() {
            self.room_events.push(e);
        }
    }

    /// Advances the clock by `total` in steps of 100 ms, moving packets.
    fn advance(&mut self, total: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.tick(Duration::from_millis(100));
        }
    }

    /// A client offering `direction` audio+video; returns its index, the offer and the pending state.
    fn client(&mut self, direction: Direction) -> (usize, String, SdpPendingOffer) {
        let i = self.clients.len();
        let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + i).parse().unwrap();
        let mut rtc = RtcConfig::new().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let a = api.add_media(MediaKind::Audio, direction, None, None, None);
        let v = api.add_media(MediaKind::Video, direction, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let mids = vec![(a, MediaKind::Audio), (v, MediaKind::Video)];
        self.clients.push(Client {
            rtc,
            addr,
            online: true,
            mids,
            connected: false,
            video_frames: vec![],
            audio_frames: 0,
            audio_heads: vec![],
            video_times: vec![],
            keyframe_requests: 0,
        });
        (i, offer.to_sdp_string(), pending)
    }

    fn accept(&mut self, i: usize, pending: SdpPendingOffer, answer: &str) {
        self.clients[i].rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(answer).unwrap()).unwrap();
    }

    fn publish(&mut self, identity: &str) -> (usize, PeerId) {
        let (i, offer, pending) = self.client(Direction::SendOnly);
        let s = self.sfu.publish(self.now, &grant(identity, true, false), &offer).expect("publish");
        self.accept(i, pending, &s.answer);
        (i, s.peer)
    }

    /// A WHIP teacher publishing audio + video in "village-clinic" and a room participant (a
    /// classroom on conn 2) receiving it, both connected; returns their client indexes.
    fn teacher_and_class(&mut self) -> (usize, usize) {
        let (i, offer, pending) = self.client(Direction::SendOnly);
        let teacher = JoinGrant { room: RoomName::parse("village-clinic").unwrap(), ..grant("teacher", true, false) };
        let s = self.sfu.publish(self.now, &teacher, &offer).expect("publish");
        self.accept(i, pending, &s.answer);
        let (b, _) = self.join(2, Some(room_grant("class-1")), None);
        self.run_until("everyone connects", |n| n.clients.iter().all(|c| c.connected));
        (i, b)
    }

    fn subscribe(&mut self, identity: &str) -> (usize, PeerId) {
        let (i, offer, pending) = self.client(Direction::RecvOnly);
        let s = self.sfu.subscribe(self.now, &grant(identity, false, true), None, &offer).expect("subscribe");
        self.accept(i, pending, &s.answer);
        (i, s.peer)
    }

    /// Moves every pending datagram and event, then advances the clock by `step`.
    fn tick(&mut self, step: Duration) {
        let server: SocketAddr = SERVER.parse().unwrap();
        for _ in 0..50 {
            let mut moved = false;
            for c in &mut self.clients {
                loop {
                    match c.rtc.poll_output().unwrap() {
                        Output::Timeout(_) => break,
                        Output::Transmit(t) => {
                            if c.online {
                                self.sfu.handle_datagram(self.now, c.addr, server, &t.contents);
                                moved = true;
                            }
                        }
                        Output::Event(Event::Connected) => c.connected = true,
                        Output::Event(Event::KeyframeRequest(_)) => c.keyframe_requests += 1,
                        Output::Event(Event::MediaData(d)) => {
                            let kind =
                                c.mids.iter().find(|(m, _)| *m == d.mid).map(|(_, k)| *k).or_else(|| c.rtc.media(d.mid).map(|m| m.kind()));
                            match kind {
                                Some(MediaKind::Video) => {
                                    c.video_frames.push(d.data.to_vec());
                                    c.video_times.push((d.time.numer(), self.now));
                                }
                                Some(MediaKind::Audio) => {
                                    c.audio_frames += 1;
                                    c.audio_heads.extend(d.data.first());
                                }
                                None => {}
                            }
                        }
                        Output::Event(_) => {}
                    }
                }
            }
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                if let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination && c.online) {
                    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                    c.rtc.handle_input(Input::Receive(self.now, r)).unwrap();
                }
            }
            while let Some(e) = self.sfu.poll_event() {
                self.events.push(e);
            }
            self.collect();
            if !moved {
                break;
            }
        }
        self.now += step;
        self.sfu.handle_timeout(self.now);
        for c in &mut self.clients {
            c.rtc.handle_input(Input::Timeout(self.now)).unwrap();
        }
    }

    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            self.tick(Duration::from_millis(5));
        }
        panic!("{what} did not happen within 50 simulated seconds");
    }

    /// Writes one access unit of each simulcast layer but those in `skip` (paused) from client
    /// `i`: q ≈ 24, h ≈ 96, f ≈ 360 kbit/s at 30 slots a second, the byte after the NAL header
    /// naming the layer (0xa0 + index), a keyframe every 30th slot.
    fn send_layers(&mut self, i: usize, video: Mid, n: u64, skip: &[String]) {
        for (layer, (rid, size)) in [("q", 100usize), ("h", 400), ("f", 1500)].into_iter().enumerate() {
            if !skip.iter().any(|s| s == rid) {
                let mut au = if n.is_multiple_of(30) {
                    vec![0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2, 0, 0, 0, 1, 0x65, 0x88]
                } else {
                    vec![0, 0, 0, 1, 0x41, 0x9a]
                };
                au.push(0xa0 + layer as u8);
                au.extend((0..size).map(|x| ((x as u64 * 7 + n) % 250) as u8 + 1));
                let now = self.now;
                let writer = self.clients[i].rtc.writer(video).expect("a writer").rid(Rid::from(rid));
                let pt = writer.payload_params().find(|p| p.spec().codec == Codec::H264).expect("H.264").pt();
                writer.write(pt, now, MediaTime::new(n * 3000, Frequency::NINETY_KHZ), au).expect("write");
            }
            // str0m wants its output polled after every write: 11 ms per layer, 33 ms a slot.
            self.tick(Duration::from_millis(11));
        }
    }

    /// Writes one H.264 access unit and one Opus frame from publisher client `i`.
    fn send_frame(&mut self, i: usize, n: u64, keyframe: bool) {
        let now = self.now;
        let opus_bytes = self.opus_bytes;
        let c = &mut self.clients[i];
        for (mid, kind) in c.mids.clone() {
            // RFC 6464 level on audio, so the SFU can tell who speaks.
            let writer = c.rtc.writer(mid).expect("a writer").audio_level(-30, true);
            let codec = if kind == MediaKind::Video { Codec::H264 } else { Codec::Opus };
            let pt = writer.payload_params().find(|p| p.spec().codec == codec).expect("negotiated codec").pt();
            let (data, time) = if kind == MediaKind::Video {
                let mut au = if keyframe {
                    vec![0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2, 0, 0, 0, 1, 0x65, 0x88]
                } else {
                    vec![0, 0, 0, 1, 0x41, 0x9a]
                };
                au.extend((0..300u64).map(|x| ((x * 7 + n) % 250) as u8 + 1));
                (au, MediaTime::new(n * 3000, Frequency::NINETY_KHZ))
            } else {
                let mut frame = vec![0xfc, n as u8, 1, 2, 3];
                frame.resize(opus_bytes.max(frame.len()), 7);
                (frame, MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ))
            };
            writer.write(pt, now, time, data).expect("write");
        }
    }
}

#[test]
fn publish_subscribe_forward_and_clean_up() {
    let mut net = Net::new();
    assert!(matches!(net.sfu.publish(net.now, &grant("teacher", true, false), "v=0"), Err(SfuError::BadSdp(_))));
    let (_, offer, _) = net.client(Direction::RecvOnly);
    assert!(matches!(net.sfu.subscribe(net.now, &grant("early", false, true), None, &offer), Err(SfuError::NoPublisher)));
    assert!(matches!(net.sfu.publish(net.now, &grant("viewer", false, true), &offer), Err(SfuError::NotAllowed(_))));
    assert!(matches!(net.sfu.subscribe(net.now, &grant("teacher", true, false), None, &offer), Err(SfuError::NotAllowed(_))));
    assert_eq!(net.sfu.peer_count(), 0, "refused requests leave nothing behind");
    net.clients.clear();

    let (p, publisher) = net.publish("teacher");
    net.run_until("publisher connects", |n| n.clients[p].connected);
    let (s, subscriber) = net.subscribe("class-1");
    net.run_until("subscriber connects", |n| n.clients[s].connected);
    assert!(net.events.contains(&SfuEvent::Connected(publisher)) && net.events.contains(&SfuEvent::Connected(subscriber)));

    // A subscriber gets nothing until a keyframe, then every frame.
    for n in 0..60 {
        net.send_frame(p, n, n % 20 == 10);
        net.tick(Duration::from_millis(33));
    }
    net.run_until("frames arrive", |n| n.clients[s].video_frames.len() >= 49);
    let first = &net.clients[s].video_frames[0];
    assert_eq!(first[4] & 0x1f, 7, "the first forwarded access unit starts with SPS");
    assert!(net.clients[s].audio_frames >= 50, "audio flows: {}", net.clients[s].audio_frames);
    let levels = net.sfu.audio_levels(&RoomName::parse("lesson-9").unwrap());
    assert_eq!(levels, vec![(Identity::parse("teacher").unwrap(), -30)], "audio levels are kept per publisher");

    // A subscriber's keyframe requests reach the publisher, at most one per 500 ms.
    let video_mid = net.clients[s].mids.iter().find(|(_, k)| *k == MediaKind::Video).unwrap().0;
    net.run_until("quiet", |_| true);
    let before = net.clients[p].keyframe_requests;
    for _ in 0..3 {
        net.clients[s].rtc.writer(video_mid).unwrap().request_keyframe(None, KeyframeRequestKind::Pli).unwrap();
        net.tick(Duration::from_millis(20));
    }
    for _ in 0..10 {
        net.tick(Duration::from_millis(10));
    }
    assert_eq!(net.clients[p].keyframe_requests, before + 1, "three requests in 60 ms: the first is relayed at once");
    for _ in 0..60 {
        net.tick(Duration::from_millis(10));
    }
    assert_eq!(net.clients[p].keyframe_requests, before + 2, "the other two are coalesced into one, relayed when the interval ends");
    for _ in 0..60 {
        net.tick(Duration::from_millis(10));
    }
    net.clients[s].rtc.writer(video_mid).unwrap().request_keyframe(None, KeyframeRequestKind::Pli).unwrap();
    for _ in 0..10 {
        net.tick(Duration::from_millis(10));
    }
    assert_eq!(net.clients[p].keyframe_requests, before + 3, "a later request is relayed again at once");

    // Ending the publisher leaves the subscriber waiting; a new publisher feeds it again.
    net.sfu.end(net.now, publisher).unwrap();
    assert!(matches!(net.sfu.end(net.now, publisher), Err(SfuError::NoSuchPeer)));
    net.tick(Duration::from_millis(5));
    assert!(net.events.contains(&SfuEvent::Removed { peer: publisher, reason: RemoveReason::Ended }));
    let before = net.clients[s].video_frames.len();
    let (p2, _) = net.publish("assistant");
    net.run_until("second publisher connects", |n| n.clients[p2].connected);
    for n in 0..30 {
        net.send_frame(p2, 1000 + n, n % 10 == 0);
        net.tick(Duration::from_millis(33));
    }
    net.run_until("frames from the new publisher arrive", |n| n.clients[s].video_frames.len() >= before + 25);

    // A subscriber whose link dies is removed after the grace period.
    net.clients[s].online = false;
    net.run_until("the dead subscriber is removed", |n| {
        n.events.contains(&SfuEvent::Removed { peer: subscriber, reason: RemoveReason::Timeout })
    });
    assert_eq!(net.sfu.peer_count(), 1);
}

#[test]
fn players_get_the_teacher_even_if_a_classroom_published_first() {
    let mut net = Net::new();
    let (c, _) = net.publish("class-3");
    let (t, _) = net.publish("teacher");
    net.run_until("both publishers connect", |n| n.clients[c].connected && n.clients[t].connected);
    let (s, _) = net.subscribe("viewer");
    net.run_until("the player connects", |n| n.clients[s].connected);
    for n in 0..20 {
        net.send_frame(c, n, n % 10 == 0);
        net.send_frame(t, 600 + n, n % 10 == 0);
        net.tick(Duration::from_millis(33));
    }
    net.run_until("frames arrive", |n| n.clients[s].video_frames.len() >= 10);
    // send_frame's filler starts with (frame number % 250) + 1: 101..=120 for the teacher's
    // frames (600..620), 1..=20 for the classroom's.
    for f in &net.clients[s].video_frames {
        let marker = f[f.len() - 300];
        assert!((101..=120).contains(&marker), "the player got a classroom frame (marker {marker}), not the teacher's");
    }
}

#[test]
fn with_a_loopback_candidate_nothing_from_outside_loopback_gets_in() {
    let mut net = Net::new();
    let (p, _) = net.publish("teacher");
    net.run_until("publisher connects", |n| n.clients[p].connected);
    // The publisher's own ICE check, replayed from an outside address, is dropped unread.
    let mut outside = Vec::new();
    net.clients[p].rtc.handle_input(Input::Timeout(net.now + Duration::from_secs(3))).unwrap();
    while let Ok(out) = net.clients[p].rtc.poll_output() {
        match out {
            Output::Transmit(t) => outside.push(t.contents.to_vec()),
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
    assert!(!outside.is_empty(), "the client had something to send");
    while net.sfu.poll_transmit().is_some() {}
    let before = net.sfu.dropped;
    for d in &outside {
        net.sfu.handle_datagram(net.now, "192.0.2.10:50000".parse().unwrap(), SERVER.parse().unwrap(), d);
    }
    assert_eq!(net.sfu.dropped, before + outside.len() as u64, "every datagram from outside loopback is dropped");
    assert!(net.sfu.poll_transmit().is_none(), "and nothing is answered");
}

fn room_grant(identity: &str) -> JoinGrant {
    JoinGrant { room: RoomName::parse("village-clinic").unwrap(), ..grant(identity, true, true) }
}

#[test]
fn a_participant_keeps_its_place_through_an_outage_shorter_than_the_grace_and_times_out_after_it() {
    let mut net = Net::new();
    let grace = SfuConfig::default().reconnect_grace;
    let (_, _) = net.join(1, Some(room_grant("doctor")), None);
    let (b, credential) = net.join(2, Some(room_grant("patient")), None);
    net.run_until("both subscriber connections come up", |n| n.clients.iter().all(|c| c.connected));

    // The patient's phone changes networks: socket and link gone.
    net.sfu.conn_closed(net.now, ConnId(2));
    net.clients[b].online = false;
    net.advance(grace - Duration::from_secs(2));
    assert!(net.left("patient").is_empty(), "still within the grace period");

    // Back on a new socket with the credential only (the token may have expired meanwhile).
    let (_, second) = net.join(3, None, Some(credential.clone()));
    let resumed = net
        .messages(3)
        .iter()
        .any(|m| matches!(m, ServerMessage::Joined { resumed: true, participant, .. } if participant.identity.as_str() == "patient"));
    assert!(resumed, "the participant got its place back: {:?}", net.messages(3));
    assert_ne!(second, credential, "each joined issues a new credential");
    net.run_until("the new subscriber connection comes up", |n| n.clients.last().unwrap().connected);
    net.advance(grace * 2);
    assert!(net.left("patient").is_empty(), "a healthy participant stays");
    let doctor_saw_leave = net.messages(1).iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { .. }));
    assert!(!doctor_saw_leave, "the doctor never saw the patient leave");

    // An old credential is spent.
    net.sfu.join(net.now, ConnId(9), None, Some(credential), true);
    net.collect();
    assert!(matches!(net.messages(9).first(), Some(ServerMessage::Error { code, .. }) if code == "unauthorized"));

    // Gone for good this time.
    net.sfu.conn_closed(net.now, ConnId(3));
    let last = net.clients.len() - 1;
    net.clients[last].online = false;
    net.advance(grace - Duration::from_secs(1));
    assert!(net.left("patient").is_empty());
    net.advance(Duration::from_secs(2));
    assert_eq!(net.left("patient"), vec![LeaveReason::Timeout]);
    let told = net
        .messages(1)
        .iter()
        .any(|m| matches!(m, ServerMessage::ParticipantLeft { identity, reason: LeaveReason::Timeout } if identity.as_str() == "patient"));
    assert!(told, "the doctor is told why");
}

#[test]
fn rooms_enforce_their_limits_and_ad_hoc_rooms_close_a_minute_after_emptying() {
    let mut net = Net::with(SfuConfig { max_participants: 2, max_rooms: 1, ..SfuConfig::default() });
    net.join(1, Some(room_grant("doctor")), None);
    net.join(2, Some(room_grant("patient")), None);
    net.sfu.join(net.now, ConnId(3), Some(room_grant("cousin")), None, true);
    net.collect();
    assert!(matches!(net.messages(3).first(), Some(ServerMessage::Error { code, .. }) if code == "room_full"), "{:?}", net.messages(3));
    assert!(net.signals.iter().any(|s| s.conn == ConnId(3) && s.close), "the refused socket is closed");
    // The same identity again is a replacement, not one more.
    net.join(4, Some(room_grant("patient")), None);
    assert_eq!(net.left("patient"), vec![LeaveReason::Replaced]);
    assert!(net.messages(2).iter().any(|m| matches!(m, ServerMessage::Removed { reason: LeaveReason::Replaced })));
    // A second room is one too many.
    net.sfu.join(net.now, ConnId(5), Some(grant("teacher", true, true)), None, true);
    net.collect();
    assert!(matches!(net.messages(5).first(), Some(ServerMessage::Error { code, .. }) if code == "too_many_rooms"));

    for conn in [1, 4] {
        net.sfu.client_message(net.now, ConnId(conn), ClientMessage::Leave);
    }
    net.collect();
    net.advance(Duration::from_secs(59));
    assert!(!net.room_events.iter().any(|e| matches!(e, RoomEvent::RoomClosed { .. })), "an empty room waits a minute");
    net.advance(Duration::from_secs(2));
    assert!(net.room_events.iter().any(|e| matches!(e, RoomEvent::RoomClosed { room } if room.as_str() == "village-clinic")));
    assert!(net.sfu.room_infos().is_empty());

    // A managed room lives on empty until closed.
    let lesson = RoomName::parse("lesson-9").unwrap();
    net.sfu.create_room(net.now, &lesson).unwrap();
    net.advance(Duration::from_secs(120));
    assert_eq!(net.sfu.room_infos().len(), 1);
    net.sfu.close_room(net.now, &lesson).unwrap();
    assert!(net.sfu.room_infos().is_empty());
}

#[test]
fn a_late_joiner_gets_the_room_as_it_is() {
    let mut net = Net::new();
    net.join(1, Some(room_grant("doctor")), None);
    net.join(2, Some(JoinGrant { name: Some("Dr. Wang".into()), ..room_grant("village-doctor") }), None);
    net.join(3, Some(room_grant("patient")), None);
    let room = net.messages(3).iter().find_map(|m| match m {
        ServerMessage::Joined { room, .. } => Some(room.clone()),
        _ => None,
    });
    let mut here: Vec<String> = room.expect("joined").participants.iter().map(|p| p.identity.as_str().to_owned()).collect();
    here.sort();
    assert_eq!(here, ["doctor", "village-doctor"]);
    let announced = net.messages(1).iter().filter(|m| matches!(m, ServerMessage::ParticipantJoined { .. })).count();
    assert_eq!(announced, 2, "the first one was told of both newcomers");
}

#[test]
fn unsubscribing_stops_forwarding_at_once_even_while_an_offer_is_unanswered() {
    let mut net = Net::new();
    net.join(1, Some(room_grant("teacher")), None);
    let (p, ids) = net.publish_room(1);
    let (b, _) = net.join(2, Some(room_grant("class-1")), None);
    net.run_until("everyone connects", |n| n.clients.iter().all(|c| c.connected));
    let mut n = net.stream(p, 0, 2);
    let before = net.clients[b].video_frames.len();
    assert!(before > 20, "the classroom receives the teacher's camera ({before} frames)");

    // Another publisher arrives: the classroom gets an offer it does not answer yet.
    net.join(3, Some(room_grant("class-2")), None);
    net.publish_room(3);
    let offers = net.messages(2).iter().filter(|m| matches!(m, ServerMessage::Offer { .. })).count();
    assert_eq!(offers, 2, "a renegotiation is pending");
    let tracks = ids.iter().map(|t| serde_json::from_value(serde_json::json!(t)).unwrap()).collect();
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Unsubscribe { tracks });
    net.collect();
    let at_unsubscribe = net.clients[b].video_frames.len();
    n = net.stream(p, n, 2);
    assert!(net.clients[b].video_frames.len() <= at_unsubscribe + 1, "nothing more is forwarded after unsubscribing");

    // Answering later brings the connection in line; a resubscription brings the camera back.
    net.answer_latest(2, b);
    net.advance(Duration::from_millis(500));
    net.answer_latest(2, b);
    let tracks = ids.iter().map(|t| serde_json::from_value(serde_json::json!(t)).unwrap()).collect();
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Subscribe { tracks });
    net.collect();
    net.answer_latest(2, b);
    let resubscribed = net.clients[b].video_frames.len();
    net.stream(p, n, 3);
    assert!(net.clients[b].video_frames.len() > resubscribed + 20, "the camera is back after subscribing again");
    let errors: Vec<_> = net.messages(2).into_iter().filter(|m| matches!(m, ServerMessage::Error { .. })).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_publisher_whose_connection_dies_must_publish_again_within_the_grace() {
    let mut net = Net::new();
    let grace = SfuConfig::default().reconnect_grace;
    net.join(1, Some(room_grant("teacher")), None);
    let (p, _) = net.publish_room(1);
    net.join(2, Some(room_grant("class-1")), None);
    net.run_until("everyone connects", |n| n.clients.iter().all(|c| c.connected));
    // The teacher's publisher link dies; its socket and subscriber connection stay up.
    net.clients[p].online = false;
    net.advance(grace + Duration::from_secs(20));
    assert_eq!(net.left("teacher"), vec![LeaveReason::Timeout], "tracks without a publisher do not linger");
}

#[test]
fn hidden_participants_are_never_announced_named_or_handed_out() {
    let mut net = Net::new();
    net.join(1, Some(room_grant("class-1")), None);
    let observer = JoinGrant { hidden: true, ..room_grant("inspector") };
    net.join(2, Some(observer), None);
    net.publish_room(2);
    let seen: Vec<String> = net.messages(1).iter().map(|m| serde_json::to_string(m).unwrap()).collect();
    assert!(seen.iter().all(|m| !m.contains("inspector")), "the classroom never hears of the inspector: {seen:?}");
    let offered = net.messages(1).iter().filter(|m| matches!(m, ServerMessage::Offer { tracks, .. } if !tracks.is_empty())).count();
    assert_eq!(offered, 0, "its tracks are not handed out unasked");
}

#[test]
fn a_simulcast_publisher_reaches_each_subscriber_on_one_layer_that_fits_its_budget() {
    let mut net = Net::new();
    // The classroom gives no TWCC feedback: its budget alone picks the layer (the estimate's part
    // is in `estimate.rs`).
    net.feedback = false;
    // A WHIP publisher sending three layers by rid: q ≈ 24, h ≈ 96, f ≈ 360 kbit/s.
    let i = net.clients.len();
    let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + i).parse().unwrap();
    let mut rtc = RtcConfig::new().build(net.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(three_layers()));
    let (offer, pending) = api.apply().unwrap();
    net.clients.push(Client {
        rtc,
        addr,
        online: true,
        mids: vec![(video, MediaKind::Video)],
        connected: false,
        video_frames: vec![],
        audio_frames: 0,
        audio_heads: vec![],
        video_times: vec![],
        keyframe_requests: 0,
    });
    let s = net
        .sfu
        .publish(
            net.now,
            &JoinGrant { room: RoomName::parse("village-clinic").unwrap(), ..grant("teacher", true, false) },
            &offer.to_sdp_string(),
        )
        .expect("publish");
    net.accept(i, pending, &s.answer);
    let (b, _) = net.join(2, Some(room_grant("class-1")), None);
    net.run_until("everyone connects", |n| n.clients.iter().all(|c| c.connected));

    let mut n = 0u64;
    let mut stream = |net: &mut Net, seconds: u64| {
        for _ in 0..seconds * 30 {
            net.send_layers(i, video, n, &[]);
            n += 1;
        }
    };
    let runs = |net: &Net, from: usize| layer_runs(&net.clients[b].video_frames[from..]);

    stream(&mut net, 4);
    assert!(net.clients[b].video_frames.len() > 60, "frames arrive ({})", net.clients[b].video_frames.len());
    assert_eq!(runs(&net, 0), [0], "without a budget or an estimate: the lowest layer only, never a mix");

    let mark = net.clients[b].video_frames.len();
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(5000) });
    stream(&mut net, 5);
    assert_eq!(runs(&net, mark), [0, 2], "a generous budget: one switch, at a keyframe, to the top layer");

    let mark = net.clients[b].video_frames.len();
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(200) });
    stream(&mut net, 5);
    assert_eq!(runs(&net, mark), [2, 1], "200 kbit/s less 40 for audio carries the middle layer, not the top");

    // A small tile asks for the lowest layer whatever the budget.
    let video_track = net
        .messages(2)
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Offer { tracks, .. } => tracks.values().next().copied(),
            _ => None,
        })
        .expect("the camera's track id");
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(5000) });
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::VideoQuality { track: video_track, max: VideoQuality::Low });
    let mark = net.clients[b].video_frames.len();
    stream(&mut net, 5);
    assert_eq!(runs(&net, mark), [1, 0], "video_quality low caps the layer below what the budget allows");
    let errors: Vec<_> = net.messages(2).into_iter().filter(|m| matches!(m, ServerMessage::Error { .. })).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// str0m's standard RTP header extensions but transport-wide sequence numbers: a receiver that
/// gives no TWCC feedback, so the server has no estimate of its link.
fn without_twcc() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter().filter(|(_, e)| **e != Extension::TransportSequenceNumber) {
        exts.set(id, ext.clone());
    }
    exts
}

/// A send-only video m-line's three simulcast layers by rid, lowest first.
fn three_layers() -> Simulcast {
    Simulcast { send: ["q", "h", "f"].map(SimulcastLayer::new).to_vec(), recv: vec![] }
}

/// The layers (see [`Net::send_layers`]) of received frames, consecutive repeats folded.
fn layer_runs(frames: &[Vec<u8>]) -> Vec<u8> {
    let layer_of = |f: &Vec<u8>| f.iter().position(|b| (0xa0..=0xa2).contains(b)).map(|p| f[p] - 0xa0);
    let mut v: Vec<u8> = Vec::new();
    for l in frames.iter().filter_map(layer_of) {
        if v.last() != Some(&l) {
            v.push(l);
        }
    }
    v
}

#[test]
fn a_room_page_pauses_the_layers_nobody_receives_and_resumes_them_at_once() {
    let mut net = Net::new();
    // No TWCC feedback from the class, so no estimate: its budget alone decides what it wants.
    net.feedback = false;
    net.join(1, Some(room_grant("teacher")), None);
    // The teacher's page publishes its camera as three layers by rid over the room protocol.
    let i = net.clients.len();
    let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + i).parse().unwrap();
    let mut rtc = RtcConfig::new().build(net.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(three_layers()));
    let (offer, pending) = api.apply().unwrap();
    net.clients.push(Client {
        rtc,
        addr,
        online: true,
        mids: vec![(video, MediaKind::Video)],
        connected: false,
        video_frames: vec![],
        audio_frames: 0,
        audio_heads: vec![],
        video_times: vec![],
        keyframe_requests: 0,
    });
    let camera = PublishTrack { mid: video.to_string(), source: tongxin_common::rooms::TrackSource::Camera };
    net.sfu.client_message(net.now, ConnId(1), ClientMessage::Publish { sdp: offer.to_sdp_string(), tracks: vec![camera] });
    net.collect();
    let (answer, track) = net
        .messages(1)
        .iter()
        .find_map(|m| match m {
            ServerMessage::PublishAnswer { sdp, tracks } => Some((sdp.clone(), *tracks.values().next().expect("the camera's id"))),
            _ => None,
        })
        .expect("a publish_answer");
    net.accept(i, pending, &answer);
    let (b, _) = net.join(2, Some(room_grant("class-1")), None);
    net.run_until("everyone connects", |n| n.clients.iter().all(|c| c.connected));

    // The `layers` frames the teacher's page got so far, in order.
    let pauses = |net: &Net| -> Vec<Vec<String>> {
        net.messages(1)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Layers { track: t, paused } => {
                    assert_eq!(*t, track, "only the camera is layered");
                    Some(paused.clone())
                }
                _ => None,
            })
            .collect()
    };
    // Streams like a page that obeys the latest frame, noting when each frame came (to a slot).
    let mut n = 0u64;
    let mut stream = |net: &mut Net, seconds: u64, seen: &mut Vec<(Instant, Vec<String>)>| {
        for _ in 0..seconds * 30 {
            let skip = seen.last().map(|(_, p)| p.clone()).unwrap_or_default();
            net.send_layers(i, video, n, &skip);
            n += 1;
            let now = net.now;
            seen.extend(pauses(net).into_iter().skip(seen.len()).map(|p| (now, p)));
        }
    };
    let mut seen: Vec<(Instant, Vec<String>)> = Vec::new();
    let start = net.now;

    // The class has no budget, so it gets the lowest layer: h and f are wanted by nobody.
    stream(&mut net, 3, &mut seen);
    assert!(seen.is_empty(), "nothing is paused within {PAUSE_AFTER:?} of the layers arriving: {seen:?}");
    stream(&mut net, 4, &mut seen);
    assert_eq!(seen.len(), 1, "one frame, sent on change: {seen:?}");
    assert_eq!(seen[0].1, ["h", "f"], "nobody receives h or f; q is the fallback and keeps going");
    let after = seen[0].0.duration_since(start);
    assert!(after >= PAUSE_AFTER && after <= PAUSE_AFTER + Duration::from_secs(2), "paused after {after:?}");
    let mark = net.clients[b].video_frames.len();
    stream(&mut net, 2, &mut seen);
    assert!(net.clients[b].video_frames.len() > mark + 50, "the class goes on receiving the lowest layer");
    assert_eq!(layer_runs(&net.clients[b].video_frames[mark..]), [0]);

    // The class can take much more now: the top layer is resumed at once (its rate was kept
    // while paused, so the selector still knows what it costs); h stays paused.
    let asked = net.now;
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(5000) });
    stream(&mut net, 3, &mut seen);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].1, ["h"], "f resumed, h still unwanted");
    assert!(
        seen[1].0.duration_since(asked) <= Duration::from_millis(600),
        "resumed within a room tick: {:?}",
        seen[1].0.duration_since(asked)
    );
    let mark = net.clients[b].video_frames.len();
    stream(&mut net, 3, &mut seen);
    assert_eq!(layer_runs(&net.clients[b].video_frames[mark..]), [2], "the class gets the top layer once it flows again");

    // A small tile: only the lowest layer is wanted, f is paused again after a while.
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::VideoQuality { track, max: VideoQuality::Low });
    let lowered = net.now;
    stream(&mut net, 7, &mut seen);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2].1, ["h", "f"]);
    assert!(seen[2].0.duration_since(lowered) >= PAUSE_AFTER, "f was not paused before {PAUSE_AFTER:?}");

    // Nobody receives the camera any more: after a while even the lowest layer pauses.
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Unsubscribe { tracks: vec![track] });
    net.collect();
    stream(&mut net, 7, &mut seen);
    assert_eq!(seen.last().map(|(_, p)| p.as_slice()), Some(&["q".to_owned(), "h".to_owned(), "f".to_owned()][..]), "{seen:?}");
    // Subscribing again resumes at once what the fresh m-line takes: the lowest layer (where
    // every new m-line starts), then the top layer its 5000 kbit/s budget allows (the small-tile
    // cap belonged to the old m-line) as soon as it may step up.
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Subscribe { tracks: vec![track] });
    net.collect();
    net.answer_latest(2, b);
    let back = net.now;
    stream(&mut net, 1, &mut seen);
    let (at, last) = seen.last().cloned().unwrap();
    assert_eq!(last, ["h", "f"], "{seen:?}");
    assert!(at.duration_since(back) <= Duration::from_millis(600));
    stream(&mut net, 3, &mut seen);
    assert_eq!(seen.last().map(|(_, p)| p.as_slice()), Some(&["h".to_owned()][..]), "{seen:?}");

    // The page renegotiates (it adds its microphone): the pause in force is repeated after the
    // answer, for senders the page may have made afresh.
    let mut api = net.clients[i].rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let before = net.messages(1).len();
    net.sfu.client_message(net.now, ConnId(1), ClientMessage::Publish { sdp: offer.to_sdp_string(), tracks: vec![] });
    net.collect();
    let after: Vec<ServerMessage> = net.messages(1)[before..].iter().map(|m| (*m).clone()).collect();
    let answer = after.iter().find_map(|m| match m {
        ServerMessage::PublishAnswer { sdp, .. } => Some(sdp.clone()),
        _ => None,
    });
    net.accept(i, pending, &answer.expect("a publish_answer"));
    let answered = after.iter().position(|m| matches!(m, ServerMessage::PublishAnswer { .. })).unwrap();
    let repeated = after.iter().position(|m| matches!(m, ServerMessage::Layers { paused, .. } if paused == &["h"]));
    assert!(repeated.is_some_and(|r| r > answered), "the pause follows the publish_answer: {after:?}");
    let errors: Vec<_> = net.messages(1).into_iter().chain(net.messages(2)).filter(|m| matches!(m, ServerMessage::Error { .. })).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_teachers_lone_layer_gets_renditions_from_the_start_and_loud_opus_is_reencoded_for_a_capped_class() {
    let transcode = TranscodeConfig { enabled: true, ..TranscodeConfig::default() };
    let mut net = Net::with(SfuConfig { transcode, ..SfuConfig::default() });
    net.feedback = false;
    // The teacher sends one H.264 layer and 60 kbit/s of Opus (OBS-like: 250 bytes, 30 a second).
    net.opus_bytes = 250;
    let (i, b) = net.teacher_and_class();

    let mut ops = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        n = net.stream(i, n, 1);
        while let Some(op) = net.sfu.poll_transcode() {
            ops.push(op);
        }
    }
    let video_job = ops.iter().find_map(|op| match op {
        TranscodeOp::Start { job, rungs } => Some((*job, rungs.len())),
        _ => None,
    });
    assert_eq!(video_job.map(|(_, rungs)| rungs), Some(2), "the teacher's lone layer gets 360p and 180p before anyone needs them");
    let audio_job = ops.iter().find_map(|op| match op {
        TranscodeOp::StartAudio { job, target_bps } => Some((*job, *target_bps)),
        _ => None,
    });
    let (audio_job, target_bps) = audio_job.expect("the loud Opus is re-encoded while the video is");
    assert_eq!(target_bps, 16_000);
    let audio_packets = ops.iter().filter(|op| matches!(op, TranscodeOp::Packet { job, .. } if *job == audio_job)).count();
    assert!(audio_packets > 20, "the job gets the Opus track's packets ({audio_packets})");

    // The job's packets (first byte 0x7c here) reach a class whose cap is under 4× the original's
    // 60 kbit/s; the original (0xfc) reaches it again once its cap is lifted.
    let mut heard = |net: &mut Net, kbps: u32| {
        net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(kbps) });
        let mark = net.clients[b].audio_heads.len();
        for _ in 0..3 * 30 {
            net.send_frame(i, n, n.is_multiple_of(30));
            let reencoded = ReencodedPacket { rtp_timestamp: (n * 960) as u32, payload: bytes::Bytes::from_static(&[0x7c, 1, 2, 3]) };
            net.sfu.handle_audio_rendition(net.now, audio_job, &reencoded);
            net.tick(Duration::from_millis(33));
            n += 1;
        }
        // The choice is made at the next room tick: count from a second on.
        let heads = net.clients[b].audio_heads[mark + 30..].to_vec();
        (heads.iter().filter(|h| **h == 0x7c).count(), heads.iter().filter(|h| **h == 0xfc).count())
    };
    let (low, original) = heard(&mut net, 150);
    assert!(low > 50 && original == 0, "capped at 150 kbit/s: the re-encoded audio ({low} frames; {original} of the original)");
    let (low, original) = heard(&mut net, 5000);
    assert!(original > 50 && low == 0, "uncapped: the original ({original} frames; {low} re-encoded)");
}

#[test]
fn video_back_after_a_pause_carries_rtp_time_that_moved_with_the_clock() {
    let mut net = Net::new();
    net.feedback = false;
    let (i, b) = net.teacher_and_class();
    let mut n = net.stream(i, 0, 3);
    let before = net.clients[b].video_frames.len();
    assert!(before > 30, "video flows ({before} frames)");

    // A cap below audio and the camera turns the video off; lifted, it comes back.
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: Some(20) });
    n = net.stream(i, n, 12);
    let paused = net.clients[b].video_times.len();
    assert!(paused < before + 60, "video went off under the cap ({} frames after it)", paused - before);
    net.sfu.client_message(net.now, ConnId(2), ClientMessage::Budget { kbps: None });
    net.stream(i, n, 12);
    let times = &net.clients[b].video_times;
    assert!(times.len() > paused + 100, "video came back ({} frames)", times.len() - paused);
    // Across the pause, RTP time moved as far as the clock did (90 kHz), not one frame: a
    // player pairing it with the sender reports' clock would otherwise hold video back.
    let (gap_rtp, gap_wall) =
        times.windows(2).map(|w| (w[1].0 - w[0].0, w[1].1.duration_since(w[0].1))).max_by_key(|(_, wall)| *wall).unwrap();
    let wall_ticks = gap_wall.as_secs_f64() * 90_000.0;
    assert!(gap_wall > Duration::from_secs(5), "the pause: {gap_wall:?}");
    assert!((gap_rtp as f64 - wall_ticks).abs() < 0.1 * wall_ticks, "RTP gap {gap_rtp} ticks over a {gap_wall:?} pause");
}
