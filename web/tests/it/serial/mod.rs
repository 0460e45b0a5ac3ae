//! Tests that drive a real browser. `make test` runs this module with --test-threads=1 so two
//! Chromium instances never share the two cores.

mod browser;
mod lesson;
mod paths;
mod room;

use std::path::PathBuf;
use std::time::Duration;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Runs a browser script against a real server on a loopback port; fails with its output.
pub async fn run_script(script: &str, env: &[(&str, String)]) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed; run `scripts/install-deps.sh test` (make test does)"
    );
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).current_dir(&dir).env("SCREENSHOT_DIR", &shots).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A generous bound: the script has its own per-step waits; this only stops a hung browser.
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 300 s"))
        .expect("run node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
    eprintln!("{text}screenshots in {}", shots.display());
}
