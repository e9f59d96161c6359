//! `StateHasher`: a deterministic hash of a store's whole logical state.
//!
//! FNV-1a (64 bit, the `fnv` crate) over the snapshot image, streamed so the image is never
//! built in memory. Replicas that applied the same entries have equal
//! hashes; std's `RandomState` would differ from process to process.

use super::image::ImageSink;
use super::Store;

/// FNV-1a, 64 bit.
pub(super) struct StateHasher(fnv::FnvHasher);

impl StateHasher {
    pub(super) fn new() -> Self {
        StateHasher(fnv::FnvHasher::default())
    }

    pub(super) fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

impl ImageSink for StateHasher {
    fn write_bytes(&mut self, bytes: &[u8]) {
        std::hash::Hasher::write(&mut self.0, bytes);
    }
}

impl Store {
    /// Hash of revisions, compact revision and every record: equal for
    /// stores that behave the same, including a store and its decoded image.
    pub fn state_hash(&self) -> Result<u64, super::Error> {
        let mut hasher = StateHasher::new();
        self.write_image(&mut hasher)?;
        Ok(hasher.finish())
    }
}
