//! porcupine's many-key kv logs: one EDN map per line, get / put / append on string keys.
//!
//! `{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}`.
//! Required keys: `:process` (integer), `:type` (`:invoke`, `:ok`, `:fail`,
//! `:info`), `:f` (`:get`, `:put`, `:append`), `:key` (string) and `:value`
//! (string or nil). Other keys (Jepsen adds `:time`, `:index`) are ignored.
//! Blank lines are skipped; every other line must be such a map. `:fail` is
//! a definite failure, `:info` and a missing completion are indeterminate.

use std::collections::BTreeMap;

use super::edn::{parse_map, EdnValue};
use super::event_log::EventLog;
use super::ParseError;
use crate::history::{History, Outcome};
use crate::model::kv::{KvInput, KvOutput};

pub fn parse(text: &str) -> Result<History<KvInput, KvOutput>, ParseError> {
    let mut log = EventLog::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let map = parse_map(line).map_err(|message| ParseError::new(line_number, message))?;
        let event =
            Event::from_map(&map).map_err(|message| ParseError::new(line_number, message))?;
        apply_event(&mut log, line_number, event)?;
    }
    Ok(log.finish())
}

struct Event<'a> {
    client: u64,
    kind: &'a str,
    function: &'a str,
    key: &'a str,
    /// `None` for nil.
    value: Option<&'a str>,
}

impl<'a> Event<'a> {
    fn from_map(map: &'a BTreeMap<String, EdnValue>) -> Result<Self, String> {
        let field = |name: &str| map.get(name).ok_or_else(|| format!("missing :{name}"));
        let wrong = |name: &str, wanted: &str, found: &EdnValue| {
            format!(":{name} must be {wanted}, found {}", found.describe())
        };
        let client = match field("process")? {
            EdnValue::Integer(process) => u64::try_from(*process)
                .map_err(|_| format!(":process must not be negative, found {process}"))?,
            other => return Err(wrong("process", "an integer", other)),
        };
        let keyword = |name: &str| match field(name)? {
            EdnValue::Keyword(keyword) => Ok(keyword.as_str()),
            other => Err(wrong(name, "a keyword", other)),
        };
        let (kind, function) = (keyword("type")?, keyword("f")?);
        let key = match field("key")? {
            EdnValue::String(key) => key.as_str(),
            other => return Err(wrong("key", "a string", other)),
        };
        let value = match field("value")? {
            EdnValue::String(value) => Some(value.as_str()),
            EdnValue::Nil => None,
            other => return Err(wrong("value", "a string or nil", other)),
        };
        Ok(Event {
            client,
            kind,
            function,
            key,
            value,
        })
    }
}

fn apply_event(
    log: &mut EventLog<KvInput, KvOutput>,
    line: usize,
    event: Event<'_>,
) -> Result<(), ParseError> {
    let client = event.client;
    match event.kind {
        "invoke" => {
            let input = parse_input(&event).map_err(|message| ParseError::new(line, message))?;
            log.invoke(line, client, input)
        }
        "ok" | "fail" | "info" => {
            let input = log.in_flight_input(line, client)?;
            if input.function() != event.function || input.key() != event.key {
                let message = format!(
                    "client {client} completes :{} on key {:?} but its operation in flight is :{} on key {:?}",
                    event.function,
                    event.key,
                    input.function(),
                    input.key()
                );
                return Err(ParseError::new(line, message));
            }
            let outcome = match event.kind {
                "fail" => Outcome::Fail,
                "info" => Outcome::Indeterminate,
                _ => Outcome::Ok(output(input, event.value)),
            };
            log.complete(line, client, outcome)
        }
        other => Err(ParseError::new(
            line,
            format!("unknown :type :{other}: expected :invoke, :ok, :fail or :info"),
        )),
    }
}

fn parse_input(event: &Event<'_>) -> Result<KvInput, String> {
    let key = event.key.to_string();
    let value = || {
        event
            .value
            .map(str::to_string)
            .ok_or_else(|| format!(":{} needs a string :value", event.function))
    };
    match event.function {
        "get" => Ok(KvInput::Get { key }),
        "put" => Ok(KvInput::Put {
            key,
            value: value()?,
        }),
        "append" => Ok(KvInput::Append {
            key,
            value: value()?,
        }),
        other => Err(format!(
            "unknown :f :{other}: expected :get, :put or :append"
        )),
    }
}

/// A get's answer is the value on the `:ok` line. nil reads as the empty
/// string, which is what an unwritten key holds in this model.
fn output(input: &KvInput, value: Option<&str>) -> KvOutput {
    match input {
        KvInput::Get { .. } => KvOutput::Get {
            value: value.unwrap_or_default().to_string(),
        },
        KvInput::Put { .. } => KvOutput::Put,
        KvInput::Append { .. } => KvOutput::Append,
        other => unreachable!("the porcupine format has no {} operation", other.function()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_invocations_and_results() {
        let text = r#"{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}
{:process 1, :type :invoke, :f :get, :key "4", :value nil}

{:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}
{:process 1, :type :ok, :f :get, :key "4", :value "x 0 1 y"}
"#;
        let history = parse(text).expect("valid log");
        assert_eq!(history.len(), 2);
        assert_eq!(
            history.operations[1].outcome,
            Outcome::Ok(KvOutput::Get {
                value: "x 0 1 y".into()
            })
        );
        assert_eq!(
            (
                history.operations[1].invoke_ns,
                history.operations[1].complete_ns
            ),
            (2, Some(5))
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let invoke = r#"{:process 0, :type :invoke, :f :get, :key "4", :value nil}"#;
        let cases = [
            format!("{invoke}\n{{:process 0, :type :ok, :f :get, :key \"4\"}}"),
            format!("{invoke}\n{{:process 0, :type :ok, :f :put, :key \"4\", :value \"a\"}}"),
            format!("{invoke}\n{{:process 0, :type :done, :f :get, :key \"4\", :value nil}}"),
            format!("{invoke}\n{{:process 0, :type :ok, :f :get, :key \"4\", :value \"a}}"),
            format!("{invoke}\nnot edn"),
        ];
        for text in cases {
            assert_eq!(parse(&text).map_err(|error| error.line), Err(2), "{text}");
        }
    }
}
