//! The sans-IO core under a fake clock: str0m clients and the `Sfu` on an in-memory network,
//! time advanced by hand, so minutes of protocol run in milliseconds and always the same way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};
use tongxin_sfu::core::RemoveReason;
use tongxin_sfu::{PeerId, Sfu, SfuConfig, SfuError, SfuEvent};

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
    keyframe_requests: usize,
}

struct Net {
    sfu: Sfu,
    clients: Vec<Client>,
    now: Instant,
    events: Vec<SfuEvent>,
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
        Net { sfu: Sfu::new(config), clients: Vec::new(), now: Instant::now(), events: Vec::new() }
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
                            let kind = c.mids.iter().find(|(m, _)| *m == d.mid).map(|(_, k)| *k);
                            match kind {
                                Some(MediaKind::Video) => c.video_frames.push(d.data.to_vec()),
                                Some(MediaKind::Audio) => c.audio_frames += 1,
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

    /// Writes one H.264 access unit and one Opus frame from publisher client `i`.
    fn send_frame(&mut self, i: usize, n: u64, keyframe: bool) {
        let now = self.now;
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
                (vec![0xfc, n as u8, 1, 2, 3], MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ))
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
