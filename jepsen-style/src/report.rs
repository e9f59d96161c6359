//! What a run leaves behind and prints: availability and latency inside
//! and outside the fault windows, recovery after each fault, and an HTML
//! page with latency and throughput over time (each fault window shaded,
//! as in Jepsen's latency plots), drawn with plotters as inline SVG.

use std::fmt::Write as _;
use std::time::Duration;

use detcd_sim::history::{Operation, Outcome};
use plotters::prelude::*;

/// How an operation ended, as the report counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Ok,
    Failed,
    /// Timed out or lost: it may or may not have taken effect.
    Unknown,
}

/// One operation as the report sees it, whatever the workload.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub ended: Ended,
}

impl Sample {
    pub fn of<I, O>(operation: &Operation<I, O>) -> Sample {
        Sample {
            invoke_ns: operation.invoke_ns,
            complete_ns: operation.complete_ns,
            ended: match operation.outcome {
                Outcome::Ok(_) => Ended::Ok,
                Outcome::Fail => Ended::Failed,
                Outcome::Indeterminate => Ended::Unknown,
            },
        }
    }
}

/// A fault as it happened: when it started and healed, from the run's start.
#[derive(Clone, Debug)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
    pub what: String,
}

/// The numbers the run prints and `--target both` compares.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub operations: usize,
    pub ok: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Latency percentiles (p50, p99) of successful operations invoked
    /// inside a fault window, and outside one.
    pub during_faults: Option<(Duration, Duration)>,
    pub outside_faults: Option<(Duration, Duration)>,
    /// Per fault: from its heal to the first success of an operation
    /// invoked after the heal.
    pub recoveries: Vec<Option<Duration>>,
    /// Members that exited while their disk was full (and were restarted).
    pub exits_on_full_disk: usize,
}

impl Stats {
    pub fn of(operations: &[Sample], windows: &[Window]) -> Stats {
        let mut stats = Stats {
            operations: operations.len(),
            ..Stats::default()
        };
        let mut inside = Vec::new();
        let mut outside = Vec::new();
        for operation in operations {
            match operation.ended {
                Ended::Ok => stats.ok += 1,
                Ended::Failed => stats.failed += 1,
                Ended::Unknown => stats.indeterminate += 1,
            }
            let (Ended::Ok, Some(complete)) = (operation.ended, operation.complete_ns) else {
                continue;
            };
            let latency = Duration::from_nanos(complete - operation.invoke_ns);
            let invoked = Duration::from_nanos(operation.invoke_ns);
            if windows
                .iter()
                .any(|w| w.start <= invoked && invoked <= w.end)
            {
                inside.push(latency);
            } else {
                outside.push(latency);
            }
        }
        stats.during_faults = percentiles(&mut inside);
        stats.outside_faults = percentiles(&mut outside);
        stats.recoveries = windows
            .iter()
            .map(|window| {
                operations
                    .iter()
                    .filter(|op| op.ended == Ended::Ok)
                    .filter(|op| Duration::from_nanos(op.invoke_ns) >= window.end)
                    .filter_map(|op| op.complete_ns.map(Duration::from_nanos))
                    .min()
                    .map(|complete| complete - window.end)
            })
            .collect();
        stats
    }

    /// Successful operations as a share of all.
    pub fn availability(&self) -> f64 {
        if self.operations == 0 {
            0.0
        } else {
            self.ok as f64 / self.operations as f64
        }
    }

    /// The slowest recovery, if every fault saw one.
    pub fn worst_recovery(&self) -> Option<Duration> {
        self.recoveries
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .and_then(|all| all.into_iter().max())
    }
}

fn percentiles(latencies: &mut [Duration]) -> Option<(Duration, Duration)> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

pub fn millis(latency: Option<(Duration, Duration)>) -> String {
    match latency {
        Some((p50, p99)) => format!(
            "{:.1} / {:.1}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        ),
        None => "-".to_string(),
    }
}

/// Fonts the plots' labels may use, first found wins (Debian's
/// fonts-dejavu-core, then Liberation). Without one the plots have no text.
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the first font of `FONT_FILES` found as plotters'
/// "sans-serif", once per process.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for path in FONT_FILES {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return;
                }
            }
        }
    });
}

/// Where each fault window is shaded.
const FAULT_SHADE: RGBColor = RGBColor(255, 200, 120);
const PLOT_WIDTH: u32 = 1100;
const PLOT_HEIGHT: u32 = 360;

/// The latency scatter: one point per operation at its invocation, by
/// outcome (timeouts show as the request timeout).
fn latency_svg(operations: &[Sample], windows: &[Window], end: Duration) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let points: Vec<(f64, f64, Ended)> = operations
            .iter()
            .filter_map(|op| {
                let complete = op.complete_ns?;
                Some((
                    op.invoke_ns as f64 / 1e9,
                    ((complete - op.invoke_ns) as f64 / 1e6).max(0.01),
                    op.ended,
                ))
            })
            .collect();
        let top = points.iter().map(|p| p.1).fold(10.0, f64::max) * 1.5;
        let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(
                "latency (ms, log) by invocation time (s)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end.as_secs_f64(), (0.01..top).log_scale())
        else {
            return svg_error();
        };
        let _ = chart.configure_mesh().disable_mesh().draw();
        let _ = chart.draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start.as_secs_f64(), 0.01), (w.end.as_secs_f64(), top)],
                FAULT_SHADE.mix(0.35).filled(),
            )
        }));
        for (color, want) in [
            (GREEN, Ended::Ok),
            (RED, Ended::Failed),
            (BLUE, Ended::Unknown),
        ] {
            let _ = chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.2 == want)
                    .map(|p| Circle::new((p.0, p.1), 2, color.filled())),
            );
        }
        let _ = root.present();
    }
    svg
}

/// Completions per second, successful and not.
fn throughput_svg(operations: &[Sample], windows: &[Window], end: Duration) -> String {
    let seconds = end.as_secs() as usize + 1;
    let mut ok = vec![0u32; seconds];
    let mut bad = vec![0u32; seconds];
    for op in operations {
        let Some(complete) = op.complete_ns else {
            continue;
        };
        let second = ((complete / 1_000_000_000) as usize).min(seconds - 1);
        match op.ended {
            Ended::Ok => ok[second] += 1,
            Ended::Failed | Ended::Unknown => bad[second] += 1,
        }
    }
    let top = f64::from(ok.iter().chain(&bad).copied().max().unwrap_or(1).max(1)) * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(
                "completions per second: ok (green), failed or unknown (red)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end.as_secs_f64(), 0.0..top)
        else {
            return svg_error();
        };
        let _ = chart.configure_mesh().disable_mesh().draw();
        let _ = chart.draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start.as_secs_f64(), 0.0), (w.end.as_secs_f64(), top)],
                FAULT_SHADE.mix(0.35).filled(),
            )
        }));
        for (counts, color) in [(&ok, GREEN), (&bad, RED)] {
            let _ = chart.draw_series(LineSeries::new(
                counts
                    .iter()
                    .enumerate()
                    .map(|(second, &n)| (second as f64 + 0.5, f64::from(n))),
                color.stroke_width(2),
            ));
        }
        let _ = root.present();
    }
    svg
}

fn svg_error() -> String {
    "<p>(the plot could not be drawn)</p>".to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The run's page: what ran, the verdict, the numbers, both plots and the
/// fault windows.
pub struct Page<'a> {
    pub title: &'a str,
    pub verdict: &'a str,
    pub details: &'a [String],
    pub stats: &'a Stats,
    pub operations: &'a [Sample],
    pub windows: &'a [Window],
    pub end: Duration,
    /// A link to the checker's timeline of the violation, if there is one.
    pub timeline: Option<&'a str>,
}

impl Page<'_> {
    pub fn render(&self) -> String {
        register_font();
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\
             <style>body{{font-family:sans-serif;margin:20px}}td,th{{padding:2px 10px;text-align:left}}\
             .fault{{background:#ffe6c0}}</style></head><body>\n<h1>{0}</h1>\n<h2>{1}</h2>\n",
            escape(self.title),
            escape(self.verdict)
        );
        if let Some(timeline) = self.timeline {
            let _ = writeln!(
                html,
                "<p><a href=\"{0}\">the checker's timeline of the violation</a></p>",
                escape(timeline)
            );
        }
        html.push_str("<ul>\n");
        for line in self.details {
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        let stats = self.stats;
        let _ = writeln!(
            html,
            "<li>{} operations: {} ok, {} failed, {} unknown (availability {:.1}%)</li>\
             <li>latency p50 / p99 (ms): during faults {}, outside faults {}</li></ul>",
            stats.operations,
            stats.ok,
            stats.failed,
            stats.indeterminate,
            stats.availability() * 100.0,
            millis(stats.during_faults),
            millis(stats.outside_faults)
        );
        html.push_str(
            "<p>Points: green ok, red failed, blue unknown outcome. Shaded: fault windows.</p>\n",
        );
        html.push_str(&latency_svg(self.operations, self.windows, self.end));
        html.push('\n');
        html.push_str(&throughput_svg(self.operations, self.windows, self.end));
        html.push_str("\n<h3>Faults</h3>\n<table><tr><th>start (s)</th><th>healed (s)</th><th>fault</th><th>recovery (ms)</th></tr>\n");
        for (window, recovery) in self.windows.iter().zip(&stats.recoveries) {
            let _ = writeln!(
                html,
                "<tr class=\"fault\"><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
                window.start.as_secs_f64(),
                window.end.as_secs_f64(),
                escape(&window.what),
                recovery.map_or("none".to_string(), |r| format!(
                    "{:.0}",
                    r.as_secs_f64() * 1e3
                ))
            );
        }
        html.push_str("</table>\n</body></html>\n");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoke_ms: u64, latency_ms: u64, ok: bool) -> Sample {
        Sample {
            invoke_ns: invoke_ms * 1_000_000,
            complete_ns: Some((invoke_ms + latency_ms) * 1_000_000),
            ended: if ok { Ended::Ok } else { Ended::Failed },
        }
    }

    #[test]
    fn latency_splits_at_fault_windows_and_recovery_counts_from_the_heal() {
        let window = Window {
            start: Duration::from_millis(1000),
            end: Duration::from_millis(2000),
            what: "kill -9 m1".into(),
        };
        let operations = [
            op(100, 5, true),
            op(1500, 400, true),
            op(1600, 3000, false),
            op(2100, 50, true),
        ];
        let stats = Stats::of(&operations, std::slice::from_ref(&window));
        assert_eq!((stats.ok, stats.failed, stats.operations), (3, 1, 4));
        assert_eq!(
            stats.during_faults,
            Some((Duration::from_millis(400), Duration::from_millis(400)))
        );
        assert_eq!(stats.outside_faults.unwrap().1, Duration::from_millis(50));
        // The first operation invoked after the heal (at 2 s) took 50 ms,
        // and was invoked 100 ms after it.
        assert_eq!(stats.recoveries, vec![Some(Duration::from_millis(150))]);
        let page = Page {
            title: "t",
            verdict: "PASS",
            details: &[],
            stats: &stats,
            operations: &operations,
            windows: &[window],
            end: Duration::from_secs(3),
            timeline: None,
        }
        .render();
        assert!(page.contains("<svg") && page.contains("kill -9 m1"));
    }
}
