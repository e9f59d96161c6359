//! detcd's own history format: JSON Lines, a header line and then one operation per line.
//!
//! Written by the simulator and the jepsen-style suite, read by
//! `detcd-sim check --format json`. One operation per line (rather than one
//! JSON document) keeps files appendable and lets every error name a line.
//!
//! ```text
//! {"detcd_history":1,"model":"etcd","initial_revision":1}
//! {"client":0,"invoke_ns":1000,"complete_ns":5000,"outcome":"ok","input":{"f":"put","key":"a","value":"1"},"output":{"f":"put","header_revision":2}}
//! {"client":1,"invoke_ns":2000,"complete_ns":9000,"outcome":"indeterminate","input":{"f":"put","key":"a","value":"2"}}
//! {"client":2,"invoke_ns":2500,"complete_ns":3000,"outcome":"fail","input":{"f":"range","key":"a"}}
//! ```
//!
//! sim/README.md ("The JSON history format") is the reference for every
//! field and for each model's inputs and outputs; the serde types of the
//! models (`crate::model::*`) are its implementation.

use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ParseError, ParsedHistory};
use crate::history::{History, Operation, Outcome};
use crate::model::etcd::{Etcd, EtcdInput, EtcdOutput, FRESH_CLUSTER_REVISION};
use crate::model::kv::{Kv, KvInput, KvOutput};
use crate::model::register::{Register, RegisterInput, RegisterOutput};
use crate::model::Model;

/// Raised whenever a change would make old readers misread new files.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub detcd_history: u32,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_revision: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutcomeName {
    Ok,
    Fail,
    Indeterminate,
}

/// One operation line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<I, O> {
    client: u64,
    invoke_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete_ns: Option<u64>,
    outcome: OutcomeName,
    input: I,
    // A missing Option field reads as None without `default`, which would
    // make serde demand `O: Default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<O>,
}

/// A model whose histories can be stored in this format.
pub trait JsonModel:
    Model<Input: Serialize + DeserializeOwned, Output: Serialize + DeserializeOwned>
{
    fn header(&self) -> Header;
    fn input_function(input: &Self::Input) -> &'static str;
    /// The function `output` answers; None for an answer any request
    /// may get (the etcd model's refusals).
    fn output_function(output: &Self::Output) -> Option<&'static str>;
}

fn header_for(model: &str) -> Header {
    Header {
        detcd_history: FORMAT_VERSION,
        model: model.to_string(),
        initial_revision: None,
    }
}

impl JsonModel for Register {
    fn header(&self) -> Header {
        header_for(Self::NAME)
    }
    fn input_function(input: &RegisterInput) -> &'static str {
        input.function()
    }
    fn output_function(output: &RegisterOutput) -> Option<&'static str> {
        Some(output.function())
    }
}

impl JsonModel for Kv {
    fn header(&self) -> Header {
        header_for(Self::NAME)
    }
    fn input_function(input: &KvInput) -> &'static str {
        input.function()
    }
    fn output_function(output: &KvOutput) -> Option<&'static str> {
        Some(output.function())
    }
}

impl JsonModel for Etcd {
    fn header(&self) -> Header {
        Header {
            initial_revision: Some(self.initial_revision),
            ..header_for(Self::NAME)
        }
    }
    fn input_function(input: &EtcdInput) -> &'static str {
        input.function()
    }
    fn output_function(output: &EtcdOutput) -> Option<&'static str> {
        output.function()
    }
}

/// Writes `history` in this format.
pub fn write<M: JsonModel>(
    model: &M,
    history: &History<M::Input, M::Output>,
    mut out: impl io::Write,
) -> io::Result<()> {
    serde_json::to_writer(&mut out, &model.header())?;
    out.write_all(b"\n")?;
    for operation in &history.operations {
        let (outcome, output) = match &operation.outcome {
            Outcome::Ok(output) => (OutcomeName::Ok, Some(output)),
            Outcome::Fail => (OutcomeName::Fail, None),
            Outcome::Indeterminate => (OutcomeName::Indeterminate, None),
        };
        let record = Record {
            client: operation.client,
            invoke_ns: operation.invoke_ns,
            complete_ns: operation.complete_ns,
            outcome,
            input: &operation.input,
            output,
        };
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Parses a whole file: the header picks the model.
pub fn parse(text: &str) -> Result<ParsedHistory, ParseError> {
    let mut lines = numbered_lines(text);
    let Some((header_line, header_text)) = lines.next() else {
        return Err(ParseError::new(
            0,
            "empty file: expected a header line such as {\"detcd_history\":1,\"model\":\"kv\"}",
        ));
    };
    let header: Header = from_line(header_line, header_text)?;
    if header.detcd_history != FORMAT_VERSION {
        let message = format!(
            "unsupported detcd_history version {}; this build reads {FORMAT_VERSION}",
            header.detcd_history
        );
        return Err(ParseError::new(header_line, message));
    }
    if header.initial_revision.is_some() && header.model != Etcd::NAME {
        return Err(ParseError::new(
            header_line,
            "initial_revision applies only to the etcd model",
        ));
    }
    match header.model.as_str() {
        Register::NAME => parse_operations::<Register>(lines).map(ParsedHistory::Register),
        Kv::NAME => parse_operations::<Kv>(lines).map(ParsedHistory::Kv),
        Etcd::NAME => {
            let model = Etcd {
                initial_revision: header.initial_revision.unwrap_or(FRESH_CLUSTER_REVISION),
            };
            parse_operations::<Etcd>(lines).map(|history| ParsedHistory::Etcd(model, history))
        }
        other => Err(ParseError::new(
            header_line,
            format!("unknown model {other:?}: expected register, kv or etcd"),
        )),
    }
}

/// Non-blank lines with their 1-based numbers.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
}

fn from_line<T: DeserializeOwned>(line: usize, text: &str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|error| {
        // serde_json counts lines within the one line it was given: keep
        // only its column, and report the file's line instead.
        let mut message = error.to_string();
        if let Some(position) = message.rfind(" at line ") {
            message.truncate(position);
        }
        ParseError::new(line, format!("{message} (column {})", error.column()))
    })
}

fn parse_operations<'a, M: JsonModel>(
    lines: impl Iterator<Item = (usize, &'a str)>,
) -> Result<History<M::Input, M::Output>, ParseError> {
    let mut operations = Vec::new();
    for (line, text) in lines {
        let record: Record<M::Input, M::Output> = from_line(line, text)?;
        operations.push(operation_from_record::<M>(line, record)?);
    }
    Ok(History::new(operations))
}

fn operation_from_record<M: JsonModel>(
    line: usize,
    record: Record<M::Input, M::Output>,
) -> Result<Operation<M::Input, M::Output>, ParseError> {
    let error = |message: String| Err(ParseError::new(line, message));
    if let Some(complete_ns) = record.complete_ns {
        if complete_ns < record.invoke_ns {
            return error(format!(
                "complete_ns {complete_ns} is before invoke_ns {}",
                record.invoke_ns
            ));
        }
    }
    let outcome = match (record.outcome, record.output) {
        (OutcomeName::Ok, None) => return error("outcome ok needs an output".to_string()),
        (OutcomeName::Ok, Some(_)) if record.complete_ns.is_none() => {
            return error("outcome ok needs complete_ns".to_string())
        }
        (OutcomeName::Ok, Some(output)) => {
            let asked = M::input_function(&record.input);
            if let Some(answered) =
                M::output_function(&output).filter(|answered| *answered != asked)
            {
                return error(format!(
                    "a {answered:?} output cannot answer a {asked:?} input"
                ));
            }
            Outcome::Ok(output)
        }
        (OutcomeName::Fail | OutcomeName::Indeterminate, Some(_)) => {
            return error("only outcome ok may carry an output".to_string());
        }
        (OutcomeName::Fail, None) => Outcome::Fail,
        (OutcomeName::Indeterminate, None) => Outcome::Indeterminate,
    };
    Ok(Operation {
        client: record.client,
        invoke_ns: record.invoke_ns,
        complete_ns: record.complete_ns,
        input: record.input,
        outcome,
        source_line: Some(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_history() -> History<EtcdInput, EtcdOutput> {
        let put = EtcdInput::Put {
            key: "a".into(),
            value: "1".into(),
            prev_kv: false,
            ignore_value: false,
            lease: 0,
            ignore_lease: false,
        };
        let operation = |client, outcome| Operation {
            client,
            invoke_ns: 10,
            complete_ns: Some(20),
            input: put.clone(),
            outcome,
            source_line: None,
        };
        History::new(vec![
            operation(
                0,
                Outcome::Ok(EtcdOutput::Put {
                    header_revision: 2,
                    prev_kv: None,
                }),
            ),
            operation(1, Outcome::Indeterminate),
            operation(2, Outcome::Fail),
        ])
    }

    #[test]
    fn round_trips_through_text() {
        let model = Etcd {
            initial_revision: 7,
        };
        let history = etcd_history();
        let mut text = Vec::new();
        write(&model, &history, &mut text).expect("writing to memory");
        let text = String::from_utf8(text).expect("serde_json writes UTF-8");
        let ParsedHistory::Etcd(parsed_model, parsed) = parse(&text).expect("own output parses")
        else {
            panic!("the header names the etcd model");
        };
        assert_eq!(parsed_model.initial_revision, 7);
        let lines: Vec<_> = parsed
            .operations
            .iter()
            .map(|operation| operation.source_line)
            .collect();
        assert_eq!(lines, [Some(2), Some(3), Some(4)]);
        let without_lines: Vec<_> = parsed
            .operations
            .into_iter()
            .map(|operation| Operation {
                source_line: None,
                ..operation
            })
            .collect();
        assert_eq!(without_lines, history.operations);
    }

    #[test]
    fn rejects_inconsistent_records_with_their_line() {
        let header = r#"{"detcd_history":1,"model":"register"}"#;
        let cases = [
            r#"{"client":0,"invoke_ns":5,"complete_ns":4,"outcome":"fail","input":{"f":"read"}}"#,
            r#"{"client":0,"invoke_ns":5,"complete_ns":6,"outcome":"ok","input":{"f":"read"}}"#,
            r#"{"client":0,"invoke_ns":5,"complete_ns":6,"outcome":"ok","input":{"f":"read"},"output":{"f":"write"}}"#,
            r#"{"client":0,"invoke_ns":5,"outcome":"ok","input":{"f":"read"},"output":{"f":"read","value":1}}"#,
            r#"{"client":0,"invoke_ns":5,"outcome":"fail","input":{"f":"read"},"output":{"f":"read","value":1}}"#,
            r#"{"client":0,"invoke_ns":5,"outcome":"maybe","input":{"f":"read"}}"#,
            r#"{"client":0,"invoke_ns":5,"outcome":"fail","input":{"f":"read"},"extra":1}"#,
            r#"{"client":0,"invoke_ns":5,"outcome":"fail","input":{"f":"write","value":"x"}}"#,
            r#"{"client":0,"invoke_ns":5"#,
        ];
        for case in cases {
            let text = format!("{header}\n\n{case}\n");
            assert_eq!(parse(&text).map_err(|error| error.line), Err(3), "{case}");
        }
        assert_eq!(
            parse(r#"{"detcd_history":2,"model":"kv"}"#).map_err(|error| error.line),
            Err(1)
        );
        assert_eq!(
            parse(r#"{"detcd_history":1,"model":"queue"}"#).map_err(|error| error.line),
            Err(1)
        );
        assert!(parse("").is_err());
    }
}
