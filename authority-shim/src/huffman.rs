//! The HPACK Huffman code's decoder (RFC 7541 §5.2, Appendix B), for the
//! authority shim's replay of client header blocks.
//!
//! The code is canonical: within a length, codes run up by one in symbol
//! order, and the first code of each length follows the last of the length
//! before. So the code lengths alone define it, and decoding walks one bit at
//! a time, as zlib's `puff.c` does, with no table built at run time. The
//! `huffman_code_matches_an_independent_decoder` test checks this decoder
//! against loona-hpack's on random input.

/// The code length in bits of each symbol: octets 0–255, then EOS (256).
const CODE_LENGTHS: [u8; SYMBOL_COUNT] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const SYMBOL_COUNT: usize = 257;
const END_OF_STRING: u16 = 256;
/// The longest code, EOS's.
const CODE_BITS_MAX: usize = 30;
/// Padding is a prefix of EOS shorter than an octet (RFC 7541 §5.2).
const PADDING_BITS_MAX: usize = 7;

/// How many codes have each length.
const CODES_PER_LENGTH: [u16; CODE_BITS_MAX + 1] = codes_per_length();
/// The symbols in code order: by length, then by value.
const SYMBOLS_IN_CODE_ORDER: [u16; SYMBOL_COUNT] = symbols_in_code_order();

const fn codes_per_length() -> [u16; CODE_BITS_MAX + 1] {
    let mut counts = [0; CODE_BITS_MAX + 1];
    let mut symbol = 0;
    while symbol < SYMBOL_COUNT {
        counts[CODE_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    counts
}

const fn symbols_in_code_order() -> [u16; SYMBOL_COUNT] {
    let mut order = [0; SYMBOL_COUNT];
    let mut filled = 0;
    let mut length = 1;
    while length <= CODE_BITS_MAX {
        let mut symbol = 0;
        while symbol < SYMBOL_COUNT {
            if CODE_LENGTHS[symbol] as usize == length {
                order[filled] = symbol as u16;
                filled += 1;
            }
            symbol += 1;
        }
        length += 1;
    }
    order
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("a Huffman string contains EOS")]
    EndOfStringInside,
    #[error("a Huffman string is padded with more than seven bits")]
    PaddingTooLong,
    #[error("a Huffman string is not padded with the start of EOS")]
    PaddingNotEndOfString,
    #[error("a Huffman code is longer than any in the table")]
    CodeTooLong,
}

/// Appends the octets `encoded` decodes to to `output`.
pub fn decode(encoded: &[u8], output: &mut Vec<u8>) -> Result<(), HuffmanError> {
    // The bits of the code being read, shifted left once: the canonical
    // comparison below runs on `code` against `first`, the first code of
    // the current length.
    let mut code: u32 = 0;
    let mut first: u32 = 0;
    let mut first_index: usize = 0;
    let mut length: usize = 0;
    for &octet in encoded {
        for shift in (0..8).rev() {
            code |= u32::from(octet >> shift & 1);
            length += 1;
            if length > CODE_BITS_MAX {
                // Cannot happen: the code is complete, so every 30 bits end a code.
                return Err(HuffmanError::CodeTooLong);
            }
            let count = u32::from(CODES_PER_LENGTH[length]);
            match code.checked_sub(first) {
                Some(offset) if offset < count => {
                    let symbol = SYMBOLS_IN_CODE_ORDER
                        .get(first_index + offset as usize)
                        .copied()
                        .ok_or(HuffmanError::CodeTooLong)?;
                    if symbol == END_OF_STRING {
                        return Err(HuffmanError::EndOfStringInside);
                    }
                    output.push(symbol as u8);
                    (code, first, first_index, length) = (0, 0, 0, 0);
                }
                _ => {
                    first_index += count as usize;
                    first = (first + count) << 1;
                    code <<= 1;
                }
            }
        }
    }
    // The bits left over are padding: at most seven, all ones (EOS starts
    // with thirty ones).
    if length > PADDING_BITS_MAX {
        return Err(HuffmanError::PaddingTooLong);
    }
    let padding = code >> 1;
    if padding != (1 << length) - 1 {
        return Err(HuffmanError::PaddingNotEndOfString);
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::collection;
    use proptest::prelude::*;

    use super::*;

    /// The canonical code of each symbol, rebuilt from the lengths.
    fn codes() -> Vec<(u32, usize)> {
        let mut codes = vec![(0, 0); SYMBOL_COUNT];
        let mut code = 0_u32;
        let mut previous_length = CODE_LENGTHS[usize::from(SYMBOLS_IN_CODE_ORDER[0])] as usize;
        for (position, &symbol) in SYMBOLS_IN_CODE_ORDER.iter().enumerate() {
            let length = CODE_LENGTHS[usize::from(symbol)] as usize;
            if position > 0 {
                code = (code + 1) << (length - previous_length);
            }
            previous_length = length;
            codes[usize::from(symbol)] = (code, length);
        }
        codes
    }

    /// RFC 7541 §5.2's encoding, for the tests.
    pub fn encode(octets: &[u8]) -> Vec<u8> {
        let codes = codes();
        let (mut bits, mut bit_count, mut output) = (0_u64, 0, Vec::new());
        for &octet in octets {
            let (code, length) = codes[usize::from(octet)];
            bits = bits << length | u64::from(code);
            bit_count += length;
            while bit_count >= 8 {
                bit_count -= 8;
                output.push((bits >> bit_count) as u8);
            }
        }
        if bit_count > 0 {
            let padding = 8 - bit_count;
            output.push((bits << padding | ((1 << padding) - 1)) as u8);
        }
        output
    }

    fn decoded(encoded: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut output = Vec::new();
        decode(encoded, &mut output).map(|()| output)
    }

    #[test]
    fn rfc_7541_examples_decode() {
        // Appendix C.4.1 and C.6.1.
        assert_eq!(
            decoded(&[0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff])
                .unwrap(),
            b"www.example.com"
        );
        assert_eq!(decoded(&[0x64, 0x02]).unwrap(), b"302");
        assert_eq!(
            decoded(&[0xae, 0xc3, 0x77, 0x1a, 0x4b]).unwrap(),
            b"private"
        );
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn bad_endings_are_refused() {
        assert_eq!(
            decoded(&[0xff]),
            Err(HuffmanError::PaddingTooLong),
            "eight bits of padding"
        );
        assert_eq!(
            decoded(&[0x00]),
            Err(HuffmanError::PaddingNotEndOfString),
            "'0' then three zero bits"
        );
        assert_eq!(
            decoded(&[0xff, 0xff, 0xff, 0xfc]),
            Err(HuffmanError::EndOfStringInside),
            "EOS, then two bits of padding"
        );
    }

    proptest! {
        #[test]
        fn every_octet_string_round_trips(octets in collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decoded(&encode(&octets)).unwrap(), octets);
        }

        /// loona-hpack's decoder is slow but independent: same table from
        /// the RFC, a different algorithm.
        #[test]
        fn huffman_code_matches_an_independent_decoder(encoded in collection::vec(any::<u8>(), 0..32)) {
            let independent = loona_hpack::huffman::HuffmanDecoder::new().decode(&encoded);
            prop_assert_eq!(decoded(&encoded).ok(), independent.ok());
        }

        #[test]
        fn encoded_strings_match_an_independent_decoder(octets in collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(loona_hpack::huffman::HuffmanDecoder::new().decode(&encode(&octets)).unwrap(), octets);
        }
    }
}
