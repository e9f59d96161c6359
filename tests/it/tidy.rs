//! Tidy tests, in the manner of rust-analyzer's: each rule ARCHITECTURE.md
//! calls enforced is checked here over the source tree, so breaking it
//! fails the normal test run instead of waiting for a reviewer.
//!
//! Each rule is a pure function from a file's path and text to its
//! violations, and each has a test that feeds it a violation, so a rule
//! that silently stopped matching would fail too.

use std::path::{Path, PathBuf};

/// Files that may opt out of a `clippy.toml` ban with `#[allow]`, and why.
/// The seam modules are the only ones in the core.
const DISALLOWED_ALLOWS: &[(&str, &str)] = &[
    ("src/clock.rs", "the time seam"),
    ("src/rng.rs", "the randomness seam"),
    ("src/storage/real_disk.rs", "the disk seam"),
    (
        "src/bin/detcd-bench.rs",
        "a tool: real processes, files and wall time",
    ),
    ("build.rs", "a build script writing into OUT_DIR"),
    (
        "launch/src/lib.rs",
        "the launcher: processes, signals, files and wall time",
    ),
    (
        "jepsen-style/src/main.rs",
        "a tool: real processes, namespaces, files and wall time",
    ),
    (
        "src/main.rs",
        "the binary: the log files --log-outputs names",
    ),
    (
        "sim/src/harness/mod.rs",
        "the harness judges members on the simulator's one global virtual clock",
    ),
    (
        "sim/src/cli/mod.rs",
        "the simulator's command line: failure files and wall time for people",
    ),
    ("authority-shim/src/tests.rs", "a measurement in a test"),
    ("tests/it/main.rs", "integration tests drive real processes"),
    (
        "sim/tests/it/main.rs",
        "integration tests drive real processes",
    ),
    (
        "sim/tests/scenarios.rs",
        "tests read virtual time for deadlines",
    ),
];

/// Where `HashMap`/`HashSet` may appear: only where nothing iterates them.
/// None today: the checker's cache is a hashbrown `HashTable` hashed with
/// its own fixed functions, so its order is the same in every process.
const HASH_COLLECTIONS_ALLOWED: &[&str] = &[];

/// The parts of `src/` that may know gRPC: the services, the peer
/// transport, the client, TLS (the connections under both), and the
/// generated code's module.
const GRPC_MODULES: &[&str] = &[
    "src/api/",
    "src/transport/",
    "src/client/",
    "src/tls/",
    "src/proto/",
    "src/bin/",
];

/// Who may import the simulator harness: itself, its command line and the
/// simulator's tests.
const HARNESS_IMPORTERS: &[&str] = &[
    "sim/src/harness/",
    "sim/src/cli/",
    "sim/src/lib.rs",
    "sim/tests/",
];

#[derive(Debug, PartialEq)]
struct Violation {
    path: String,
    line: usize,
    rule: &'static str,
}

/// Every `select!` starts with `biased;`: tokio picks unbiased branches
/// from a process-wide counter, which madsim's determinism check misses.
fn check_select_biased(path: &str, text: &str) -> Vec<Violation> {
    let code = strip_comments(text);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("select!") {
        let start = from + at;
        from = start + "select!".len();
        let rest = code[from..].trim_start();
        let Some(body) = rest.strip_prefix('{') else {
            continue;
        };
        if !body.trim_start().starts_with("biased;") {
            found.push(violation(path, &code, start, "select! without biased;"));
        }
    }
    found
}

/// Only the gRPC modules name tonic or a generated client or server.
fn check_grpc_confined(path: &str, text: &str) -> Vec<Violation> {
    if !path.starts_with("src/") || GRPC_MODULES.iter().any(|m| path.starts_with(m)) {
        return Vec::new();
    }
    let code = strip_comments(text);
    let mut found = Vec::new();
    for (offset, word) in words(&code) {
        if word == "tonic" || word.ends_with("_client") || word.ends_with("_server") {
            found.push(violation(
                path,
                &code,
                offset,
                "gRPC outside api/transport/client",
            ));
        }
    }
    found
}

/// No hash collections outside the allowed files: their iteration order
/// is seeded per process.
fn check_no_hash_collections(path: &str, text: &str) -> Vec<Violation> {
    let core = path.starts_with("src/") || path.starts_with("sim/src/");
    if !core || HASH_COLLECTIONS_ALLOWED.contains(&path) {
        return Vec::new();
    }
    let code = strip_comments(text);
    words(&code)
        .filter(|(_, word)| matches!(*word, "HashMap" | "HashSet" | "hash_map" | "hash_set"))
        .map(|(offset, _)| violation(path, &code, offset, "hash collection in the core"))
        .collect()
}

/// Only the listed files opt out of the clippy.toml bans.
fn check_disallowed_allows(path: &str, text: &str) -> Vec<Violation> {
    if DISALLOWED_ALLOWS
        .iter()
        .any(|(allowed, _)| *allowed == path)
    {
        return Vec::new();
    }
    let code = strip_comments(text);
    let mut found = Vec::new();
    for needle in ["clippy::disallowed_methods", "clippy::disallowed_types"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(needle) {
            found.push(violation(
                path,
                &code,
                from + at,
                "#[allow] of a clippy.toml ban",
            ));
            from += at + needle.len();
        }
    }
    found
}

/// Nothing outside the simulator's own layers imports its harness, and
/// the server crate (src/, its tests) never depends on the simulator; the
/// jepsen-style tool may use its checker and workload.
fn check_harness_imports(path: &str, text: &str) -> Vec<Violation> {
    let code = strip_comments(text);
    let mut found = Vec::new();
    let allowed = HARNESS_IMPORTERS.iter().any(|m| path.starts_with(m));
    for (offset, word) in words(&code) {
        let in_server = word == "detcd_sim"
            && (path.starts_with("src/") || path.starts_with("tests/") || path == "build.rs");
        let harness = word == "harness"
            && !allowed
            && (path.starts_with("sim/") || path.starts_with("jepsen-style/"));
        if in_server || harness {
            found.push(violation(
                path,
                &code,
                offset,
                "import of the simulator harness",
            ));
        }
    }
    found
}

/// Servers are started in one place, the launcher (`detcd_launch`), which
/// the benchmark, the integration tests and jepsen-style use and the
/// server's core never does.
fn check_launcher_confined(path: &str, text: &str) -> Vec<Violation> {
    let code = strip_comments(text);
    let mut found = Vec::new();
    let user = path == "src/bin/detcd-bench.rs"
        || path.starts_with("tests/")
        || path.starts_with("jepsen-style/")
        || path.starts_with("launch/");
    for (offset, word) in words(&code) {
        if word == "detcd_launch" && !user {
            found.push(violation(
                path,
                &code,
                offset,
                "the launcher outside its users",
            ));
        }
    }
    found
}

/// The integration tests log their phases through `phase!`, which
/// installs the subscriber first: a bare `tracing::info!` before any
/// server started would be lost.
fn check_phase_logs(path: &str, text: &str) -> Vec<Violation> {
    if !path.starts_with("tests/it/") || ["tests/it/main.rs", "tests/it/tidy.rs"].contains(&path) {
        return Vec::new();
    }
    let code = strip_comments(text);
    code.match_indices("tracing::info!")
        .map(|(offset, _)| violation(path, &code, offset, "a phase log outside phase!"))
        .collect()
}

/// The module of a file under `root` (`src/`, `sim/src/harness/`) that the
/// layering rule covers: its first path segment. Tests, entry points and
/// the crate root are not layers.
fn layer_of(path: &str, root: &str) -> Option<String> {
    let rest = path.strip_prefix(root)?;
    let name = rest.split('/').next()?.trim_end_matches(".rs");
    let file = rest.rsplit('/').next()?;
    let excluded = ["lib", "main", "bin", "mod"].contains(&name)
        || file == "tests.rs"
        || file.ends_with("_tests.rs")
        || file == "proptests.rs";
    (!excluded).then(|| name.to_string())
}

/// The layers a file's code names through `prefix` (`crate::`,
/// `super::`), its inline `#[cfg(test)]` module left out.
fn layers_named(text: &str, prefix: &str) -> Vec<String> {
    let code = strip_comments(text);
    let code = match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => &code[..at],
        None => &code[..],
    };
    let mut named = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at + prefix.len();
        let name: String = code[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            named.push(name);
        }
        from = start;
    }
    named
}

/// A cycle in the graph of layers (`from -> to` edges), if there is one.
fn find_cycle(
    edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The layer graph of the files under `root`, as named through `prefix`.
fn layer_graph(
    sources: &[(String, String)],
    root: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let layers: std::collections::BTreeSet<String> = sources
        .iter()
        .filter_map(|(path, _)| layer_of(path, root))
        .collect();
    for (path, text) in sources {
        let Some(layer) = layer_of(path, root) else {
            continue;
        };
        // Inside a module directory `super::` names the module itself.
        let nested = path[root.len()..].contains('/');
        if prefix == "super::" && nested {
            continue;
        }
        for named in layers_named(text, prefix) {
            if named != layer && layers.contains(&named) {
                edges.entry(layer.clone()).or_default().insert(named);
            }
        }
    }
    edges
}

fn violation(path: &str, code: &str, offset: usize, rule: &'static str) -> Violation {
    Violation {
        path: path.to_string(),
        line: code[..offset].matches('\n').count() + 1,
        rule,
    }
}

/// Identifier-like words and their byte offsets.
fn words(code: &str) -> impl Iterator<Item = (usize, &str)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in code.char_indices() {
        match (is_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, &code[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, &code[s..]));
    }
    words.into_iter()
}

/// The text with `//` comments and string literals blanked out (newlines
/// kept, so line numbers stay true). Prose that names a rule, like this
/// file's docs, is then not taken for code that breaks it.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    out.push(' ');
                    if let Some(next) = chars.next() {
                        out.push(if next == '\n' { '\n' } else { ' ' });
                    }
                }
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => out.push(' '),
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push('"');
            }
            '\'' => {
                // A char literal such as '"' or '\\' must not open a string;
                // a lifetime ('a) has no closing quote within two chars.
                out.push('\'');
                let mut lookahead = chars.clone();
                let literal_len = match (lookahead.next(), lookahead.next(), lookahead.next()) {
                    (Some('\\'), Some(_), Some('\'')) => 3,
                    (Some(_), Some('\''), _) => 2,
                    _ => 0,
                };
                for _ in 0..literal_len {
                    chars.next();
                    out.push(' ');
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for rest in chars.by_ref() {
                    if rest == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every Rust file of the workspace, as a path relative to its root.
fn workspace_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    assert!(
        files.iter().any(|(path, _)| path == "src/raft_node/mod.rs"),
        "the tidy walk must see the sources"
    );
    files
}

fn check_tree(rule: fn(&str, &str) -> Vec<Violation>) {
    let violations: Vec<Violation> = workspace_sources()
        .iter()
        .flat_map(|(path, text)| rule(path, text))
        .collect();
    assert!(violations.is_empty(), "tidy violations:\n{violations:#?}");
}

#[test]
fn every_select_is_biased() {
    check_tree(check_select_biased);
}

#[test]
fn only_api_transport_and_client_know_grpc() {
    check_tree(check_grpc_confined);
}

#[test]
fn no_hash_collections_in_the_core() {
    check_tree(check_no_hash_collections);
}

#[test]
fn only_seam_modules_opt_out_of_clippy_bans() {
    check_tree(check_disallowed_allows);
}

#[test]
fn nothing_imports_the_simulator_harness() {
    check_tree(check_harness_imports);
}

#[test]
fn servers_start_through_the_launcher() {
    check_tree(check_launcher_confined);
}

#[test]
fn phase_logs_go_through_phase() {
    check_tree(check_phase_logs);
}

#[test]
fn the_modules_of_src_form_layers_without_cycles() {
    let sources = workspace_sources();
    let graph = layer_graph(&sources, "src/", "crate::");
    assert!(graph.len() > 5, "the graph must see the modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "an import cycle between src/ modules: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_harness_modules_form_layers_without_cycles() {
    let sources = workspace_sources();
    let graph = layer_graph(&sources, "sim/src/harness/", "super::");
    assert!(graph.len() > 3, "the graph must see the modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "an import cycle between harness modules: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn a_cycle_is_found() {
    let sources = vec![
        ("src/a.rs".to_string(), "use crate::b::X;".to_string()),
        (
            "src/b/mod.rs".to_string(),
            "fn f() { crate::a::g() }".to_string(),
        ),
        ("src/c.rs".to_string(), "use crate::a;".to_string()),
    ];
    let graph = layer_graph(&sources, "src/", "crate::");
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    let acyclic = vec![
        ("src/a.rs".to_string(), "use crate::b::X;".to_string()),
        (
            "src/b.rs".to_string(),
            "// crate::a in prose\n#[cfg(test)]\nmod tests { use crate::a; }".to_string(),
        ),
    ];
    assert_eq!(find_cycle(&layer_graph(&acyclic, "src/", "crate::")), None);
}

#[test]
fn every_allowed_file_exists() {
    let sources = workspace_sources();
    let exists = |path: &str| sources.iter().any(|(p, _)| p == path);
    for (path, _) in DISALLOWED_ALLOWS {
        assert!(
            exists(path),
            "{path} is listed as a seam exception but does not exist"
        );
    }
    for path in HASH_COLLECTIONS_ALLOWED {
        assert!(
            exists(path),
            "{path} is listed for hash collections but does not exist"
        );
    }
}

/// Each rule catches what it is for, and ignores prose that names it.
#[test]
fn the_rules_catch_violations() {
    let unbiased = "fn f() { tokio::select! {\n a = x => {}, } }";
    assert_eq!(check_select_biased("src/a.rs", unbiased).len(), 1);
    let biased = "tokio::select! { biased; a = x => {} }";
    assert!(check_select_biased("src/a.rs", biased).is_empty());
    let prose = "// every `tokio::select!` { is biased\nlet s = \"select! { x\";";
    assert!(check_select_biased("src/a.rs", prose).is_empty());

    let grpc = "use crate::proto::detcdpb::raft_client::RaftClient;";
    assert_eq!(check_grpc_confined("src/server/mod.rs", grpc).len(), 1);
    assert_eq!(
        check_grpc_confined("src/server/mod.rs", "let c = tonic::Request::new(1);").len(),
        1
    );
    assert!(check_grpc_confined("src/transport/mod.rs", grpc).is_empty());
    assert!(check_grpc_confined("src/clock.rs", "/// monotonic time").is_empty());

    let early = "fn t() { tracing::info!(\"phase\"); }";
    assert_eq!(check_phase_logs("tests/it/flags.rs", early).len(), 1);
    assert!(check_phase_logs("tests/it/flags.rs", "phase!(\"x\");").is_empty());
    assert!(check_phase_logs("src/main.rs", early).is_empty());

    let map = "use std::collections::HashMap;";
    assert_eq!(check_no_hash_collections("src/mvcc/store.rs", map).len(), 1);
    assert_eq!(
        check_no_hash_collections("sim/src/harness/run.rs", map).len(),
        1
    );
    assert_eq!(
        check_no_hash_collections("sim/src/check/search.rs", map).len(),
        1
    );
    assert!(check_no_hash_collections("tests/it/main.rs", map).is_empty());

    let allow = "#![allow(clippy::disallowed_methods)]";
    assert_eq!(check_disallowed_allows("src/server/mod.rs", allow).len(), 1);
    assert!(check_disallowed_allows("src/clock.rs", allow).is_empty());

    let import = "use detcd_sim::harness::run;";
    assert_eq!(check_harness_imports("src/apply/mod.rs", import).len(), 1);
    assert_eq!(
        check_harness_imports("sim/src/check/mod.rs", import).len(),
        1
    );
    assert!(check_harness_imports("sim/src/cli/run.rs", import).is_empty());
    let jepsen = "jepsen-style/src/tool.rs";
    assert_eq!(check_harness_imports(jepsen, import).len(), 1);
    assert!(check_harness_imports(jepsen, "use detcd_sim::check::check;").is_empty());

    let launcher = "use detcd_launch::Launch;";
    assert_eq!(
        check_launcher_confined("src/server/mod.rs", launcher).len(),
        1
    );
    assert!(check_launcher_confined("src/bin/detcd-bench.rs", launcher).is_empty());
    assert!(check_launcher_confined("tests/it/support.rs", launcher).is_empty());
    assert_eq!(
        check_launcher_confined("sim/src/harness/run.rs", launcher).len(),
        1
    );

    let line = check_select_biased("src/a.rs", "\n\nselect! { x }");
    assert_eq!(line[0].line, 3, "violations name their line");
}
