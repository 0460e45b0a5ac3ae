//! Counters for `/metrics`, in the Prometheus text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// The server's counters.
pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    join_tokens: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        Metrics {
            started: Instant::now(),
            requests: Mutex::default(),
            durations: Mutex::default(),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            join_tokens: AtomicU64::new(0),
        }
    }

    /// Counts one HTTP request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(r);
        let mut d = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let h = d.entry(route.to_owned()).or_default();
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    /// Counts a login attempt.
    pub fn login(&self, ok: bool) {
        let c = if ok { &self.logins_ok } else { &self.logins_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a minted join token.
    pub fn join_token_minted(&self) {
        self.join_tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric, plus the gauges the caller measured just now.
    pub fn render(&self, db_up: bool, live_sessions: Option<i64>, media: Option<tongxin_sfu::shell::MediaStats>) -> String {
        let mut out = String::new();
        let w = &mut out;
        if let Some(m) = media {
            let _ = writeln!(w, "# HELP tongxin_media_peers Live WebRTC peer connections.");
            let _ = writeln!(w, "# TYPE tongxin_media_peers gauge");
            let _ = writeln!(w, "tongxin_media_peers {}", m.peers);
            let _ = writeln!(w, "# HELP tongxin_media_dropped_datagrams_total Datagrams on the media port that reached no peer.");
            let _ = writeln!(w, "# TYPE tongxin_media_dropped_datagrams_total counter");
            let _ = writeln!(w, "tongxin_media_dropped_datagrams_total {}", m.dropped);
            let _ = writeln!(w, "# HELP tongxin_media_core_panics_total Panics caught in the media core (each one a bug).");
            let _ = writeln!(w, "# TYPE tongxin_media_core_panics_total counter");
            let _ = writeln!(w, "tongxin_media_core_panics_total {}", m.panics);
            let _ = writeln!(w, "# HELP tongxin_rooms Open rooms.");
            let _ = writeln!(w, "# TYPE tongxin_rooms gauge");
            let _ = writeln!(w, "tongxin_rooms {}", m.rooms);
            let _ = writeln!(w, "# HELP tongxin_room_participants Participants in all rooms, WHIP and WHEP sessions included.");
            let _ = writeln!(w, "# TYPE tongxin_room_participants gauge");
            let _ = writeln!(w, "tongxin_room_participants {}", m.participants);
            let t = m.transcode;
            let series: [(&str, &str, &str, u64); 9] = [
                ("tongxin_transcode_jobs", "gauge", "Transcoder jobs making renditions now.", t.jobs as u64),
                (
                    "tongxin_transcode_refusals_total",
                    "counter",
                    "Transcoder jobs refused for want of a slot (transcode.max_jobs).",
                    t.refusals,
                ),
                ("tongxin_transcode_frames_in_total", "counter", "Source frames the transcoder took in.", t.frames_in),
                ("tongxin_transcode_frames_out_total", "counter", "Rendition frames the transcoder made.", t.frames_out),
                (
                    "tongxin_transcode_frames_dropped_total",
                    "counter",
                    "Source frames the transcoder dropped (full queue, or waiting for a keyframe).",
                    t.frames_dropped,
                ),
                ("tongxin_transcode_encode_seconds_total", "counter", "Time the transcoder spent scaling and encoding.", t.encode_micros),
                ("tongxin_transcode_restarts_total", "counter", "Transcoder workers restarted after a panic.", t.restarts),
                (
                    "tongxin_transcode_audio_jobs",
                    "gauge",
                    "Opus re-encoding jobs running now (not in tongxin_transcode_jobs).",
                    t.audio_jobs as u64,
                ),
                ("tongxin_transcode_audio_packets_out_total", "counter", "Opus packets the re-encoding jobs made.", t.audio_packets_out),
            ];
            for (name, kind, help, value) in series {
                let _ = writeln!(w, "# HELP {name} {help}");
                let _ = writeln!(w, "# TYPE {name} {kind}");
                if name == "tongxin_transcode_encode_seconds_total" {
                    let _ = writeln!(w, "{name} {:.6}", value as f64 / 1e6);
                } else {
                    let _ = writeln!(w, "{name} {value}");
                }
            }
        }
        let _ = writeln!(w, "# HELP tongxin_build_info Build information; always 1.");
        let _ = writeln!(w, "# TYPE tongxin_build_info gauge");
        let _ = writeln!(w, "tongxin_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(w, "# HELP tongxin_uptime_seconds Seconds since the server started.");
        let _ = writeln!(w, "# TYPE tongxin_uptime_seconds gauge");
        let _ = writeln!(w, "tongxin_uptime_seconds {:.3}", self.started.elapsed().as_secs_f64());
        let _ = writeln!(w, "# HELP tongxin_database_up Whether the database answered this scrape.");
        let _ = writeln!(w, "# TYPE tongxin_database_up gauge");
        let _ = writeln!(w, "tongxin_database_up {}", u8::from(db_up));
        if let Some(n) = live_sessions {
            let _ = writeln!(w, "# HELP tongxin_sessions_live Login sessions that have not expired.");
            let _ = writeln!(w, "# TYPE tongxin_sessions_live gauge");
            let _ = writeln!(w, "tongxin_sessions_live {n}");
        }
        let _ = writeln!(w, "# HELP tongxin_logins_total Login attempts by result.");
        let _ = writeln!(w, "# TYPE tongxin_logins_total counter");
        let _ = writeln!(w, "tongxin_logins_total{{result=\"ok\"}} {}", self.logins_ok.load(Ordering::Relaxed));
        let _ = writeln!(w, "tongxin_logins_total{{result=\"failed\"}} {}", self.logins_failed.load(Ordering::Relaxed));
        let _ = writeln!(w, "# HELP tongxin_join_tokens_minted_total Join tokens minted through the API.");
        let _ = writeln!(w, "# TYPE tongxin_join_tokens_minted_total counter");
        let _ = writeln!(w, "tongxin_join_tokens_minted_total {}", self.join_tokens.load(Ordering::Relaxed));
        let _ = writeln!(w, "# HELP tongxin_http_requests_total HTTP requests by method, route and status.");
        let _ = writeln!(w, "# TYPE tongxin_http_requests_total counter");
        for ((method, route, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(w, "tongxin_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        let _ = writeln!(w, "# HELP tongxin_http_request_duration_seconds Time to produce a response, by route.");
        let _ = writeln!(w, "# TYPE tongxin_http_request_duration_seconds histogram");
        for (route, h) in self.durations.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let route = escape(route);
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(w, "tongxin_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(w, "tongxin_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(w, "tongxin_http_request_duration_seconds_sum{{route=\"{route}\"}} {:.6}", h.sum);
            let _ = writeln!(w, "tongxin_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.total);
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Middleware that counts every request by its route template (never the raw path, which could
/// carry ids and would make the label set unbounded).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    state.metrics.request(&method, &route, res.status().as_u16(), started.elapsed());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.request("GET", "/api/v1/me", 200, Duration::from_millis(3));
        m.request("GET", "/api/v1/me", 200, Duration::from_millis(30));
        m.request("GET", "/api/v1/me", 401, Duration::from_millis(1));
        m.login(false);
        let text = m.render(
            true,
            Some(2),
            Some(tongxin_sfu::shell::MediaStats {
                peers: 3,
                dropped: 7,
                panics: 0,
                rooms: 1,
                participants: 4,
                transcode: tongxin_sfu::shell::TranscodeStats { jobs: 1, refusals: 2, encode_micros: 1_500_000, ..Default::default() },
            }),
        );
        assert!(text.contains("tongxin_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"} 2"));
        assert!(text.contains("tongxin_http_request_duration_seconds_bucket{route=\"/api/v1/me\",le=\"0.005\"} 2"));
        assert!(text.contains("tongxin_http_request_duration_seconds_count{route=\"/api/v1/me\"} 3"));
        assert!(text.contains("tongxin_logins_total{result=\"failed\"} 1"));
        assert!(text.contains("tongxin_sessions_live 2"));
        assert!(text.contains("tongxin_database_up 1"));
        assert!(text.contains("tongxin_media_peers 3") && text.contains("tongxin_media_dropped_datagrams_total 7"));
        assert!(text.contains("tongxin_rooms 1") && text.contains("tongxin_room_participants 4"));
        assert!(text.contains("tongxin_transcode_jobs 1") && text.contains("tongxin_transcode_refusals_total 2"));
        assert!(text.contains("tongxin_transcode_encode_seconds_total 1.500000"));
    }
}
