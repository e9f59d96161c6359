//! The readable explanation of a verdict, printed by `detcd-sim check`.

use std::fmt::Write;

use super::OperationView;
use crate::check::{BlockReason, CheckReport, Explanation, PartitionReport, Verdict};

/// How many operations of the longest order to print: its end is where the
/// trouble is, and hundreds of lines would bury it. The HTML timeline and
/// the JSON history have the rest.
pub const PREFIX_LINES_SHOWN: usize = 12;

/// How many unplaceable operations to print per partition.
pub const BLOCKED_LINES_SHOWN: usize = 20;

/// How many failing partitions to explain in full. One explained violation
/// is what a person starts from; the rest are listed by key, and the
/// timeline shows them all.
pub const FAILING_PARTITIONS_SHOWN: usize = 3;

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// One line: the verdict with its size and effort.
pub fn summary(report: &CheckReport, model_name: &str, operation_count: usize) -> String {
    format!(
        "{}: model {model_name}, {} ({} ignored as irrelevant), {}, {}",
        report.verdict,
        plural(operation_count, "operation"),
        report.dropped_operations,
        plural(report.partitions.len(), "partition"),
        plural(
            usize::try_from(report.steps()).unwrap_or(usize::MAX),
            "search step"
        )
    )
}

/// The summary, then every partition that is not linearizable or unknown.
pub fn render(report: &CheckReport, views: &[OperationView], model_name: &str) -> String {
    let mut text = summary(report, model_name, views.len());
    text.push('\n');
    let linearizable = report
        .partitions
        .iter()
        .filter(|partition| partition.verdict == Verdict::Linearizable)
        .count();
    let undecided: Vec<&PartitionReport> = report
        .partitions
        .iter()
        .filter(|partition| partition.verdict != Verdict::Linearizable)
        .collect();
    for partition in undecided.iter().take(FAILING_PARTITIONS_SHOWN) {
        render_partition(&mut text, partition, views);
    }
    if undecided.len() > FAILING_PARTITIONS_SHOWN {
        let rest: Vec<String> = undecided[FAILING_PARTITIONS_SHOWN..]
            .iter()
            .map(|partition| format!("{} ({})", partition_name(partition), partition.verdict))
            .collect();
        let _ = writeln!(
            text,
            "  not shown, {}: {}",
            plural(rest.len(), "more partition"),
            rest.join(", ")
        );
    }
    if linearizable > 0 && linearizable < report.partitions.len() {
        let verb = if linearizable == 1 { "is" } else { "are" };
        let _ = writeln!(
            text,
            "  the other {} {verb} linearizable",
            plural(linearizable, "partition")
        );
    }
    text
}

fn partition_name(partition: &PartitionReport) -> String {
    match &partition.key {
        Some(key) => format!("partition key {key:?}"),
        None => "the history".to_string(),
    }
}

fn render_partition(text: &mut String, partition: &PartitionReport, views: &[OperationView]) {
    let _ = writeln!(
        text,
        "  {}: {} ({}, {})",
        partition_name(partition),
        partition.verdict,
        plural(partition.operations.len(), "operation"),
        plural(
            usize::try_from(partition.steps).unwrap_or(usize::MAX),
            "search step"
        )
    );
    if partition.verdict == Verdict::Unknown {
        let _ = writeln!(text, "    the search gave up: raise --budget to decide it");
    }
    if let Some(explanation) = &partition.explanation {
        render_explanation(text, explanation, partition.operations.len(), views);
    }
}

fn render_explanation(
    text: &mut String,
    explanation: &Explanation,
    partition_len: usize,
    views: &[OperationView],
) {
    let prefix = &explanation.prefix;
    let shown_from = prefix.len().saturating_sub(PREFIX_LINES_SHOWN);
    let _ = writeln!(
        text,
        "    longest linearizable order found: {} of {partition_len} operations",
        prefix.len()
    );
    if shown_from > 0 {
        let _ = writeln!(text, "      ... {shown_from} earlier operations ...");
    }
    for (position, step) in prefix.iter().enumerate().skip(shown_from) {
        let view = &views[step.operation];
        let _ = writeln!(
            text,
            "      {:>4}. {}  {}",
            position + 1,
            view.locator(step.operation),
            view.description
        );
        // Most operations are reads: repeat the state only when it moved.
        let previous = position
            .checked_sub(1)
            .filter(|&previous| previous >= shown_from)
            .map(|previous| &prefix[previous].state_after);
        if previous != Some(&step.state_after) {
            let _ = writeln!(text, "            state after: {}", step.state_after);
        }
    }
    let _ = writeln!(
        text,
        "    after it the state is {}, and none of these can take effect next:",
        explanation.state_after_prefix
    );
    for blocked in explanation.blocked.iter().take(BLOCKED_LINES_SHOWN) {
        let view = &views[blocked.operation];
        let reason = match &blocked.reason {
            BlockReason::WrongOutput { expected } => {
                format!("impossible here: it would have returned {expected}")
            }
            BlockReason::DeadEnd => {
                "possible here, but every order continuing from it fails".to_string()
            }
        };
        let _ = writeln!(
            text,
            "      {}  {}\n            {reason}",
            view.locator(blocked.operation),
            view.description
        );
    }
    if explanation.blocked.len() > BLOCKED_LINES_SHOWN {
        let _ = writeln!(
            text,
            "      ... and {} more",
            explanation.blocked.len() - BLOCKED_LINES_SHOWN
        );
    }
    let first = &views[explanation.first_completion];
    let _ = writeln!(
        text,
        "    {} completes before any order can place it",
        first.locator(explanation.first_completion)
    );
}
