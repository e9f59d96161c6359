//! The `detcd-sim check` contract: exit codes, error messages with line numbers, HTML timelines.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::{scratch_dir, vectors_dir};

const EXIT_LINEARIZABLE: i32 = 0;
const EXIT_NOT_LINEARIZABLE: i32 = 1;
const EXIT_UNKNOWN: i32 = 2;
const EXIT_UNREADABLE: i32 = 64;

fn detcd_sim(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detcd-sim"))
        .args(arguments)
        .output()
        .expect("running detcd-sim")
}

fn check(format: &str, extra: &[&str], file: &Path) -> Output {
    let mut arguments = vec!["check", "--format", format];
    arguments.extend_from_slice(extra);
    arguments.push(file.to_str().expect("UTF-8 path"));
    detcd_sim(&arguments)
}

fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("detcd-sim exits normally, never by a signal")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn exit_code_follows_the_verdict_and_a_violation_writes_a_timeline() {
    let vectors = vectors_dir();
    let html_dir = scratch_dir("timeline");
    let html_flag = ["--html-dir", html_dir.to_str().expect("UTF-8 path")];

    let linearizable = check("porcupine-kv", &html_flag, &vectors.join("kv/c01-ok.txt"));
    assert_eq!(
        code(&linearizable),
        EXIT_LINEARIZABLE,
        "{}",
        stderr(&linearizable)
    );

    let violation = check("porcupine-kv", &html_flag, &vectors.join("kv/c01-bad.txt"));
    assert_eq!(
        code(&violation),
        EXIT_NOT_LINEARIZABLE,
        "{}",
        stderr(&violation)
    );
    let stdout = String::from_utf8_lossy(&violation.stdout);
    assert!(
        stdout.contains("longest linearizable order found"),
        "{stdout}"
    );
    let timeline = html_dir.join("c01-bad.txt.html");
    assert!(
        stdout.contains(&timeline.display().to_string()),
        "the timeline path is printed: {stdout}"
    );
    let page = fs::read_to_string(&timeline).expect("the timeline is written");
    assert!(
        page.contains("class=\"op blocked"),
        "the failing operation is highlighted"
    );

    // One step cannot decide a real history: unknown, never a pass.
    let unknown = check(
        "jepsen-log",
        &["--budget", "1"],
        &vectors.join("jepsen-etcd/etcd_002.log"),
    );
    assert_eq!(code(&unknown), EXIT_UNKNOWN, "{}", stderr(&unknown));
    let _ = fs::remove_dir_all(html_dir);
}

#[test]
fn several_files_exit_with_the_worst_status() {
    let vectors = vectors_dir();
    let html_dir = scratch_dir("several");
    let path = |name: &str| vectors.join(name).to_str().expect("UTF-8 path").to_string();
    let (ok, bad, missing) = (
        path("kv/c01-ok.txt"),
        path("kv/c01-bad.txt"),
        path("kv/no-such-file.txt"),
    );
    let run = |files: &[&str]| {
        let mut arguments = vec![
            "check",
            "--format",
            "porcupine-kv",
            "--html-dir",
            html_dir.to_str().expect("UTF-8 path"),
        ];
        arguments.extend_from_slice(files);
        code(&detcd_sim(&arguments))
    };
    assert_eq!(run(&[&ok, &missing]), EXIT_UNREADABLE);
    assert_eq!(run(&[&missing, &bad, &ok]), EXIT_NOT_LINEARIZABLE);
    let _ = fs::remove_dir_all(html_dir);
}

/// (format, file content with an error on line 3, extra text the message must contain).
const MALFORMED: &[(&str, &str, &str)] = &[
    ("jepsen-log", "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nnoise\nINFO  jepsen.util - 0\t:ok\t:read\tseven\n", "integer"),
    (
        "porcupine-kv",
        "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\n{:process 0, :type :ok, :f :get, :key \"1\" :value}\n",
        "column",
    ),
    ("json", "{\"detcd_history\":1,\"model\":\"kv\"}\n\n{\"client\":0,\"invoke_ns\":1,\"outcome\":\"ok\"}\n", "missing field"),
    ("json", "{\"detcd_history\":1,\"model\":\"kv\"}\n\n\u{1}\n", ""),
];

#[test]
fn malformed_input_exits_64_naming_file_and_line() {
    let directory = scratch_dir("malformed");
    for (index, (format, content, detail)) in MALFORMED.iter().enumerate() {
        let file = directory.join(format!("case{index}"));
        fs::write(&file, content).expect("writing a scratch file");
        let output = check(format, &[], &file);
        let message = stderr(&output);
        assert_eq!(code(&output), EXIT_UNREADABLE, "{format}: {message}");
        assert!(
            message.contains(&format!("{}:3:", file.display())),
            "{format}: file and line named: {message}"
        );
        assert!(message.contains(detail), "{format}: {message}");
        assert!(!message.contains("panicked"), "{format}: {message}");
    }
    let invalid_utf8 = directory.join("invalid-utf8");
    fs::write(
        &invalid_utf8,
        b"{\"detcd_history\":1,\"model\":\"kv\"}\n\xff\n",
    )
    .expect("writing a scratch file");
    let output = check("json", &[], &invalid_utf8);
    assert_eq!(code(&output), EXIT_UNREADABLE);
    assert!(
        stderr(&output).contains(":2: not valid UTF-8"),
        "{}",
        stderr(&output)
    );

    let missing = check("json", &[], &directory.join("missing"));
    assert_eq!(code(&missing), EXIT_UNREADABLE);
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );
    let _ = fs::remove_dir_all(directory);
}

#[test]
fn bad_arguments_exit_64_not_clap_default_2() {
    let output = detcd_sim(&["check", "--format", "edn", "x"]);
    assert_eq!(code(&output), EXIT_UNREADABLE, "{}", stderr(&output));
    let output = detcd_sim(&["check"]);
    assert_eq!(code(&output), EXIT_UNREADABLE, "{}", stderr(&output));
    assert_eq!(code(&detcd_sim(&["check", "--help"])), EXIT_LINEARIZABLE);
}
