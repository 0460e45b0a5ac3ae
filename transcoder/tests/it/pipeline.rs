//! The pipeline follows the source's size: a phone turned upright, a browser lowering its
//! resolution. Rungs keep their short side and are never scaled up.

use tongxin_transcoder::{LadderPolicy, SourceCodec, SourceTrack, VideoJob, VideoJobConfig, VideoPipeline, plan};

use crate::support::encode_source;

#[test]
fn rungs_refit_when_the_source_changes_size() {
    let track = SourceTrack { codec: SourceCodec::H264, width: 1280, height: 720, fps: 30.0, bitrate_bps: 2_000_000 };
    let mut pipeline = VideoPipeline::new(&VideoJobConfig::new(plan(&track, &LadderPolicy::default()))).expect("pipeline");
    let mut sizes = Vec::new();
    // The publisher dropped to 640x360, then turned its phone upright (new SPS with an IDR).
    for (segment, (w, h)) in [(640, 360), (360, 640)].into_iter().enumerate() {
        let mut out = Vec::new();
        for mut unit in encode_source(w, h, 6, 500_000, 30) {
            unit.rtp_timestamp = unit.rtp_timestamp.wrapping_add(segment as u32 * 6 * 3000);
            pipeline.process(&unit, &mut |frame| out.push(frame)).expect("decodes");
        }
        sizes.push(out.iter().map(|f| (f.rung, f.width, f.height)).collect::<std::collections::BTreeSet<_>>());
    }
    assert_eq!(sizes[0].iter().copied().collect::<Vec<_>>(), [(0, 640, 360), (1, 320, 180)], "not scaled up");
    assert_eq!(sizes[1].iter().copied().collect::<Vec<_>>(), [(0, 360, 640), (1, 180, 320)], "portrait keeps its short side");
}

#[test]
fn job_handles_can_move_to_the_media_task() {
    fn send<T: Send>() {}
    send::<VideoJob>();
    send::<tongxin_transcoder::AudioJob>();
}
