//! `detcd-sim check`: reads history files, checks them, explains violations and writes HTML timelines.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};

use detcd_sim::check::{Budget, CheckReport, Verdict, DEFAULT_STEPS_PER_PARTITION};
use detcd_sim::format::{self, Format, ParseError};
use detcd_sim::report::{self, OperationView};

use super::{EXIT_LINEARIZABLE, EXIT_NOT_LINEARIZABLE, EXIT_UNKNOWN, EXIT_UNREADABLE};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// How the files are written: jepsen-log (Jepsen etcd register logs),
    /// porcupine-kv (porcupine's kv logs) or json (detcd's own history format).
    #[arg(long, value_enum, default_value_t = FormatArgument::Json)]
    format: FormatArgument,

    /// Search steps allowed per partition; when they run out the verdict is
    /// "unknown" (exit 2), never a pass.
    #[arg(long, value_name = "STEPS", default_value_t = DEFAULT_STEPS_PER_PARTITION)]
    budget: u64,

    /// Directory for the HTML timelines of violations (default: next to
    /// each history, as FILE.html).
    #[arg(long, value_name = "DIR")]
    html_dir: Option<PathBuf>,

    /// History files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArgument {
    JepsenLog,
    PorcupineKv,
    Json,
}

impl From<FormatArgument> for Format {
    fn from(argument: FormatArgument) -> Format {
        match argument {
            FormatArgument::JepsenLog => Format::JepsenLog,
            FormatArgument::PorcupineKv => Format::PorcupineKv,
            FormatArgument::Json => Format::Json,
        }
    }
}

/// What happened to one file, ordered by how much it matters: with several
/// files the greatest decides the exit code. A found violation outranks an
/// unreadable file because it is a definite answer about the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FileStatus {
    Linearizable,
    Unknown,
    Unreadable,
    NotLinearizable,
}

impl FileStatus {
    fn exit_code(self) -> u8 {
        match self {
            FileStatus::Linearizable => EXIT_LINEARIZABLE,
            FileStatus::Unknown => EXIT_UNKNOWN,
            FileStatus::Unreadable => EXIT_UNREADABLE,
            FileStatus::NotLinearizable => EXIT_NOT_LINEARIZABLE,
        }
    }
}

pub fn run(arguments: &CheckArgs) -> ExitCode {
    let budget = Budget {
        steps_per_partition: arguments.budget,
    };
    let worst = arguments
        .files
        .iter()
        .map(|path| check_file(arguments, budget, path))
        .max();
    ExitCode::from(worst.unwrap_or(FileStatus::Linearizable).exit_code())
}

fn check_file(arguments: &CheckArgs, budget: Budget, path: &Path) -> FileStatus {
    let format = Format::from(arguments.format);
    let parsed = match read_text(path).and_then(|text| format::parse(format, &text)) {
        Ok(parsed) => parsed,
        Err(error) => {
            let location = if error.line == 0 {
                String::new()
            } else {
                format!(":{}", error.line)
            };
            complain(&format!(
                "detcd-sim: {}{location}: {} (reading as {format})",
                path.display(),
                error.message
            ));
            return FileStatus::Unreadable;
        }
    };
    // Wall time is for the person reading; the verdict depends only on steps.
    let started = Instant::now();
    let report = parsed.check(budget);
    let views = parsed.operation_views();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let text = report::text::render(&report, &views, parsed.model_name());
    let peak = peak_memory_mib().map_or(String::new(), |mib| format!(", peak memory {mib} MiB"));
    say(&format!(
        "{} ({elapsed_ms:.1} ms{peak}): {text}",
        path.display()
    ));
    match report.verdict {
        Verdict::Linearizable => FileStatus::Linearizable,
        Verdict::Unknown => FileStatus::Unknown,
        Verdict::NotLinearizable => {
            write_timeline(arguments, path, &report, &views, &text);
            FileStatus::NotLinearizable
        }
    }
}

/// The process's peak resident memory so far (Linux's VmHWM), for the
/// person reading: with one file per run it is what checking it took.
fn peak_memory_mib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.div_ceil(1024))
}

/// Prints to stdout. A closed pipe (`| head`) is not worth a panic: the
/// exit code still carries the verdict.
fn say(text: &str) {
    let _ = io::stdout().write_all(text.as_bytes());
}

/// Prints a line to stderr, ignoring a closed stream like [`say`].
fn complain(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Reads a file as UTF-8, naming the line of the first invalid byte.
fn read_text(path: &Path) -> Result<String, ParseError> {
    let bytes = fs::read(path).map_err(|error| ParseError {
        line: 0,
        message: format!("cannot read: {error}"),
    })?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        ParseError {
            line,
            message: "not valid UTF-8".to_string(),
        }
    })
}

fn write_timeline(
    arguments: &CheckArgs,
    path: &Path,
    report: &CheckReport,
    views: &[OperationView],
    text: &str,
) {
    let mut name = path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_else(|| "history".into());
    name.push(".html");
    let target = match &arguments.html_dir {
        Some(directory) => directory.join(name),
        None => path.with_file_name(name),
    };
    let page = report::html::render(&path.display().to_string(), report, views, text);
    match fs::write(&target, page) {
        Ok(()) => say(&format!("  timeline: {}\n", target.display())),
        Err(error) => complain(&format!(
            "detcd-sim: could not write the timeline {}: {error} (try --html-dir)",
            target.display()
        )),
    }
}
