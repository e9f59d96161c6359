//! `detcd-sim run` and `replay`. In the normal build they re-run this
//! binary from a `--cfg madsim` build in target/sim (that is what makes
//! `cargo sim run` work without RUSTFLAGS); in the madsim build they run
//! the seeds.

use std::path::PathBuf;
#[cfg(not(madsim))]
use std::process::ExitCode;

use clap::Args;

use detcd_sim::options::Workload;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Members in the simulated cluster [default: drawn from the seed, 3 or 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: Option<u64>,
    /// Simulated seconds of the safety phase (faults on).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// [default: drawn from the seed, mixed most often]
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    /// Switch on a deliberate bug (see `detcd-sim sabotage --list`); the
    /// run must then fail.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(detcd_sim::options::SABOTAGES.map(|(name, _)| name)))]
    pub sabotage: Option<String>,
}

/// The member counts a seed draws from when `--nodes` is not given.
/// (The normal build only re-runs the madsim build, which draws.)
#[cfg_attr(not(madsim), allow(dead_code))]
const DRAWN_NODES: [u64; 3] = [3, 3, 5];
/// The workloads a seed draws from when `--workload` is not given: mixed
/// (leases and locks alongside) half the time.
#[cfg_attr(not(madsim), allow(dead_code))]
const DRAWN_WORKLOADS: [Workload; 11] = [
    Workload::Mixed,
    Workload::Mixed,
    Workload::Mixed,
    Workload::Mixed,
    Workload::Mixed,
    Workload::Register,
    Workload::Append,
    Workload::Lease,
    Workload::Lock,
    Workload::Auth,
    Workload::Etcd,
];

#[cfg_attr(not(madsim), allow(dead_code))]
impl SimArgs {
    /// The member count and workload of `seed`'s run: as given, or drawn
    /// from the seed alone (not from the run's own randomness, which they
    /// would shift), so `replay --seed N` alone is the whole run.
    pub fn resolve(&self, seed: u64) -> (u64, Workload) {
        let draw = |salt: u64, len: usize| {
            use std::hash::{Hash, Hasher};
            let mut hasher = rustc_hash::FxHasher::default();
            (seed, salt).hash(&mut hasher);
            (hasher.finish() % len as u64) as usize
        };
        let nodes = self
            .nodes
            .unwrap_or_else(|| DRAWN_NODES[draw(0x6e6f646573, DRAWN_NODES.len())]);
        let workload = self
            .workload
            .unwrap_or_else(|| DRAWN_WORKLOADS[draw(0x776f726b, DRAWN_WORKLOADS.len())]);
        (nodes, workload)
    }
}

#[derive(Args, Debug)]
pub struct SabotageArgs {
    /// List the deliberate bugs.
    #[arg(long, required = true)]
    pub list: bool,
}

/// `detcd-sim sabotage --list`.
pub fn sabotage(_: &SabotageArgs) -> std::process::ExitCode {
    for (name, description) in detcd_sim::options::SABOTAGES {
        println!("{name:<18} {description}");
    }
    std::process::ExitCode::SUCCESS
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run only this seed.
    #[arg(long, conflicts_with_all = ["seeds", "start_seed"])]
    pub seed: Option<u64>,
    /// How many seeds to run.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub start_seed: u64,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Stop at the first failing seed.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Stop at the first correctness violation; crashes and liveness
    /// failures are reported and the run goes on.
    #[arg(long, conflicts_with = "stop_on_failure")]
    pub stop_on_violation: bool,
    /// Run every seed twice and fail on any trace-hash difference.
    #[arg(long)]
    pub check_determinism: bool,
    /// Where failing runs leave their history, timeline and options.
    #[arg(long, default_value = "target/sim-failures")]
    pub failures_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[arg(long)]
    pub seed: u64,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[cfg(not(madsim))]
pub fn run(_: &RunArgs) -> ExitCode {
    reexec_in_simulation()
}

#[cfg(not(madsim))]
pub fn replay(_: &ReplayArgs) -> ExitCode {
    reexec_in_simulation()
}

/// Runs the same command from the madsim build of this binary.
#[cfg(not(madsim))]
fn reexec_in_simulation() -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("detcd-sim: building the simulation (--cfg madsim, target/sim) ...");
    let status = std::process::Command::new(cargo)
        .current_dir(&workspace)
        .env("RUSTFLAGS", "--cfg madsim")
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "detcd-sim",
            "--target-dir",
        ])
        .arg(workspace.join("target").join("sim"))
        .arg("--")
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(status) => ExitCode::from(status.code().unwrap_or(i32::from(super::EXIT_CRASH)) as u8),
        Err(error) => {
            eprintln!("detcd-sim: cannot run cargo for the simulation build: {error}");
            ExitCode::from(super::EXIT_CRASH)
        }
    }
}

#[cfg(madsim)]
pub use simulated::{replay, run};

#[cfg(madsim)]
mod simulated {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use detcd::sabotage::Sabotage;

    use super::{ReplayArgs, RunArgs, SimArgs};
    use crate::cli::{EXIT_CORRECTNESS, EXIT_CRASH, EXIT_LIVENESS, EXIT_PASS};
    use detcd_sim::check::{check, Budget};
    use detcd_sim::harness::options::RunOptions;
    use detcd_sim::harness::run::{self, Outcome, RunReport, CONVERGENCE_BOUND, LIVENESS_BOUND};
    use detcd_sim::model::kv::{Kv, KvInput, KvOutput};

    /// Simulated time beyond the phases before a run counts as hung.
    const TIME_LIMIT_SLACK: Duration = Duration::from_secs(120);

    enum SeedResult {
        Finished(RunReport),
        Crashed(String, Option<Interrupted>),
        /// An invariant broke, then the run panicked.
        Violated(String, Option<Interrupted>),
    }

    /// What a run that panicked had drawn and recorded.
    type Interrupted = (
        detcd_sim::harness::options::SwarmOptions,
        detcd_sim::history::History<KvInput, KvOutput>,
    );

    fn options(sim: &SimArgs, seed: u64) -> RunOptions {
        let sabotage = sim
            .sabotage
            .as_deref()
            .map(|name| Sabotage::parse(name).expect("clap checked the name"))
            .unwrap_or(Sabotage::None);
        let (nodes, workload) = sim.resolve(seed);
        RunOptions {
            nodes: nodes as usize,
            duration: Duration::from_secs(sim.duration),
            workload,
            sabotage,
        }
    }

    /// Stack of a seed's thread: madsim runs every simulated node on it.
    const SEED_STACK_BYTES: usize = 64 * 1024 * 1024;

    /// Runs one seed on a thread of its own. Thread-local state outlives a
    /// madsim runtime: std's per-thread HashMap keys (madsim seeds them
    /// only on a thread that made no map yet), tokio's select counter,
    /// rand's thread rng. Left over from earlier seeds, any of it can make
    /// a seed in a batch another run than the same seed alone, a failure
    /// `replay` could not reproduce. A fresh thread starts from the seed.
    fn run_seed(seed: u64, options: &RunOptions, echo: bool) -> SeedResult {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name(format!("seed-{seed}"))
                .stack_size(SEED_STACK_BYTES)
                .spawn_scoped(scope, || run_seed_on_this_thread(seed, options, echo))
                .expect("a thread for the seed")
                .join()
                .unwrap_or_else(|_| {
                    SeedResult::Crashed("the seed's thread panicked outside the run".into(), None)
                })
        })
    }

    fn run_seed_on_this_thread(seed: u64, options: &RunOptions, echo: bool) -> SeedResult {
        detcd::sabotage::set(options.sabotage);
        let mut runtime =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(
            options.duration + LIVENESS_BOUND + CONVERGENCE_BOUND + TIME_LIMIT_SLACK,
        );
        let result = catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(run::run(options, echo))
        }));
        let panic = match result {
            Ok(report) => return SeedResult::Finished(report),
            Err(panic) => panic,
        };
        let message = (panic.downcast_ref::<String>().cloned())
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        let interrupted = detcd_sim::harness::run::take_interrupted();
        match detcd_sim::harness::invariants::take_pending_violation() {
            Some(violation) => SeedResult::Violated(
                format!("{violation}; then a member panicked: {message}"),
                interrupted,
            ),
            None => SeedResult::Crashed(message, interrupted),
        }
    }

    fn replay_command(seed: u64, sim: &SimArgs) -> String {
        let sabotage = sim
            .sabotage
            .as_ref()
            .map(|name| format!(" --sabotage {name}"))
            .unwrap_or_default();
        let (nodes, workload) = sim.resolve(seed);
        format!(
            "cargo sim replay --seed {seed} --nodes {nodes} --duration {} --workload {}{sabotage}",
            sim.duration,
            clap::ValueEnum::to_possible_value(&workload)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        )
    }

    pub fn run(arguments: &RunArgs) -> ExitCode {
        let seeds: Vec<u64> = match arguments.seed {
            Some(seed) => vec![seed],
            None => (arguments.start_seed..arguments.start_seed + arguments.seeds).collect(),
        };
        let wall = Instant::now();
        let (mut passed, mut failed, mut unknown, mut simulated) =
            (0u64, 0u64, 0u64, Duration::ZERO);
        let mut exit = EXIT_PASS;
        let mut first_failure = None;
        for (done, &seed) in seeds.iter().enumerate() {
            let options = options(&arguments.sim, seed);
            let (code, line) = judge_seed(seed, arguments, &options, &mut simulated);
            if code == EXIT_PASS && line.starts_with("UNKNOWN") {
                unknown += 1;
            } else if code == EXIT_PASS {
                passed += 1;
            } else {
                failed += 1;
                exit = worse(exit, code);
            }
            println!(
                "[{}/{}] seed {seed}: {line} ({failed} failed so far)",
                done + 1,
                seeds.len()
            );
            if code != EXIT_PASS {
                println!("  replay: {}", replay_command(seed, &arguments.sim));
                // The reproduce line names the first of the most serious.
                if first_failure.is_none_or(|(worst, _)| worse(worst, code) != worst) {
                    first_failure = Some((code, seed));
                }
                let violation = code == EXIT_CORRECTNESS;
                if arguments.stop_on_failure || (arguments.stop_on_violation && violation) {
                    break;
                }
            }
        }
        let wall = wall.elapsed();
        let unknown = if unknown > 0 {
            format!(", {unknown} unknown (checker budget; histories saved)")
        } else {
            String::new()
        };
        println!(
            "seeds: {passed} passed, {failed} failed{unknown}; simulated {:.1} s in {:.1} s wall ({:.0}x)",
            simulated.as_secs_f64(),
            wall.as_secs_f64(),
            simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
        );
        // A failing run ends with the command that reproduces it.
        if let Some((_, seed)) = first_failure {
            println!(
                "reproduce the first failure: {}",
                replay_command(seed, &arguments.sim)
            );
        }
        ExitCode::from(exit)
    }

    /// Correctness beats crash beats liveness: the most serious wins.
    fn worse(current: u8, new: u8) -> u8 {
        let rank = |code: u8| match code {
            EXIT_CORRECTNESS => 3,
            EXIT_CRASH => 2,
            EXIT_LIVENESS => 1,
            _ => 0,
        };
        if rank(new) > rank(current) {
            new
        } else {
            current
        }
    }

    fn judge_seed(
        seed: u64,
        arguments: &RunArgs,
        options: &RunOptions,
        simulated: &mut Duration,
    ) -> (u8, String) {
        let report = match run_seed(seed, options, false) {
            SeedResult::Crashed(message, interrupted) => {
                let saved = save_interrupted(&arguments.failures_dir, seed, interrupted);
                return (EXIT_CRASH, format!("CRASH: {message}; {saved}"));
            }
            SeedResult::Violated(message, interrupted) => {
                let saved = save_interrupted(&arguments.failures_dir, seed, interrupted);
                return (EXIT_CORRECTNESS, format!("VIOLATION: {message}; {saved}"));
            }
            SeedResult::Finished(report) => report,
        };
        *simulated += report.simulated;
        if arguments.check_determinism {
            match run_seed(seed, options, false) {
                SeedResult::Finished(again) if again.trace_hash == report.trace_hash => {}
                SeedResult::Finished(again) => {
                    return (
                        EXIT_CORRECTNESS,
                        format!(
                            "NONDETERMINISTIC: trace hash {:016x} then {:016x}",
                            report.trace_hash, again.trace_hash
                        ),
                    )
                }
                SeedResult::Crashed(message, _) | SeedResult::Violated(message, _) => {
                    return (EXIT_CRASH, format!("CRASH on the second run: {message}"))
                }
            }
        }
        let summary = format!(
            "{} members, {:?} workload, {} ops, {:.1} s simulated, trace {:016x}, {}",
            options.nodes,
            options.workload,
            report.history.len() + report.etcd.as_ref().map_or(0, |(etcd, _)| etcd.len()),
            report.simulated.as_secs_f64(),
            report.trace_hash,
            report.swarm
        );
        match &report.outcome {
            Outcome::Pass => (EXIT_PASS, format!("ok: {summary}")),
            Outcome::Unknown => {
                let saved = super::save_failure(
                    &arguments.failures_dir,
                    seed,
                    &report.swarm,
                    &report.history,
                    report.check.as_ref(),
                    report.etcd.as_ref(),
                );
                (
                    EXIT_PASS,
                    format!(
                        "UNKNOWN: the checker's step budget ran out; {summary}; saved in {saved}"
                    ),
                )
            }
            Outcome::Violation(message) => {
                let saved = super::save_failure(
                    &arguments.failures_dir,
                    seed,
                    &report.swarm,
                    &report.history,
                    report.check.as_ref(),
                    report.etcd.as_ref(),
                );
                (
                    EXIT_CORRECTNESS,
                    format!("VIOLATION: {message}; {summary}; saved in {saved}"),
                )
            }
            Outcome::Liveness(message) => {
                let saved = super::save_failure(
                    &arguments.failures_dir,
                    seed,
                    &report.swarm,
                    &report.history,
                    report.check.as_ref(),
                    report.etcd.as_ref(),
                );
                (
                    EXIT_LIVENESS,
                    format!("LIVENESS: {message}; {summary}; saved in {saved}"),
                )
            }
        }
    }

    /// Saves what a run that panicked had recorded; says where, for the
    /// progress line.
    fn save_interrupted(
        dir: &std::path::Path,
        seed: u64,
        interrupted: Option<Interrupted>,
    ) -> String {
        let Some((swarm, history)) = interrupted else {
            return "nothing recorded".into();
        };
        let report = check(&Kv, &history, Budget::default());
        let saved = super::save_failure(dir, seed, &swarm, &history, Some(&report), None);
        format!(
            "{} ops recorded before the panic, saved in {saved}",
            history.len()
        )
    }

    pub fn replay(arguments: &ReplayArgs) -> ExitCode {
        // The members' own logs too (RUST_LOG, default info), with virtual time.
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .try_init();
        let options = options(&arguments.sim, arguments.seed);
        match run_seed(arguments.seed, &options, true) {
            SeedResult::Crashed(message, _) => {
                println!("CRASH: {message}");
                ExitCode::from(EXIT_CRASH)
            }
            SeedResult::Violated(message, _) => {
                println!("VIOLATION: {message}");
                ExitCode::from(EXIT_CORRECTNESS)
            }
            SeedResult::Finished(report) => {
                let verdict = match &report.outcome {
                    Outcome::Pass => "pass".to_string(),
                    Outcome::Unknown => "unknown (the checker's step budget ran out)".to_string(),
                    Outcome::Violation(message) => format!("VIOLATION: {message}"),
                    Outcome::Liveness(message) => format!("LIVENESS: {message}"),
                };
                println!("swarm: {}", report.swarm);
                println!("result: {verdict}");
                println!("trace-hash: {:016x}", report.trace_hash);
                ExitCode::from(match report.outcome {
                    Outcome::Pass | Outcome::Unknown => EXIT_PASS,
                    Outcome::Violation(_) => EXIT_CORRECTNESS,
                    Outcome::Liveness(_) => EXIT_LIVENESS,
                })
            }
        }
    }
}

/// Writes a failing run's history (JSON), timeline (HTML) and options
/// under `dir/seed-N/`; returns the directory, or why it could not.
#[cfg(madsim)]
fn save_failure(
    dir: &std::path::Path,
    seed: u64,
    swarm: &detcd_sim::harness::options::SwarmOptions,
    history: &detcd_sim::history::History<
        detcd_sim::model::kv::KvInput,
        detcd_sim::model::kv::KvOutput,
    >,
    check: Option<&detcd_sim::check::CheckReport>,
    etcd: Option<&detcd_sim::harness::run::EtcdCheck>,
) -> String {
    use detcd_sim::model::kv::Kv;
    let target = dir.join(format!("seed-{seed}"));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&target)?;
        let mut json = Vec::new();
        detcd_sim::format::json::write(&Kv, history, &mut json)?;
        std::fs::write(target.join("history.json"), json)?;
        std::fs::write(target.join("swarm.txt"), format!("seed {seed}\n{swarm}\n"))?;
        if let Some(check) = check {
            let views = detcd_sim::report::operation_views(history);
            let text = detcd_sim::report::text::render(check, &views, "kv");
            std::fs::write(target.join("explanation.txt"), &text)?;
            std::fs::write(
                target.join("history.html"),
                detcd_sim::report::html::render("history.json", check, &views, &text),
            )?;
        }
        // The etcd workload's own history, checked with the etcd model.
        if let Some((history, check)) = etcd {
            let mut json = Vec::new();
            detcd_sim::format::json::write(
                &detcd_sim::model::etcd::Etcd::default(),
                history,
                &mut json,
            )?;
            std::fs::write(target.join("etcd-history.json"), json)?;
            let views = detcd_sim::report::operation_views(history);
            let text = detcd_sim::report::text::render(check, &views, "etcd");
            std::fs::write(target.join("etcd-explanation.txt"), &text)?;
            std::fs::write(
                target.join("etcd-history.html"),
                detcd_sim::report::html::render("etcd-history.json", check, &views, &text),
            )?;
        }
        Ok(())
    };
    match write() {
        Ok(()) => target.display().to_string(),
        Err(error) => format!("(not saved: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unset() -> SimArgs {
        SimArgs {
            nodes: None,
            duration: 10,
            workload: None,
            sabotage: None,
        }
    }

    #[test]
    fn a_seed_alone_decides_what_was_not_given() {
        let args = unset();
        assert_eq!(args.resolve(17), args.resolve(17));
        let drawn: std::collections::BTreeSet<(u64, String)> = (0..200)
            .map(|seed| {
                let (nodes, workload) = args.resolve(seed);
                (nodes, format!("{workload:?}"))
            })
            .collect();
        let nodes: std::collections::BTreeSet<u64> = drawn.iter().map(|(n, _)| *n).collect();
        assert_eq!(nodes, [3, 5].into());
        let workloads: std::collections::BTreeSet<&String> = drawn.iter().map(|(_, w)| w).collect();
        assert_eq!(workloads.len(), 7, "{workloads:?}");
        let given = SimArgs {
            nodes: Some(1),
            workload: Some(Workload::Lock),
            ..unset()
        };
        assert_eq!(given.resolve(17), (1, Workload::Lock));
    }
}
