//! Real peers through a real cap (issue 7): the load generator's three-layer H.264 publisher
//! (q 320×180, h 640×360, f 1280×720, at the room page's rates) sends over WHIP from the root namespace; a Chromium WHEP
//! player runs inside a network namespace the test creates. Towards the player, media passes the
//! seeded relay (5 % loss, 50 ms delay) and then a kernel `tbf` cap of 150 kbit/s on the veth
//! pair. The player must get the lowest layer at ≥ 10 fps with under 5 % of its audio concealed.
//! Needs root; skips off CI without it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tongxin_common::RoomRole;
use tongxin_loadtests::media::{self, EncodedVideo, VideoSpec};
use tongxin_loadtests::netns::{Netns, root_or_skip};
use tongxin_loadtests::participant::{self, Peer};
use tongxin_loadtests::relay::{Impairment, Relay, RelayConfig, Schedule};

use super::ns_player::{NsPlayer, Sample, between, publish};
use crate::harness::TestServer;

/// How long the player stays behind the cap, and how long it plays after the cap is lifted.
const CAPPED: f64 = 35.0;
const LIFTED: f64 = 60.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_player_behind_150_kbit_and_5_percent_loss_gets_the_lowest_layer_smoothly() {
    if !root_or_skip("a_chromium_player_behind_150_kbit_and_5_percent_loss_gets_the_lowest_layer_smoothly") {
        return;
    }
    let began = Instant::now();
    let ns = Netns::create().expect("create the namespace");
    ns.set_cap(150_000).expect("cap the link at 150 kbit/s");
    let host = ns.host_addr();
    let server = TestServer::start_on(host.into()).await;
    let relay = Relay::start(RelayConfig {
        listen: SocketAddr::new(host.into(), 0),
        upstream: server.media.local_addr(),
        up: Impairment::default(),
        down: Impairment { loss: 0.05, delay: Duration::from_millis(50), ..Impairment::default() },
        seed: 7,
        schedule: Schedule::default(),
    })
    .await
    .unwrap();

    // The publisher: the load generator's H.264 at the room page's ladder (q 56 kbit/s, h 300,
    // f 1000, 15 fps; roomclient.js CAMERA_LAYERS) and a 24 kbit/s Opus tone (speech-sized).
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("media-cache");
    let ladder = VideoSpec::simulcast_ladder(10, 60).map(|mut l| {
        l.spec.fps = 15;
        l.spec.keyframe_interval_frames = 30;
        l.spec.bitrate_bps = match l.rid {
            "q" => 56_000,
            "h" => 300_000,
            _ => 1_000_000,
        };
        l
    });
    let layers: Vec<(Option<&'static str>, EncodedVideo)> =
        ladder.iter().map(|l| (Some(l.rid), media::cached_video(&cache, &l.spec).unwrap())).collect();
    let audio = media::cached_tone(&cache, 10, 24_000).unwrap();
    let room = "weak-link";
    let teacher = server.token(room, "teacher", RoomRole::Teacher, true, false);
    let village = server.token(room, "village-class", RoomRole::Classroom, false, true);
    let mut peer = Peer::simulcast_publisher(&["q", "h", "f"]).await.unwrap();
    let offer = peer.offer().await.unwrap();
    let (_, answer) = participant::post_offer(server.http, &format!("/whip/{room}"), &teacher, &offer).await.unwrap();
    peer.accept_answer(&answer).await.unwrap();
    peer.wait_connected().await.unwrap();
    let peer = Arc::new(peer);
    let stop = Arc::new(AtomicBool::new(false));
    publish(peer.clone(), layers, audio, stop.clone());

    // Chromium inside the namespace, its page served on the root side of the veth pair.
    let whep = format!("http://{}/whep/{room}", server.http);
    let mut player = NsPlayer::start(&ns, &whep, &village, server.media.candidate(), relay.local_addr(), CAPPED + LIFTED).await;
    let mut samples = Vec::new();
    let mut lifted_at = None;
    let read = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some((json, s)) = player.next().await {
            // WEAK_LINK_DEBUG=1 prints every sample and the cap's drop counters.
            if std::env::var_os("WEAK_LINK_DEBUG").is_some() {
                eprintln!("{json}");
            }
            if s.t >= CAPPED && lifted_at.is_none() {
                if std::env::var_os("WEAK_LINK_DEBUG").is_some() {
                    let tc = std::process::Command::new("tc").args(["-s", "qdisc", "show", "dev", ns.host_if()]).output().unwrap();
                    eprintln!("{}", String::from_utf8_lossy(&tc.stdout));
                }
                ns.lift_cap().expect("lift the cap");
                lifted_at = Some(s.t);
            }
            samples.push(s);
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    peer.close().await;
    assert!(read.is_ok(), "weak_link.mjs did not finish within 240 s");
    player.finish().await;

    let timeline: Vec<String> = samples.iter().map(|s| format!("{:.0}s:{}", s.t, s.width)).collect();
    eprintln!("player's video width over time (cap lifted at {lifted_at:?} s): {}", timeline.join(" "));
    // Behind the cap, after 15 s to settle: what a village classroom sees for 20 s.
    let window: Vec<&Sample> = samples.iter().filter(|s| (15.0..=CAPPED).contains(&s.t)).collect();
    assert!(window.len() >= 15, "samples behind the cap: {timeline:?}");
    let (first, last) = (window[0], window[window.len() - 1]);
    let (fps, concealment, kbps) = between(first, last);
    let stats = relay.stats();
    eprintln!(
        "behind 150 kbit/s, 5 % loss, 50 ms: {fps:.1} fps, {:.2} % of audio concealed, {kbps:.0} kbit/s received; \
         relay lost {} of {} packets towards the player; {:.1} s in all",
        concealment * 100.0,
        stats.down.lost,
        stats.down.offered,
        began.elapsed().as_secs_f64()
    );
    let lowest = u64::from(ladder[0].spec.width);
    let top = u64::from(ladder[2].spec.width);
    let lifted_at = lifted_at.expect("the cap was lifted");
    let top_back = samples.iter().find(|s| s.t > lifted_at && s.width == top).map(|s| s.t - lifted_at);
    eprintln!("top layer back {top_back:?} s after the cap was lifted");
    assert!(window.iter().all(|s| s.width == lowest), "the lowest layer ({lowest} wide) throughout: {timeline:?}");
    // The server's send-side estimate finds the free link again, each step up proved first: 4–35 s
    // in fifteen runs here. The relay still loses 5 % after the cap is lifted, so str0m's loss-based
    // estimate often does not grow by itself and the room waits for an estimator restart (every
    // 16 s while a subscriber gets less than it wants) to find the room: slower than a link that
    // recovers cleanly (the simulation's, within 15 s), hence the wider bound here.
    assert!(top_back.is_some_and(|secs| secs <= 55.0), "the top layer ({top} wide) within 55 s of lifting the cap: {timeline:?}");
    assert!(fps >= 10.0, "at least 10 frames per second behind the cap: {fps:.1}");
    assert!(concealment < 0.05, "under 5 % of audio concealed: {:.2} %", concealment * 100.0);
    assert!(stats.down.lost > 0, "the relay really lost packets");

    let media_stats = server.media.stats().await;
    assert_eq!(media_stats.panics, 0, "the media core panicked");
    relay.stop();
    drop(ns);
}
