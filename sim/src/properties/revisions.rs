//! Revision checks over the key-value workload: what the linearizability
//! check cannot see, because the kv model compares values only. Every
//! response's header revision and every key's create revision, mod
//! revision and version must fit etcd's MVCC rules (`model::etcd` states
//! them):
//!
//! - two writes that changed something never share a revision;
//! - revisions never go back in real time: an operation that starts after
//!   another finished sees at least its revision, and a write gets a
//!   higher one;
//! - a read's key has the mod revision of the write that wrote the value
//!   it shows, never more than the read's own revision, and every read of
//!   one value shows the same create revision and version;
//! - between two observed states of a key, its version grows by the writes
//!   made to it in between (exactly, when each of them has a known
//!   revision), and its create revision stays the same unless a delete
//!   happened in between.
//!
//! Values are unique per write (the workload makes them so), which is what
//! ties a read to the write it shows. The checks need no search: they run
//! in O(n log n) on any history.

use std::collections::{BTreeMap, BTreeSet};

/// One key as a read returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: the header revision is known.
    Ok,
    /// No answer: a write that may or may not have happened.
    Unknown,
}

/// One operation of the key-value workload, as far as revisions go.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: u64,
    pub invoked_ns: u64,
    pub completed_ns: u64,
    pub outcome: Outcome,
    /// The response's header revision (0 when unknown).
    pub header_revision: i64,
    /// Keys read at the header revision: what was there (None: absent).
    pub reads: Vec<(String, Option<Seen>)>,
    /// Keys written: the value put, or None for a delete.
    pub writes: Vec<(String, Option<String>)>,
    /// Whether the write changed the store (a delete of a missing key does
    /// not), so it took a revision of its own.
    pub changed: bool,
}

/// Every violation found; empty when the history fits.
pub fn check(records: &[Record]) -> Vec<String> {
    let mut violations = Vec::new();
    let answered: Vec<&Record> = records
        .iter()
        .filter(|record| record.outcome == Outcome::Ok)
        .collect();
    distinct_write_revisions(&answered, &mut violations);
    revisions_never_go_back(&answered, &mut violations);
    reads_fit_their_writes(records, &mut violations);
    keys_evolve_by_their_writes(records, &mut violations);
    violations
}

fn describe(record: &Record) -> String {
    format!(
        "client {}'s {} at {:.3}s",
        record.client,
        if record.writes.is_empty() {
            "read"
        } else {
            "write"
        },
        record.invoked_ns as f64 / 1e9
    )
}

fn distinct_write_revisions(answered: &[&Record], violations: &mut Vec<String>) {
    let mut by_revision: BTreeMap<i64, &Record> = BTreeMap::new();
    for record in answered.iter().filter(|record| record.changed) {
        if let Some(other) = by_revision.insert(record.header_revision, record) {
            violations.push(format!(
                "{} and {} both wrote at revision {}",
                describe(other),
                describe(record),
                record.header_revision
            ));
        }
    }
}

fn revisions_never_go_back(answered: &[&Record], violations: &mut Vec<String>) {
    let mut by_completion: Vec<&Record> = answered.to_vec();
    by_completion.sort_by_key(|record| record.completed_ns);
    // The highest revision among operations finished before each point.
    let mut highest: Vec<(u64, i64, usize)> = Vec::with_capacity(by_completion.len());
    let mut best = (i64::MIN, 0);
    for (position, record) in by_completion.iter().enumerate() {
        if record.header_revision > best.0 {
            best = (record.header_revision, position);
        }
        highest.push((record.completed_ns, best.0, best.1));
    }
    for record in answered {
        let before = highest.partition_point(|(completed, _, _)| *completed < record.invoked_ns);
        let Some(&(_, revision, who)) = before.checked_sub(1).map(|at| &highest[at]) else {
            continue;
        };
        let too_low = if record.changed {
            record.header_revision <= revision
        } else {
            record.header_revision < revision
        };
        if too_low {
            violations.push(format!(
                "{} got revision {} though {} had finished at revision {revision} before it started",
                describe(record),
                record.header_revision,
                describe(by_completion[who])
            ));
        }
    }
}

/// (key, value) → the revision of the write that put it, when known.
fn write_revisions(records: &[Record]) -> BTreeMap<(&str, &str), Option<i64>> {
    let mut revisions = BTreeMap::new();
    for record in records {
        for (key, value) in &record.writes {
            if let Some(value) = value {
                let revision = (record.outcome == Outcome::Ok).then_some(record.header_revision);
                revisions.insert((key.as_str(), value.as_str()), revision);
            }
        }
    }
    revisions
}

fn reads_fit_their_writes(records: &[Record], violations: &mut Vec<String>) {
    let written = write_revisions(records);
    let mut seen_as: BTreeMap<(&str, &str), &Seen> = BTreeMap::new();
    for record in records
        .iter()
        .filter(|record| record.outcome == Outcome::Ok)
    {
        for (key, seen) in &record.reads {
            let Some(seen) = seen else { continue };
            let mut wrong = Vec::new();
            if seen.mod_revision > record.header_revision {
                wrong.push(format!(
                    "mod revision {} above the read's revision {}",
                    seen.mod_revision, record.header_revision
                ));
            }
            if seen.create_revision > seen.mod_revision || seen.create_revision < 1 {
                wrong.push(format!(
                    "create revision {} with mod revision {}",
                    seen.create_revision, seen.mod_revision
                ));
            }
            if seen.version < 1 {
                wrong.push(format!("version {}", seen.version));
            }
            if let Some(Some(revision)) = written.get(&(key.as_str(), seen.value.as_str())) {
                if *revision != seen.mod_revision {
                    wrong.push(format!(
                        "mod revision {} though the write of that value was answered at {revision}",
                        seen.mod_revision
                    ));
                }
            }
            match seen_as.get(&(key.as_str(), seen.value.as_str())) {
                Some(first) if *first != seen => wrong.push(format!(
                    "{:?} where an earlier read of the same value showed {:?}",
                    seen, first
                )),
                Some(_) => {}
                None => {
                    seen_as.insert((key.as_str(), seen.value.as_str()), seen);
                }
            }
            if !wrong.is_empty() {
                violations.push(format!(
                    "{} read {key}={:?}: {}",
                    describe(record),
                    seen.value,
                    wrong.join("; ")
                ));
            }
        }
    }
}

fn keys_evolve_by_their_writes(records: &[Record], violations: &mut Vec<String>) {
    // Every distinct state of each key that a read observed, by mod revision.
    let mut states: BTreeMap<&str, BTreeMap<i64, &Seen>> = BTreeMap::new();
    for record in records
        .iter()
        .filter(|record| record.outcome == Outcome::Ok)
    {
        for (key, seen) in &record.reads {
            if let Some(seen) = seen {
                states
                    .entry(key.as_str())
                    .or_default()
                    .insert(seen.mod_revision, seen);
            }
        }
    }
    // Per key: the revisions of writes whose revision is known (answered,
    // or observed by a read), how many were never pinned, and the
    // revisions of deletes that removed it.
    let mut known: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut unpinned: BTreeMap<&str, usize> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut unknown_deletes: BTreeSet<&str> = BTreeSet::new();
    let observed: BTreeMap<(&str, &str), i64> = states
        .iter()
        .flat_map(|(key, by_mod)| {
            by_mod
                .values()
                .map(move |seen| ((*key, seen.value.as_str()), seen.mod_revision))
        })
        .collect();
    for record in records {
        for (key, value) in &record.writes {
            match (value, record.outcome) {
                (Some(_), Outcome::Ok) => {
                    known
                        .entry(key.as_str())
                        .or_default()
                        .insert(record.header_revision);
                }
                (Some(value), Outcome::Unknown) => {
                    match observed.get(&(key.as_str(), value.as_str())) {
                        Some(revision) => {
                            known.entry(key.as_str()).or_default().insert(*revision);
                        }
                        None => *unpinned.entry(key.as_str()).or_default() += 1,
                    }
                }
                (None, Outcome::Ok) if record.changed => {
                    deletes
                        .entry(key.as_str())
                        .or_default()
                        .insert(record.header_revision);
                }
                (None, _) => {
                    unknown_deletes.insert(key.as_str());
                }
            }
        }
    }
    for (key, by_mod) in &states {
        let empty = BTreeSet::new();
        let known = known.get(key).unwrap_or(&empty);
        let deleted = deletes.get(key).unwrap_or(&empty);
        let unpinned = unpinned.get(key).copied().unwrap_or(0);
        let seen: Vec<&&Seen> = by_mod.values().collect();
        for pair in seen.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let between = |set: &BTreeSet<i64>| {
                set.range(before.mod_revision + 1..=after.mod_revision)
                    .count()
            };
            if after.create_revision == before.create_revision {
                if between(deleted) > 0 {
                    violations.push(format!(
                        "{key} kept create revision {} across a delete between revisions {} and {}",
                        after.create_revision, before.mod_revision, after.mod_revision
                    ));
                    continue;
                }
                if unknown_deletes.contains(key) {
                    continue;
                }
                let writes = between(known) as i64;
                let grew = after.version - before.version;
                if grew < writes || grew > writes + unpinned as i64 {
                    violations.push(format!(
                        "{key}'s version went from {} (revision {}) to {} (revision {}) over {writes} known writes{}",
                        before.version,
                        before.mod_revision,
                        after.version,
                        after.mod_revision,
                        if unpinned > 0 {
                            format!(" and at most {unpinned} unknown ones")
                        } else {
                            String::new()
                        }
                    ));
                }
            } else if after.create_revision <= before.mod_revision {
                violations.push(format!(
                    "{key} was recreated at revision {}, not after its state at revision {}",
                    after.create_revision, before.mod_revision
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(value: &str, create: i64, modified: i64, version: i64) -> Seen {
        Seen {
            value: value.into(),
            create_revision: create,
            mod_revision: modified,
            version,
        }
    }

    fn put(client: u64, at: u64, key: &str, value: &str, revision: i64) -> Record {
        Record {
            client,
            invoked_ns: at,
            completed_ns: at + 10,
            outcome: Outcome::Ok,
            header_revision: revision,
            reads: Vec::new(),
            writes: vec![(key.into(), Some(value.into()))],
            changed: true,
        }
    }

    fn get(client: u64, at: u64, key: &str, found: Option<Seen>, revision: i64) -> Record {
        Record {
            client,
            invoked_ns: at,
            completed_ns: at + 10,
            outcome: Outcome::Ok,
            header_revision: revision,
            reads: vec![(key.into(), found)],
            writes: Vec::new(),
            changed: false,
        }
    }

    #[test]
    fn a_history_that_follows_mvcc_passes() {
        let history = [
            put(0, 0, "k", "a", 2),
            get(1, 20, "k", Some(seen("a", 2, 2, 1)), 2),
            put(0, 40, "k", "b", 3),
            get(1, 60, "k", Some(seen("b", 2, 3, 2)), 3),
            put(1, 80, "j", "x", 4),
            get(0, 100, "k", Some(seen("b", 2, 3, 2)), 4),
        ];
        assert_eq!(check(&history), Vec::<String>::new());
    }

    #[test]
    fn each_rule_catches_its_bug() {
        // Two writes at one revision.
        let shared = [put(0, 0, "k", "a", 2), put(1, 0, "j", "b", 2)];
        assert!(check(&shared)[0].contains("both wrote at revision 2"));
        // A revision going back after a finished write.
        let back = [
            put(0, 0, "k", "a", 5),
            get(1, 20, "k", Some(seen("a", 5, 5, 1)), 4),
        ];
        assert!(check(&back)
            .iter()
            .any(|v| v.contains("had finished at revision 5")));
        // The wrong mod revision for a value.
        let wrong_mod = [
            put(0, 0, "k", "a", 2),
            get(1, 20, "k", Some(seen("a", 2, 3, 1)), 3),
        ];
        assert!(check(&wrong_mod)[0].contains("answered at 2"));
        // A version that does not count the writes (not reset, or counted twice).
        let version = [
            put(0, 0, "k", "a", 2),
            put(0, 20, "k", "b", 3),
            get(1, 40, "k", Some(seen("a", 2, 2, 1)), 2),
            get(1, 60, "k", Some(seen("b", 2, 3, 3)), 3),
        ];
        assert!(check(&version)
            .iter()
            .any(|v| v.contains("version went from 1")));
        // A create revision kept across a delete.
        let mut delete = put(0, 30, "k", "", 4);
        delete.writes = vec![("k".into(), None)];
        let recreated = [
            put(0, 0, "k", "a", 2),
            get(1, 20, "k", Some(seen("a", 2, 2, 1)), 2),
            delete,
            put(0, 50, "k", "b", 5),
            get(1, 70, "k", Some(seen("b", 2, 5, 2)), 5),
        ];
        assert!(check(&recreated)
            .iter()
            .any(|v| v.contains("across a delete")));
    }

    #[test]
    fn unknown_writes_widen_the_version_check_and_pin_by_observation() {
        let mut lost = put(0, 20, "k", "b", 0);
        lost.outcome = Outcome::Unknown;
        let history = [
            put(0, 0, "k", "a", 2),
            lost,
            get(1, 40, "k", Some(seen("a", 2, 2, 1)), 2),
            put(0, 60, "k", "c", 4),
            get(1, 80, "k", Some(seen("c", 2, 4, 3)), 4),
        ];
        assert_eq!(check(&history), Vec::<String>::new());
    }
}
