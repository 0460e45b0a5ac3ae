//! The ladder as a viewer sees it: a 720p30 teacher stream at 2.5 Mbit/s through RTP and the
//! job, each rung decoded and compared with the original picture scaled to the rung's size.

use std::collections::BTreeMap;

use tongxin_transcoder::picture::Picture;
use tongxin_transcoder::quality::{mse, psnr_from_mse, ssim};
use tongxin_transcoder::testsrc::TestPattern;
use tongxin_transcoder::{LadderPolicy, RungFrame, Scaler, SourceCodec, SourceTrack, VideoJob, VideoJobConfig, plan};

use crate::support::{TICKS_30FPS, collector, decode_rung, encode_source, ticks_since_first, to_rtp, ts_of, wait_for_room, wait_idle};

const SECONDS: u32 = 10;
const FRAMES: u32 = 30 * SECONDS;
/// Rung 1 (180p) is asked for a keyframe just before this source frame (5 s in).
const FORCED_AT: u32 = 150;

#[test]
fn the_default_ladder_meets_its_targets() {
    let source = encode_source(1280, 720, FRAMES, 2_500_000, 60);
    let track = SourceTrack { codec: SourceCodec::H264, width: 1280, height: 720, fps: 30.0, bitrate_bps: 2_500_000 };
    let rungs = plan(&track, &LadderPolicy::default());
    assert_eq!(rungs.len(), 2);
    let config = VideoJobConfig::new(rungs.clone());
    let filter = config.filter;
    let capacity = config.queue_frames as u64;
    let (sink, frames) = collector();
    let mut job = VideoJob::start(config, sink).expect("job starts");

    for (i, packets) in (0..).zip(to_rtp(&source, 65_000)) {
        if i == FORCED_AT {
            wait_idle(&job);
            job.request_keyframe(1);
        }
        wait_for_room(&job, capacity);
        for packet in packets {
            let _ = job.push_rtp(packet);
        }
    }
    let stats = job.stats();
    job.stop();
    assert_eq!(stats.frames_dropped_queue_full + stats.frames_dropped_before_queue + stats.decode_errors + stats.restarts, 0, "{stats:?}");
    let frames: Vec<RungFrame> = frames.try_iter().collect();

    let pattern = TestPattern::new(1280, 720);
    for (index, rung) in rungs.iter().enumerate() {
        let out: Vec<&RungFrame> = frames.iter().filter(|f| f.rung == index).collect();
        assert!(out.iter().all(|f| (f.width, f.height) == (rung.width, rung.height)));
        // Timestamps are the source's, in order.
        let ticks: Vec<i64> = out.iter().map(|f| ticks_since_first(f.rtp_timestamp)).collect();
        assert!(ticks.windows(2).all(|w| w[0] < w[1]) && ticks.iter().all(|t| t % i64::from(TICKS_30FPS) == 0), "{ticks:?}");

        let fps = out.len() as f64 / f64::from(SECONDS);
        let bytes: usize = out.iter().map(|f| f.access_unit.len()).sum();
        let kbps = bytes as f64 * 8.0 / f64::from(SECONDS) / 1000.0;
        let idr_ticks: Vec<i64> = out.iter().filter(|f| f.keyframe).map(|f| ticks_since_first(f.rtp_timestamp)).collect();
        let spacing: Vec<f64> = idr_ticks.windows(2).map(|w| (w[1] - w[0]) as f64 / 90_000.0).collect();

        // What the viewer sees at each of the rung's frame slots: the last picture decoded by
        // then (a frame the encoder skipped shows the one before).
        let shown = decode_rung(&out);
        let slot_every = 30 / rung.fps;
        let (mut mse_sum, mut psnr_sum, mut ssim_sum, mut psnr_min, mut slots) = (0.0, 0.0, 0.0, f64::MAX, 0u32);
        let mut scaler = Scaler::new(filter);
        for i in (0..FRAMES).step_by(slot_every as usize) {
            let at = ticks_since_first(ts_of(i));
            let Some((_, picture)) = shown.range(..=at).next_back() else { panic!("rung {index}: nothing shown at frame {i}") };
            let reference: Picture = scaler.scale(pattern.frame(i).as_ref(), rung.width as usize, rung.height as usize);
            let e = mse(picture.as_ref().y, reference.as_ref().y);
            mse_sum += e;
            psnr_sum += psnr_from_mse(e);
            psnr_min = psnr_min.min(psnr_from_mse(e));
            ssim_sum += ssim(picture.as_ref().y, reference.as_ref().y);
            slots += 1;
        }
        // PSNR of the mean squared error over all slots (x264's "global" PSNR): stricter than
        // the mean of per-frame PSNRs, which is printed too.
        let psnr = psnr_from_mse(mse_sum / f64::from(slots));
        let psnr_mean = psnr_sum / f64::from(slots);
        let ssim = ssim_sum / f64::from(slots);
        let r = &stats.rungs[index];
        println!(
            "rung {} {}x{}: {:.1} fps delivered (target {}), {:.1} kbit/s (target {}), PSNR {:.2} dB (per-frame mean {:.2}, worst {:.2}), SSIM {:.4}, \
             IDR spacing {:?} s, encoder skipped {}, encode {:.2} ms/frame",
            rung.name,
            rung.width,
            rung.height,
            fps,
            rung.fps,
            kbps,
            rung.bitrate_bps / 1000,
            psnr,
            psnr_mean,
            psnr_min,
            ssim,
            spacing,
            r.skipped_by_encoder,
            r.encode_micros as f64 / 1000.0 / (r.frames_out + r.skipped_by_encoder).max(1) as f64,
        );

        let target_kbps = f64::from(rung.bitrate_bps) / 1000.0;
        assert!((kbps - target_kbps).abs() <= 0.15 * target_kbps, "rung {}: {kbps:.1} kbit/s vs {target_kbps}", rung.name);
        assert!(fps >= 0.9 * f64::from(rung.fps), "rung {}: {fps} fps", rung.name);
        let floor = if rung.height >= 360 { 30.0 } else { 27.0 };
        assert!(psnr >= floor, "rung {}: PSNR {psnr:.2} dB below {floor}", rung.name);
        assert!(ssim > 0.8, "rung {}: SSIM {ssim:.3}", rung.name);

        // An IDR every 2 s (give or take one source frame); on rung 1 the forced one resets
        // the rhythm.
        assert_eq!(ticks.first(), idr_ticks.first(), "the first frame is an IDR");
        let forced_ticks = ticks_since_first(ts_of(FORCED_AT));
        for pair in idr_ticks.windows(2) {
            let gap = (pair[1] - pair[0]) as f64 / 90_000.0;
            if index == 1 && pair[1] == forced_ticks {
                continue;
            }
            assert!((2.0..=2.0 + 2.0 / 30.0).contains(&gap), "rung {}: IDR spacing {spacing:?}", rung.name);
        }
        assert!(idr_ticks.len() >= 5, "rung {}: {idr_ticks:?}", rung.name);
    }

    // The keyframe request: rung 1's first frame after it is an IDR.
    let forced_ticks = ticks_since_first(ts_of(FORCED_AT));
    let next: BTreeMap<i64, bool> =
        frames.iter().filter(|f| f.rung == 1).map(|f| (ticks_since_first(f.rtp_timestamp), f.keyframe)).collect();
    let (&at, &keyframe) = next.range(forced_ticks..).next().expect("rung 1 went on after the request");
    assert!(keyframe, "rung 1's next frame (at {at}) after the request is not an IDR");
    assert!(at - forced_ticks <= 2 * i64::from(TICKS_30FPS), "the forced IDR came {at} ticks late");
}
