//! Reading (and for our own format, writing) history files.
//!
//! Three formats, each tied to a model:
//! - `jepsen-log`: Jepsen's etcd register logs ([`jepsen_log`]), register model;
//! - `porcupine-kv`: porcupine's EDN-like kv logs ([`porcupine_kv`]), kv model;
//! - `json`: detcd's own JSON Lines history ([`json`]), any model, named in
//!   its header line.
//!
//! Every parse error names the 1-based line it was found on.

mod edn;
mod event_log;
pub mod jepsen_log;
pub mod json;
pub mod porcupine_kv;

use std::fmt;

use crate::check::{self, Budget, CheckReport};
use crate::history::History;
use crate::model::etcd::{Etcd, EtcdInput, EtcdOutput};
use crate::model::kv::Kv;
use crate::model::kv::{KvInput, KvOutput};
use crate::model::register::Register;
use crate::model::register::{RegisterInput, RegisterOutput};
use crate::model::Model;
use crate::report::{self, OperationView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JepsenLog,
    PorcupineKv,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::JepsenLog, Format::PorcupineKv, Format::Json];

    pub fn name(self) -> &'static str {
        match self {
            Format::JepsenLog => "jepsen-log",
            Format::PorcupineKv => "porcupine-kv",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Input that is not a well-formed history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// A parsed history together with the model it is to be checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedHistory {
    Register(History<RegisterInput, RegisterOutput>),
    Kv(History<KvInput, KvOutput>),
    Etcd(Etcd, History<EtcdInput, EtcdOutput>),
}

impl ParsedHistory {
    pub fn model_name(&self) -> &'static str {
        match self {
            ParsedHistory::Register(_) => Register::NAME,
            ParsedHistory::Kv(_) => Kv::NAME,
            ParsedHistory::Etcd(..) => Etcd::NAME,
        }
    }

    /// Checks the history against its model.
    pub fn check(&self, budget: Budget) -> CheckReport {
        match self {
            ParsedHistory::Register(history) => check::check(&Register, history, budget),
            ParsedHistory::Kv(history) => check::check(&Kv, history, budget),
            ParsedHistory::Etcd(model, history) => check::check(model, history, budget),
        }
    }

    /// The history as reports draw it.
    pub fn operation_views(&self) -> Vec<OperationView> {
        match self {
            ParsedHistory::Register(history) => report::operation_views(history),
            ParsedHistory::Kv(history) => report::operation_views(history),
            ParsedHistory::Etcd(_, history) => report::operation_views(history),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ParsedHistory::Register(history) => history.len(),
            ParsedHistory::Kv(history) => history.len(),
            ParsedHistory::Etcd(_, history) => history.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses `text` as a history in `format`.
pub fn parse(format: Format, text: &str) -> Result<ParsedHistory, ParseError> {
    match format {
        Format::JepsenLog => jepsen_log::parse(text).map(ParsedHistory::Register),
        Format::PorcupineKv => porcupine_kv::parse(text).map(ParsedHistory::Kv),
        Format::Json => json::parse(text),
    }
}
