//! Turning a check result into something a person reads: a text summary and an HTML timeline.
//!
//! Reports work on [`OperationView`]s, a model-independent rendering of the
//! history, so one report serves every model.

pub mod html;
pub mod text;

use std::fmt;

use crate::history::{ClientId, History, Outcome};

/// One operation as reports show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationView {
    pub client: ClientId,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    /// `ok`, `fail` or `indeterminate`.
    pub outcome: &'static str,
    /// Input and result, e.g. `append "4" "x 0 1 y" -> ok`.
    pub description: String,
    pub source_line: Option<usize>,
}

pub fn operation_views<I: fmt::Display, O: fmt::Display>(
    history: &History<I, O>,
) -> Vec<OperationView> {
    history
        .operations
        .iter()
        .map(|operation| OperationView {
            client: operation.client,
            invoke_ns: operation.invoke_ns,
            complete_ns: operation.complete_ns,
            outcome: operation.outcome.label(),
            description: match &operation.outcome {
                Outcome::Ok(output) => format!("{} -> {output}", operation.input),
                Outcome::Fail => format!("{} -> failed (no effect)", operation.input),
                Outcome::Indeterminate => format!("{} -> ? (indeterminate)", operation.input),
            },
            source_line: operation.source_line,
        })
        .collect()
}

impl OperationView {
    /// `op 12 (line 25, client 3, t 25..31)`: enough to find it in the input.
    pub fn locator(&self, index: usize) -> String {
        let line = self
            .source_line
            .map(|line| format!("line {line}, "))
            .unwrap_or_default();
        let complete = self
            .complete_ns
            .map(|time| time.to_string())
            .unwrap_or_else(|| "end".to_string());
        format!(
            "op {index} ({line}client {}, t {}..{complete})",
            self.client, self.invoke_ns
        )
    }
}
