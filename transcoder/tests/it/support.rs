//! Helpers shared by the transcoder's integration tests: a publisher's encoded source, its RTP
//! packets, a collecting sink, and a viewer's decoder.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use bytes::Bytes;
use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, UsageType};
use openh264::{Timestamp, formats::YUVSource};
use tongxin_transcoder::h264::{Depacketizer, nal, packetize};
use tongxin_transcoder::picture::{I420Ref, Picture};
use tongxin_transcoder::testsrc::TestPattern;
use tongxin_transcoder::{AccessUnit, RtpPacket, RungFrame, VideoJob};

/// 90 kHz ticks per frame at 30 fps.
pub const TICKS_30FPS: u32 = 3000;
/// The first RTP timestamp of every test stream: close to the 32-bit wrap, so every test also
/// crosses it.
pub const FIRST_TS: u32 = u32::MAX - 100 * TICKS_30FPS;

/// Encodes `frames` frames of the test pattern at 30 fps the way a publisher would (OpenH264,
/// Baseline, no frame skipping, an IDR every `idr_every` frames).
pub fn encode_source(width: usize, height: usize, frames: u32, bitrate_bps: u32, idr_every: u32) -> Vec<AccessUnit> {
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(30.0))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        .scene_change_detect(false)
        .complexity(Complexity::Low)
        .num_threads(1);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config).expect("encoder");
    let pattern = TestPattern::new(width, height);
    let mut picture = Picture::new(width, height);
    (0..frames)
        .map(|i| {
            pattern.draw(i, &mut picture);
            if i > 0 && i % idr_every == 0 {
                encoder.force_intra_frame();
            }
            let stream = encoder.encode_at(&picture, Timestamp::from_millis(u64::from(i) * 1000 / 30)).expect("encode");
            let data = stream.to_vec();
            assert!(!data.is_empty(), "frame {i} skipped");
            AccessUnit { rtp_timestamp: ts_of(i), keyframe: nal::is_idr(&data), data: Bytes::from(data) }
        })
        .collect()
}

/// The RTP timestamp of source frame `i`.
pub fn ts_of(i: u32) -> u32 {
    FIRST_TS.wrapping_add(i * TICKS_30FPS)
}

/// RTP packets of each access unit, sequence numbers running on from `first_sequence`.
pub fn to_rtp(units: &[AccessUnit], first_sequence: u16) -> Vec<Vec<RtpPacket>> {
    let mut sequence = first_sequence;
    units
        .iter()
        .map(|unit| {
            let payloads = packetize(&unit.data, 1200);
            let count = payloads.len();
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| {
                    let packet = RtpPacket { sequence, timestamp: unit.rtp_timestamp, marker: i + 1 == count, payload };
                    sequence = sequence.wrapping_add(1);
                    packet
                })
                .collect()
        })
        .collect()
}

/// A sink that collects every frame, and the receiving end.
pub fn collector() -> (impl FnMut(RungFrame) + Send + 'static, Receiver<RungFrame>) {
    let (tx, rx) = channel();
    (
        move |frame| {
            let _ = tx.send(frame);
        },
        rx,
    )
}

/// Waits (in a test, where waiting is fine) until the job's queue has room for one more frame.
pub fn wait_for_room(job: &VideoJob, capacity: u64) {
    while job.stats().queued() + 1 >= capacity {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the worker has finished every frame it was given.
pub fn wait_idle(job: &VideoJob) {
    while job.stats().queued() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a viewer of one rung would see: each frame decoded (through our own depacketizer, from
/// the rung's RTP packets), by RTP timestamp.
pub fn decode_rung(frames: &[&RungFrame]) -> BTreeMap<i64, Picture> {
    let mut depacketizer = Depacketizer::new();
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new()).expect("decoder");
    let mut units = Vec::new();
    for frame in frames {
        for packet in &frame.packets {
            depacketizer.push(packet.clone(), &mut units);
        }
    }
    assert_eq!(units.len(), frames.len(), "every rung frame comes through the depacketizer whole");
    let mut pictures = BTreeMap::new();
    for unit in units {
        let decoded = decoder.decode(&unit.data).expect("a rung frame decodes").expect("one picture per frame");
        let (w, h) = decoded.dimensions();
        assert!(w > 0 && h > 0);
        pictures.insert(ticks_since_first(unit.rtp_timestamp), Picture::copy_of(I420Ref::from_source(&decoded)));
    }
    pictures
}

/// An RTP timestamp as 90 kHz ticks since [`FIRST_TS`].
pub fn ticks_since_first(ts: u32) -> i64 {
    i64::from(ts.wrapping_sub(FIRST_TS))
}
