//! `StateHasher`: a deterministic hash of a store's whole logical state.
//!
//! FNV-1a (64 bit) over the snapshot image, streamed so the image is never
//! built in memory. Replicas that applied the same entries have equal
//! hashes; std's `RandomState` would differ from process to process.

use super::image::ImageSink;
use super::Store;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit.
pub(super) struct StateHasher {
    state: u64,
}

impl StateHasher {
    pub(super) fn new() -> Self {
        StateHasher {
            state: FNV_OFFSET_BASIS,
        }
    }

    pub(super) fn finish(&self) -> u64 {
        self.state
    }
}

impl ImageSink for StateHasher {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }
}

impl Store {
    /// Hash of revisions, compact revision and every record: equal for
    /// stores that behave the same, including a store and its decoded image.
    pub fn state_hash(&self) -> u64 {
        let mut hasher = StateHasher::new();
        self.write_image(&mut hasher);
        hasher.finish()
    }
}
