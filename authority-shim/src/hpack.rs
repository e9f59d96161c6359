//! HPACK for the authority shim (RFC 7541): a decoder that replays the
//! client encoder's dynamic table, and the literal encoding the shim sends
//! on to h2.
//!
//! Our own decoder, not a crate's: the one maintained crate (loona-hpack)
//! builds a hash map for every Huffman-coded string and spends about 30 µs
//! on each (release build), and grpc-go sends at least one such string,
//! `grpc-timeout`, with every request. This one decodes the same block in
//! well under a microsecond. loona-hpack stays as the tests' independent
//! decoder to compare against.

use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};

/// RFC 7541 Appendix A. Index 1 is the first entry.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];
/// What HPACK adds to each entry's size for its overhead (RFC 7541 §4.1).
const ENTRY_OVERHEAD_BYTES: usize = 32;
/// Continuation octets of an integer: four carry 28 bits, more than any
/// length or index in a bounded header block needs, and no more keeps the
/// value far from overflow (RFC 7541 §5.1 asks for such a limit).
const INTEGER_CONTINUATIONS_MAX: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("the block ends inside a field")]
    Truncated,
    #[error("an integer is longer than {INTEGER_CONTINUATIONS_MAX} continuation octets")]
    IntegerTooLong,
    #[error("index {0} is in neither table")]
    IndexOutOfRange(usize),
    #[error("a table size update to {0} bytes is over the {1} bytes allowed")]
    TableSizeOverLimit(usize, usize),
    #[error("a table size update follows a field")]
    TableSizeUpdateLate,
    #[error("{0}")]
    Huffman(#[from] HuffmanError),
}

/// Whether a field may be compressed by intermediaries again: one the client
/// sent as never indexed must be passed on as such (RFC 7541 §6.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    Allowed,
    Never,
}

/// The dynamic table's entries, name and value, newest first (index 62 on).
type DynamicTable = VecDeque<(Box<[u8]>, Box<[u8]>)>;

/// Decodes one connection's header blocks, in order.
pub struct Decoder {
    table: DynamicTable,
    /// The table's size as RFC 7541 §4.1 counts it.
    table_bytes: usize,
    /// The size the encoder last chose (RFC 7541 §4.2).
    table_bytes_max: usize,
    /// The most the encoder may choose: the SETTINGS_HEADER_TABLE_SIZE the
    /// server announced.
    table_bytes_limit: usize,
    /// The field being decoded (kept for their allocations).
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Decoder {
    /// A new connection's decoder; the encoder starts at `table_bytes_limit`.
    pub fn new(table_bytes_limit: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            table_bytes: 0,
            table_bytes_max: table_bytes_limit,
            table_bytes_limit,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Calls `field` with each field of `block`, in order. After an error the
    /// table may no longer match the encoder's, so the connection must end
    /// (RFC 9113 §4.3: a COMPRESSION_ERROR).
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8], Indexing),
    ) -> Result<(), HpackError> {
        let mut rest = block;
        let mut at_start = true;
        while let Some(&first) = rest.first() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, after) = decode_integer(rest, 7)?;
                rest = after;
                let (name, value) = entry(&self.table, index)?;
                field(name, value, Indexing::Allowed);
            } else if first & 0xe0 == 0x20 {
                // Table size update (§6.3): only before the first field (§4.2).
                if !at_start {
                    return Err(HpackError::TableSizeUpdateLate);
                }
                let (size, after) = decode_integer(rest, 5)?;
                rest = after;
                if size > self.table_bytes_limit {
                    return Err(HpackError::TableSizeOverLimit(size, self.table_bytes_limit));
                }
                self.table_bytes_max = size;
                self.evict();
                continue;
            } else {
                // Literal field (§6.2): with indexing (01), without (0000) or
                // never indexed (0001).
                let with_indexing = first & 0x40 != 0;
                let (name_index, after) = decode_integer(rest, if with_indexing { 6 } else { 4 })?;
                rest = after;
                if name_index == 0 {
                    rest = decode_string(rest, &mut self.name)?;
                } else {
                    self.name.clear();
                    self.name
                        .extend_from_slice(entry(&self.table, name_index)?.0);
                }
                rest = decode_string(rest, &mut self.value)?;
                let indexing = if first & 0xf0 == 0x10 {
                    Indexing::Never
                } else {
                    Indexing::Allowed
                };
                field(&self.name, &self.value, indexing);
                if with_indexing {
                    self.insert();
                }
            }
            at_start = false;
        }
        Ok(())
    }

    /// Adds the field just decoded (RFC 7541 §4.4): an entry larger than the
    /// table empties it and is not kept.
    fn insert(&mut self) {
        self.table_bytes += self.name.len() + self.value.len() + ENTRY_OVERHEAD_BYTES;
        self.table
            .push_front((self.name.as_slice().into(), self.value.as_slice().into()));
        self.evict();
    }

    fn evict(&mut self) {
        while self.table_bytes > self.table_bytes_max {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.table_bytes -= name.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        }
        assert!(
            self.table_bytes <= self.table_bytes_max,
            "the table fits its size once evicted"
        );
    }
}

fn entry(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    let found = match index {
        0 => None,
        1..=61 => Some(STATIC_TABLE[index - 1]),
        _ => table
            .get(index - STATIC_TABLE.len() - 1)
            .map(|(name, value)| (&name[..], &value[..])),
    };
    found.ok_or(HpackError::IndexOutOfRange(index))
}

/// RFC 7541 §5.1: an integer in the low `prefix_bits` of the first octet,
/// continued in further octets if they are all ones. Returns the rest.
fn decode_integer(input: &[u8], prefix_bits: u32) -> Result<(usize, &[u8]), HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let prefix_max = (1_usize << prefix_bits) - 1;
    let mut value = usize::from(first) & prefix_max;
    if value < prefix_max {
        return Ok((value, rest));
    }
    for continuation in 0..INTEGER_CONTINUATIONS_MAX {
        let (&octet, after) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = after;
        value += usize::from(octet & 0x7f) << (7 * continuation);
        if octet & 0x80 == 0 {
            return Ok((value, rest));
        }
    }
    Err(HpackError::IntegerTooLong)
}

/// RFC 7541 §5.2: a string literal, raw or Huffman-coded, into `output`.
/// Returns the rest.
fn decode_string<'a>(input: &'a [u8], output: &mut Vec<u8>) -> Result<&'a [u8], HpackError> {
    let huffman_coded = input.first().is_some_and(|first| first & 0x80 != 0);
    let (length, rest) = decode_integer(input, 7)?;
    if length > rest.len() {
        return Err(HpackError::Truncated);
    }
    let (octets, rest) = rest.split_at(length);
    output.clear();
    if huffman_coded {
        huffman::decode(octets, output)?;
    } else {
        output.extend_from_slice(octets);
    }
    Ok(rest)
}

/// A literal field without indexing or never indexed, with a literal name,
/// neither string Huffman-coded (RFC 7541 §6.2.2, §6.2.3): no table entry on
/// h2's side, and no compression on an in-memory hop, where it would only
/// cost time.
pub fn encode_literal(name: &[u8], value: &[u8], indexing: Indexing, output: &mut Vec<u8>) {
    output.push(match indexing {
        Indexing::Allowed => 0x00,
        Indexing::Never => 0x10,
    });
    encode_integer(name.len(), 7, 0x00, output);
    output.extend_from_slice(name);
    encode_integer(value.len(), 7, 0x00, output);
    output.extend_from_slice(value);
}

/// RFC 7541 §5.1: `value` in a `prefix_bits`-bit prefix, the first octet's
/// other bits set to `flags`.
pub fn encode_integer(mut value: usize, prefix_bits: u32, flags: u8, output: &mut Vec<u8>) {
    let prefix_max = (1_usize << prefix_bits) - 1;
    if value < prefix_max {
        output.push(flags | value as u8);
        return;
    }
    output.push(flags | prefix_max as u8);
    value -= prefix_max;
    while value >= 0x80 {
        output.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    output.push(value as u8);
}

#[cfg(test)]
mod tests {
    use proptest::collection;
    use proptest::prelude::*;

    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn decoded(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
        let mut fields = Vec::new();
        decoder
            .decode(block, |name, value, _| {
                fields.push((name.to_vec(), value.to_vec()))
            })
            .map(|()| fields)
    }

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    /// RFC 7541 Appendix C.3 (raw strings) and C.4 (Huffman-coded): three
    /// requests each, the later ones naming entries the earlier ones added.
    #[test]
    fn rfc_7541_request_examples() {
        let first = fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]);
        let mut second = first.clone();
        second.extend(fields(&[("cache-control", "no-cache")]));
        let third = fields(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        let raw: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x0f\x77\x77\x77\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d",
            b"\x82\x86\x84\xbe\x58\x08\x6e\x6f\x2d\x63\x61\x63\x68\x65",
            b"\x82\x87\x85\xbf\x40\x0a\x63\x75\x73\x74\x6f\x6d\x2d\x6b\x65\x79\x0c\x63\x75\x73\x74\x6f\x6d\x2d\x76\x61\x6c\x75\x65",
        ];
        let huffman: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        for blocks in [raw, huffman] {
            let mut decoder = Decoder::new(4096);
            let expected = [&first, &second, &third];
            for ((block, expected), table_bytes) in blocks.iter().zip(expected).zip([57, 110, 164])
            {
                assert_eq!(&decoded(&mut decoder, block).unwrap(), expected);
                assert_eq!(
                    decoder.table_bytes, table_bytes,
                    "the table's size after each request, as the RFC gives it"
                );
            }
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let cases: [(&[u8], HpackError); 9] = [
            (b"\x80", HpackError::IndexOutOfRange(0)),
            (b"\xbe", HpackError::IndexOutOfRange(62)),
            (b"\x0f\x30\x01v", HpackError::IndexOutOfRange(63)), // A name index past both tables.
            (b"\xff\xff\xff\xff\xff\x0f", HpackError::IntegerTooLong),
            (b"\xff", HpackError::Truncated),
            (b"\x00\x05a", HpackError::Truncated),
            (
                b"\x3f\xe1\x3f\x82",
                HpackError::TableSizeOverLimit(8192, 4096),
            ),
            (b"\x82\x20", HpackError::TableSizeUpdateLate),
            (
                b"\x00\x81\xff\x01v",
                HpackError::Huffman(HuffmanError::PaddingTooLong),
            ),
        ];
        for (block, expected) in cases {
            assert_eq!(
                decoded(&mut Decoder::new(4096), block),
                Err(expected),
                "{block:x?}"
            );
        }
    }

    #[test]
    fn a_smaller_table_evicts_and_an_oversized_entry_empties_it() {
        let mut decoder = Decoder::new(4096);
        decoded(&mut decoder, b"\x40\x01a\x01b\x40\x01c\x01d").unwrap();
        assert_eq!(decoder.table_bytes, 68);
        decoded(&mut decoder, b"\x3f\x15\x82").unwrap(); // Size update to 52: one entry fits.
        assert_eq!(
            decoded(&mut decoder, b"\xbe").unwrap(),
            fields(&[("c", "d")])
        );
        assert_eq!(
            decoded(&mut decoder, b"\xbf"),
            Err(HpackError::IndexOutOfRange(63))
        );
        let mut oversized = b"\x40\x01x\x7f\x00".to_vec(); // A value of 127 bytes.
        oversized.extend([b'v'; 127]);
        decoded(&mut decoder, &oversized).unwrap();
        assert_eq!((decoder.table.len(), decoder.table_bytes), (0, 0));
    }

    #[test]
    fn integers_round_trip() {
        for prefix_bits in 1..=8 {
            for value in [
                0,
                1,
                30,
                31,
                126,
                127,
                128,
                255,
                256,
                16_383,
                1 << 20,
                (1 << 28) - 1,
            ] {
                let mut encoded = Vec::new();
                encode_integer(value, prefix_bits, 0, &mut encoded);
                assert_eq!(
                    decode_integer(&encoded, prefix_bits),
                    Ok((value, &[][..])),
                    "{value} in {prefix_bits} bits"
                );
            }
        }
    }

    /// One field representation, as a test encoder writes it.
    #[derive(Clone, Debug)]
    enum Representation {
        Indexed(usize),
        Literal {
            indexing: u8,
            name_index: usize,
            name: Vec<u8>,
            value: Vec<u8>,
            huffman: bool,
        },
        SizeUpdate(usize),
    }

    fn string(octets: &[u8], huffman: bool, output: &mut Vec<u8>) {
        if huffman {
            let encoded = huffman::tests::encode(octets);
            encode_integer(encoded.len(), 7, 0x80, output);
            output.extend(encoded);
        } else {
            encode_integer(octets.len(), 7, 0, output);
            output.extend_from_slice(octets);
        }
    }

    fn encode_block(representations: &[Representation]) -> Vec<u8> {
        let mut block = Vec::new();
        for representation in representations {
            match representation {
                Representation::Indexed(index) => encode_integer(*index, 7, 0x80, &mut block),
                Representation::SizeUpdate(size) => encode_integer(*size, 5, 0x20, &mut block),
                Representation::Literal {
                    indexing,
                    name_index,
                    name,
                    value,
                    huffman,
                } => {
                    let (prefix_bits, flags) =
                        [(6, 0x40), (4, 0x00), (4, 0x10)][usize::from(*indexing)];
                    encode_integer(*name_index, prefix_bits, flags, &mut block);
                    if *name_index == 0 {
                        string(name, *huffman, &mut block);
                    }
                    string(value, !*huffman, &mut block);
                }
            }
        }
        block
    }

    fn representation() -> impl Strategy<Value = Representation> {
        // Mostly short values; some long enough to evict entries.
        let value = prop_oneof![4 => collection::vec(any::<u8>(), 0..24), 1 => collection::vec(any::<u8>(), 200..700)];
        let name_index = prop_oneof![0_usize..1, 1_usize..80];
        let literal = (
            0_u8..3,
            name_index,
            collection::vec(any::<u8>(), 1..12),
            value,
            any::<bool>(),
        )
            .prop_map(|(indexing, name_index, name, value, huffman)| {
                Representation::Literal {
                    indexing,
                    name_index,
                    name,
                    value,
                    huffman,
                }
            });
        prop_oneof![
            4 => (1_usize..80).prop_map(Representation::Indexed),
            6 => literal,
            1 => (0_usize..5000).prop_map(Representation::SizeUpdate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Blocks of every representation, raw and Huffman strings, table
        /// references, evictions and size updates, decode as loona-hpack
        /// (an independent decoder) decodes them. The two differ only where
        /// RFC 7541 §4.2 is strict and loona-hpack is not (or the reverse):
        /// a size update after a field, or one ending a block.
        #[test]
        fn blocks_decode_as_an_independent_decoder_decodes_them(
            blocks in collection::vec(collection::vec(representation(), 0..8), 1..6),
        ) {
            let mut ours = Decoder::new(4096);
            let mut independent = loona_hpack::Decoder::new();
            independent.set_max_allowed_table_size(4096);
            for block in blocks {
                let encoded = encode_block(&block);
                match (decoded(&mut ours, &encoded), independent.decode(&encoded)) {
                    (Ok(our_fields), Ok(their_fields)) => prop_assert_eq!(our_fields, their_fields),
                    (Err(_), Err(_)) => break,
                    (Err(HpackError::TableSizeUpdateLate), Ok(_)) => break,
                    (Ok(_), Err(loona_hpack::decoder::DecoderError::SizeUpdateAtEnd)) => break,
                    (ours, theirs) => {
                        prop_assert!(false, "ours {:?}, loona-hpack's {:?}", ours, theirs.map_err(|error| error.to_string()))
                    }
                }
            }
        }

        #[test]
        fn literals_decode_to_what_was_encoded(
            name in collection::vec(any::<u8>(), 0..300),
            value in collection::vec(any::<u8>(), 0..300),
        ) {
            for indexing in [Indexing::Allowed, Indexing::Never] {
                let mut block = Vec::new();
                encode_literal(&name, &value, indexing, &mut block);
                let mut fields = Vec::new();
                Decoder::new(0).decode(&block, |name, value, indexing| fields.push((name.to_vec(), value.to_vec(), indexing))).unwrap();
                prop_assert_eq!(fields, vec![(name.clone(), value.clone(), indexing)]);
            }
        }

        /// Random octets never panic the decoder.
        #[test]
        fn arbitrary_blocks_are_decoded_or_refused(blocks in collection::vec(collection::vec(any::<u8>(), 0..64), 1..4)) {
            let mut decoder = Decoder::new(4096);
            for block in blocks {
                let _ = decoded(&mut decoder, &block);
            }
        }
    }
}
