//! `detcd-sim`: detcd's simulator command line. Today: `check` recorded histories for linearizability.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "detcd-sim",
    version,
    about = "detcd's deterministic simulator and linearizability checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check recorded histories for linearizability.
    ///
    /// Exit code: 0 all linearizable, 1 some history is not linearizable,
    /// 2 some verdict is unknown (step budget exhausted), 64 unreadable
    /// input or bad arguments. With several files the worst wins, in the
    /// order 1, 64, 2, 0.
    Check(cli::check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap exits with 2 on usage errors, which would read as
            // "unknown verdict": map them to 64 like unreadable input.
            let code = if error.use_stderr() {
                cli::EXIT_UNREADABLE
            } else {
                cli::EXIT_LINEARIZABLE
            };
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check(arguments) => cli::check::run(&arguments),
    }
}
