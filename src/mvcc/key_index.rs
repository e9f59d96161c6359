//! `KeyIndex`: the revisions of one key, grouped into generations.
//!
//! A faithful port of etcd 3.4 `mvcc/key_index.go`. A generation is one life
//! of a key: it starts with the put that creates the key and ends with the
//! tombstone that deletes it. The last generation is empty when the key is
//! not live. Example for key "foo", put at 1 and 2, deleted at 3, put at 4:
//!
//! ```text
//! generations: [ {created 1, version 3, revisions [1, 2, 3(tombstone)]},
//!                {created 4, version 1, revisions [4]} ]
//! ```
//!
//! Compaction at revision N drops every revision below the newest one at or
//! below N (and that one too if it is a tombstone); a key whose history is
//! gone leaves a single empty generation (`is_empty`), and the store then
//! removes the key.

use std::collections::BTreeSet;

use super::{Error, Revision};

/// Where compaction notes the revision it keeps for reads at or after the
/// compaction point, per key (etcd's `available` map). `()` notes nothing:
/// the store's compaction needs only what was dropped.
pub trait KeptRevisions {
    fn keep(&mut self, revision: Revision);
    fn unkeep(&mut self, revision: &Revision);
}

impl KeptRevisions for BTreeSet<Revision> {
    fn keep(&mut self, revision: Revision) {
        self.insert(revision);
    }

    fn unkeep(&mut self, revision: &Revision) {
        self.remove(revision);
    }
}

impl KeptRevisions for () {
    fn keep(&mut self, _revision: Revision) {}

    fn unkeep(&mut self, _revision: &Revision) {}
}

/// One life of a key, from the put that created it to its tombstone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Number of puts and tombstones in this generation, including those
    /// that compaction already dropped from `revisions`.
    version: i64,
    /// The revision of the put that created the key in this generation.
    created: Revision,
    /// Ascending; the last one is the tombstone unless this is the last
    /// generation of the key.
    revisions: Vec<Revision>,
}

impl Generation {
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn created(&self) -> Revision {
        self.created
    }

    pub fn revisions(&self) -> &[Revision] {
        &self.revisions
    }

    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty()
    }

    /// Walks the revisions newest to oldest and returns the position of the
    /// first one for which `keep_walking` is false (etcd `generation.walk`).
    fn walk(&self, mut keep_walking: impl FnMut(Revision) -> bool) -> Option<usize> {
        self.revisions
            .iter()
            .rposition(|&revision| !keep_walking(revision))
    }
}

/// What a key looked like at some revision (etcd `keyIndex.get` results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision of the put that gave the key its value.
    pub modified: Revision,
    /// The revision of the put that created the key's current generation.
    pub created: Revision,
    /// The number of changes to the key since `created`, counting `created`.
    pub version: i64,
}

/// The revision history of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    /// The newest revision of the key, put or tombstone.
    modified: Revision,
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// A key index without revisions; the store puts into it right away.
    pub fn new() -> Self {
        KeyIndex::default()
    }

    pub fn modified(&self) -> Revision {
        self.modified
    }

    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// True when the key index holds no revision at all: a single empty
    /// generation left by compaction (etcd `isEmpty`), or a new key index.
    pub fn is_empty(&self) -> bool {
        match self.generations.as_slice() {
            [] => true,
            [only] => only.is_empty(),
            _ => false,
        }
    }

    /// True when the index holds one revision, a put of the live key: no
    /// compaction can change it (it keeps the newest revision of a live
    /// key), so the store's compaction passes it by (`Store::history`).
    pub fn is_lone_put(&self) -> bool {
        matches!(self.generations.as_slice(), [only] if only.revisions.len() == 1)
    }

    /// True when the key exists at the newest revision: its last generation
    /// has not been ended by a tombstone.
    pub fn is_live(&self) -> bool {
        self.generations
            .last()
            .is_some_and(|generation| !generation.is_empty())
    }

    /// Records a put at `revision`; starts a generation if the key is not live.
    pub fn put(&mut self, revision: Revision) {
        // A revision that does not move forward would make two changes share
        // one place in history: the store is broken, so crash.
        assert!(
            revision > self.modified,
            "key index: revisions never go backwards: put at {revision} after {}",
            self.modified
        );
        if self.generations.is_empty() {
            // Most keys have one generation of one revision: a first
            // allocation of one element each, not Vec's four, saves about
            // 190 bytes a key (a fifth of the memory of a large store).
            self.generations.reserve_exact(1);
            self.generations.push(Generation::default());
        }
        let generation = self
            .generations
            .last_mut()
            .expect("key index: a generation was just ensured");
        if generation.is_empty() {
            generation.created = revision;
        }
        if generation.revisions.capacity() == 0 {
            generation.revisions.reserve_exact(1);
        }
        generation.revisions.push(revision);
        generation.version += 1;
        self.modified = revision;
    }

    /// Starts the history of a key whose older revisions were compacted away
    /// (etcd `keyIndex.restore`): one generation holding only `modified`.
    pub fn restore(&mut self, created: Revision, modified: Revision, version: i64) {
        assert!(
            self.generations.is_empty(),
            "key index: restore only into a new key index"
        );
        self.modified = modified;
        self.generations.reserve_exact(1);
        self.generations.push(Generation {
            version,
            created,
            revisions: vec![modified],
        });
    }

    /// Records a deletion at `revision` and starts an empty generation.
    ///
    /// Fails with `RevisionNotFound` when the key is not live.
    pub fn tombstone(&mut self, revision: Revision) -> Result<(), Error> {
        assert!(
            !self.is_empty(),
            "key index: tombstone got an unexpected empty key index"
        );
        if !self.is_live() {
            return Err(Error::RevisionNotFound);
        }
        self.put(revision);
        self.generations.push(Generation::default());
        Ok(())
    }

    /// The key as of main revision `at_revision`, or None if it did not
    /// exist then.
    pub fn get(&self, at_revision: i64) -> Option<KeyAt> {
        assert!(
            !self.is_empty(),
            "key index: get got an unexpected empty key index"
        );
        let generation = self.find_generation(at_revision)?;
        let position = generation.walk(|revision| revision.main > at_revision)?;
        let newer_revisions = (generation.revisions.len() - position - 1) as i64;
        Some(KeyAt {
            modified: generation.revisions[position],
            created: generation.created,
            version: generation.version - newer_revisions,
        })
    }

    /// The revisions at or after main revision `since_main`, oldest first,
    /// keeping only the highest sub revision of each main revision (the
    /// others were never visible outside their transaction).
    pub fn since(&self, since_main: i64) -> Vec<Revision> {
        assert!(
            !self.is_empty(),
            "key index: since got an unexpected empty key index"
        );
        let since = Revision::new(since_main, 0);
        // The newest generation created before `since`; older ones hold
        // nothing at or after it.
        let mut start = self.generations.len() - 1;
        while start > 0 {
            let generation = &self.generations[start];
            if !generation.is_empty() && since > generation.created {
                break;
            }
            start -= 1;
        }

        let mut revisions: Vec<Revision> = Vec::new();
        let candidates = self.generations[start..]
            .iter()
            .flat_map(|generation| generation.revisions.iter().copied())
            .filter(|&revision| revision >= since);
        for revision in candidates {
            match revisions.last_mut() {
                Some(last) if last.main == revision.main => *last = revision,
                _ => revisions.push(revision),
            }
        }
        revisions
    }

    /// Drops the history that no read at or after main revision
    /// `at_revision` can need, and adds the revision kept for such reads to
    /// `available`. The store removes the key index if it becomes empty.
    pub fn compact(&mut self, at_revision: i64, available: &mut impl KeptRevisions) {
        self.compact_noting(at_revision, available, &mut Vec::new());
    }

    /// `compact`, also adding every revision it drops to `dropped`: the
    /// store's records at or below `at_revision` that no key keeps, since
    /// every record is in its key's index until compacted.
    pub fn compact_noting(
        &mut self,
        at_revision: i64,
        available: &mut impl KeptRevisions,
        dropped: &mut Vec<Revision>,
    ) {
        assert!(
            !self.is_empty(),
            "key index: compact got an unexpected empty key index"
        );
        let (mut generation_index, kept_position) = self.find_compaction(at_revision, available);
        let last_index = self.generations.len() - 1;
        let generation = &mut self.generations[generation_index];
        if !generation.is_empty() {
            if let Some(kept_position) = kept_position {
                // The sabotage drops a live key's newest revision with the
                // older ones when no write followed it by `at_revision`.
                #[cfg(madsim)]
                let kept_position =
                    if crate::sabotage::active(crate::sabotage::Sabotage::CompactionDropsLiveKeys)
                        && generation_index == last_index
                        && kept_position + 1 == generation.revisions.len()
                    {
                        kept_position + 1
                    } else {
                        kept_position
                    };
                dropped.extend(generation.revisions.drain(..kept_position));
            }
            // A lone revision in a generation that is not the last is a
            // tombstone: nothing at or after `at_revision` can read it.
            // Kept from etcd although put, tombstone and compact never leave
            // such a generation (it always keeps its put and its tombstone).
            if generation.revisions.len() == 1 && generation_index != last_index {
                available.unkeep(&generation.revisions[0]);
                generation_index += 1;
            }
        }
        for generation in self.generations.drain(..generation_index) {
            dropped.extend(generation.revisions);
        }
    }

    /// Adds to `available` the revision that `compact(at_revision, ..)`
    /// would keep, without changing the key index (etcd `keyIndex.keep`).
    pub fn keep(&self, at_revision: i64, available: &mut impl KeptRevisions) {
        if self.is_empty() {
            return;
        }
        let (generation_index, kept_position) = self.find_compaction(at_revision, available);
        let generation = &self.generations[generation_index];
        let is_last_generation = generation_index == self.generations.len() - 1;
        if !generation.is_empty()
            && kept_position == Some(generation.revisions.len() - 1)
            && !is_last_generation
        {
            available.unkeep(&generation.revisions[generation.revisions.len() - 1]);
        }
    }

    /// The generation compaction at `at_revision` starts from and the
    /// position of the revision it keeps there, which goes into `available`
    /// (etcd `keyIndex.doCompact`).
    fn find_compaction(
        &self,
        at_revision: i64,
        available: &mut impl KeptRevisions,
    ) -> (usize, Option<usize>) {
        let last_index = self.generations.len() - 1;
        // The first generation that was still live at `at_revision` or was
        // created after it.
        let mut generation_index = 0;
        while generation_index < last_index {
            let tombstone = self.generations[generation_index]
                .revisions
                .last()
                .expect("key index: only the last generation can be empty");
            if tombstone.main > at_revision {
                break;
            }
            generation_index += 1;
        }
        let generation = &self.generations[generation_index];
        let kept_position = generation.walk(|revision| revision.main > at_revision);
        if let Some(position) = kept_position {
            available.keep(generation.revisions[position]);
        }
        (generation_index, kept_position)
    }

    /// The generation the key belonged to at main revision `at_revision`,
    /// or None when the key did not exist then (etcd `findGeneration`).
    pub fn find_generation(&self, at_revision: i64) -> Option<&Generation> {
        let last_index = self.generations.len().checked_sub(1)?;
        for (index, generation) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(last)) =
                (generation.revisions.first(), generation.revisions.last())
            else {
                continue;
            };
            // In every generation but the last, the last revision is the
            // tombstone: at or after it, the key was deleted.
            if index != last_index && last.main <= at_revision {
                return None;
            }
            if first.main <= at_revision {
                return Some(generation);
            }
        }
        None
    }
}
