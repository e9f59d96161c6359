//! Pairs the invocation and completion events of Jepsen-style logs into operations.
//!
//! Both external formats log one line per event. A client has one operation
//! in flight at a time: its next completion event completes it. Operations
//! still in flight when the log ends are indeterminate. The line number
//! doubles as the time, since these logs carry no usable clock (porcupine
//! does the same).

use std::collections::BTreeMap;

use super::ParseError;
use crate::history::{ClientId, History, Operation, Outcome};

pub(crate) struct EventLog<I, O> {
    operations: Vec<Operation<I, O>>,
    /// Client → index of its operation in flight.
    in_flight: BTreeMap<ClientId, usize>,
}

impl<I, O> EventLog<I, O> {
    pub(crate) fn new() -> Self {
        EventLog {
            operations: Vec::new(),
            in_flight: BTreeMap::new(),
        }
    }

    pub(crate) fn invoke(
        &mut self,
        line: usize,
        client: ClientId,
        input: I,
    ) -> Result<(), ParseError> {
        if let Some(&pending) = self.in_flight.get(&client) {
            let since = self.operations[pending].source_line.unwrap_or(0);
            return Err(ParseError::new(
                line,
                format!("client {client} invokes an operation while its operation from line {since} is still in flight"),
            ));
        }
        self.in_flight.insert(client, self.operations.len());
        let time = line_time(line);
        let operation = Operation {
            client,
            invoke_ns: time,
            complete_ns: None,
            input,
            outcome: Outcome::Indeterminate,
            source_line: Some(line),
        };
        self.operations.push(operation);
        Ok(())
    }

    /// The input of `client`'s operation in flight, to interpret its completion.
    pub(crate) fn in_flight_input(&self, line: usize, client: ClientId) -> Result<&I, ParseError> {
        match self.in_flight.get(&client) {
            Some(&index) => Ok(&self.operations[index].input),
            None => Err(ParseError::new(
                line,
                format!("client {client} completes an operation it never invoked"),
            )),
        }
    }

    pub(crate) fn complete(
        &mut self,
        line: usize,
        client: ClientId,
        outcome: Outcome<O>,
    ) -> Result<(), ParseError> {
        let Some(index) = self.in_flight.remove(&client) else {
            return Err(ParseError::new(
                line,
                format!("client {client} completes an operation it never invoked"),
            ));
        };
        let operation = &mut self.operations[index];
        operation.complete_ns = Some(line_time(line));
        operation.outcome = outcome;
        Ok(())
    }

    /// Ends the log; what is still in flight stays indeterminate.
    pub(crate) fn finish(self) -> History<I, O> {
        History::new(self.operations)
    }
}

fn line_time(line: usize) -> u64 {
    u64::try_from(line).expect("line numbers fit in u64")
}
