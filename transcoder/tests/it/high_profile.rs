//! OBS sends High profile (CABAC, 8×8 transforms) without B-frames. OpenH264's decoder must
//! take it. The stream comes from GStreamer's x264enc, as `scripts/install-deps.sh` installs it.

use std::process::Command;

use bytes::Bytes;
use tongxin_transcoder::h264::nal;
use tongxin_transcoder::{AccessUnit, LadderPolicy, SourceCodec, SourceTrack, VideoJobConfig, VideoPipeline, plan};

/// Splits an Annex B stream with access unit delimiters into access units.
pub fn split_access_units(stream: &[u8], first_ts: u32, ticks: u32) -> Vec<AccessUnit> {
    let mut units: Vec<Vec<u8>> = Vec::new();
    for unit in nal::split_annex_b(stream) {
        if nal::unit_type(unit[0]) == nal::nal_type::AUD || units.is_empty() {
            units.push(Vec::new());
        }
        if let Some(last) = units.last_mut() {
            nal::push_annex_b(last, unit);
        }
    }
    (0u32..)
        .zip(units)
        .filter(|(_, data)| !data.is_empty())
        .map(|(i, data)| AccessUnit {
            rtp_timestamp: first_ts.wrapping_add(i * ticks),
            keyframe: nal::is_idr(&data),
            data: Bytes::from(data),
        })
        .collect()
}

#[test]
fn a_high_profile_stream_without_b_frames_is_transcoded() {
    let dir = tempfile_dir();
    let path = dir.join("high.h264");
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=60", "pattern=ball", "!"])
        .args(["video/x-raw,width=640,height=360,framerate=30/1,format=I420", "!"])
        .args(["x264enc", "bframes=0", "key-int-max=30", "bitrate=800", "speed-preset=veryfast", "aud=true", "!"])
        .args(["video/x-h264,profile=high,stream-format=byte-stream", "!", "filesink"])
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 runs (scripts/install-deps.sh installs it)");
    assert!(status.success());
    let stream = std::fs::read(&path).expect("encoded file");
    assert_eq!(nal::sps_profile_idc(&stream), Some(100), "x264 made High profile");
    let pps = nal::split_annex_b(&stream).find(|u| nal::unit_type(u[0]) == nal::nal_type::PPS).expect("a PPS");
    // pps_id 0 and sps_id 0 are one bit each ("1"), then entropy_coding_mode_flag.
    assert_eq!(pps[1] & 0xe0, 0xe0, "CABAC is on");

    let units = split_access_units(&stream, 12_345, 3000);
    assert_eq!(units.len(), 60);
    let track = SourceTrack { codec: SourceCodec::H264, width: 640, height: 360, fps: 30.0, bitrate_bps: 800_000 };
    let mut pipeline = VideoPipeline::new(&VideoJobConfig::new(plan(&track, &LadderPolicy::default()))).expect("pipeline");
    let mut out = Vec::new();
    for unit in &units {
        pipeline.process(unit, &mut |frame| out.push(frame)).expect("OpenH264 decodes every High-profile frame");
    }
    let stats = pipeline.rung_stats();
    assert_eq!(out.len() as u64, stats[0].frames_out);
    assert!(out.len() >= 27, "{} frames out of 30 slots", out.len());
    assert!(out[0].keyframe && out.iter().all(|f| (f.width, f.height) == (320, 180)));
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tongxin-transcoder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
