//! `detcd-sim`: detcd's simulator command line: `run` and `replay` seeds of the simulated cluster, `check` recorded histories.

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
    /// Run seeds of the simulated cluster under faults and check them.
    ///
    /// Exit code: 0 every seed passed, 1 a correctness violation, 2 a
    /// liveness failure, 3 a crash (panic) in the simulated cluster.
    Run(cli::run::RunArgs),
    /// Re-run one seed with every event printed; ends with its trace hash.
    Replay(cli::run::ReplayArgs),
    /// Write a synthetic kv history (porcupine's format) to stdout, as the
    /// checker benchmark in sim/checker-bench/ is made.
    Generate(cli::generate::GenerateArgs),
    /// The deliberate bugs `run --sabotage` can switch on.
    Sabotage(cli::run::SabotageArgs),
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
        Command::Run(arguments) => cli::run::run(&arguments),
        Command::Replay(arguments) => cli::run::replay(&arguments),
        Command::Generate(arguments) => cli::generate::run(&arguments),
        Command::Sabotage(arguments) => cli::run::sabotage(&arguments),
    }
}
