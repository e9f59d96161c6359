//! detcd-sim's integration tests: one binary (STYLE.md: keeps link times down).

// Test scaffolding reads the vectors, writes scratch files and times the
// long schedules; clippy.toml's seams are about the code under test.
#![allow(clippy::disallowed_methods)]

mod cli;
mod oracle;
mod schedules;
mod support;
mod vectors;
