//! The snapshot image of a `Store`: the `detcdpb.MvccImage` message
//! (proto/detcd/state.proto), prost's encoding.
//!
//! The image is written record by record (each one a field of the
//! message, encoded by prost), so a hash of it (`StateHasher`) never holds
//! the whole image. A put's key-value is `mvccpb.KeyValue`, as the backend
//! stores it. The key index is not stored: decoding rebuilds it from the
//! records and rejects records that no store could have produced. The
//! caller adds the checksum and the file framing.

use prost::Message as _;

use super::{Error, Rebuild, Record, Revision, Store};
use crate::proto::detcdpb::{mvcc_record, MvccImage, MvccRecord};

/// The image format this build writes and reads.
const FORMAT: u32 = 1;
/// `MvccImage.records`' field number.
const RECORDS_FIELD: u32 = 5;

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
    pub fn encode_image(&self) -> Result<Vec<u8>, Error> {
        let mut image = Vec::new();
        self.write_image(&mut image)?;
        Ok(image)
    }

    /// Writes exactly what prost encodes for the whole `MvccImage`: its
    /// scalar fields, then each record as its repeated field.
    pub(super) fn write_image(&self, sink: &mut impl ImageSink) -> Result<(), Error> {
        let header = MvccImage {
            format: FORMAT,
            current_revision: self.current_revision(),
            compact_revision: self.compact_revision(),
            record_count: self.record_count() as u64,
            records: Vec::new(),
        };
        sink.write_bytes(&header.encode_to_vec());
        let mut buffer = Vec::new();
        self.visit_records(i64::MIN, self.current_revision(), |revision, record| {
            buffer.clear();
            prost::encoding::message::encode(
                RECORDS_FIELD,
                &record_message(revision, record),
                &mut buffer,
            );
            sink.write_bytes(&buffer);
        })
    }

    /// Rebuilds a store from `encode_image` output. Bad bytes give
    /// `Error::Corrupt`, never a panic.
    pub fn decode_image(image: &[u8]) -> Result<Store, Error> {
        let image = MvccImage::decode(image)
            .map_err(|error| Error::Corrupt(format!("not an mvcc image: {error}")))?;
        Store::from_image(image)
    }

    /// Rebuilds a store from its decoded image (inside a state image).
    pub fn from_image(image: MvccImage) -> Result<Store, Error> {
        if image.format != FORMAT {
            return Err(Error::Corrupt(format!(
                "unknown mvcc image format {} (this detcd reads {FORMAT})",
                image.format
            )));
        }
        if image.record_count != image.records.len() as u64 {
            return Err(Error::Corrupt(format!(
                "the image names {} records but holds {}",
                image.record_count,
                image.records.len()
            )));
        }
        let mut rebuild = Rebuild::new(image.current_revision, image.compact_revision, true)?;
        for message in image.records {
            let (revision, record) = record_from_message(message)?;
            rebuild.push(revision, record)?;
        }
        rebuild.finish()
    }
}

/// One revision as a snapshot carries it.
pub fn record_message(revision: Revision, record: &Record) -> MvccRecord {
    let record = match record {
        Record::Put(key_value) => mvcc_record::Record::Put((**key_value).clone().into()),
        Record::Tombstone { key } => mvcc_record::Record::Tombstone(key.clone()),
    };
    MvccRecord {
        main: revision.main,
        sub: revision.sub,
        record: Some(record),
    }
}

/// `record_message`, inverted; a record no store could hold is corrupt.
pub fn record_from_message(message: MvccRecord) -> Result<(Revision, Record), Error> {
    let revision = Revision::new(message.main, message.sub);
    let record = match message.record {
        Some(mvcc_record::Record::Put(key_value)) => {
            if key_value.mod_revision != revision.main {
                return Err(Error::Corrupt(format!(
                    "record at {revision} holds a put of revision {}",
                    key_value.mod_revision
                )));
            }
            Record::put(key_value.into())
        }
        Some(mvcc_record::Record::Tombstone(key)) => Record::Tombstone { key },
        None => {
            return Err(Error::Corrupt(format!(
                "record at {revision} is neither a put nor a tombstone"
            )))
        }
    };
    Ok((revision, record))
}
