//! Several servers under the same load, one report: each server's own [`Report`], a table per
//! load with the packets-per-CPU-second ratio, and one HTML page whose plots put the servers
//! side by side (`comparison.json`, `comparison.html`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::html::{self, BLUE, GREY, Series, VERMILION, escape, number, optional, percent};
use super::{CONTENDED_CPU_PERCENT, GENERATOR_BOUND_CPU_PERCENT, Report, StepReport, WriteReportError, write_atomically};

/// The server the ratio is taken of, and the one it is taken against.
pub const RATIO: (&str, &str) = ("Tongxin", "Janus");

/// One server's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRun {
    /// The server's name (`Tongxin`, `Janus`).
    pub server: String,
    /// Name and version as the server reported them.
    pub version: String,
    /// What the run measured.
    pub report: Report,
}

/// The servers' runs of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Version of `tongxin-load`.
    pub tool_version: String,
    /// When the comparison started, ms since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// How the servers ran (namespace, cores).
    pub setup: String,
    /// One run per server, in the order they ran.
    pub runs: Vec<ServerRun>,
}

/// One server at one load.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    /// The run's server name.
    pub server: &'a str,
    /// Its step at this load.
    pub step: &'a StepReport,
}

impl Comparison {
    /// The fixed loads (the scenario's own steps, not the ramp's) of the first run.
    pub fn loads(&self) -> Vec<u32> {
        self.runs.first().map(|r| r.report.steps.iter().filter(|s| !s.ramp).map(|s| s.subscribers).collect()).unwrap_or_default()
    }

    /// Each server's fixed step at `subscribers`.
    pub fn at(&self, subscribers: u32) -> Vec<Cell<'_>> {
        self.runs
            .iter()
            .filter_map(|r| {
                r.report.steps.iter().find(|s| !s.ramp && s.subscribers == subscribers).map(|step| Cell { server: &r.server, step })
            })
            .collect()
    }

    /// Forwarded packets per CPU-second, [`RATIO`]`.0 ÷ `[`RATIO`]`.1`, at `subscribers`.
    pub fn ratio(&self, subscribers: u32) -> f64 {
        let cells = self.at(subscribers);
        let of = |name: &str| cells.iter().find(|c| c.server == name).map_or(f64::NAN, |c| c.step.server.packets_per_cpu_second());
        of(RATIO.0) / of(RATIO.1)
    }

    /// The table as plain text: a row per load and server, then the ratio.
    pub fn summary_table(&self) -> String {
        let f = |x: f64, d: usize| if x.is_finite() { format!("{x:.d$}") } else { "-".to_owned() };
        let o = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let mut out = String::from(
            "subs  server    CPU %  Mbit/s  CPU %/Mbit/s  pkts/s   pkts/CPU-s  p50 ms  p99 ms  frame loss %  gen CPU %  others %  generator-bound\n",
        );
        for load in self.loads() {
            for c in self.at(load) {
                let s = c.step;
                let _ = writeln!(
                    out,
                    "{:>4}  {:<8}  {:>5}  {:>6}  {:>12}  {:>6}  {:>10}  {:>6}  {:>6}  {:>12}  {:>9}  {:>8}  {}{}",
                    load,
                    c.server,
                    f(s.server.cpu_percent_of_core, 1),
                    f(s.server.forwarded_mbit_per_s, 1),
                    f(s.server.cpu_percent_per_mbit, 3),
                    f(s.server.forwarded_packets_per_s, 0),
                    f(s.server.packets_per_cpu_second(), 0),
                    o(s.totals.latency_ms.p50),
                    o(s.totals.latency_ms.p99),
                    f(s.totals.frame_loss * 100.0, 2),
                    f(s.generator.cpu_percent_of_core, 1),
                    f(s.others_cpu_percent, 1),
                    if s.generator.bound { "yes" } else { "no" },
                    if s.others_cpu_percent > CONTENDED_CPU_PERCENT { " (contended)" } else { "" },
                );
            }
            let _ = writeln!(out, "{load:>4}  {} ÷ {} forwarded packets per CPU-second: {}", RATIO.0, RATIO.1, f(self.ratio(load), 2));
        }
        for run in &self.runs {
            if let Some(ramp) = &run.report.verdict.ramp {
                let _ = writeln!(out, "ramp, {}: {}", run.server, ramp.describe());
            }
        }
        out
    }

    /// Writes `comparison.json` and `comparison.html` into `dir` (created if missing).
    ///
    /// # Errors
    ///
    /// The directory or a file could not be written.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), WriteReportError> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::create_dir_all(dir).map_err(|source| WriteReportError::Io { path: dir.to_owned(), source })?;
        let (json_path, html_path) = (dir.join("comparison.json"), dir.join("comparison.html"));
        write_atomically(&json_path, json.as_bytes())?;
        write_atomically(&html_path, self.to_html().as_bytes())?;
        Ok((json_path, html_path))
    }

    /// The page: setup, the table with ratios, ramp outcomes and the plots.
    pub fn to_html(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let names: Vec<&str> = self.runs.iter().map(|r| r.server.as_str()).collect();
        let title = escape(&names.join(" vs "));
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Tongxin load comparison: {title}</title>\n<style>\n{}</style>\n</head>\n<body>\n<header>\n<h1>Same load, {title}</h1>\n",
            html::STYLE
        );
        if let Some(first) = self.runs.first() {
            let s = &first.report.scenario;
            let _ = writeln!(
                out,
                "<dl class=\"scenario\">\n<dt>Servers</dt><dd>{}</dd>\n<dt>Set-up</dt><dd>{}</dd>\n\
                 <dt>Load</dt><dd>{} room(s), {} publisher(s) of {} kbit/s video + Opus, subscribers {}</dd>\n\
                 <dt>Each step</dt><dd>{} s</dd>\n</dl>",
                escape(&self.runs.iter().map(|r| r.version.as_str()).collect::<Vec<_>>().join(", ")),
                escape(&self.setup),
                s.rooms,
                s.publishers_per_room,
                s.video_bitrate_kbps,
                s.subscribers_per_room.iter().map(u32::to_string).collect::<Vec<_>>().join(" → "),
                s.seconds_per_step
            );
        }
        out.push_str(
            "</header>\n<section>\n<h2>Fixed loads</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th>Subscribers</th>\
            <th class=\"text\">Server</th><th>Server CPU<br>% of a core</th><th>Forwarded<br>Mbit/s</th><th>CPU %<br>per Mbit/s</th>\
            <th>Forwarded<br>packets/s</th><th>Packets per<br>CPU-second</th><th>Latency p50<br>ms</th><th>Latency p99<br>ms</th>\
            <th>Frame loss</th><th>Generator CPU<br>% of a core</th><th>Rest of the machine<br>% of a core</th></tr></thead>\n<tbody>\n",
        );
        for load in self.loads() {
            for c in self.at(load) {
                let s = c.step;
                let _ = writeln!(
                    out,
                    "<tr{}><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>{}{}</td><td>{}{}</td></tr>",
                    if s.generator.bound { " class=\"bound\"" } else { "" },
                    load,
                    escape(c.server),
                    number(s.server.cpu_percent_of_core, 1),
                    number(s.server.forwarded_mbit_per_s, 1),
                    number(s.server.cpu_percent_per_mbit, 3),
                    number(s.server.forwarded_packets_per_s, 0),
                    number(s.server.packets_per_cpu_second(), 0),
                    optional(s.totals.latency_ms.p50, 1),
                    optional(s.totals.latency_ms.p99, 1),
                    percent(s.totals.frame_loss, 2),
                    number(s.generator.cpu_percent_of_core, 1),
                    if s.generator.bound { " (generator-bound)" } else { "" },
                    number(s.others_cpu_percent, 1),
                    if s.others_cpu_percent > CONTENDED_CPU_PERCENT { " (contended)" } else { "" },
                );
            }
            let _ = writeln!(
                out,
                "<tr><td>{load}</td><td class=\"text\" colspan=\"5\"><b>{} ÷ {}</b>, forwarded packets per CPU-second</td>\
                 <td><b>{}</b></td><td colspan=\"5\"></td></tr>",
                RATIO.0,
                RATIO.1,
                number(self.ratio(load), 2)
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
        let _ = writeln!(
            out,
            "<p>A row on orange was generator-bound: the load generator used more than {GENERATOR_BOUND_CPU_PERCENT:.0} % of its \
             core, so it, not the server, may have set the figures. \"Rest of the machine\" is CPU charged to neither \
             (other processes, kernel network work); above {CONTENDED_CPU_PERCENT:.0} % of a core a row is marked contended.</p>\n</section>"
        );
        out.push_str("<section>\n<h2>Ramp</h2>\n<ul>\n");
        for run in &self.runs {
            let text = run.report.verdict.ramp.as_ref().map_or_else(|| "no ramp in this run".to_owned(), |r| r.describe());
            let _ = writeln!(out, "<li><b>{}</b>: {}</li>", escape(&run.server), escape(&text));
        }
        out.push_str("</ul>\n</section>\n");
        self.plots(&mut out);
        for run in &self.runs {
            for note in &run.report.verdict.notes {
                let _ = writeln!(out, "<p class=\"note\">{}: {}</p>", escape(&run.server), escape(note));
            }
        }
        let _ = write!(
            out,
            "<footer>tongxin-load {} · started {}</footer>\n</body>\n</html>\n",
            escape(&self.tool_version),
            html::utc_datetime(self.started_at_unix_ms)
        );
        out
    }

    fn plots(&self, out: &mut String) {
        let colors = [BLUE, VERMILION, GREY];
        let series = |name: &str, pick: &dyn Fn(&StepReport) -> f64| -> Vec<Series> {
            self.runs
                .iter()
                .enumerate()
                .map(|(i, r)| Series {
                    label: format!("{}{name}", r.server),
                    color: colors[i % colors.len()],
                    points: r.report.steps.iter().map(|s| (f64::from(s.subscribers), pick(s))).filter(|(_, y)| y.is_finite()).collect(),
                    markers: true,
                })
                .collect()
        };
        let plot = |y: &str, list: Vec<Series>| list.iter().any(|s| !s.points.is_empty()).then(|| html::line_plot(y, &list));
        out.push_str("<section>\n<h2>Plots (fixed loads and ramp)</h2>\n<div class=\"plots\">\n");
        let mut cpu = series("", &|s| s.server.cpu_percent_of_core);
        let mut generator = series(" run: generator", &|s| s.generator.cpu_percent_of_core);
        // The server's own colour, a thin line without markers.
        for g in &mut generator {
            g.markers = false;
        }
        cpu.append(&mut generator);
        html::figure(out, "Server CPU (% of its core) vs subscribers", plot("% of one core", cpu));
        html::figure(
            out,
            "Forwarded packets per CPU-second vs subscribers",
            plot("packets per CPU-second", series("", &|s| s.server.packets_per_cpu_second())),
        );
        html::figure(
            out,
            "Server CPU per forwarded Mbit/s",
            plot("% of a core per Mbit/s", series("", &|s| s.server.cpu_percent_per_mbit)),
        );
        let mut latency = series(" p50", &|s| s.totals.latency_ms.p50.unwrap_or(f64::NAN));
        let mut p99 = series(" p99", &|s| s.totals.latency_ms.p99.unwrap_or(f64::NAN));
        for p in &mut p99 {
            p.markers = false;
        }
        latency.append(&mut p99);
        html::figure(out, "Frame latency vs subscribers", plot("latency, ms", latency));
        html::figure(out, "Frame loss vs subscribers", plot("frame loss, %", series("", &|s| s.totals.frame_loss * 100.0)));
        out.push_str("</div>\n</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::four_step_report;

    fn comparison() -> Comparison {
        let tongxin = four_step_report();
        let mut janus = four_step_report();
        for s in &mut janus.steps {
            s.server.cpu_percent_of_core *= 4.0;
            s.server = crate::report::ServerFigures::new(
                s.server.pid,
                s.server.cpu_percent_of_core,
                s.server.rss_mib,
                s.server.forwarded_packets_per_s,
                s.server.forwarded_mbit_per_s,
            );
        }
        Comparison {
            tool_version: "0.1.0".into(),
            started_at_unix_ms: 0,
            setup: "each server alone in a namespace <veth>".into(),
            runs: vec![
                ServerRun { server: "Janus".into(), version: "Janus 1.1.2".into(), report: janus },
                ServerRun { server: "Tongxin".into(), version: "Tongxin 0.1.0".into(), report: tongxin },
            ],
        }
    }

    #[test]
    fn the_ratio_is_packets_per_cpu_second_of_tongxin_over_janus() {
        let c = comparison();
        assert_eq!(c.loads(), [10, 25, 50, 100]);
        for load in c.loads() {
            assert!((c.ratio(load) - 4.0).abs() < 1e-9, "four times the CPU for the same packets: {}", c.ratio(load));
        }
        let table = c.summary_table();
        assert_eq!(table.matches("forwarded packets per CPU-second: 4.00").count(), 4, "{table}");
        assert!(table.contains(" 100  Janus ") && table.lines().any(|l| l.starts_with(" 100  Tongxin") && l.ends_with("yes")));
    }

    #[test]
    fn the_page_puts_both_servers_on_every_plot() {
        let html = comparison().to_html();
        assert_eq!(html.matches("<svg").count(), 5, "{html}");
        assert!(html.contains("&lt;veth&gt;") && !html.contains("<veth>"), "escaped");
        assert_eq!(html.matches("<b>4.00</b>").count(), 4);
        assert_eq!(html.matches("(generator-bound)").count(), 2, "both runs' 100-subscriber rows");
        let back: Comparison = serde_json::from_str(&serde_json::to_string(&comparison()).unwrap()).unwrap();
        assert_eq!(back, comparison());
    }
}
