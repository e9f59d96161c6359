//! `detcd-sim generate`: writes a synthetic kv history for the checker benchmark to stdout.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use detcd_sim::generate::{kv_history, Anomaly, KvSpec};

use super::{EXIT_LINEARIZABLE, EXIT_UNREADABLE};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent clients, each with one operation at a time.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    keys: usize,
    #[arg(long, default_value_t = 3000)]
    operations: usize,
    /// Operations in a thousand that stall for 0.1 to 1 s.
    #[arg(long, default_value_t = 0)]
    stalls_per_mille: u32,
    /// Plant one impossible read, making the history not linearizable.
    #[arg(long, value_enum)]
    anomaly: Option<AnomalyArgument>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AnomalyArgument {
    StaleRead,
    PhantomValue,
}

pub fn run(arguments: &GenerateArgs) -> ExitCode {
    if arguments.clients == 0 || arguments.keys == 0 {
        eprintln!("error: --clients and --keys must be at least 1");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    let spec = KvSpec {
        seed: arguments.seed,
        clients: arguments.clients,
        keys: arguments.keys,
        operations: arguments.operations,
        stalls_per_mille: arguments.stalls_per_mille,
        anomaly: arguments.anomaly.map(|anomaly| match anomaly {
            AnomalyArgument::StaleRead => Anomaly::StaleRead,
            AnomalyArgument::PhantomValue => Anomaly::PhantomValue,
        }),
    };
    let text = match kv_history(&spec) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    if let Err(error) = io::stdout().lock().write_all(text.as_bytes()) {
        eprintln!("error: writing the history: {error}");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    ExitCode::from(EXIT_LINEARIZABLE)
}
