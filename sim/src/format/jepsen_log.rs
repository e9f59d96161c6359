//! Jepsen's etcd register logs: `INFO  jepsen.util - P\t:type\t:f\tvalue` lines.
//!
//! Lines without `jepsen.util - ` followed by a numeric process id are noise
//! (other loggers, the nemesis). Every other line must be an event, or the
//! file is rejected with its line number. Interpretation (see
//! shared/checker-vectors/README.md):
//! - `:invoke :read nil`, `:invoke :write V`, `:invoke :cas [FROM TO]`;
//! - `:ok :read V|nil`, `:ok :write V`, `:ok :cas [FROM TO]`;
//! - `:fail :cas [FROM TO]` is an informative answer: the value was not
//!   FROM, so it is an `Ok` outcome with `succeeded: false`;
//! - `:info …` and `:fail … :timed-out` are indeterminate, and so is an
//!   invocation never completed;
//! - any other `:fail` is a definite failure (Jepsen's meaning of `:fail`).

use super::event_log::EventLog;
use super::ParseError;
use crate::history::{History, Outcome};
use crate::model::register::{RegisterInput, RegisterOutput, Value};

const EVENT_MARKER: &str = "jepsen.util - ";
const TIMED_OUT: &str = ":timed-out";

pub fn parse(text: &str) -> Result<History<RegisterInput, RegisterOutput>, ParseError> {
    let mut log = EventLog::new();
    let mut events = 0;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let Some(event) = event_fields(line) else {
            continue;
        };
        events += 1;
        parse_event(&mut log, line_number, &event)?;
    }
    if events == 0 {
        return Err(ParseError::new(0, "no Jepsen events (`jepsen.util - P\\t:type\\t:f\\tvalue`) found: is this a jepsen-log file?"));
    }
    Ok(log.finish())
}

/// The whitespace-separated fields after the marker, if the line is a
/// client event: they start with a numeric process id.
fn event_fields(line: &str) -> Option<Vec<&str>> {
    let (_, rest) = line.split_once(EVENT_MARKER)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let process = fields.first()?;
    process
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then_some(fields)
}

fn parse_event(
    log: &mut EventLog<RegisterInput, RegisterOutput>,
    line: usize,
    fields: &[&str],
) -> Result<(), ParseError> {
    let [process, kind, function, value @ ..] = fields else {
        return Err(ParseError::new(
            line,
            "expected `P\\t:type\\t:f\\tvalue` after `jepsen.util - `",
        ));
    };
    let client = process
        .parse()
        .map_err(|_| ParseError::new(line, format!("process id {process:?} is too large")))?;
    let value = value.join(" ");
    match *kind {
        ":invoke" => log.invoke(line, client, parse_input(line, function, &value)?),
        ":ok" | ":fail" | ":info" => {
            let input = log.in_flight_input(line, client)?;
            if input.function() != function.trim_start_matches(':') {
                let message = format!(
                    "client {client} completes {function} but its operation in flight is :{}",
                    input.function()
                );
                return Err(ParseError::new(line, message));
            }
            let outcome = parse_outcome(line, kind, input, &value)?;
            log.complete(line, client, outcome)
        }
        other => Err(ParseError::new(
            line,
            format!("unknown event type {other:?}: expected :invoke, :ok, :fail or :info"),
        )),
    }
}

fn parse_input(line: usize, function: &str, value: &str) -> Result<RegisterInput, ParseError> {
    match function {
        ":read" => Ok(RegisterInput::Read),
        ":write" => Ok(RegisterInput::Write {
            value: parse_value(line, value)?,
        }),
        ":cas" => {
            let (from, to) = parse_pair(line, value)?;
            Ok(RegisterInput::Cas { from, to })
        }
        other => Err(ParseError::new(
            line,
            format!("unknown function {other:?}: expected :read, :write or :cas"),
        )),
    }
}

fn parse_outcome(
    line: usize,
    kind: &str,
    input: &RegisterInput,
    value: &str,
) -> Result<Outcome<RegisterOutput>, ParseError> {
    match (kind, input) {
        (":info", _) => Ok(Outcome::Indeterminate),
        (":fail", _) if value == TIMED_OUT => Ok(Outcome::Indeterminate),
        (":fail", RegisterInput::Cas { .. }) => {
            Ok(Outcome::Ok(RegisterOutput::Cas { succeeded: false }))
        }
        (":fail", _) => Ok(Outcome::Fail),
        (_, RegisterInput::Read) if value == "nil" => {
            Ok(Outcome::Ok(RegisterOutput::Read { value: None }))
        }
        (_, RegisterInput::Read) => Ok(Outcome::Ok(RegisterOutput::Read {
            value: Some(parse_value(line, value)?),
        })),
        (_, RegisterInput::Write { .. }) => Ok(Outcome::Ok(RegisterOutput::Write)),
        (_, RegisterInput::Cas { .. }) => Ok(Outcome::Ok(RegisterOutput::Cas { succeeded: true })),
    }
}

fn parse_value(line: usize, text: &str) -> Result<Value, ParseError> {
    text.parse()
        .map_err(|_| ParseError::new(line, format!("expected an integer value, found {text:?}")))
}

/// `[FROM TO]`.
fn parse_pair(line: usize, text: &str) -> Result<(Value, Value), ParseError> {
    let inner = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'));
    let values: Option<Vec<&str>> = inner.map(|inner| inner.split_whitespace().collect());
    match values.as_deref() {
        Some([from, to]) => Ok((parse_value(line, from)?, parse_value(line, to)?)),
        _ => Err(ParseError::new(
            line,
            format!("expected [FROM TO], found {text:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "INFO  jepsen.util - ";

    fn log(lines: &[&str]) -> String {
        lines.iter().map(|line| format!("{HEAD}{line}\n")).collect()
    }

    #[test]
    fn pairs_events_and_classifies_outcomes() {
        let text = log(&[
            "0\t:invoke\t:write\t1",
            "1\t:invoke\t:cas\t[1 2]",
            "2\t:invoke\t:read\tnil",
            "0\t:info\t:write\t:timed-out",
            "1\t:fail\t:cas\t[1 2]",
            "2\t:fail\t:read\t:timed-out",
            "3\t:invoke\t:read\tnil",
        ]);
        let history = parse(&text).expect("valid log");
        let outcomes: Vec<_> = history
            .operations
            .iter()
            .map(|operation| operation.outcome.clone())
            .collect();
        let failed_cas = Outcome::Ok(RegisterOutput::Cas { succeeded: false });
        assert_eq!(
            outcomes,
            [
                Outcome::Indeterminate,
                failed_cas,
                Outcome::Indeterminate,
                Outcome::Indeterminate
            ]
        );
        assert_eq!(history.operations[3].complete_ns, None);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            (log(&["0\t:invoke\t:write\tx"]), 1),
            (log(&["0\t:invoke\t:read\tnil", "0\t:ok\t:write\t1"]), 2),
            (log(&["0\t:ok\t:read\t1"]), 1),
            (format!("noise\n{}", log(&["0\t:invoke\t:cas\t[1]"])), 2),
            (
                log(&["0\t:invoke\t:read\tnil", "0\t:invoke\t:read\tnil"]),
                2,
            ),
        ];
        for (text, line) in cases {
            assert_eq!(
                parse(&text).map_err(|error| error.line),
                Err(line),
                "{text}"
            );
        }
        assert!(parse("no events here\n").is_err());
    }
}
