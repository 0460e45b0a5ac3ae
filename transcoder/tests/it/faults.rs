//! Faults inside a job: corrupt or missing input, and a worker that panics. The job lives on
//! and resumes at the next IDR.

use tongxin_transcoder::{LadderPolicy, RungFrame, SourceCodec, SourceTrack, VideoJob, VideoJobConfig, plan};

use crate::support::{collector, encode_source, ticks_since_first, to_rtp, wait_for_room, wait_idle};

const FRAMES: u32 = 90;

fn small_job() -> (VideoJob, std::sync::mpsc::Receiver<RungFrame>, u64) {
    let track = SourceTrack { codec: SourceCodec::H264, width: 640, height: 360, fps: 30.0, bitrate_bps: 600_000 };
    let rungs = plan(&track, &LadderPolicy::default());
    assert_eq!(rungs.len(), 1, "a 360p source gets only 180p");
    let config = VideoJobConfig::new(rungs);
    let capacity = config.queue_frames as u64;
    let (sink, frames) = collector();
    (VideoJob::start(config, sink).expect("job starts"), frames, capacity)
}

fn frame_indexes(frames: &[RungFrame]) -> Vec<i64> {
    frames.iter().map(|f| ticks_since_first(f.rtp_timestamp) / 3000).collect()
}

#[test]
fn corrupt_and_missing_packets_do_not_kill_the_job() {
    let source = encode_source(640, 360, FRAMES, 600_000, 30);
    let mut packets = to_rtp(&source, 1);
    // Frame 10: slice data overwritten (the depacketizer cannot tell; the decoder may).
    for packet in &mut packets[10] {
        let mut bytes = packet.payload.to_vec();
        let len = bytes.len();
        for b in &mut bytes[len / 3..] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        packet.payload = bytes.into();
    }
    // Frame 40: a packet lost. Frame 50: garbage instead of a payload.
    packets[40].remove(0);
    packets[50][0].payload = bytes::Bytes::from_static(&[0xff; 40]);

    let (mut job, frames, capacity) = small_job();
    let mut asked = Vec::new();
    for (i, frame) in (0..).zip(packets) {
        wait_for_room(&job, capacity);
        for packet in frame {
            if job.push_rtp(packet).request_keyframe {
                asked.push(i);
            }
        }
    }
    wait_idle(&job);
    let stats = job.stats();
    job.stop();
    let out: Vec<RungFrame> = frames.try_iter().collect();
    let got = frame_indexes(&out);
    assert_eq!(stats.restarts, 0, "{stats:?}");
    assert!(asked.iter().any(|&i| (40..=45).contains(&i)), "the loss asked for a keyframe: {asked:?}");
    assert!(stats.packets_lost >= 1, "{stats:?}");
    // Whatever the decoder made of frame 10, the job resumed after each fault: frames from the
    // IDR at 60 to the end came out.
    assert!(got.iter().any(|&i| (60..=62).contains(&i)), "{got:?}");
    assert!(got.iter().any(|&i| i >= 86), "{got:?}");
    // Nothing between the loss at 40 and the next IDR at 60.
    assert!(!got.iter().any(|&i| (40..60).contains(&i)), "{got:?}");
    assert!(out.iter().filter(|f| ticks_since_first(f.rtp_timestamp) >= 60 * 3000).all(|f| !f.access_unit.is_empty()));
}

#[test]
fn a_panicking_worker_restarts_and_keeps_producing() {
    let source = encode_source(640, 360, FRAMES, 600_000, 30);
    let (mut job, frames, capacity) = small_job();
    let mut asked_after_panic = false;
    for (i, frame) in (0..).zip(to_rtp(&source, 500)) {
        if i == 35 {
            wait_idle(&job);
            job.inject_panic();
        }
        wait_for_room(&job, capacity);
        for packet in frame {
            asked_after_panic |= job.push_rtp(packet).request_keyframe && i >= 35;
        }
    }
    wait_idle(&job);
    let stats = job.stats();
    job.stop();
    let got = frame_indexes(&frames.try_iter().collect::<Vec<_>>());
    assert_eq!(stats.restarts, 1, "{stats:?}");
    assert!(asked_after_panic, "the restarted decoder asked the publisher for a keyframe");
    assert!(got.iter().any(|&i| i < 35), "{got:?}");
    // The fresh decoder waits for the IDR at 60, then goes on to the end.
    assert!(!got.iter().any(|&i| (35..60).contains(&i)), "{got:?}");
    assert!(got.iter().filter(|&&i| i >= 60).count() >= 12, "{got:?}");
}

#[test]
fn a_full_queue_drops_frames_without_blocking_and_recovers() {
    let source = encode_source(640, 360, FRAMES, 600_000, 30);
    let (mut job, frames, capacity) = small_job();
    let mut asked = false;
    let packets = to_rtp(&source, 9);
    // The first 45 frames as fast as the caller can push them: more than the worker can take.
    let started = std::time::Instant::now();
    for packet in packets[..45].iter().flatten() {
        asked |= job.push_rtp(packet.clone()).request_keyframe;
    }
    let pushing = started.elapsed();
    let overflowed = job.stats();
    // Then at the worker's pace: the frames pass again from the IDR at 60 on.
    wait_idle(&job);
    for frame in &packets[45..] {
        wait_for_room(&job, capacity);
        for packet in frame {
            asked |= job.push_rtp(packet.clone()).request_keyframe;
        }
    }
    wait_idle(&job);
    let stats = job.stats();
    job.stop();
    let got = frame_indexes(&frames.try_iter().collect::<Vec<_>>());
    println!("pushed 45 frames in {pushing:?}; {stats:?}");
    assert!(overflowed.frames_dropped_queue_full > 0, "{overflowed:?}");
    assert!(asked, "dropping a frame asks for a keyframe");
    assert!(!got.iter().any(|&i| (45..60).contains(&i)), "{got:?}");
    // 15 slots at 15 fps from 60 to 88; the rate control skips some right after the IDR (four at
    // the default 180p's 80 kbit/s: the IDR spends their share).
    assert!(got.iter().filter(|&&i| i >= 60).count() >= 10, "{got:?}");
    assert_eq!(stats.decode_errors, 0, "a dropped frame's successors never reach the decoder: {stats:?}");
}
