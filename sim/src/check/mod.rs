//! Linearizability checking of a whole history: partitioning, budgets, verdicts and explanations.
//!
//! [`check`] splits a history into the model's partitions (one per key for
//! the kv model: P-compositionality, Herlihy & Wing's locality), drops what
//! cannot matter (definite failures, and indeterminate reads, which neither
//! change the state nor report anything), searches each partition, and
//! combines the verdicts: any violation makes the history non-linearizable,
//! otherwise any exhausted budget makes it unknown.

mod bitset;
mod explanation;
mod search;

use std::collections::BTreeMap;
use std::fmt;

pub use explanation::{BlockReason, BlockedOperation, Explanation, LinearizedOperation};

use crate::history::{History, Outcome};
use crate::model::Model;
use search::SearchOutcome;

/// Default search budget per partition. One step visits one entry of the
/// history; a release build does about 5 to 20 million per second (measured:
/// register and etcd models), a debug build ten times fewer, and every step
/// may add one cache entry of about (operations / 8 + 64) bytes. So this
/// bounds time (seconds in release) and memory (about a gigabyte for a
/// thousand-operation partition) on the 2-core, 24 GiB machines we run on.
/// The largest external vector needs 0.6 million.
pub const DEFAULT_STEPS_PER_PARTITION: u64 = 20_000_000;

/// How much work the checker may do before answering [`Verdict::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub steps_per_partition: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps_per_partition: DEFAULT_STEPS_PER_PARTITION,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Linearizable,
    /// The budget ran out before the search could decide.
    Unknown,
    NotLinearizable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::Unknown => "unknown (step budget exhausted)",
            Verdict::NotLinearizable => "NOT linearizable",
        })
    }
}

/// The result for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    /// The partition key; `None` when the model does not partition.
    pub key: Option<String>,
    /// Indices into the history of the operations the search considered.
    pub operations: Vec<usize>,
    pub verdict: Verdict,
    pub steps: u64,
    /// Present exactly when the verdict is `NotLinearizable`.
    pub explanation: Option<Explanation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub verdict: Verdict,
    /// In partition-key order.
    pub partitions: Vec<PartitionReport>,
    /// Operations left out because they cannot affect the verdict.
    pub dropped_operations: usize,
}

impl CheckReport {
    pub fn steps(&self) -> u64 {
        self.partitions
            .iter()
            .map(|partition| partition.steps)
            .sum()
    }

    /// History indices of the operations that could not be placed, in all
    /// failing partitions: what a timeline should highlight.
    pub fn blocked_operations(&self) -> Vec<usize> {
        let explanations = self
            .partitions
            .iter()
            .filter_map(|partition| partition.explanation.as_ref());
        let mut blocked: Vec<usize> = explanations
            .flat_map(|explanation| explanation.blocked.iter().map(|blocked| blocked.operation))
            .collect();
        blocked.sort_unstable();
        blocked
    }
}

/// Checks whether `history` is linearizable with respect to `model`.
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    budget: Budget,
) -> CheckReport {
    let (partitions, dropped_operations) = partition(model, history);
    let mut reports = Vec::with_capacity(partitions.len());
    for (key, indices) in partitions {
        let operations: Vec<_> = indices
            .iter()
            .map(|&index| &history.operations[index])
            .collect();
        let search = search::search(model, &operations, budget.steps_per_partition);
        let (verdict, explanation) = match search.outcome {
            SearchOutcome::Linearizable => (Verdict::Linearizable, None),
            SearchOutcome::BudgetExhausted { .. } => (Verdict::Unknown, None),
            SearchOutcome::Violation { longest } => (
                Verdict::NotLinearizable,
                Some(explanation::explain(model, &operations, &indices, &longest)),
            ),
        };
        reports.push(PartitionReport {
            key,
            operations: indices,
            verdict,
            steps: search.steps,
            explanation,
        });
    }
    let verdict = reports
        .iter()
        .map(|report| report.verdict)
        .max()
        .unwrap_or(Verdict::Linearizable);
    CheckReport {
        verdict,
        partitions: reports,
        dropped_operations,
    }
}

/// Groups operation indices by partition key, in key order, leaving out the
/// operations that constrain nothing. Keys one operation links
/// ([`Model::linked_keys`]) share a partition, named after its smallest key.
/// Returns the groups and the number left out.
fn partition<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
) -> (BTreeMap<Option<String>, Vec<usize>>, usize) {
    let mut dropped = 0;
    let mut relevant = Vec::new();
    let mut links = KeyLinks::default();
    for (index, operation) in history.operations.iter().enumerate() {
        let irrelevant = match operation.outcome {
            Outcome::Ok(_) => false,
            Outcome::Fail => true,
            Outcome::Indeterminate => model.is_read_only(&operation.input),
        };
        if irrelevant {
            dropped += 1;
            continue;
        }
        let key = model.partition_key(&operation.input);
        if let Some(key) = &key {
            for linked in model.linked_keys(&operation.input) {
                links.join(key, &linked);
            }
        }
        relevant.push((index, key));
    }
    let mut partitions: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (index, key) in relevant {
        let key = key.map(|key| links.representative(&key));
        partitions.entry(key).or_default().push(index);
    }
    (partitions, dropped)
}

/// Union-find over partition keys; the representative of a group is its
/// smallest key, so partition names do not depend on operation order.
#[derive(Default)]
struct KeyLinks {
    parent: BTreeMap<String, String>,
}

impl KeyLinks {
    fn representative(&self, key: &str) -> String {
        let mut key = key;
        while let Some(parent) = self.parent.get(key) {
            key = parent;
        }
        key.to_string()
    }

    fn join(&mut self, a: &str, b: &str) {
        let (a, b) = (self.representative(a), self.representative(b));
        match a.cmp(&b) {
            std::cmp::Ordering::Less => self.parent.insert(b, a),
            std::cmp::Ordering::Greater => self.parent.insert(a, b),
            std::cmp::Ordering::Equal => None,
        };
    }
}
