//! `tongxin-load run` against the real server in process: a smoke scenario whose report agrees
//! with the generator's own counts, negative controls that prove the instrument sees faults
//! (loss through the relay, a rate cap), and a simulcast publisher.

use tongxin_common::Clock;
use tongxin_loadtests::media::VideoSpec;
use tongxin_loadtests::run::{Outcome, Signalling, Target, run};
use tongxin_loadtests::scenario::{LinkSpec, Scenario};
use tongxin_web::config::Config;
use tongxin_web::state::AppState;

/// Starts `tongxin serve` as the binary builds it (SQLite, media server on loopback), without
/// renditions, runs the scenario against it and stops it. A subscriber whose link does not carry
/// the publisher's one layer would get the transcoder's 180p, whose frames carry no counters:
/// the instrument's own checks measure forwarding only (renditions have `sfu` serial::transcode).
async fn run_against_server(scenario: Scenario) -> Outcome {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.transcode.enabled = false;
    config.storage.data_dir = data_dir.path().to_owned();
    config.media.listen = "127.0.0.1:0".parse().unwrap();
    let state = AppState::open(config, Clock::system()).await.expect("open the server state");
    let token_key = (*state.token_key).clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let app = tongxin_web::app(state);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let target = Target {
        http,
        // The server shares this process: its CPU would include the generator's, so none is reported.
        server_pid: None,
        signalling: Signalling::WhipWhep { token_key },
        local_ip: http.ip(),
        cache_dir: std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("media-cache"),
        progress: false,
    };
    let outcome = run(&scenario, &target).await.expect("the run completes");
    server.abort();
    outcome
}

fn small(name: &str, subscribers: u32, seconds: u32) -> Scenario {
    Scenario {
        name: name.into(),
        subscribers: vec![subscribers],
        video_kbps: 600,
        width: 640,
        height: 360,
        seconds,
        settle_seconds: 2,
        join_rate: 20.0,
        ..Scenario::default()
    }
}

mod serial {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_smoke_run_delivers_every_frame_and_reports_what_it_counted() {
        let outcome = run_against_server(small("smoke", 3, 10)).await;
        let report = &outcome.report;
        assert!(report.verdict.ok, "{:?}", report.verdict);
        let step = &report.steps[0];
        assert_eq!(step.subscribers_detail.len(), 3);
        for (s, counted) in step.subscribers_detail.iter().zip(&outcome.counted[0]) {
            assert!(s.error.is_none(), "{s:?}");
            assert!(s.frames_expected >= 250, "10 s at 30 fps from the first keyframe on: {s:?}");
            assert!(s.frames_received * 100 >= s.frames_expected * 99, "at least 99 % of frames arrive: {s:?}");
            assert_eq!(s.freezes, 0, "no freezes: {s:?}");
            assert_eq!(s.frames_received, counted.frames_in_window, "the report counts what the generator counted");
            assert!(s.join_ms.is_some_and(|j| j > 0.0 && j < 10_000.0), "{s:?}");
            assert!(s.latency_ms.p50.is_some_and(|p| p > 0.0), "{s:?}");
        }
        // Forwarded Mbit/s is exactly the bytes the subscribers received over the window.
        let bytes: u64 = outcome.counted[0].iter().map(|c| c.bytes_in_window).sum();
        let secs = bytes as f64 * 8.0 / 1e6 / step.server.forwarded_mbit_per_s;
        assert!((secs - 10.0).abs() < 0.5, "Mbit/s × window = bytes counted ({secs:.2} s)");
        assert!(step.server.forwarded_mbit_per_s > 3.0 * 0.4, "three subscribers of a 600 kbit/s publisher: {:?}", step.server);
        assert!(step.server.cpu_percent_of_core.is_nan(), "no server pid, no server CPU");
        assert!(step.generator.cpu_percent_of_core > 0.0);
        // Both files are written and name the scenario.
        let dir = tempfile::tempdir().unwrap();
        let (json, html) = report.write(dir.path()).unwrap();
        assert!(std::fs::read_to_string(json).unwrap().contains("\"smoke\""));
        assert!(std::fs::read_to_string(html).unwrap().contains("<svg"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_percent_loss_through_the_relay_shows_as_ten_percent() {
        let link = LinkSpec { loss: 0.10, seed: 7, ..LinkSpec::default() };
        let outcome = run_against_server(Scenario { link: Some(link), ..small("lossy", 3, 12) }).await;
        let step = &outcome.report.steps[0];
        let losses: Vec<f64> = step.subscribers_detail.iter().map(|s| s.packet_loss).collect();
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        assert!((0.08..=0.12).contains(&mean), "the report shows the link's 10 % loss: {losses:?}");
        assert!(step.totals.frame_loss > 0.05, "and frames go missing with it: {:?}", step.totals);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_300_kbit_cap_holds_the_received_rate_under_it() {
        let link = LinkSpec { cap_kbps: Some(300), ..LinkSpec::default() };
        // The server sheds the 800 kbit/s video the capped link cannot carry (audio goes on), or
        // is still sending it into the cap: either way the rate stays under it.
        let outcome = run_against_server(Scenario { link: Some(link), video_kbps: 800, ..small("capped", 2, 10) }).await;
        for s in &outcome.report.steps[0].subscribers_detail {
            assert!(s.received_kbps > 30.0, "something got through: {s:?}");
            assert!(s.received_kbps <= 303.0, "under the 300 kbit/s cap: {s:?}");
            assert!(s.frame_loss > 0.2, "an 800 kbit/s stream cannot fit: {s:?}");
            assert!(s.freezes >= 1, "and the viewer sees it freeze: {s:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_simulcast_publisher_reaches_players_on_one_layer_with_every_frame() {
        let outcome = run_against_server(Scenario { simulcast: true, ..small("simulcast", 2, 8) }).await;
        let report = &outcome.report;
        assert!(report.verdict.ok, "{:?}", report.verdict);
        let ladder = VideoSpec::simulcast_ladder(10, 60);
        let all_layers_kbps: u32 = ladder.iter().map(|l| l.spec.bitrate_bps / 1000).sum();
        assert!(report.scenario.simulcast);
        assert_eq!(report.scenario.video_bitrate_kbps, all_layers_kbps, "the publisher's target is the whole ladder");
        let step = &report.steps[0];
        assert_eq!(step.subscribers_detail.len(), 2);
        for (s, counted) in step.subscribers_detail.iter().zip(&outcome.counted[0]) {
            assert!(s.error.is_none(), "{s:?}");
            assert!(s.frames_expected >= 200, "8 s at 30 fps from the first keyframe on: {s:?}");
            assert!(s.frames_received * 100 >= s.frames_expected * 99, "at least 99 % of frames arrive: {s:?}");
            assert_eq!(s.freezes, 0, "no freezes: {s:?}");
            assert_eq!(s.frames_received, counted.frames_in_window, "the report counts what the generator counted");
            // The SFU does not select layers yet: a player locks onto the first layer whose
            // keyframe reaches it and gets that one only, never the three together.
            let lowest_kbps = ladder[0].spec.bitrate_bps / 1000;
            assert!(s.received_kbps > f64::from(lowest_kbps) * 0.8, "at least the lowest layer: {s:?}");
            assert!(s.received_kbps < f64::from(all_layers_kbps), "one layer, not all {all_layers_kbps} kbit/s of them: {s:?}");
        }
    }
}
