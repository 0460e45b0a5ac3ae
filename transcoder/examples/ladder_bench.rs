//! What one live ladder costs: a 720p30 source (the test pattern, pre-encoded at 2.5 Mbit/s)
//! through a [`VideoJob`] making the default ladder (360p ≈ 350 kbit/s + 180p ≈ 80 kbit/s,
//! 15 fps), and the same input through an equivalent `gst-launch-1.0` pipeline.
//!
//! ```text
//! cargo run --release -p tongxin-transcoder --example ladder_bench -- [SECONDS] [DIR]
//! ```
//!
//! Reports the CPU time per media second (cores one live ladder needs), the real-time factor
//! (media seconds per wall second, pushing as fast as the job takes frames), and GStreamer's
//! figures and the ratio. CPU times come from `/proc/self/stat` (this process's threads, and
//! the waited-for child's for gst-launch), so the run is Linux-only.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openh264::encoder::{BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, UsageType};
use openh264::{OpenH264API, Timestamp};
use tongxin_transcoder::h264::{nal, packetize};
use tongxin_transcoder::picture::Picture;
use tongxin_transcoder::testsrc::TestPattern;
use tongxin_transcoder::{AccessUnit, LadderPolicy, RtpPacket, SourceCodec, SourceTrack, VideoJob, VideoJobConfig, plan};

/// Clock ticks per second of `/proc/*/stat` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u32 = args.next().map_or(Ok(10), |s| s.parse())?;
    let dir = args.next().map_or_else(|| std::env::temp_dir().join("tongxin-ladder-bench"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;

    let frames = 30 * seconds;
    eprintln!("encoding {seconds} s of 1280x720 at 30 fps, 2.5 Mbit/s …");
    let source = encode_source(frames);
    let annex_b = dir.join("source-720p30.h264");
    std::fs::write(&annex_b, source.iter().flat_map(|u| u.data.iter().copied()).collect::<Vec<u8>>())?;
    let source_kbps = source.iter().map(|u| u.data.len()).sum::<usize>() as f64 * 8.0 / f64::from(seconds) / 1000.0;
    eprintln!("source {source_kbps:.0} kbit/s written to {}", annex_b.display());

    let track = SourceTrack { codec: SourceCodec::H264, width: 1280, height: 720, fps: 30.0, bitrate_bps: 2_500_000 };
    let rungs = plan(&track, &LadderPolicy::default());
    let ours = run_job(&source, rungs.clone(), seconds)?;
    let gst = run_gst_launch(&annex_b, &rungs)?;

    println!(
        "one 720p30 source → {} for {seconds} s of media",
        rungs.iter().map(|r| format!("{}x{}@{}k", r.width, r.height, r.bitrate_bps / 1000)).collect::<Vec<_>>().join(" + ")
    );
    println!("{:<26} {:>10} {:>10} {:>14} {:>12}", "", "wall s", "cpu s", "cores per live", "× real time");
    for (name, run) in [("tongxin-transcoder (job)", &ours), ("gst-launch-1.0", &gst)] {
        println!(
            "{name:<26} {:>10.2} {:>10.2} {:>14.3} {:>12.1}",
            run.wall,
            run.cpu,
            run.cpu / f64::from(seconds),
            f64::from(seconds) / run.wall
        );
    }
    println!("CPU ratio tongxin / gst-launch: {:.2}", ours.cpu / gst.cpu);
    if let Some(detail) = ours.detail {
        println!("{detail}");
    }
    Ok(())
}

struct Run {
    wall: f64,
    cpu: f64,
    detail: Option<String>,
}

fn encode_source(frames: u32) -> Vec<AccessUnit> {
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(2_500_000))
        .max_frame_rate(FrameRate::from_hz(30.0))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(60))
        .scene_change_detect(false)
        .complexity(Complexity::Low)
        .num_threads(1);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config).expect("OpenH264 starts");
    let pattern = TestPattern::new(1280, 720);
    let mut picture = Picture::new(1280, 720);
    (0..frames)
        .map(|i| {
            pattern.draw(i, &mut picture);
            let data = encoder.encode_at(&picture, Timestamp::from_millis(u64::from(i) * 1000 / 30)).expect("encodes").to_vec();
            AccessUnit { rtp_timestamp: i * 3000, keyframe: nal::is_idr(&data), data: Bytes::from(data) }
        })
        .collect()
}

fn run_job(source: &[AccessUnit], rungs: Vec<tongxin_transcoder::Rung>, seconds: u32) -> Result<Run, Box<dyn std::error::Error>> {
    let config = VideoJobConfig::new(rungs);
    let capacity = config.queue_frames as u64;
    let bytes = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sink_bytes = Arc::clone(&bytes);
    let mut job = VideoJob::start(config, move |frame| {
        if let Some(counter) = sink_bytes.get(frame.rung) {
            counter.fetch_add(frame.access_unit.len() as u64, Ordering::Relaxed);
        }
    })?;
    let mut sequence = 0u16;
    let cpu_before = own_cpu_seconds()?;
    let started = Instant::now();
    for unit in source {
        // Pushed as fast as the job takes frames, none dropped: the measure is its throughput.
        while job.stats().queued() + 1 >= capacity {
            std::thread::sleep(Duration::from_millis(1));
        }
        let payloads = packetize(&unit.data, 1200);
        let count = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let _ = job.push_rtp(RtpPacket { sequence, timestamp: unit.rtp_timestamp, marker: i + 1 == count, payload });
            sequence = sequence.wrapping_add(1);
        }
    }
    let stats = job.stats();
    job.stop();
    let wall = started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds()? - cpu_before;
    let mut detail = String::from("per rung:");
    for (i, r) in stats.rungs.iter().enumerate() {
        let offered = r.frames_out + r.skipped_by_encoder;
        detail.push_str(&format!(
            " [#{i}: {:.1} fps out, {:.0} kbit/s, {:.2} ms scale+encode per frame]",
            r.frames_out as f64 / f64::from(seconds),
            bytes[i].load(Ordering::Relaxed) as f64 * 8.0 / f64::from(seconds) / 1000.0,
            r.encode_micros as f64 / 1000.0 / offered.max(1) as f64
        ));
    }
    detail.push_str(&format!(" dropped {} frames", stats.frames_dropped_queue_full));
    Ok(Run { wall, cpu, detail: Some(detail) })
}

fn run_gst_launch(annex_b: &std::path::Path, rungs: &[tongxin_transcoder::Rung]) -> Result<Run, Box<dyn std::error::Error>> {
    let mut pipeline = vec![
        "filesrc".to_owned(),
        format!("location={}", annex_b.display()),
        "!".into(),
        "video/x-h264,stream-format=byte-stream,framerate=30/1".into(),
        "!".into(),
        "h264parse".into(),
        "!".into(),
        "avdec_h264".into(),
        "!".into(),
        // A raw H.264 file has no timestamps, and videorate needs them: stamp the decoded
        // frames from their size (1280 × 720 I420 at 30 fps).
        "identity".into(),
        format!("datarate={}", 1280 * 720 * 3 / 2 * 30),
        "!".into(),
        "tee".into(),
        "name=t".into(),
    ];
    for rung in rungs {
        let branch = format!(
            "t. ! queue ! videoscale ! videorate ! video/x-raw,width={},height={},framerate={}/1 ! \
             openh264enc bitrate={} gop-size={} complexity=medium multi-thread=1 enable-frame-skip=true rate-control=bitrate ! fakesink sync=false",
            rung.width,
            rung.height,
            rung.fps,
            rung.bitrate_bps,
            rung.fps * 2
        );
        pipeline.extend(branch.split(' ').map(str::to_owned));
    }
    let (user_before, system_before) = children_cpu_seconds()?;
    let started = Instant::now();
    let status = Command::new("gst-launch-1.0").arg("-q").args(&pipeline).status()?;
    let wall = started.elapsed().as_secs_f64();
    let (user_after, system_after) = children_cpu_seconds()?;
    if !status.success() {
        return Err(format!("gst-launch-1.0 failed ({status}); is openh264enc installed (scripts/install-deps.sh)?").into());
    }
    Ok(Run { wall, cpu: (user_after - user_before) + (system_after - system_before), detail: None })
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces).
fn proc_stat_fields() -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or("odd /proc/self/stat")?;
    // Field 3 (state) is a letter; numbers from field 4 on.
    Ok(after_name.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect())
}

/// This process's user + system CPU seconds (all threads).
fn own_cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let fields = proc_stat_fields()?;
    // utime and stime are fields 14 and 15: indexes 10 and 11 from field 4.
    Ok((fields[10] + fields[11]) as f64 / CLOCK_TICKS)
}

/// Waited-for children's user and system CPU seconds (cutime, cstime: fields 16 and 17).
fn children_cpu_seconds() -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let fields = proc_stat_fields()?;
    Ok((fields[12] as f64 / CLOCK_TICKS, fields[13] as f64 / CLOCK_TICKS))
}
