//! A self-contained HTML timeline of a history: one lane per client, failing operations highlighted.
//!
//! No external files, so it opens from a CI artifact or an e-mail; the only
//! script scrolls to the first operation that cannot be placed. Time is drawn by rank (every distinct instant one column): real
//! clocks have gaps of hours and bursts of nanoseconds, and only the order of
//! events matters for linearizability. Hovering an operation shows its full
//! description.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::OperationView;
use crate::check::{CheckReport, Verdict};

/// Horizontal pixels per distinct instant, at least: one character and a border.
const COLUMN_WIDTH_MIN_PX: usize = 12;
/// ... and at most, so that a sparse history is not stretched across screens.
const COLUMN_WIDTH_MAX_PX: usize = 120;
/// The width a typical (median) operation should get: room for a short
/// description such as `#12 write 3 -> ok`.
const TYPICAL_OPERATION_WIDTH_PX: usize = 130;
/// Vertical pixels per client lane.
const LANE_HEIGHT_PX: usize = 28;
/// Width of the client-name gutter.
const GUTTER_WIDTH_PX: usize = 90;

/// How a timeline draws one operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// In the longest order found for a failing partition, at this position.
    Linearized(usize),
    /// Cannot be placed after that order.
    Blocked,
    /// In a failing partition, neither of the above.
    Unplaced,
    /// In a partition that passed (or was left out as irrelevant).
    Other,
}

impl Role {
    fn class(self) -> &'static str {
        match self {
            Role::Linearized(_) => "linearized",
            Role::Blocked => "blocked",
            Role::Unplaced => "unplaced",
            Role::Other => "other",
        }
    }
}

fn roles(report: &CheckReport, operation_count: usize) -> Vec<Role> {
    let mut roles = vec![Role::Other; operation_count];
    for partition in report
        .partitions
        .iter()
        .filter(|partition| partition.verdict == Verdict::NotLinearizable)
    {
        for &operation in &partition.operations {
            roles[operation] = Role::Unplaced;
        }
        let Some(explanation) = &partition.explanation else {
            continue;
        };
        for (position, step) in explanation.prefix.iter().enumerate() {
            roles[step.operation] = Role::Linearized(position + 1);
        }
        for blocked in &explanation.blocked {
            roles[blocked.operation] = Role::Blocked;
        }
    }
    roles
}

/// Renders the whole page. `title` names the history file; `explanation` is
/// the text report, shown above the timeline.
pub fn render(
    title: &str,
    report: &CheckReport,
    views: &[OperationView],
    explanation: &str,
) -> String {
    let layout = Layout::new(views);
    let roles = roles(report, views.len());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n",
        escape(title)
    );
    page.push_str(STYLE);
    let summary = explanation.lines().next().unwrap_or_default();
    let _ = write!(
        page,
        "</head><body>\n<h1>{}</h1>\n<p>{}</p>\n",
        escape(title),
        escape(summary)
    );
    page.push_str(LEGEND);
    let width = GUTTER_WIDTH_PX + (layout.end_column + 2) * layout.column_width;
    let height = layout.lane.len() * LANE_HEIGHT_PX;
    let _ = writeln!(
        page,
        "<div class=\"timeline\" style=\"width:{width}px;height:{height}px\">"
    );
    for (&client, &index) in &layout.lane {
        let top = index * LANE_HEIGHT_PX;
        let _ = writeln!(page, "<div class=\"lane\" style=\"top:{top}px;width:{width}px\"><span>client {client}</span></div>");
    }
    for (index, view) in views.iter().enumerate() {
        let geometry = Geometry {
            span: layout.spans[index],
            lane: layout.lane[&view.client],
            column_width: layout.column_width,
        };
        render_operation(&mut page, index, view, roles[index], geometry);
    }
    // Closes the timeline and the scroll box the legend opened.
    page.push_str("</div></div>\n");
    let _ = writeln!(
        page,
        "<details open><summary>explanation</summary><pre>{}</pre></details>",
        escape(explanation)
    );
    page.push_str(SCROLL_TO_FIRST_BLOCKED);
    page.push_str("</body></html>\n");
    page
}

/// Where everything goes: a column per distinct instant, a lane per client.
struct Layout {
    /// Per operation: its first and last column.
    spans: Vec<(usize, usize)>,
    /// The column after the last instant, where unfinished operations end.
    end_column: usize,
    column_width: usize,
    lane: BTreeMap<u64, usize>,
}

impl Layout {
    fn new(views: &[OperationView]) -> Self {
        let instants: BTreeSet<u64> = views
            .iter()
            .flat_map(|view| [Some(view.invoke_ns), view.complete_ns])
            .flatten()
            .collect();
        let column: BTreeMap<u64, usize> = instants
            .iter()
            .enumerate()
            .map(|(rank, &time)| (time, rank))
            .collect();
        let end_column = instants.len();
        let spans: Vec<(usize, usize)> = views
            .iter()
            .map(|view| {
                let end = view.complete_ns.map_or(end_column, |time| column[&time]);
                (column[&view.invoke_ns], end)
            })
            .collect();
        let clients: BTreeSet<u64> = views.iter().map(|view| view.client).collect();
        let lane = clients
            .iter()
            .enumerate()
            .map(|(index, &client)| (client, index))
            .collect();
        let column_width = column_width_px(&spans);
        Layout {
            spans,
            end_column,
            column_width,
            lane,
        }
    }
}

/// Scales time so that the median operation is about
/// `TYPICAL_OPERATION_WIDTH_PX` wide, within the column limits.
fn column_width_px(spans: &[(usize, usize)]) -> usize {
    let mut lengths: Vec<usize> = spans
        .iter()
        .map(|&(start, end)| (end - start).max(1))
        .collect();
    lengths.sort_unstable();
    let median = lengths.get(lengths.len() / 2).copied().unwrap_or(1);
    TYPICAL_OPERATION_WIDTH_PX
        .div_ceil(median)
        .clamp(COLUMN_WIDTH_MIN_PX, COLUMN_WIDTH_MAX_PX)
}

/// Where one operation's box goes: its columns, its lane, the column width.
struct Geometry {
    span: (usize, usize),
    lane: usize,
    column_width: usize,
}

fn render_operation(
    page: &mut String,
    index: usize,
    view: &OperationView,
    role: Role,
    geometry: Geometry,
) {
    let Geometry {
        span: (start, end),
        lane,
        column_width,
    } = geometry;
    let left = GUTTER_WIDTH_PX + start * column_width;
    // A zero-length operation still needs a visible box.
    let width = ((end - start) * column_width).max(COLUMN_WIDTH_MIN_PX);
    let top = lane * LANE_HEIGHT_PX + 3;
    let order = match role {
        Role::Linearized(position) => format!("#{position} "),
        _ => String::new(),
    };
    let tooltip = format!(
        "{}\n{}\n{}{}",
        view.locator(index),
        view.description,
        match role {
            Role::Linearized(position) =>
                format!("position {position} in the longest linearizable order"),
            Role::Blocked => "cannot be placed after the longest linearizable order".to_string(),
            Role::Unplaced => "not placed in the longest linearizable order".to_string(),
            Role::Other => String::new(),
        },
        if view.outcome == "ok" {
            String::new()
        } else {
            format!("\noutcome: {}", view.outcome)
        }
    );
    let _ = writeln!(
        *page,
        "<div class=\"op {} {}\" style=\"left:{left}px;width:{width}px;top:{top}px\" title=\"{}\">{}{}</div>",
        role.class(),
        view.outcome,
        escape(&tooltip),
        escape(&order),
        escape(&view.description)
    );
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = r#"<style>
body { font-family: sans-serif; margin: 16px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
#focus:checked ~ .scroll .other { display: none; }
.scroll { overflow-x: auto; border: 1px solid #ccc; }
.timeline { position: relative; font-size: 11px; }
.lane { position: absolute; left: 0; height: 27px; border-bottom: 1px solid #eee; }
.lane span { position: sticky; left: 0; display: inline-block; width: 84px; padding: 6px 3px; background: #fff; font-weight: bold; z-index: 2; }
.op { position: absolute; height: 20px; line-height: 20px; padding: 0 3px; box-sizing: border-box; white-space: nowrap;
      overflow: hidden; text-overflow: ellipsis; border: 1px solid #777; border-radius: 3px; z-index: 1; }
.op:hover { overflow: visible; z-index: 3; background-clip: padding-box; }
.linearized { background: #cfeacc; border-color: #3a7d34; }
.blocked { background: #f4b4b4; border: 2px solid #c00; font-weight: bold; }
.unplaced { background: #fbe7a6; border-color: #b08900; }
.other { background: #e8eef6; border-color: #aab; color: #556; }
.indeterminate { border-style: dashed; }
.fail { opacity: 0.5; border-style: dotted; }
.legend span { display: inline-block; padding: 2px 6px; margin-right: 6px; border: 1px solid #777; border-radius: 3px; font-size: 12px; }
</style>
"#;

/// The one script: bring the first operation that cannot be placed into view.
const SCROLL_TO_FIRST_BLOCKED: &str = r#"<script>
const blocked = document.querySelector(".op.blocked");
const scroll = document.querySelector(".scroll");
if (blocked && scroll) { scroll.scrollLeft = blocked.offsetLeft - scroll.clientWidth / 2; }
</script>
"#;

const LEGEND: &str = r#"<input type="checkbox" id="focus"><label for="focus">show only the failing partitions</label>
<p class="legend"><span class="linearized">#n: in the longest linearizable order, at position n</span><span class="blocked">cannot be placed next</span><span class="unplaced">failing partition, not placed</span><span class="other">other partitions</span><span class="indeterminate">dashed: indeterminate</span><span class="fail">dotted: failed, no effect</span></p>
<div class="scroll">
"#;
