//! The Opus re-encoder: OBS-grade stereo at 128 kbit/s becomes 16 kbit/s mono with FEC and
//! DTX, at the source's timestamps.

use std::time::Duration;

use opus::{Application, Bitrate, Channels};
use tongxin_transcoder::{AudioJob, AudioPolicy, OpusReencoder, ReencodedPacket, RtpPacket};

const FRAME: usize = 960;
const FIRST_TS: u32 = u32::MAX - 20 * FRAME as u32;

/// 3 s of stereo: a voiced, pitch-gliding tone with syllable-like loudness for 1.2 s, then
/// silence. Returns (RTP timestamp, 128 kbit/s Opus packet) per 20 ms, and the mono mix.
fn publisher_audio() -> (Vec<(u32, Vec<u8>)>, Vec<f32>) {
    let mut encoder = opus::Encoder::new(48_000, Channels::Stereo, Application::Audio).expect("encoder");
    encoder.set_bitrate(Bitrate::Bits(128_000)).expect("bitrate");
    let frames = 150;
    let mut mono = Vec::new();
    let packets = (0..frames)
        .map(|f| {
            let mut pcm = Vec::with_capacity(2 * FRAME);
            for n in 0..FRAME {
                let t = (f * FRAME + n) as f32 / 48_000.0;
                let voiced = t < 1.2;
                let envelope = if voiced { 0.5 + 0.5 * (t * 2.0 * std::f32::consts::PI * 4.0).sin().abs() } else { 0.0 };
                let pitch = 140.0 + 40.0 * (t * 3.0).sin();
                let phase = 2.0 * std::f32::consts::PI * pitch * t;
                let s = envelope * (0.3 * phase.sin() + 0.15 * (2.0 * phase).sin() + 0.08 * (3.0 * phase).sin());
                mono.push(s);
                pcm.push(s);
                pcm.push(s * 0.9);
            }
            let packet = encoder.encode_vec_float(&pcm, 4000).expect("encode");
            (FIRST_TS.wrapping_add((f * FRAME) as u32), packet)
        })
        .collect();
    (packets, mono)
}

fn bitrate_bps(packets: &[&ReencodedPacket], seconds: f64) -> f64 {
    packets.iter().map(|p| p.payload.len()).sum::<usize>() as f64 * 8.0 / seconds
}

#[test]
fn obs_audio_becomes_speech_sized_mono_at_the_same_timestamps() {
    let policy = AudioPolicy::default();
    let (packets, mono) = publisher_audio();
    let source_bps = packets[..60].iter().map(|(_, p)| p.len()).sum::<usize>() as f64 * 8.0 / 1.2;
    assert!(policy.should_reencode(source_bps as u32), "{source_bps}");

    let mut reencoder = OpusReencoder::new(policy.target_bps).expect("re-encoder");
    let mut out = Vec::new();
    for (ts, packet) in &packets {
        reencoder.reencode(*ts, packet, &mut out).expect("re-encodes");
    }
    let source_ts: Vec<u32> = packets.iter().map(|(ts, _)| *ts).collect();
    assert!(out.iter().all(|p| source_ts.contains(&p.rtp_timestamp)), "timestamps are the source's");
    assert!(out.windows(2).all(|w| w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp) < u32::MAX / 2));
    assert!(out.iter().all(|p| opus::packet::get_nb_channels(&p.payload).ok() == Some(Channels::Mono)));

    let voiced: Vec<&ReencodedPacket> = out.iter().filter(|p| p.rtp_timestamp.wrapping_sub(FIRST_TS) < 57_600).collect();
    let silent = out.len() - voiced.len();
    let voiced_bps = bitrate_bps(&voiced, 1.2);
    let stats = reencoder.stats();
    println!("voiced {voiced_bps:.0} bit/s in {} packets; {silent} packets in 1.8 s of silence; {stats:?}", voiced.len());
    assert_eq!(voiced.len(), 60, "every voiced 20 ms frame is sent");
    assert!((12_000.0..=22_000.0).contains(&voiced_bps), "{voiced_bps}");
    // libopus goes into DTX after a few hundred ms of silence and then sends one frame every
    // 400 ms.
    assert!(stats.dtx_frames >= 50 && silent <= 30, "DTX keeps silence nearly free: {stats:?}");

    // A listener hears about the same loudness as the publisher's mix.
    let mut decoder = opus::Decoder::new(48_000, Channels::Mono).expect("decoder");
    let mut heard = Vec::new();
    let mut pcm = vec![0f32; 5760];
    for packet in &voiced {
        let n = decoder.decode_float(&packet.payload, &mut pcm, false).expect("decodes");
        heard.extend_from_slice(&pcm[..n]);
    }
    let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt();
    let (a, b) = (rms(&mono[..heard.len()]), rms(&heard));
    assert!((b / a - 1.0).abs() < 0.3, "loudness {a} → {b}");
}

#[test]
fn a_single_lost_packet_is_recovered_from_fec() {
    let (packets, _) = publisher_audio();
    // The publisher's own FEC only kicks in with a loss estimate: encode a second stream so.
    let mut encoder = opus::Encoder::new(48_000, Channels::Mono, Application::Voip).expect("encoder");
    encoder.set_bitrate(Bitrate::Bits(32_000)).expect("bitrate");
    encoder.set_inband_fec(true).expect("fec");
    encoder.set_packet_loss_perc(20).expect("loss");
    let mut decoder = opus::Decoder::new(48_000, Channels::Mono).expect("decoder");
    let mut pcm = vec![0i16; 5760];
    let with_fec: Vec<(u32, Vec<u8>)> = packets
        .iter()
        .map(|(ts, p)| {
            let n = decoder.decode(p, &mut pcm, false).expect("decode");
            (*ts, encoder.encode_vec(&pcm[..n], 4000).expect("encode"))
        })
        .collect();
    let mut reencoder = OpusReencoder::new(16_000).expect("re-encoder");
    let mut out = Vec::new();
    for (i, (ts, packet)) in with_fec.iter().enumerate() {
        if i == 30 {
            continue;
        }
        reencoder.reencode(*ts, packet, &mut out).expect("re-encodes");
    }
    assert_eq!(reencoder.stats().recovered_by_fec, 1);
    assert!(out.iter().any(|p| p.rtp_timestamp == with_fec[30].0), "the lost frame's audio was sent");
}

#[test]
fn garbage_is_refused_and_a_panicking_audio_worker_restarts() {
    let (packets, _) = publisher_audio();
    let (tx, rx) = std::sync::mpsc::channel();
    let job = AudioJob::start(16_000, 64, move |p| {
        let _ = tx.send(p);
    })
    .expect("job");
    let mut sequence = 0u16;
    let mut push = |job: &AudioJob, ts: u32, payload: Vec<u8>| {
        job.push_rtp(RtpPacket { sequence, timestamp: ts, marker: false, payload: payload.into() });
        sequence = sequence.wrapping_add(1);
    };
    for (ts, packet) in &packets[..20] {
        push(&job, *ts, packet.clone());
    }
    push(&job, 1, vec![0xff, 0xff, 0xff, 0x00, 0x13]);
    wait_until(|| job.stats().packets_out + job.stats().decode_errors >= 21);
    job.inject_panic();
    for (ts, packet) in &packets[20..50] {
        push(&job, *ts, packet.clone());
        std::thread::sleep(Duration::from_millis(1));
    }
    // The restart is counted by the worker thread once it caught the panic: wait for it.
    wait_until(|| job.stats().restarts >= 1);
    let stats = job.stats();
    job.stop();
    let out: Vec<ReencodedPacket> = rx.try_iter().collect();
    println!("{stats:?}");
    assert_eq!(stats.restarts, 1);
    assert_eq!(stats.decode_errors, 1);
    assert!(out.iter().any(|p| p.rtp_timestamp == packets[49].0), "the restarted worker went on");
    assert!(out.len() >= 45, "{}", out.len());
}

/// Polls until `done`; fails after a generous 10 s (a worker that never got there).
fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "the audio worker did not get there within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}
