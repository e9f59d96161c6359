//! Wing & Gong's linearizability search with Lowe's memoization, over one partition.
//!
//! The algorithm is porcupine's `checkSingle` (Lowe, "Testing for
//! linearizability", 2017): the invocations and completions of all
//! operations form a list in time order. Walking it from the front, the
//! search tries to linearize ("lift") any operation whose invocation comes
//! before the first remaining completion, if the model allows it in the
//! current state; reaching a completion whose operation is not linearized
//! means the choices so far were wrong, so it backtracks. A cache of
//! (set of linearized operations, state) pairs prunes configurations already
//! explored: two paths that linearized the same operations into the same
//! state have the same future.
//!
//! Operations whose effect has no deadline (indeterminate ones) complete at
//! the end of time, so the search may linearize them anywhere after their
//! invocation. It stops as soon as every `Ok` operation is linearized: the
//! indeterminate operations left over never took effect ("or never").
//!
//! Indeterminate operations are what makes the search expensive: each stays
//! a candidate until the end of the history. Beyond porcupine, the search
//! therefore (all of it sound and complete, none of it a heuristic cut):
//! - skips an indeterminate operation that would change nothing where it is
//!   tried, since leaving it out is equivalent (`try_linearize`);
//! - tries indeterminate operations whose client gave up long ago last
//!   ([`Pass`]): only the order of the candidates changes;
//! - abandons an order as soon as a monotonic counter of the model (etcd's
//!   revision) has passed what an operation still to be placed observed
//!   (`passes_a_pending_bound`);
//! - remembers the last state in which the model refused each operation.
//!
//! The search is bounded by a step budget instead of wall time so that its
//! verdict is reproducible; running out gives `BudgetExhausted`, never a pass.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::bitset::Bitset;
use crate::history::Operation;
use crate::model::{Model, Transition};
use hashbrown::HashTable;

/// How the search over one partition ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SearchOutcome {
    Linearizable,
    /// No order exists. `longest` is the longest partial linearization the
    /// search found, as indices into the partition's operations, in order.
    Violation {
        longest: Vec<usize>,
    },
    BudgetExhausted {
        longest: Vec<usize>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SearchReport {
    pub(crate) outcome: SearchOutcome,
    pub(crate) steps: u64,
}

/// Node 0 of the entry list is a sentinel in front of every entry.
const HEAD: usize = 0;

/// The invocations and completions of a partition's operations as a doubly
/// linked list in time order, from which linearized operations are unlinked
/// and relinked in LIFO order (dancing links).
pub(crate) struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation each node belongs to; unused for the sentinels.
    operation: Vec<usize>,
    /// For a call node, its return node; `None` for return nodes.
    return_node: Vec<Option<usize>>,
    tail: usize,
}

impl EntryList {
    /// Orders entries by time; at equal times invocations come first, so two
    /// operations that touch at one instant count as concurrent (the
    /// permissive reading: it never invents a violation). Operations without
    /// a deadline complete after everything, in index order.
    pub(crate) fn new(deadlines: &[(u64, Option<u64>)]) -> Self {
        const CALL: u8 = 0;
        const RETURN: u8 = 1;
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(deadlines.len() * 2);
        for (operation, &(invoke_ns, deadline_ns)) in deadlines.iter().enumerate() {
            events.push((invoke_ns, CALL, operation));
            events.push((deadline_ns.unwrap_or(u64::MAX), RETURN, operation));
        }
        events.sort_unstable();
        let tail = events.len() + 1;
        let mut list = EntryList {
            next: (1..=tail).chain([tail]).collect(),
            prev: [HEAD].into_iter().chain(0..tail).collect(),
            operation: vec![usize::MAX; tail + 1],
            return_node: vec![None; tail + 1],
            tail,
        };
        let mut call_node = vec![0; deadlines.len()];
        for (position, &(_, kind, operation)) in events.iter().enumerate() {
            let node = position + 1;
            list.operation[node] = operation;
            if kind == CALL {
                call_node[operation] = node;
            } else {
                list.return_node[call_node[operation]] = Some(node);
            }
        }
        list
    }

    pub(crate) fn first(&self) -> usize {
        self.next[HEAD]
    }

    pub(crate) fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    pub(crate) fn is_end(&self, node: usize) -> bool {
        node == self.tail
    }

    pub(crate) fn operation(&self, node: usize) -> usize {
        self.operation[node]
    }

    pub(crate) fn is_call(&self, node: usize) -> bool {
        self.return_node[node].is_some()
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }

    /// Removes an operation (its call and return) from the list.
    fn lift(&mut self, call: usize) {
        let ret = self.return_node[call].expect("only call nodes are lifted");
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes the matching `lift`; lifts must be undone in reverse order.
    fn unlift(&mut self, call: usize) {
        let ret = self.return_node[call].expect("only call nodes are lifted");
        self.relink(ret);
        self.relink(call);
    }
}

/// A model state's identity: a 128-bit fingerprint of its `Hash`.
///
/// The cache and the backtracking stack hold fingerprints, not states: only
/// the states along the current path exist in memory (one per stack frame
/// that changed the state), so memory grows with the configurations visited
/// and not with the size of the states (a kv history's appended values grow
/// to kilobytes, and a hard partition visits hundreds of thousands of
/// distinct ones). Two different states sharing a fingerprint would let the
/// cache prune a configuration it has not seen; with 128 bits and at most
/// `DEFAULT_STEPS_PER_PARTITION` states the chance is below 2^-80, far below
/// any hardware fault (TLC's model checker makes the same trade with 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint(u64, u64);

impl Fingerprint {
    /// Never the fingerprint of a state: no state was refused yet.
    const NONE: Fingerprint = Fingerprint(0, 0);

    fn of<S: Hash>(state: &S) -> Fingerprint {
        /// Feeds one `Hash` walk to two SipHash-1-3 streams (std's fixed-key
        /// `DefaultHasher`, so runs are identical), the second salted.
        struct Pair(DefaultHasher, DefaultHasher);
        impl Hasher for Pair {
            fn finish(&self) -> u64 {
                self.0.finish()
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.write(bytes);
                self.1.write(bytes);
            }
        }
        let mut salted = DefaultHasher::new();
        salted.write_u64(0x5A17_ED5E_C0DD_4A5F);
        let mut pair = Pair(DefaultHasher::new(), salted);
        state.hash(&mut pair);
        match Fingerprint(pair.0.finish(), pair.1.finish()) {
            Fingerprint::NONE => Fingerprint(0, 1),
            fingerprint => fingerprint,
        }
    }

    fn mix(self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ self.1
    }
}

/// The visited configurations (set of linearized operations, state),
/// packed in one arena: per entry its hash, its state's fingerprint and its
/// bitset's words. A boxed bitset per entry would double the memory of the
/// largest searches and allocate on every step. The hash is computed
/// incrementally (Zobrist hashing of the linearized set, mixed with the
/// fingerprint) so a lookup does not rehash the whole bitset.
struct ConfigurationCache {
    stride: usize,
    arena: Vec<u64>,
    table: HashTable<u32>,
}

impl ConfigurationCache {
    const HEADER: usize = 3;

    fn new(operations: usize) -> Self {
        ConfigurationCache {
            stride: Self::HEADER + Bitset::new(operations).words().len(),
            arena: Vec::new(),
            table: HashTable::new(),
        }
    }

    /// Adds the configuration; false if it was there already.
    fn insert(&mut self, hash: u64, state: Fingerprint, linearized: &Bitset) -> bool {
        let (stride, arena) = (self.stride, &self.arena);
        let entry_of = |index: &u32| {
            let start = *index as usize * stride;
            &arena[start..start + stride]
        };
        let found = self.table.find(hash, |index| {
            let entry = entry_of(index);
            entry[1] == state.0
                && entry[2] == state.1
                && entry[Self::HEADER..] == *linearized.words()
        });
        if found.is_some() {
            return false;
        }
        let index = u32::try_from(self.arena.len() / stride)
            .expect("the step budget keeps configurations below 2^32");
        self.arena.extend_from_slice(&[hash, state.0, state.1]);
        self.arena.extend_from_slice(linearized.words());
        let arena = &self.arena;
        self.table
            .insert_unique(hash, index, |index| arena[*index as usize * stride]);
        true
    }
}

/// splitmix64: a fixed, seeded source of Zobrist keys, so runs are identical.
fn zobrist_keys(count: usize) -> Vec<u64> {
    const SEED: u64 = 0x5EED_DE7C_D0C4_EC4E;
    let mut state = SEED;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut mixed = state;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            mixed ^ (mixed >> 31)
        })
        .collect()
}

/// Which candidates a walk over the entry list considers. At every place
/// the search tries the same candidates as porcupine, in invocation order,
/// except that "late" ones come last: indeterminate operations whose client
/// gave up before the latest invocation already linearized. Such operations
/// stay candidates until the end (they may take effect arbitrarily late),
/// and trying them first sends the depth-first search down long branches
/// where they took effect long after their client gave up, which the next
/// observed result usually refutes. Only the order changes, never the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Natural,
    Late,
}

fn remove_one(multiset: &mut BTreeMap<i64, usize>, value: i64) {
    let count = multiset
        .get_mut(&value)
        .expect("a linearized operation's bound was pending");
    *count -= 1;
    if *count == 0 {
        multiset.remove(&value);
    }
}

/// What undoing a lift restores.
struct Frame<S> {
    call: usize,
    fingerprint: Fingerprint,
    horizon_ns: u64,
    /// The state before the lift, if the lift changed it.
    state: Option<S>,
    /// The operation is a read (it never changes any state), or its answer
    /// is one that changes no state wherever it is accepted, and the model
    /// accepted it here. Then it needs no alternatives: if any order continues
    /// this configuration, one continues it with the read placed now, since
    /// the read is a candidate (everything that completed before it began is
    /// placed), moving it earlier breaks no real-time order, and the states
    /// after it stay the same. So when the search backtracks over a forced
    /// read it backtracks over the choice before it too, and a forced read
    /// whose configuration was already explored ends this one. This removes
    /// the 2^k configurations of k concurrent reads, each placed or not.
    forced: bool,
}

/// What trying to place an operation next came to.
enum Attempt {
    Lifted,
    /// Not here; try the next candidate.
    Refused,
    /// This configuration cannot be continued: backtrack.
    DeadEnd,
}

/// The search over one partition: the entry list and everything it has
/// linearized so far.
struct Search<'a, M: Model> {
    model: &'a M,
    operations: &'a [&'a Operation<M::Input, M::Output>],
    entries: EntryList,
    zobrist: Vec<u64>,
    cache: ConfigurationCache,
    linearized: Bitset,
    linearized_hash: u64,
    /// One frame per lifted operation, in order.
    stack: Vec<Frame<M::State>>,
    state: M::State,
    fingerprint: Fingerprint,
    /// The latest invocation among linearized operations.
    horizon_ns: u64,
    /// Per operation: when its client gave up, if it is indeterminate.
    give_up_ns: Vec<Option<u64>>,
    /// Per operation, the last state in which the model refused it (or it
    /// would have changed nothing while indeterminate). The model is a pure
    /// function of (state, operation), so retrying it there is wasted work,
    /// and after every lift the walk retries all earlier candidates.
    refused_in_state: Vec<Fingerprint>,
    /// The counter bounds (see `Model::counter_bound`) of the `Ok`
    /// operations not yet linearized, as a multiset.
    pending_bounds: BTreeMap<i64, usize>,
    /// Operations with an `Ok` outcome not yet linearized. When it reaches
    /// zero the search has succeeded: the indeterminate operations left
    /// over never took effect.
    determinate_left: usize,
    longest: Vec<usize>,
    /// Per operation: `Model::is_read_only`, or its answer changes nothing
    /// (`Model::answer_changes_nothing`).
    read_only: Vec<bool>,
}

/// Searches for a linearization of `operations`, taking at most `steps_max`
/// steps (one step = one entry visited).
pub(crate) fn search<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    steps_max: u64,
) -> SearchReport {
    let deadlines: Vec<_> = operations
        .iter()
        .map(|operation| (operation.invoke_ns, operation.effect_deadline_ns()))
        .collect();
    let mut search = Search {
        model,
        operations,
        entries: EntryList::new(&deadlines),
        zobrist: zobrist_keys(operations.len()),
        cache: ConfigurationCache::new(operations.len()),
        linearized: Bitset::new(operations.len()),
        linearized_hash: 0,
        stack: Vec::new(),
        fingerprint: Fingerprint::of(&model.initial_state()),
        state: model.initial_state(),
        horizon_ns: 0,
        give_up_ns: operations
            .iter()
            .map(|operation| {
                if operation.outcome.output().is_some() {
                    None
                } else {
                    operation.complete_ns
                }
            })
            .collect(),
        refused_in_state: vec![Fingerprint::NONE; operations.len()],
        pending_bounds: BTreeMap::new(),
        determinate_left: operations
            .iter()
            .filter(|operation| operation.outcome.output().is_some())
            .count(),
        longest: Vec::new(),
        read_only: operations
            .iter()
            .map(|operation| {
                model.is_read_only(&operation.input)
                    || (operation.outcome.output()).is_some_and(|output| {
                        model.answer_changes_nothing(&operation.input, output)
                    })
            })
            .collect(),
    };
    for operation in operations {
        if let Some(bound) = search.counter_bound(operation) {
            *search.pending_bounds.entry(bound).or_default() += 1;
        }
    }
    search.run(steps_max)
}

impl<M: Model> Search<'_, M> {
    fn run(&mut self, steps_max: u64) -> SearchReport {
        let mut node = self.entries.first();
        let mut pass = Pass::Natural;
        let mut steps = 0;
        while self.determinate_left > 0 {
            if steps >= steps_max {
                return SearchReport {
                    outcome: SearchOutcome::BudgetExhausted {
                        longest: self.longest.clone(),
                    },
                    steps,
                };
            }
            steps += 1;
            assert!(
                !self.entries.is_end(node),
                "an unlinearized ok operation's completion stops the walk before the end"
            );
            if self.entries.is_call(node) {
                let attempt = if pass == self.pass_of(node) {
                    self.try_linearize(node)
                } else {
                    Attempt::Refused
                };
                match attempt {
                    Attempt::Lifted => (node, pass) = (self.entries.first(), Pass::Natural),
                    Attempt::Refused => node = self.entries.next(node),
                    Attempt::DeadEnd => {
                        let Some(call) = self.backtrack() else {
                            return self.violation(steps);
                        };
                        (node, pass) = (self.entries.next(call), self.pass_of(call));
                    }
                }
                continue;
            }
            // The first completion of an operation not linearized yet ends
            // the candidates for the next place.
            if pass == Pass::Natural
                && self.stack.len() + self.determinate_left < self.operations.len()
            {
                // Some indeterminate operation is not linearized: it may be late.
                (node, pass) = (self.entries.first(), Pass::Late);
                continue;
            }
            // None of them worked: undo the most recent choice and try the
            // candidates after it.
            let Some(call) = self.backtrack() else {
                return self.violation(steps);
            };
            (node, pass) = (self.entries.next(call), self.pass_of(call));
        }
        SearchReport {
            outcome: SearchOutcome::Linearizable,
            steps,
        }
    }

    fn violation(&self, steps: u64) -> SearchReport {
        SearchReport {
            outcome: SearchOutcome::Violation {
                longest: self.longest.clone(),
            },
            steps,
        }
    }

    fn pass_of(&self, call: usize) -> Pass {
        match self.give_up_ns[self.entries.operation(call)] {
            Some(give_up_ns) if give_up_ns < self.horizon_ns => Pass::Late,
            _ => Pass::Natural,
        }
    }

    /// Linearizes the operation of `call` next, if the model allows it and
    /// the resulting configuration is new.
    fn try_linearize(&mut self, call: usize) -> Attempt {
        let operation = self.entries.operation(call);
        if self.refused_in_state[operation] == self.fingerprint {
            return Attempt::Refused;
        }
        let candidate = self.operations[operation];
        let output = candidate.outcome.output();
        let Some(transition) = self.model.step(&self.state, &candidate.input, output) else {
            self.refused_in_state[operation] = self.fingerprint;
            return Attempt::Refused;
        };
        // A read that fits here is placed here for good: see `Frame::forced`.
        let forced = self.read_only[operation];
        let (next_fingerprint, next_state) = match transition {
            Transition::Unchanged => (self.fingerprint, None),
            Transition::Changed(state) => (Fingerprint::of(&state), Some(state)),
        };
        // An indeterminate operation that changes nothing here is the same as
        // one that never took effect, which the search already covers by
        // leaving it out. Trying it would double the configurations for
        // every such operation in flight: exponential in long histories.
        if output.is_none() && next_fingerprint == self.fingerprint {
            self.refused_in_state[operation] = self.fingerprint;
            return Attempt::Refused;
        }
        if self.passes_a_pending_bound(candidate, next_state.as_ref().unwrap_or(&self.state)) {
            return Attempt::Refused;
        }
        let linearized_hash = self.linearized_hash ^ self.zobrist[operation];
        self.linearized.insert(operation);
        if !self.cache.insert(
            linearized_hash ^ next_fingerprint.mix(),
            next_fingerprint,
            &self.linearized,
        ) {
            self.linearized.remove(operation);
            // Placing the read here was explored and failed, so every
            // continuation of this configuration fails (see `Frame::forced`).
            return if forced {
                Attempt::DeadEnd
            } else {
                Attempt::Refused
            };
        }
        self.linearized_hash = linearized_hash;
        self.stack.push(Frame {
            call,
            fingerprint: self.fingerprint,
            horizon_ns: self.horizon_ns,
            state: next_state.map(|state| std::mem::replace(&mut self.state, state)),
            forced,
        });
        self.fingerprint = next_fingerprint;
        self.horizon_ns = self.horizon_ns.max(candidate.invoke_ns);
        self.determinate_left -= usize::from(output.is_some());
        if let Some(bound) = self.counter_bound(candidate) {
            remove_one(&mut self.pending_bounds, bound);
        }
        self.entries.lift(call);
        if self.stack.len() > self.longest.len() {
            // Only grows, so this copies at most n times in all: O(n²) worst case.
            self.longest = self
                .stack
                .iter()
                .map(|frame| self.entries.operation(frame.call))
                .collect();
        }
        Attempt::Lifted
    }

    fn counter_bound(&self, operation: &Operation<M::Input, M::Output>) -> Option<i64> {
        self.model
            .counter_bound(&operation.input, operation.outcome.output()?)
    }

    /// Would linearizing `candidate` into `next_state` push the model's
    /// counter past the bound of another `Ok` operation still to be placed?
    /// The counter never decreases, so that operation could never be placed
    /// and every order continuing from here fails.
    fn passes_a_pending_bound(
        &self,
        candidate: &Operation<M::Input, M::Output>,
        next_state: &M::State,
    ) -> bool {
        let Some(counter) = self.model.counter(next_state) else {
            return false;
        };
        let own_bound = self.counter_bound(candidate);
        let mut bounds = self.pending_bounds.iter();
        let lowest_other = match bounds.next() {
            // The candidate's own bound does not constrain what follows it.
            Some((&bound, &1)) if Some(bound) == own_bound => {
                bounds.next().map(|(&bound, _)| bound)
            }
            other => other.map(|(&bound, _)| bound),
        };
        lowest_other.is_some_and(|bound| counter > bound)
    }

    /// Undoes the most recent choice: the most recent linearization, and the
    /// forced reads above it. Returns its call node, or `None` if nothing is
    /// left to undo (no linearization exists).
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let (call, forced) = self.undo_last()?;
            if !forced {
                return Some(call);
            }
        }
    }

    /// Undoes the most recent linearization; returns its call node and
    /// whether it was forced.
    fn undo_last(&mut self) -> Option<(usize, bool)> {
        let frame = self.stack.pop()?;
        let call = frame.call;
        self.horizon_ns = frame.horizon_ns;
        let operation = self.entries.operation(call);
        self.linearized.remove(operation);
        self.linearized_hash ^= self.zobrist[operation];
        self.fingerprint = frame.fingerprint;
        if let Some(state) = frame.state {
            self.state = state;
        }
        self.determinate_left += usize::from(self.operations[operation].outcome.output().is_some());
        if let Some(bound) = self.counter_bound(self.operations[operation]) {
            *self.pending_bounds.entry(bound).or_default() += 1;
        }
        self.entries.unlift(call);
        Some((call, frame.forced))
    }
}
