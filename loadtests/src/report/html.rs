//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, fonts or links to
//! fetch) that reads on a phone and prints. Every string taken from the report is escaped.
//!
//! Plots are drawn by plotters into an in-memory SVG string. Without its `ttf` feature plotters
//! measures text with a crude estimate and the SVG backend writes plain `<text>` elements, so
//! no system font is loaded and the browser picks the font.

// Writing to a `String` cannot fail, so the `fmt::Result`s of `write!` below are ignored.
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{GENERATOR_BOUND_CPU_PERCENT, Percentiles, Report, StepReport};

/// Size of every plot in SVG user units; CSS scales it to the page width.
const PLOT_SIZE: (u32, u32) = (640, 400);

/// Font sizes in plotters units (the SVG gets size / 1.24 px), large enough to read when a
/// plot is scaled down to a phone's width.
const LABEL_FONT: (&str, u32) = ("sans-serif", 22);

// Okabe–Ito colours: distinguishable with colour-vision deficiencies and in greyscale print.
pub(super) const BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
pub(super) const ORANGE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
pub(super) const VERMILION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
pub(super) const GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
pub(super) const GREY: RGBColor = RGBColor(0x99, 0x99, 0x99);

pub(super) const STYLE: &str = "\
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:62rem;padding:1rem;line-height:1.45;color:#1a1a1a;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}
h2{font-size:1.2rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:0 0 .3rem}
.verdict{font-size:1.3rem;font-weight:700;padding:.6rem .8rem;margin:.4rem 0;border-left:.45rem solid}
.verdict.ok{background:#e8f5e9;border-color:#2e7d32}
.verdict.fail{background:#fdecea;border-color:#c62828}
.verdict.bound{background:#fff4e5;border-color:#e69f00}
dl.scenario{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.6rem 0}
dl.scenario dt{color:#555}
dl.scenario dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.9rem}
th,td{padding:.3rem .55rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f4f4f4;vertical-align:bottom}
.text{text-align:left;white-space:normal}
tr.bound td{background:#fff4e5}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(24rem,1fr));gap:1.2rem}
figure{margin:0;break-inside:avoid}
figure svg{display:block;width:100%;height:auto}
.nodata{color:#666;font-style:italic;border:1px dashed #bbb;padding:1.5rem;text-align:center}
footer{margin-top:2rem;color:#666;font-size:.85rem}
@media print{body{max-width:none;padding:0}.scroll{overflow:visible}.plots{display:block}figure{margin-bottom:1rem}}
";

/// The whole page.
pub(super) fn render(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = escape(&report.scenario.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Tongxin load report: {title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n"
    );
    headline(&mut out, report);
    steps_table(&mut out, &report.steps);
    plots(&mut out, &report.steps);
    last_step_subscribers(&mut out, report.steps.last());
    let _ = write!(
        out,
        "<footer>tongxin-load {} · started {}</footer>\n</body>\n</html>\n",
        escape(&report.tool_version),
        utc_datetime(report.started_at_unix_ms)
    );
    out
}

fn headline(out: &mut String, report: &Report) {
    let scenario = &report.scenario;
    let verdict = &report.verdict;
    let _ = writeln!(out, "<header>\n<h1>Load report: {}</h1>", escape(&scenario.name));
    if let Some(n) = verdict.generator_bound_at {
        // The generator ran out of CPU: the figures say nothing about the server from there on.
        let _ = writeln!(
            out,
            "<p class=\"verdict bound\">Generator-bound at {n} subscribers</p>\n\
             <p>From that step on the load generator used more than {GENERATOR_BOUND_CPU_PERCENT:.0} % of a core, so \
             the figures measure the generator, not the SFU. Run it on more cores or machines to load the server further. \
             Runner verdict: {}.</p>",
            if verdict.ok { "pass" } else { "fail" }
        );
    } else if verdict.ok {
        let _ = writeln!(out, "<p class=\"verdict ok\">Pass</p>");
    } else {
        let _ = writeln!(out, "<p class=\"verdict fail\">Fail</p>");
    }
    if !verdict.notes.is_empty() {
        out.push_str("<ul class=\"notes\">\n");
        for note in &verdict.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>\n");
    }

    let ramp = scenario.subscribers_per_room.iter().map(u32::to_string).collect::<Vec<_>>().join(" → ");
    let impairment = match &scenario.impairment {
        None => "none".to_owned(),
        Some(i) => format!(
            "{} loss, {} ms ± {} ms delay, {}, seed {}",
            percent(i.loss, 2),
            i.delay_ms,
            i.jitter_ms,
            i.cap_kbps.map_or_else(|| "no rate cap".to_owned(), |c| format!("capped at {c} kbit/s")),
            i.seed
        ),
    };
    let _ = writeln!(
        out,
        "<dl class=\"scenario\">\n\
         <dt>Rooms</dt><dd>{}</dd>\n\
         <dt>Publishers per room</dt><dd>{}</dd>\n\
         <dt>Subscribers per room</dt><dd>{}</dd>\n\
         <dt>Video</dt><dd>{} kbit/s{}</dd>\n\
         <dt>Each step</dt><dd>{} s</dd>\n\
         <dt>Join rate</dt><dd>{} per s</dd>\n\
         <dt>Impairment</dt><dd>{}</dd>\n\
         </dl>\n</header>",
        scenario.rooms,
        scenario.publishers_per_room,
        if ramp.is_empty() { "—".to_owned() } else { ramp },
        scenario.video_bitrate_kbps,
        if scenario.simulcast { ", simulcast" } else { "" },
        scenario.seconds_per_step,
        number(scenario.join_rate_per_s, 1),
        impairment
    );
}

fn steps_table(out: &mut String, steps: &[StepReport]) {
    out.push_str("<section>\n<h2>Fixed-load steps</h2>\n");
    if steps.is_empty() {
        out.push_str("<p class=\"nodata\">No step completed.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table>\n<thead><tr><th>Subscribers</th><th>Server CPU<br>% of a core</th>\
         <th>Forwarded<br>Mbit/s</th><th>CPU %<br>per Mbit/s</th><th>Latency p50<br>ms</th><th>Latency p99<br>ms</th>\
         <th>Frame loss</th><th>Freezes</th><th>Generator CPU<br>% of a core</th></tr></thead>\n<tbody>\n",
    );
    for step in steps {
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            if step.generator.bound { " class=\"bound\"" } else { "" },
            step.subscribers,
            number(step.server.cpu_percent_of_core, 1),
            number(step.server.forwarded_mbit_per_s, 2),
            number(step.server.cpu_percent_per_mbit, 2),
            optional(step.totals.latency_ms.p50, 1),
            optional(step.totals.latency_ms.p99, 1),
            percent(step.totals.frame_loss, 2),
            step.totals.freezes,
            number(step.generator.cpu_percent_of_core, 1),
            if step.generator.bound { " (bound)" } else { "" },
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn plots(out: &mut String, steps: &[StepReport]) {
    let subscribers = |s: &StepReport| f64::from(s.subscribers);
    let points = |f: &dyn Fn(&StepReport) -> Option<f64>| -> Vec<(f64, f64)> {
        steps.iter().filter_map(|s| Some((subscribers(s), f(s)?))).filter(|(_, y)| y.is_finite()).collect()
    };
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());

    out.push_str("<section>\n<h2>Plots</h2>\n<div class=\"plots\">\n");

    let server = points(&|s| finite(s.server.cpu_percent_of_core));
    let generator = points(&|s| finite(s.generator.cpu_percent_of_core));
    let cpu_plot = if server.is_empty() && generator.is_empty() {
        None
    } else {
        // The threshold line shows at a glance which steps are generator-bound.
        let x_max = steps.iter().map(subscribers).fold(0.0, f64::max);
        let threshold = vec![(0.0, GENERATOR_BOUND_CPU_PERCENT), (x_max, GENERATOR_BOUND_CPU_PERCENT)];
        Some(line_plot(
            "% of one core",
            &[
                Series { label: "server".to_owned(), color: BLUE, points: server, markers: true },
                Series { label: "load generator".to_owned(), color: ORANGE, points: generator, markers: true },
                Series { label: "generator-bound above".to_owned(), color: GREY, points: threshold, markers: false },
            ],
        ))
    };
    figure(out, "Server CPU vs subscribers", cpu_plot);

    let latency = |pick: fn(&Percentiles) -> Option<f64>| points(&|s| pick(&s.totals.latency_ms));
    let series = [
        Series { label: "p50".to_owned(), color: GREEN, points: latency(|p| p.p50), markers: true },
        Series { label: "p90".to_owned(), color: BLUE, points: latency(|p| p.p90), markers: true },
        Series { label: "p99".to_owned(), color: VERMILION, points: latency(|p| p.p99), markers: true },
    ];
    let latency_plot = series.iter().any(|s| !s.points.is_empty()).then(|| line_plot("latency, ms", &series));
    figure(out, "Frame latency vs subscribers", latency_plot);

    let loss = points(&|s| finite(s.totals.frame_loss * 100.0));
    let loss_plot = (!loss.is_empty())
        .then(|| line_plot("frame loss, %", &[Series { label: "frame loss".to_owned(), color: VERMILION, points: loss, markers: true }]));
    figure(out, "Frame loss vs subscribers", loss_plot);

    let join: Vec<f64> = steps.iter().flat_map(|s| &s.subscribers_detail).filter_map(|d| d.join_ms).filter(|v| v.is_finite()).collect();
    let join_plot = (!join.is_empty()).then(|| histogram("join time (token → first frame), ms", &join));
    figure(out, "Join time, all subscribers of all steps", join_plot);

    out.push_str("</div>\n</section>\n");
}

/// A plot with its heading, or a "no data" note instead of an empty or broken plot.
pub(super) fn figure(out: &mut String, title: &str, svg: Option<Result<String, String>>) {
    let _ = writeln!(out, "<figure>\n<h3>{}</h3>", escape(title));
    match svg {
        Some(Ok(svg)) => out.push_str(&svg),
        Some(Err(e)) => {
            let _ = writeln!(out, "<p class=\"nodata\">The plot could not be drawn: {}</p>", escape(&e));
        }
        None => out.push_str("<p class=\"nodata\">No data</p>\n"),
    }
    out.push_str("</figure>\n");
}

pub(super) struct Series {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) points: Vec<(f64, f64)>,
    /// Draws a dot at each point, so a single step still shows.
    pub(super) markers: bool,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws `draw` on a fresh white SVG canvas and returns the `<svg>` element.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(Into::into).and_then(|()| draw(&root)).and_then(|()| root.present().map_err(Into::into));
        drawn.map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Upper end of an axis from 0 that leaves headroom above `max`, never an empty range.
fn axis_end(max: f64) -> f64 {
    if max > 0.0 { max * 1.12 } else { 1.0 }
}

/// Lines over subscribers on the x axis, both axes from 0.
pub(super) fn line_plot(y_desc: &str, series: &[Series]) -> Result<String, String> {
    let all = || series.iter().flat_map(|s| &s.points);
    let x_end = axis_end(all().map(|p| p.0).fold(0.0, f64::max));
    let y_end = axis_end(all().map(|p| p.1).fold(0.0, f64::max));
    svg(|root| {
        let mut chart =
            ChartBuilder::on(root).margin(12).x_label_area_size(60).y_label_area_size(76).build_cartesian_2d(0.0..x_end, 0.0..y_end)?;
        chart
            .configure_mesh()
            .x_desc("subscribers")
            .y_desc(y_desc)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| short_number(*v))
            .light_line_style(WHITE)
            .label_style(LABEL_FONT)
            .draw()?;
        for s in series.iter().filter(|s| !s.points.is_empty()) {
            let color = s.color;
            let line_width = if s.markers { 2 } else { 1 };
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(line_width)))?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            if s.markers {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .label_font(LABEL_FONT)
            .draw()?;
        Ok(())
    })
}

/// A histogram of `samples` (all finite, at least one).
fn histogram(x_desc: &str, samples: &[f64]) -> Result<String, String> {
    let bins = bin(samples);
    let x_start = bins.first().map_or(0.0, |b| b.0);
    let x_end = bins.last().map_or(1.0, |b| b.1);
    // Counts on an integer axis, so tick labels are whole subscribers.
    let most = bins.iter().map(|b| b.2).max().unwrap_or(0);
    let y_end = u32::try_from(most + most / 8 + 1).unwrap_or(u32::MAX);
    svg(|root| {
        let mut chart =
            ChartBuilder::on(root).margin(12).x_label_area_size(60).y_label_area_size(76).build_cartesian_2d(x_start..x_end, 0..y_end)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("subscribers")
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| short_number(*v))
            .light_line_style(WHITE)
            .label_style(LABEL_FONT)
            .draw()?;
        chart.draw_series(
            bins.iter()
                .filter(|b| b.2 > 0)
                .map(|&(lo, hi, n)| Rectangle::new([(lo, 0), (hi, u32::try_from(n).unwrap_or(u32::MAX))], BLUE.mix(0.75).filled())),
        )?;
        Ok(())
    })
}

/// Equal-width bins `(from, to, count)` covering `samples`, about √n of them (5 to 30).
fn bin(samples: &[f64]) -> Vec<(f64, f64, usize)> {
    let lo = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    let count = ((samples.len() as f64).sqrt().ceil() as usize).clamp(5, 30);
    // Identical samples still get a visible bar 1 ms wide.
    let (lo, width) = if hi - lo < 1e-9 { (lo - 0.5, 1.0 / count as f64) } else { (lo, (hi - lo) / count as f64) };
    let mut bins: Vec<(f64, f64, usize)> = (0..count).map(|i| (lo + width * i as f64, lo + width * (i + 1) as f64, 0)).collect();
    for &s in samples {
        // The maximum falls on the last bin's closed upper edge.
        let i = (((s - lo) / width) as usize).min(count - 1);
        bins[i].2 += 1;
    }
    bins
}

fn last_step_subscribers(out: &mut String, step: Option<&StepReport>) {
    let Some(step) = step else { return };
    let _ = writeln!(
        out,
        "<section>\n<h2>Subscribers at the last step</h2>\n<details>\n<summary>Per-subscriber figures, {} subscribers</summary>",
        step.subscribers
    );
    if step.subscribers_detail.is_empty() {
        out.push_str("<p class=\"nodata\">No per-subscriber figures.</p>\n</details>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table>\n<thead><tr><th>#</th><th class=\"text\">Room</th><th>Join<br>ms</th><th>Received<br>kbit/s</th>\
         <th>Frames<br>received</th><th>Frames<br>expected</th><th>Frame loss</th><th>Packet loss</th><th>Jitter<br>ms</th>\
         <th>Freezes</th><th>Longest freeze<br>ms</th><th>Latency p50<br>ms</th><th>p90</th><th>p99</th><th>max</th><th class=\"text\">Error</th></tr></thead>\n<tbody>\n",
    );
    for s in &step.subscribers_detail {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            s.index,
            escape(&s.room),
            optional(s.join_ms, 0),
            number(s.received_kbps, 0),
            s.frames_received,
            s.frames_expected,
            percent(s.frame_loss, 2),
            percent(s.packet_loss, 2),
            number(s.jitter_ms, 1),
            s.freezes,
            number(s.longest_freeze_ms, 0),
            optional(s.latency_ms.p50, 1),
            optional(s.latency_ms.p90, 1),
            optional(s.latency_ms.p99, 1),
            optional(s.latency_ms.max, 1),
            s.error.as_deref().map(escape).unwrap_or_default(),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</details>\n</section>\n");
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` with `decimals` digits, or a dash when it was not measured.
pub(super) fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() { format!("{value:.decimals$}") } else { "—".to_owned() }
}

pub(super) fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| number(v, decimals))
}

/// A 0..1 ratio as a percentage.
pub(super) fn percent(ratio: f64, decimals: usize) -> String {
    if ratio.is_finite() { format!("{:.decimals$} %", ratio * 100.0) } else { "—".to_owned() }
}

/// Axis labels: no trailing zeros, at most two decimals.
fn short_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `unix_ms` as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian, Howard Hinnant's civil_from_days).
pub(super) fn utc_datetime(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{four_step_report, single_empty_step_report};

    /// Every `http://` or `https://` in the page: only the SVG namespace may appear.
    fn urls(html: &str) -> Vec<&str> {
        html.match_indices("http").map(|(i, _)| html[i..].split(['"', ' ', '<', ')']).next().unwrap_or_default()).collect()
    }

    #[test]
    fn four_steps_give_a_table_row_each_and_four_plots() {
        let html = four_step_report().to_html();
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert_eq!(html.matches("</svg>").count(), 4);
        assert!(!html.contains("No data"));
        // Subscribers, server CPU (3 + 0.6 n) and generator CPU of each step, in order.
        let rows = ["<td>10</td><td>9.0</td>", "<td>25</td><td>18.0</td>", "<td>50</td><td>33.0</td>", "<td>100</td><td>63.0</td>"];
        let positions: Vec<usize> = rows.iter().map(|r| html.find(r).unwrap_or_else(|| panic!("row {r} missing"))).collect();
        assert!(positions.is_sorted(), "rows out of order: {positions:?}");
        assert!(html.contains("<tr class=\"bound\"><td>100</td>"));
        assert!(html.contains("<td>92.5 (bound)</td>"));
        assert_eq!(html.matches("<tr class=\"bound\">").count(), 1);
        // The collapsed per-subscriber table covers the last step only.
        let details = &html[html.find("<details>").expect("per-subscriber section")..];
        assert_eq!(details.matches("<td class=\"text\">room-").count(), 100);
    }

    #[test]
    fn generator_bound_run_says_so_instead_of_failing_the_server() {
        let html = four_step_report().to_html();
        assert!(html.contains("<p class=\"verdict bound\">Generator-bound at 100 subscribers</p>"), "{html}");
        assert!(!html.contains("verdict fail"));

        let mut report = four_step_report();
        report.verdict.generator_bound_at = None;
        report.verdict.ok = false;
        let html = report.to_html();
        assert!(!html.contains("Generator-bound at"));
        assert!(html.contains("<p class=\"verdict fail\">Fail</p>"));
    }

    #[test]
    fn page_fetches_nothing() {
        for report in [four_step_report(), single_empty_step_report()] {
            let html = report.to_html();
            for url in urls(&html) {
                assert_eq!(url, "http://www.w3.org/2000/svg", "external resource in the page");
            }
            for tag in ["<script", "<link", "<img", "<iframe", "@import", "url("] {
                assert!(!html.contains(tag), "{tag} in the page");
            }
        }
    }

    #[test]
    fn strings_from_the_data_are_escaped() {
        let html = single_empty_step_report().to_html();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"), "{html}");
        assert!(html.contains("ICE failed: &lt;timeout&gt; &amp; gave up"));
        assert!(html.contains("smoke &quot;one&quot; &lt;step&gt;"));
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn single_step_without_data_renders_notes_instead_of_plots() {
        let html = single_empty_step_report().to_html();
        // Nothing measured: CPU, latency, loss and join plots all say so.
        assert_eq!(html.matches("<svg").count(), 0);
        assert_eq!(html.matches("<p class=\"nodata\">No data</p>").count(), 4);
        assert!(html.contains("<p class=\"verdict fail\">Fail</p>"));
        assert!(html.contains("<td>1</td><td>—</td>"), "unmeasured CPU shows as a dash");
        assert!(html.contains("1970-01-01 00:00:00 UTC"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn single_step_with_data_still_plots_its_points() {
        let mut report = four_step_report();
        report.steps.truncate(1);
        report.verdict.generator_bound_at = None;
        let html = report.to_html();
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert!(html.matches("<circle").count() >= 5, "server, generator and three latency points");
    }

    #[test]
    fn histogram_bins_hold_every_sample() {
        let samples: Vec<f64> = (0..100).map(f64::from).collect();
        let bins = bin(&samples);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins.iter().map(|b| b.2).sum::<usize>(), 100);
        assert_eq!((bins[0].0, bins[9].1), (0.0, 99.0));

        let same = bin(&[250.0; 3]);
        assert_eq!(same.iter().map(|b| b.2).sum::<usize>(), 3);
        assert!(same.last().unwrap().1 > same[0].0, "identical samples still span a range");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_datetime(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_datetime(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_datetime(-1), "1969-12-31 23:59:59 UTC");
    }
}
