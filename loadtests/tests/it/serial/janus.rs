//! The Janus target end to end, so the comparison cannot silently rot: Debian's Janus alone in a
//! network namespace (the fair set-up of `tongxin-load compare`), one publisher and two
//! subscribers through its VideoRoom for 10 s, every frame received and the server's CPU seen.
//!
//! Needs root and the `janus` package: off CI without them it prints why and skips; with
//! `CI=true` it installs Janus (`scripts/janus.sh install`) and fails rather than skip.

use tongxin_loadtests::bench_net::{Server, ServerUnderTest};
use tongxin_loadtests::janus;
use tongxin_loadtests::netns::root_or_skip;
use tongxin_loadtests::run::run;
use tongxin_loadtests::scenario::Scenario;

/// `true` when Janus is installed (installing it first on CI); otherwise prints why it skips.
fn janus_or_skip(test: &str) -> bool {
    if janus::installed().is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/janus.sh");
        let status = std::process::Command::new(script).arg("install").status();
        assert!(status.as_ref().is_ok_and(|s| s.success()), "{test} cannot run on CI: `{script} install` failed: {status:?}");
        assert!(janus::installed().is_some(), "{test}: Janus still missing after {script} install");
        return true;
    }
    eprintln!("SKIPPED {test}: Janus is not installed (scripts/janus.sh install)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_forwards_one_publisher_to_two_subscribers_in_its_namespace() {
    let test = "janus_forwards_one_publisher_to_two_subscribers_in_its_namespace";
    if !root_or_skip(test) || !janus_or_skip(test) {
        return;
    }
    let sut = ServerUnderTest::start(Server::Janus, None).await.expect("Janus starts in its namespace");
    assert!(sut.version().starts_with("Janus 1."), "{}", sut.version());
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", sut.pid())).unwrap();
    assert_eq!(comm.trim(), "janus", "the measured pid is Janus itself, not ip or taskset");
    let cache_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("media-cache");
    let scenario = Scenario {
        name: "janus smoke".into(),
        subscribers: vec![2],
        video_kbps: 600,
        width: 640,
        height: 360,
        seconds: 10,
        settle_seconds: 2,
        join_rate: 20.0,
        ..Scenario::default()
    };
    let outcome = match run(&scenario, &sut.target(&cache_dir, false)).await {
        Ok(o) => o,
        Err(e) => panic!("the run against Janus failed: {e}\nJanus's log:\n{}", sut.log_tail()),
    };
    let report = &outcome.report;
    eprint!("{}", report.summary_table());
    let step = &report.steps[0];
    assert!(report.verdict.ok, "{:?}\n{}", report.verdict, sut.log_tail());
    assert_eq!(step.subscribers_detail.len(), 2);
    for s in &step.subscribers_detail {
        assert!(s.error.is_none(), "{s:?}");
        assert!(s.frames_expected >= 250, "10 s at 30 fps from the first keyframe on: {s:?}");
        assert!(s.frames_received * 100 >= s.frames_expected * 99, "at least 99 % of frames arrive through Janus: {s:?}");
        assert!(s.latency_ms.p50.is_some_and(|p| p > 0.0 && p < 200.0), "{s:?}");
    }
    assert!(step.server.forwarded_mbit_per_s > 2.0 * 0.4, "two subscribers of a 600 kbit/s publisher: {:?}", step.server);
    assert!(step.server.cpu_percent_of_core > 0.0, "Janus's CPU is measured: {:?}", step.server);
    assert!(step.server.packets_per_cpu_second().is_finite());

    let (name, host_addr) = (sut.netns().name().to_owned(), sut.netns().host_addr());
    drop(sut);
    let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name), "the namespace is gone");
    let addrs = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains(&format!("{host_addr}/")), "and its veth pair");
}
