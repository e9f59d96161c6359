//! A fixed-size set of operation indices: which operations the search has linearized.

const WORD_BITS: usize = u64::BITS as usize;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bitset {
    words: Box<[u64]>,
}

impl Bitset {
    pub(crate) fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(WORD_BITS)].into_boxed_slice(),
        }
    }

    pub(crate) fn insert(&mut self, index: usize) {
        self.words[index / WORD_BITS] |= 1 << (index % WORD_BITS);
    }

    pub(crate) fn remove(&mut self, index: usize) {
        self.words[index / WORD_BITS] &= !(1 << (index % WORD_BITS));
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, index: usize) -> bool {
        self.words[index / WORD_BITS] & (1 << (index % WORD_BITS)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::Bitset;

    #[test]
    fn insert_and_remove_across_words() {
        let mut set = Bitset::new(130);
        for index in [0, 63, 64, 129] {
            set.insert(index);
            assert!(set.contains(index));
        }
        set.remove(64);
        assert!(!set.contains(64));
        assert!(set.contains(63) && set.contains(129));
        assert!(!set.contains(1));
    }
}
