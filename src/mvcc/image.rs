//! The snapshot image of a `Store`: a versioned, little-endian encoding.
//!
//! Layout (every integer little-endian):
//!
//! ```text
//! magic "DETCDMVC" | format version u32 = 1 | current revision i64 |
//! compact revision i64 | record count u64 | records, ascending revision:
//!   main i64 | sub i64 | kind u8 (1 = put, 2 = tombstone) | key length u64 | key
//!   puts only: create revision i64 | version i64 | lease i64 | value length u64 | value
//! ```
//!
//! A put's mod revision is its main revision and is not stored twice. The
//! key index is not stored: decoding rebuilds it from the records and
//! rejects records that no store could have produced. The caller adds the
//! checksum and the file framing.

use std::collections::BTreeMap;

use super::{Error, KeyValue, Record, Revision, Store};

const MAGIC: &[u8; 8] = b"DETCDMVC";
const FORMAT_VERSION: u32 = 1;
const KIND_PUT: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;

/// Where an image is written: a buffer, or a hasher that never holds the
/// whole image.
pub(super) trait ImageSink {
    fn write_bytes(&mut self, bytes: &[u8]);
}

impl ImageSink for Vec<u8> {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Store {
    /// The image of the whole logical state; `decode_image` inverts it.
    pub fn encode_image(&self) -> Vec<u8> {
        let mut image = Vec::new();
        self.write_image(&mut image);
        image
    }

    pub(super) fn write_image(&self, sink: &mut impl ImageSink) {
        sink.write_bytes(MAGIC);
        sink.write_bytes(&FORMAT_VERSION.to_le_bytes());
        sink.write_bytes(&self.current_revision().to_le_bytes());
        sink.write_bytes(&self.compact_revision().to_le_bytes());
        sink.write_bytes(&(self.record_count() as u64).to_le_bytes());
        for (revision, record) in self.records_since(i64::MIN) {
            sink.write_bytes(&revision.main.to_le_bytes());
            sink.write_bytes(&revision.sub.to_le_bytes());
            match record {
                Record::Put(key_value) => {
                    sink.write_bytes(&[KIND_PUT]);
                    write_length_prefixed(sink, &key_value.key);
                    sink.write_bytes(&key_value.create_revision.to_le_bytes());
                    sink.write_bytes(&key_value.version.to_le_bytes());
                    sink.write_bytes(&key_value.lease.to_le_bytes());
                    write_length_prefixed(sink, &key_value.value);
                }
                Record::Tombstone { key } => {
                    sink.write_bytes(&[KIND_TOMBSTONE]);
                    write_length_prefixed(sink, key);
                }
            }
        }
    }

    /// Rebuilds a store from `encode_image` output. Bad bytes give
    /// `Error::Corrupt`, never a panic.
    pub fn decode_image(image: &[u8]) -> Result<Store, Error> {
        let mut reader = Reader { bytes: image };
        if reader.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(Error::Corrupt("not an mvcc image".to_string()));
        }
        let format_version = u32::from_le_bytes(reader.array("format version")?);
        if format_version != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "unknown format version {format_version}"
            )));
        }
        let current_revision = reader.i64("current revision")?;
        let compact_revision = reader.i64("compact revision")?;
        let record_count = reader.u64("record count")?;

        // No allocation is sized by `record_count`: a lying count runs out
        // of bytes after at most `image.len()` records.
        let mut revision_log = BTreeMap::new();
        let mut previous: Option<Revision> = None;
        for _ in 0..record_count {
            let (revision, record) = reader.record()?;
            if previous.is_some_and(|previous| revision <= previous) {
                return Err(Error::Corrupt(format!(
                    "record at {revision} is out of order"
                )));
            }
            previous = Some(revision);
            revision_log.insert(revision, record);
        }
        if !reader.bytes.is_empty() {
            return Err(Error::Corrupt(format!(
                "{} bytes after the last record",
                reader.bytes.len()
            )));
        }
        Store::from_revision_log(current_revision, compact_revision, revision_log)
    }
}

fn write_length_prefixed(sink: &mut impl ImageSink, bytes: &[u8]) {
    sink.write_bytes(&(bytes.len() as u64).to_le_bytes());
    sink.write_bytes(bytes);
}

/// Reads an image front to back; every read checks the bytes left first.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], Error> {
        if self.bytes.len() < length {
            return Err(Error::Corrupt(format!("image ends inside the {what}")));
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }

    fn i64(&mut self, what: &str) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn length_prefixed(&mut self, what: &str) -> Result<Vec<u8>, Error> {
        let length = self.u64(what)?;
        let length = usize::try_from(length).map_err(|_| {
            Error::Corrupt(format!("{what} length {length} does not fit in memory"))
        })?;
        Ok(self.take(length, what)?.to_vec())
    }

    fn record(&mut self) -> Result<(Revision, Record), Error> {
        let revision = Revision::new(
            self.i64("record revision")?,
            self.i64("record sub revision")?,
        );
        let [kind] = self.array("record kind")?;
        let key = self.length_prefixed("record key")?;
        let record = match kind {
            KIND_PUT => {
                let create_revision = self.i64("create revision")?;
                let version = self.i64("version")?;
                let lease = self.i64("lease")?;
                let value = self.length_prefixed("value")?;
                Record::Put(KeyValue {
                    key,
                    create_revision,
                    mod_revision: revision.main,
                    version,
                    value,
                    lease,
                })
            }
            KIND_TOMBSTONE => Record::Tombstone { key },
            _ => {
                return Err(Error::Corrupt(format!(
                    "record at {revision} has unknown kind {kind}"
                )))
            }
        };
        Ok((revision, record))
    }
}
