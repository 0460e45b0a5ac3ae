//! The server-side ladder end to end (issue 9): a `webrtc`-crate teacher sends one 1280×720
//! H.264 layer and 96 kbit/s Opus over WHIP, as OBS does. A Chromium player inside a network
//! namespace behind a 150 kbit/s `tbf` cap cannot take it: the server serves it the 180p rendition
//! (made from the start: a teacher's job runs by policy), which it decodes, and the Opus
//! re-encoded to 16 kbit/s. A player on an open link keeps the original. Halfway, every job's
//! worker panics: the jobs restart and the room forwards on. Needs root; skips off CI without it.
//! `TRANSCODE_DEBUG=1` prints the player's samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tongxin_common::RoomRole;
use tongxin_loadtests::media::{self, VideoSpec};
use tongxin_loadtests::netns::{Netns, root_or_skip};
use tongxin_loadtests::participant::{self, Peer};
use tongxin_sfu::SfuConfig;
use tongxin_sfu::renditions::TranscodeConfig;

use super::ns_player::{NsPlayer, between, publish};
use crate::harness::TestServer;

/// How long the capped player plays, and when the jobs are made to panic.
const SECONDS: f64 = 45.0;
const PANIC_AT: f64 = 30.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_150_kbit_player_gets_the_180p_rendition_of_a_720p_whip_publisher_and_an_open_one_the_original() {
    if !root_or_skip("a_150_kbit_player_gets_the_180p_rendition_of_a_720p_whip_publisher_and_an_open_one_the_original") {
        return;
    }
    let ns = Netns::create().expect("create the namespace");
    ns.set_cap(150_000).expect("cap the link at 150 kbit/s");
    let host = ns.host_addr();
    let config = SfuConfig { transcode: TranscodeConfig { enabled: true, ..TranscodeConfig::default() }, ..SfuConfig::default() };
    let server = TestServer::start_on_with(host.into(), config).await;

    // The publisher: one 720p30 layer at 1 Mbit/s and music-sized Opus.
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("media-cache");
    let spec = VideoSpec { width: 1280, height: 720, fps: 30, bitrate_bps: 1_000_000, seconds: 10, keyframe_interval_frames: 60 };
    let clip = media::cached_video(&cache, &spec).unwrap();
    let audio = media::cached_tone(&cache, 10, 96_000).unwrap();
    let room = "obs-lesson";
    let teacher = server.token(room, "teacher", RoomRole::Teacher, true, false);
    let mut publisher = Peer::publisher().await.unwrap();
    let offer = publisher.offer().await.unwrap();
    let (_, answer) = participant::post_offer(server.http, &format!("/whip/{room}"), &teacher, &offer).await.unwrap();
    publisher.accept_answer(&answer).await.unwrap();
    publisher.wait_connected().await.unwrap();
    let publisher = Arc::new(publisher);
    let stop = Arc::new(AtomicBool::new(false));
    publish(publisher.clone(), vec![(None, clip)], audio, stop.clone());

    // A player on an open link (the root namespace, straight to the media port).
    let city = server.token(room, "city-class", RoomRole::Classroom, false, true);
    let mut open = Peer::player().await.unwrap();
    let offer = open.offer().await.unwrap();
    let (_, answer) = participant::post_offer(server.http, &format!("/whep/{room}"), &city, &offer).await.unwrap();
    open.accept_answer(&answer).await.unwrap();
    open.wait_connected().await.unwrap();

    // Chromium behind the cap.
    let village = server.token(room, "village-class", RoomRole::Classroom, false, true);
    let whep = format!("http://{}/whep/{room}", server.http);
    let media_addr = server.media.candidate();
    let mut player = NsPlayer::start(&ns, &whep, &village, media_addr, media_addr, SECONDS).await;
    let mut samples = Vec::new();
    let mut open_at_20s = None;
    let mut jobs_seen = (0, 0);
    let mut panicked = None;
    let read = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some((json, s)) = player.next().await {
            if std::env::var_os("TRANSCODE_DEBUG").is_some() {
                eprintln!("{json}");
            }
            if s.t >= 20.0 && open_at_20s.is_none() {
                let rx = open.rx.lock().unwrap();
                open_at_20s = Some((std::time::Instant::now(), rx.video_bytes, rx.units.len(), rx.audio_bytes));
            }
            let t = server.media.stats().await.transcode;
            jobs_seen = (jobs_seen.0.max(t.jobs), jobs_seen.1.max(t.audio_jobs));
            if s.t >= PANIC_AT && panicked.is_none() {
                panicked = Some((s.frames, server.media.inject_transcoder_panic().await));
            }
            samples.push(s);
        }
    })
    .await;
    let (then, bytes_then, units_then, audio_then) = open_at_20s.expect("the open player was sampled");
    let (open_kbps, open_fps, open_audio_kbps) = {
        let rx = open.rx.lock().unwrap();
        let secs = then.elapsed().as_secs_f64();
        let kbps = |bytes: u64| bytes as f64 * 8.0 / secs / 1000.0;
        (kbps(rx.video_bytes - bytes_then), (rx.units.len() - units_then) as f64 / secs, kbps(rx.audio_bytes - audio_then))
    };
    let stats = server.media.stats().await;
    stop.store(true, Ordering::Relaxed);
    publisher.close().await;
    open.close().await;
    assert!(read.is_ok(), "weak_link.mjs did not finish within 180 s");
    player.finish().await;

    let timeline: Vec<String> = samples.iter().map(|s| format!("{:.0}s:{}", s.t, s.width)).collect();
    eprintln!("capped player's video width over time: {}", timeline.join(" "));
    let window: Vec<_> = samples.iter().filter(|s| (25.0..=SECONDS).contains(&s.t)).collect();
    assert!(window.len() >= 15, "samples behind the cap: {timeline:?}");
    let (fps, concealment, kbps) = between(window[0], window[window.len() - 1]);
    eprintln!(
        "behind 150 kbit/s: {fps:.1} fps, {:.2} % of audio concealed, {kbps:.0} kbit/s; open player: {open_kbps:.0} kbit/s of \
         video, {open_fps:.1} frames/s; transcoder: {:?}",
        concealment * 100.0,
        stats.transcode
    );
    assert!(jobs_seen.0 >= 1 && jobs_seen.1 >= 1, "a video and an Opus job ran: {:?}", stats.transcode);
    let audio_kbps =
        (window[window.len() - 1].audio_bytes - window[0].audio_bytes) as f64 * 8.0 / (window[window.len() - 1].t - window[0].t) / 1000.0;
    eprintln!("capped player's audio: {audio_kbps:.1} kbit/s");
    // 13 kbit/s in runs here; with RED on top of it (as before the re-encoded Opus went without:
    // it has in-band FEC) 28, and the link lost packets all along.
    assert!(
        audio_kbps < 20.0,
        "the capped player gets the re-encoded Opus without RED, not the 96 kbit/s original: {audio_kbps:.1} kbit/s"
    );
    let (frames_at_panic, hit) = panicked.expect("the jobs were made to panic");
    assert!(hit >= 2, "both jobs were made to panic ({hit})");
    assert!(stats.transcode.restarts >= 2, "the panicked workers restarted: {:?}", stats.transcode);
    let after = window[window.len() - 1].frames - frames_at_panic;
    assert!(after >= 10, "the rendition goes on after the panic: {after} frames decoded since");
    assert!(window.iter().all(|s| s.width == 320), "the 180p rendition (320 wide) from 25 s on: {timeline:?}");
    // 80 kbit/s of 180p and 16 kbit/s of Opus fit the 150 kbit/s link: 14.8 fps over the window
    // in runs here (at 90 kbit/s beside the original Opus, video went off for stretches: 3-5 fps;
    // with RED on the re-encoded Opus, 5.7-10.6).
    assert!(fps >= 10.0, "the rendition plays smoothly behind the cap: {fps:.1} fps");
    // The open player is on the 1 Mbit/s 30 fps original (1019-1021 kbit/s, 30.0 fps in runs here)
    // for at least half of the last 25 s, through the panic: the 360p rendition alone would be
    // 350 kbit/s at 15 fps. Not all of it: with a transcode and Chromium busy on two cores, a
    // delay spike can make its send-side estimate back off to the rendition for ~12 s (once in
    // ten runs here: 721 kbit/s, 23.1 fps) - congestion control doing its job on a busy host.
    assert!(
        open_kbps >= 600.0 && open_fps >= 22.5,
        "the open player keeps the 1 Mbit/s 30 fps original through the panic: {open_kbps:.0} kbit/s, {open_fps:.1} fps"
    );
    assert!(open_audio_kbps >= 60.0, "the open player keeps the 96 kbit/s Opus: {open_audio_kbps:.1} kbit/s");
    assert!(
        stats.transcode.frames_out > 0 && stats.transcode.keyframe_requests >= 1,
        "keyframes of a rendition are asked of the job: {:?}",
        stats.transcode
    );
    assert_eq!(stats.panics, 0, "the media core panicked");
    drop(ns);
}
