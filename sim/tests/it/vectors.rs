//! Every external vector in shared/checker-vectors, and every checker-benchmark history, gets the verdict its verdicts.tsv records.
//!
//! Data-driven over the directory, not hand-copied: a new vector dropped in
//! is checked without touching this file, and a vector missing from its
//! verdicts.tsv (or a listed one missing on disk) fails the test.

use std::fs;
use std::path::{Path, PathBuf};

use detcd_sim::check::{Budget, Verdict};
use detcd_sim::format::{self, Format};
use detcd_sim::generate::{kv_history, Anomaly, KvSpec};

use crate::support::vectors_dir;

const VERDICTS_FILE: &str = "verdicts.tsv";

/// The format of a vector, from its extension.
fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "log" => Some(Format::JepsenLog),
        "txt" => Some(Format::PorcupineKv),
        "json" | "jsonl" => Some(Format::Json),
        _ => None,
    }
}

/// Directories below `root` (and `root` itself) holding a verdicts file.
fn vector_directories(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        if directory.join(VERDICTS_FILE).is_file() {
            found.push(directory.clone());
        }
        let entries = fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("listing {}: {error}", directory.display()));
        for entry in entries {
            let path = entry.expect("reading a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// (file name, linearizable) rows, header skipped.
fn read_verdicts(directory: &Path) -> Vec<(String, bool)> {
    let text = fs::read_to_string(directory.join(VERDICTS_FILE)).expect("reading verdicts.tsv");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("history\t"))
        .map(|line| {
            let (name, verdict) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("verdicts.tsv line without a tab: {line:?}"));
            let linearizable = match verdict.trim() {
                "true" => true,
                "false" => false,
                other => {
                    panic!("verdicts.tsv: {name}: verdict {other:?} is neither true nor false")
                }
            };
            (name.to_string(), linearizable)
        })
        .collect()
}

/// The checker's verdict on one file, or why it could not give one.
fn verdict_of(path: &Path) -> Result<Verdict, String> {
    let format =
        format_of(path).ok_or_else(|| "unknown extension: cannot tell its format".to_string())?;
    let text = fs::read_to_string(path).map_err(|error| format!("cannot read: {error}"))?;
    let parsed = format::parse(format, &text).map_err(|error| format!("parse error: {error}"))?;
    Ok(parsed.check(Budget::default()).verdict)
}

fn check_directory(directory: &Path, failures: &mut Vec<String>) -> usize {
    let verdicts = read_verdicts(directory);
    let listed: Vec<&str> = verdicts.iter().map(|(name, _)| name.as_str()).collect();
    for entry in fs::read_dir(directory).expect("listing a vector directory") {
        let path = entry.expect("reading a directory entry").path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_file() && format_of(&path).is_some() && !listed.contains(&name.as_str()) {
            failures.push(format!("{}: not listed in {VERDICTS_FILE}", path.display()));
        }
    }
    for (name, linearizable) in &verdicts {
        let path = directory.join(name);
        let expected = if *linearizable {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        match verdict_of(&path) {
            Ok(verdict) if verdict == expected => {}
            Ok(verdict) => failures.push(format!(
                "{}: expected {expected}, got {verdict}",
                path.display()
            )),
            Err(message) => failures.push(format!("{}: {message}", path.display())),
        }
    }
    verdicts.len()
}

#[test]
fn every_external_vector_gets_its_recorded_verdict() {
    let root = vectors_dir();
    // A missing directory must fail loudly: passing without checking
    // anything is the one outcome this test exists to prevent.
    assert!(
        root.is_dir(),
        "checker vectors not found at {} (set DETCD_CHECKER_VECTORS to their directory)",
        root.display()
    );
    let directories = vector_directories(&root);
    assert!(
        !directories.is_empty(),
        "no {VERDICTS_FILE} below {}",
        root.display()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for directory in &directories {
        checked += check_directory(directory, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "verdicts.tsv files list no vectors");
}

/// The checker benchmark's histories (sim/checker-bench): 50 clients on 10
/// keys, the shape of porcupine's hardest kv data. Each gets its recorded
/// verdict (never "unknown": the default budget must decide them), and each
/// is exactly what `detcd-sim generate` makes from the spec in its name, so
/// the benchmark can be regenerated and a change to the generator is seen.
#[test]
fn checker_benchmark_histories_get_their_verdicts_and_regenerate() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("checker-bench");
    let specs = [
        ("kv-c50-s4-ok.txt", 4, 0, None),
        ("kv-c50-s4-phantom.txt", 4, 0, Some(Anomaly::PhantomValue)),
        ("kv-c50-s12-stale.txt", 12, 0, Some(Anomaly::StaleRead)),
        ("kv-c50-s7-stalls-stale.txt", 7, 5, Some(Anomaly::StaleRead)),
    ];
    let listed: Vec<String> = read_verdicts(&directory)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let named: Vec<&str> = specs.iter().map(|(name, ..)| *name).collect();
    assert_eq!(
        listed, named,
        "verdicts.tsv and this test list different histories"
    );
    for (name, seed, stalls_per_mille, anomaly) in specs {
        let spec = KvSpec {
            seed,
            clients: 50,
            keys: 10,
            operations: 3000,
            stalls_per_mille,
            anomaly,
        };
        let shipped = fs::read_to_string(directory.join(name)).expect("reading a shipped history");
        let generated = kv_history(&spec).expect("room for the anomaly");
        assert!(
            generated == shipped,
            "{name} is not what {spec:?} generates"
        );
    }
    let mut failures = Vec::new();
    check_directory(&directory, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
