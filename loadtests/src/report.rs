//! The load run's report: a plain data model that serializes to `report.json`, and a
//! self-contained `report.html` (inline SVG plots, no external resources) rendered from it.
//!
//! The model is filled in by the runner; this module only summarizes, encodes and writes.
//! Figures that could not be measured are `NaN` in memory and `null` in JSON, so the file is
//! always valid JSON and reads back.

pub mod comparison;
mod html;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Above this share of one core the load generator, not the server, limits the figures.
pub const GENERATOR_BOUND_CPU_PERCENT: f64 = 85.0;

/// Above this much CPU (% of one core) used by the rest of the machine, a step counts as contended.
pub const CONTENDED_CPU_PERCENT: f64 = 15.0;

fn not_measured() -> f64 {
    f64::NAN
}

/// A gap between two decoded frames longer than this counts as a freeze.
pub const FREEZE_GAP_MS: f64 = 500.0;

/// One load run: what was asked for, what each fixed-load step measured, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of `tongxin-load` that produced the report.
    pub tool_version: String,
    /// When the run started, milliseconds since the Unix epoch (UTC).
    pub started_at_unix_ms: i64,
    /// The scenario as configured.
    pub scenario: ScenarioSummary,
    /// One entry per fixed-load step, in the order they ran.
    pub steps: Vec<StepReport>,
    /// The overall judgement.
    pub verdict: Verdict,
}

/// The scenario the run was configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Scenario name, as given on the command line or in the scenario file.
    pub name: String,
    /// Number of rooms.
    pub rooms: u32,
    /// Publishers in each room.
    pub publishers_per_room: u32,
    /// Subscribers in each room, one entry per step (the ramp).
    pub subscribers_per_room: Vec<u32>,
    /// Target video bitrate of each publisher.
    pub video_bitrate_kbps: u32,
    /// Whether publishers send simulcast layers.
    pub simulcast: bool,
    /// How long each fixed-load step is held.
    pub seconds_per_step: u32,
    /// Rate at which clients join.
    #[serde(with = "float_or_null")]
    pub join_rate_per_s: f64,
    /// Network impairment between the clients and the server, if any.
    pub impairment: Option<ImpairmentSummary>,
}

/// The seeded impairment applied by the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpairmentSummary {
    /// Packet loss probability, 0..1.
    #[serde(with = "float_or_null")]
    pub loss: f64,
    /// Added one-way delay.
    pub delay_ms: u32,
    /// Added jitter around the delay.
    pub jitter_ms: u32,
    /// Rate cap, if any.
    pub cap_kbps: Option<u32>,
    /// Seed of the impairment's random numbers, so a run can be repeated.
    pub seed: u64,
}

/// What one fixed-load step measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Total subscribers connected during the step.
    pub subscribers: u32,
    /// A step the ramp added after the scenario's own.
    #[serde(default)]
    pub ramp: bool,
    /// The server's figures.
    pub server: ServerFigures,
    /// The load generator's own figures.
    pub generator: GeneratorFigures,
    /// CPU the rest of the machine used during the window (other processes and kernel work not
    /// charged to the server or the generator, e.g. softirq), % of one core: above
    /// [`CONTENDED_CPU_PERCENT`] the figures may be disturbed.
    #[serde(default = "not_measured", with = "float_or_null")]
    pub others_cpu_percent: f64,
    /// One entry per subscriber.
    pub subscribers_detail: Vec<SubscriberFigures>,
    /// Aggregates over all subscribers.
    pub totals: StepTotals,
}

/// The server process's figures during a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFigures {
    /// The server's process id, when it was known and sampled.
    pub pid: Option<u32>,
    /// CPU time used, in percent of one core.
    #[serde(with = "float_or_null")]
    pub cpu_percent_of_core: f64,
    /// Resident memory, MiB.
    #[serde(with = "float_or_null")]
    pub rss_mib: f64,
    /// Media packets forwarded per second, counted at the subscribers.
    #[serde(with = "float_or_null")]
    pub forwarded_packets_per_s: f64,
    /// Media forwarded, Mbit/s, counted at the subscribers as UDP payload (RTP and the SRTP tag;
    /// IP and UDP headers add about 28 bytes a packet; after the relay, when there is one).
    #[serde(with = "float_or_null")]
    pub forwarded_mbit_per_s: f64,
    /// CPU % of one core spent per Mbit/s forwarded: the cost figure to compare between builds.
    #[serde(with = "float_or_null")]
    pub cpu_percent_per_mbit: f64,
}

impl ServerFigures {
    /// Figures with `cpu_percent_per_mbit` derived (`NaN` when nothing was forwarded).
    pub fn new(pid: Option<u32>, cpu_percent_of_core: f64, rss_mib: f64, forwarded_packets_per_s: f64, forwarded_mbit_per_s: f64) -> Self {
        let cpu_percent_per_mbit = if forwarded_mbit_per_s > 0.0 { cpu_percent_of_core / forwarded_mbit_per_s } else { f64::NAN };
        Self { pid, cpu_percent_of_core, rss_mib, forwarded_packets_per_s, forwarded_mbit_per_s, cpu_percent_per_mbit }
    }

    /// Forwarded packets per second of server CPU time: the packets-per-core figure to compare
    /// between servers (`NaN` without a CPU figure).
    pub fn packets_per_cpu_second(&self) -> f64 {
        if self.cpu_percent_of_core > 0.0 { self.forwarded_packets_per_s / (self.cpu_percent_of_core / 100.0) } else { f64::NAN }
    }
}

/// The load generator's own figures during a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorFigures {
    /// CPU time used by the generator, in percent of one core.
    #[serde(with = "float_or_null")]
    pub cpu_percent_of_core: f64,
    /// True when the generator used more than [`GENERATOR_BOUND_CPU_PERCENT`]: the step then
    /// measures the generator rather than the server.
    pub bound: bool,
}

impl GeneratorFigures {
    /// Figures with `bound` derived from the CPU share.
    pub fn new(cpu_percent_of_core: f64) -> Self {
        Self { cpu_percent_of_core, bound: cpu_percent_of_core > GENERATOR_BOUND_CPU_PERCENT }
    }
}

/// What one subscriber saw during a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriberFigures {
    /// Subscriber number within the run.
    pub index: u32,
    /// The room it joined.
    pub room: String,
    /// From fetching its token to its first decodable frame; `None` if it never got one.
    #[serde(default, with = "option_float_or_null")]
    pub join_ms: Option<f64>,
    /// Media received.
    #[serde(with = "float_or_null")]
    pub received_kbps: f64,
    /// Video frames the publisher sent while this subscriber was joined.
    pub frames_expected: u64,
    /// Video frames that arrived complete.
    pub frames_received: u64,
    /// Share of expected frames that did not arrive, 0..1.
    #[serde(with = "float_or_null")]
    pub frame_loss: f64,
    /// Share of video RTP packets missing in sequence before any repair, 0..1 (`null` when
    /// none were expected): what the link lost, as opposed to frames the viewer missed.
    #[serde(with = "float_or_null")]
    pub packet_loss: f64,
    /// Interarrival jitter of video frames.
    #[serde(with = "float_or_null")]
    pub jitter_ms: f64,
    /// Gaps between frames longer than [`FREEZE_GAP_MS`].
    pub freezes: u32,
    /// The longest such gap (0 when there was none).
    #[serde(with = "float_or_null")]
    pub longest_freeze_ms: f64,
    /// Publisher-to-subscriber frame latency.
    pub latency_ms: Percentiles,
    /// Why this subscriber failed, if it did.
    pub error: Option<String>,
}

/// Aggregates of one step over all its subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTotals {
    /// Sum of the subscribers' expected frames.
    pub frames_expected: u64,
    /// Sum of the subscribers' received frames.
    pub frames_received: u64,
    /// Share of all expected frames that did not arrive, 0..1.
    #[serde(with = "float_or_null")]
    pub frame_loss: f64,
    /// Sum of the subscribers' freezes.
    pub freezes: u32,
    /// Latency over all subscribers' frames (not an average of their percentiles).
    pub latency_ms: Percentiles,
    /// Join time over the subscribers that joined.
    pub join_ms: Percentiles,
}

/// Nearest-rank percentiles of a sample; `None` (JSON `null`) when there was no finite sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    #[serde(default, with = "option_float_or_null")]
    pub p50: Option<f64>,
    /// 90th percentile.
    #[serde(default, with = "option_float_or_null")]
    pub p90: Option<f64>,
    /// 99th percentile.
    #[serde(default, with = "option_float_or_null")]
    pub p99: Option<f64>,
    /// Largest sample.
    #[serde(default, with = "option_float_or_null")]
    pub max: Option<f64>,
}

/// The run's overall judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the server met the scenario's expectations.
    pub ok: bool,
    /// The first step's subscriber count at which the generator was bound, if any: the figures
    /// from there on describe the generator, not the server.
    pub generator_bound_at: Option<u32>,
    /// Where a ramp stopped and why (runs with a ramp only).
    #[serde(default)]
    pub ramp: Option<RampOutcome>,
    /// Human-readable reasons and remarks.
    pub notes: Vec<String>,
}

/// What stopped a ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Limit {
    /// Frame loss passed the ramp's limit while the generator kept up: the server's limit.
    FrameLoss,
    /// The server's core was saturated.
    ServerCpu,
    /// The generator ran out of CPU first.
    Generator,
    /// The ramp's maximum was reached without any limit.
    Ceiling,
}

/// Where a ramp stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampOutcome {
    /// Subscribers at the step that reached the limit.
    pub subscribers: u32,
    /// The limit.
    pub limit: Limit,
    /// The server's CPU there, % of one core.
    #[serde(with = "float_or_null")]
    pub server_cpu_percent_of_core: f64,
    /// The generator's CPU there, % of one core.
    #[serde(with = "float_or_null")]
    pub generator_cpu_percent_of_core: f64,
    /// Frame loss there, 0..1.
    #[serde(with = "float_or_null")]
    pub frame_loss: f64,
    /// The ramp's saturation threshold for the server, % of one core.
    #[serde(default = "default_saturation", with = "float_or_null")]
    pub saturated_cpu_percent: f64,
}

fn default_saturation() -> f64 {
    90.0
}

impl RampOutcome {
    /// The outcome at `step`, with the ramp's server saturation threshold.
    pub fn new(step: &StepReport, limit: Limit, saturated_cpu_percent: f64) -> Self {
        Self {
            subscribers: step.subscribers,
            limit,
            server_cpu_percent_of_core: step.server.cpu_percent_of_core,
            generator_cpu_percent_of_core: step.generator.cpu_percent_of_core,
            frame_loss: step.totals.frame_loss,
            saturated_cpu_percent,
        }
    }

    /// Which side limited the ramp: `server`, `generator`, or `none`. Frame loss with neither
    /// core at its limit is put on the side nearer its own (server: the saturation threshold;
    /// generator: [`GENERATOR_BOUND_CPU_PERCENT`]).
    pub fn limited_by(&self) -> &'static str {
        match self.limit {
            Limit::FrameLoss if self.generator_nearer() => "generator",
            Limit::FrameLoss | Limit::ServerCpu => "server",
            Limit::Generator => "generator",
            Limit::Ceiling => "none",
        }
    }

    fn generator_nearer(&self) -> bool {
        self.generator_cpu_percent_of_core / GENERATOR_BOUND_CPU_PERCENT > self.server_cpu_percent_of_core / self.saturated_cpu_percent
    }

    /// One sentence for people.
    pub fn describe(&self) -> String {
        let (n, cpu, generator, loss) =
            (self.subscribers, self.server_cpu_percent_of_core, self.generator_cpu_percent_of_core, self.frame_loss * 100.0);
        match self.limit {
            Limit::FrameLoss => format!(
                "frame loss {loss:.2} % at {n} subscribers, server at {cpu:.1} % of its core, generator at {generator:.1} % (below its \
                 bound): the {} was the limit{}",
                self.limited_by(),
                if self.generator_nearer() { " (nearer its bound than the server to saturation)" } else { "" }
            ),
            Limit::ServerCpu => {
                format!("server core saturated ({cpu:.1} %) at {n} subscribers, frame loss {loss:.2} %: the server was the limit")
            }
            Limit::Generator => format!(
                "generator-bound ({generator:.1} % of a core) at {n} subscribers, server at {cpu:.1} %, frame loss {loss:.2} %: the generator was the limit"
            ),
            Limit::Ceiling => {
                format!("no limit up to the ramp's maximum of {n} subscribers (server at {cpu:.1} %, frame loss {loss:.2} %)")
            }
        }
    }
}

/// Why [`Report::write`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteReportError {
    /// The report could not be encoded as JSON.
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file or the directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Report {
    /// The report as indented JSON; non-finite figures become `null`.
    pub fn to_json_pretty(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// Writes `report.json` and `report.html` into `dir` (created if missing), each atomically
    /// (temporary file, then rename), and returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), WriteReportError> {
        let json = self.to_json_pretty()?;
        let html = self.to_html();
        fs::create_dir_all(dir).map_err(|source| WriteReportError::Io { path: dir.to_owned(), source })?;
        let json_path = dir.join("report.json");
        let html_path = dir.join("report.html");
        write_atomically(&json_path, json.as_bytes())?;
        write_atomically(&html_path, html.as_bytes())?;
        Ok((json_path, html_path))
    }
}

/// Writes beside the target and renames, so a reader never sees half a report.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), WriteReportError> {
    let io_err = |source| WriteReportError::Io { path: path.to_owned(), source };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

impl Report {
    /// The fixed-load table as plain text, one row per step, for a terminal.
    pub fn summary_table(&self) -> String {
        use std::fmt::Write as _;
        let f = |x: f64, d: usize| if x.is_finite() { format!("{x:.d$}") } else { "-".to_owned() };
        let o = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let mut out = String::from(
            "subscribers  server CPU %  RSS MiB  Mbit/s  CPU %/Mbit/s  p50 ms  p99 ms  frame loss %  freezes  generator CPU %\n",
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>11}  {:>12}  {:>7}  {:>6}  {:>12}  {:>6}  {:>6}  {:>12}  {:>7}  {:>15}{}",
                s.subscribers,
                f(s.server.cpu_percent_of_core, 1),
                f(s.server.rss_mib, 1),
                f(s.server.forwarded_mbit_per_s, 1),
                f(s.server.cpu_percent_per_mbit, 2),
                o(s.totals.latency_ms.p50),
                o(s.totals.latency_ms.p99),
                f(s.totals.frame_loss * 100.0, 2),
                s.totals.freezes,
                f(s.generator.cpu_percent_of_core, 1),
                if s.generator.bound { "  generator-bound" } else { "" },
            );
        }
        for note in &self.verdict.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// Nearest-rank percentiles of `samples`, ignoring non-finite values. Sorts `samples` in place.
pub fn percentiles(samples: &mut [f64]) -> Percentiles {
    samples.sort_unstable_by(f64::total_cmp);
    // total_cmp puts -NaN and -inf first and +inf and +NaN last: the finite values are one run.
    let Some(start) = samples.iter().position(|v| v.is_finite()) else {
        return Percentiles::default();
    };
    let end = samples.iter().rposition(|v| v.is_finite()).map_or(start, |i| i + 1);
    let finite = &samples[start..end];
    let at = |percent: usize| {
        let rank = (percent * finite.len()).div_ceil(100).max(1);
        Some(finite[rank - 1])
    };
    Percentiles { p50: at(50), p90: at(90), p99: at(99), max: finite.last().copied() }
}

/// Share of `expected` frames that did not arrive, 0..1; `NaN` when none were expected.
pub fn frame_loss(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        return f64::NAN;
    }
    expected.saturating_sub(received) as f64 / expected as f64
}

/// Aggregates a step: sums the subscribers' frames and freezes, and takes the latency
/// percentiles over `latency_samples_ms`, every frame of every subscriber (sorted in place).
pub fn summarize_step(subscribers_detail: &[SubscriberFigures], latency_samples_ms: &mut [f64]) -> StepTotals {
    let frames_expected = subscribers_detail.iter().map(|s| s.frames_expected).sum();
    let frames_received = subscribers_detail.iter().map(|s| s.frames_received).sum();
    let mut join: Vec<f64> = subscribers_detail.iter().filter_map(|s| s.join_ms).collect();
    StepTotals {
        frames_expected,
        frames_received,
        frame_loss: frame_loss(frames_expected, frames_received),
        freezes: subscribers_detail.iter().map(|s| s.freezes).sum(),
        latency_ms: percentiles(latency_samples_ms),
        join_ms: percentiles(&mut join),
    }
}

/// The subscriber count of the first step whose generator was bound.
pub fn generator_bound_at(steps: &[StepReport]) -> Option<u32> {
    steps.iter().find(|s| s.generator.bound).map(|s| s.subscribers)
}

/// `f64` fields: non-finite values are written as `null`, and `null` reads back as `NaN`.
mod float_or_null {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() { serializer.serialize_f64(*value) } else { serializer.serialize_none() }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// `Option<f64>` fields: `None` and non-finite values are written as `null`.
mod option_float_or_null {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) if v.is_finite() => serializer.serialize_f64(*v),
            _ => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(deserializer)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A subscriber whose figures vary with `index` and the load, so rows are distinguishable.
    fn subscriber(index: u32, room: &str, load: u32) -> SubscriberFigures {
        let expected = 900;
        let received = expected - u64::from(index % 3) - u64::from(load / 25);
        let mut latency: Vec<f64> = (0..50).map(|i| 20.0 + f64::from(load) / 4.0 + f64::from(i % 10) + f64::from(index % 7)).collect();
        SubscriberFigures {
            index,
            room: room.to_owned(),
            join_ms: Some(300.0 + f64::from(index * 7 % 200) + f64::from(load)),
            received_kbps: 980.0 - f64::from(load) / 10.0,
            frames_expected: expected,
            frames_received: received,
            frame_loss: frame_loss(expected, received),
            packet_loss: 0.01,
            jitter_ms: 2.5 + f64::from(index % 4),
            freezes: u32::from(index.is_multiple_of(17)),
            longest_freeze_ms: if index.is_multiple_of(17) { 640.0 } else { 0.0 },
            latency_ms: percentiles(&mut latency),
            error: None,
        }
    }

    fn step(subscribers: u32, generator_cpu: f64) -> StepReport {
        let detail: Vec<SubscriberFigures> =
            (0..subscribers).map(|i| subscriber(i, if i % 2 == 0 { "room-a" } else { "room-b" }, subscribers)).collect();
        let mut latency: Vec<f64> = (0..subscribers * 50).map(|i| 20.0 + f64::from(subscribers) / 4.0 + f64::from(i % 37)).collect();
        let mbit = f64::from(subscribers) * 0.98;
        StepReport {
            subscribers,
            ramp: false,
            others_cpu_percent: 2.0,
            server: ServerFigures::new(
                Some(4242),
                3.0 + f64::from(subscribers) * 0.6,
                80.0 + f64::from(subscribers) * 0.5,
                mbit * 90.0,
                mbit,
            ),
            generator: GeneratorFigures::new(generator_cpu),
            totals: summarize_step(&detail, &mut latency),
            subscribers_detail: detail,
        }
    }

    /// The 10 → 25 → 50 → 100 ramp, the generator bound at 100.
    pub(crate) fn four_step_report() -> Report {
        Report {
            tool_version: "0.1.0".to_owned(),
            started_at_unix_ms: 1_700_000_000_000,
            scenario: ScenarioSummary {
                name: "classroom ramp".to_owned(),
                rooms: 2,
                publishers_per_room: 1,
                subscribers_per_room: vec![5, 13, 25, 50],
                video_bitrate_kbps: 1000,
                simulcast: true,
                seconds_per_step: 30,
                join_rate_per_s: 5.0,
                impairment: Some(ImpairmentSummary { loss: 0.02, delay_ms: 40, jitter_ms: 10, cap_kbps: Some(2000), seed: 7 }),
            },
            steps: vec![step(10, 12.0), step(25, 30.5), step(50, 61.0), step(100, 92.5)],
            verdict: Verdict {
                ok: true,
                generator_bound_at: Some(100),
                ramp: None,
                notes: vec!["latency p99 stayed under 150 ms".to_owned()],
            },
        }
    }

    /// One step, nothing measured: no pid, no frames, no join, NaN CPU.
    pub(crate) fn single_empty_step_report() -> Report {
        let detail = vec![SubscriberFigures {
            index: 0,
            room: "<script>alert(1)</script><b>x</b>".to_owned(),
            join_ms: None,
            received_kbps: 0.0,
            frames_expected: 0,
            frames_received: 0,
            frame_loss: frame_loss(0, 0),
            packet_loss: f64::NAN,
            jitter_ms: f64::NAN,
            freezes: 0,
            longest_freeze_ms: 0.0,
            latency_ms: percentiles(&mut []),
            error: Some("ICE failed: <timeout> & gave up".to_owned()),
        }];
        Report {
            tool_version: "0.1.0".to_owned(),
            started_at_unix_ms: 0,
            scenario: ScenarioSummary {
                name: "smoke \"one\" <step>".to_owned(),
                rooms: 1,
                publishers_per_room: 1,
                subscribers_per_room: vec![1],
                video_bitrate_kbps: 500,
                simulcast: false,
                seconds_per_step: 5,
                join_rate_per_s: f64::INFINITY,
                impairment: None,
            },
            steps: vec![StepReport {
                subscribers: 1,
                ramp: false,
                others_cpu_percent: f64::NAN,
                server: ServerFigures::new(None, f64::NAN, f64::NAN, 0.0, 0.0),
                generator: GeneratorFigures::new(f64::NAN),
                totals: summarize_step(&detail, &mut []),
                subscribers_detail: detail,
            }],
            verdict: Verdict { ok: false, generator_bound_at: None, ramp: None, notes: vec!["no subscriber received a frame".to_owned()] },
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let p = percentiles(&mut samples);
        assert_eq!(p, Percentiles { p50: Some(5.0), p90: Some(9.0), p99: Some(10.0), max: Some(10.0) });

        let mut hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut hundred);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (Some(50.0), Some(90.0), Some(99.0), Some(100.0)));

        let mut one = [42.0];
        assert_eq!(percentiles(&mut one), Percentiles { p50: Some(42.0), p90: Some(42.0), p99: Some(42.0), max: Some(42.0) });
    }

    #[test]
    fn percentiles_ignore_non_finite_samples() {
        let mut samples = [f64::NAN, 3.0, f64::INFINITY, 1.0, -f64::NAN, 2.0, f64::NEG_INFINITY];
        let p = percentiles(&mut samples);
        assert_eq!(p, Percentiles { p50: Some(2.0), p90: Some(3.0), p99: Some(3.0), max: Some(3.0) });
        assert_eq!(percentiles(&mut []), Percentiles::default());
        assert_eq!(percentiles(&mut [f64::NAN]), Percentiles::default());
    }

    #[test]
    fn summarize_step_adds_up_subscribers() {
        let report = four_step_report();
        let step = &report.steps[0];
        let expected: u64 = step.subscribers_detail.iter().map(|s| s.frames_expected).sum();
        let received: u64 = step.subscribers_detail.iter().map(|s| s.frames_received).sum();
        assert_eq!((step.totals.frames_expected, step.totals.frames_received), (expected, received));
        assert!((step.totals.frame_loss - (expected - received) as f64 / expected as f64).abs() < 1e-12);
        assert_eq!(step.totals.freezes, 1, "subscriber 0 froze once");
        assert_eq!(step.totals.join_ms.p50, Some(338.0));
        assert_eq!(generator_bound_at(&report.steps), Some(100));
    }

    #[test]
    fn json_round_trips() {
        let report = four_step_report();
        let json = report.to_json_pretty().unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn unmeasured_figures_are_null_in_json_and_read_back() {
        let report = single_empty_step_report();
        let json = report.to_json_pretty().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let step = &value["steps"][0];
        assert_eq!(step["server"]["cpu_percent_of_core"], serde_json::Value::Null);
        assert_eq!(step["server"]["cpu_percent_per_mbit"], serde_json::Value::Null);
        assert_eq!(step["totals"]["frame_loss"], serde_json::Value::Null);
        assert_eq!(step["totals"]["latency_ms"], serde_json::json!({"p50": null, "p90": null, "p99": null, "max": null}));
        assert_eq!(step["subscribers_detail"][0]["join_ms"], serde_json::Value::Null);
        assert_eq!(value["scenario"]["join_rate_per_s"], serde_json::Value::Null);
        assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");

        let back: Report = serde_json::from_str(&json).unwrap();
        assert!(back.steps[0].server.cpu_percent_of_core.is_nan());
        assert!(back.steps[0].totals.frame_loss.is_nan());
        assert_eq!(back.steps[0].totals.latency_ms, Percentiles::default());
        assert_eq!(back.steps[0].subscribers_detail[0].error, report.steps[0].subscribers_detail[0].error);
    }

    #[test]
    fn write_puts_both_files_in_the_directory() {
        let dir = std::env::temp_dir().join(format!("tongxin-report-test-{}", std::process::id()));
        let report = four_step_report();
        let (json, html) = report.write(&dir.join("run")).unwrap();
        assert_eq!((json.file_name().unwrap(), html.file_name().unwrap()), ("report.json".as_ref(), "report.html".as_ref()));
        let read: Report = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(read, report);
        assert!(fs::read_to_string(&html).unwrap().starts_with("<!DOCTYPE html>"));
        let leftovers: Vec<_> = fs::read_dir(dir.join("run")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
