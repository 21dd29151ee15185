//! CRC-32 (the zip checksum) fast enough inside the sandbox.
//!
//! Natively, `crc32fast` uses carry-less multiplication and costs next to
//! nothing. WebAssembly has no such instruction, and `crc32fast`'s table
//! fallback took about a fifth of the guest's extraction time. Here long
//! inputs are first shortened with plain XORs, then the rest goes through
//! tables:
//!
//! in GF(2), `1 + x^(64·79) + x^(64·85) + x^(64·123) + x^(64·186) + x^(64·203)`
//! is a multiple of the CRC-32 polynomial, so adding it (shifted) to the
//! message leaves the checksum unchanged. Adding it at the first 64-bit word
//! clears that word and XORs it into the words 17, 80, 118, 124 and 203
//! further on. Doing that for every word but the last [`SPAN`] leaves a
//! message of zeros followed by [`SPAN`] words with the same checksum. Words
//! 16 apart never touch each other, so sixteen are folded at once (wasm
//! SIMD, once the compiler vectorises the block). The tail and short inputs
//! use slicing-by-16 tables.

/// The reflected CRC-32 polynomial (zip, gzip, PNG).
const POLYNOMIAL: u32 = 0xEDB8_8320;
/// Words (of 8 bytes) between the first and last term of the sparse multiple.
const SPAN: usize = 203;
/// How far ahead each word is folded: `SPAN` minus each lower term's degree.
const TAPS: [usize; 5] = [17, 80, 118, 124, 203];
/// Words folded together; below the smallest tap, so a block never feeds itself.
const BLOCK: usize = 16;

/// Slicing-by-16 tables: `TABLES[k][b]` is the CRC of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 16] = tables();

const fn tables() -> [[u32; 256]; 16] {
    let mut tables = [[0u32; 256]; 16];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut byte = 0;
        while byte < 256 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
}

/// A running CRC-32, as zip stores it; the folding scratch space is kept between entries.
#[derive(Debug, Default)]
pub struct Crc32 {
    /// The CRC register, uninverted (0 for an empty message).
    value: u32,
    /// Bits folded forward into words not yet reached; all zero between updates.
    carry: Vec<u64>,
}

impl Crc32 {
    /// Starts a new checksum, keeping the scratch space.
    pub fn reset(&mut self) {
        self.value = 0;
    }

    /// The checksum of everything passed to [`Crc32::update`] since the last reset.
    pub fn value(&self) -> u32 {
        self.value
    }

    /// Adds `data` to the checksum.
    pub fn update(&mut self, data: &[u8]) {
        let words = data.len() / 8;
        if words < SPAN + BLOCK {
            self.value = tables_update(self.value, data);
            return;
        }
        let folded = (words - SPAN) / BLOCK * BLOCK;
        if self.carry.len() < words + BLOCK {
            self.carry.resize(words + BLOCK, 0);
        }
        // The register's start value acts as if XORed into the first four bytes.
        self.carry[0] = u64::from(!self.value);
        for (index, bytes) in data[..8 * folded].chunks_exact(8 * BLOCK).enumerate() {
            let at = index * BLOCK;
            let mut block = [0u64; BLOCK];
            for ((word, carry), bytes) in block
                .iter_mut()
                .zip(&mut self.carry[at..at + BLOCK])
                .zip(bytes.chunks_exact(8))
            {
                *word = word_at(bytes) ^ *carry;
                *carry = 0;
            }
            for tap in TAPS {
                for (carry, word) in self.carry[at + tap..at + tap + BLOCK].iter_mut().zip(&block) {
                    *carry ^= word;
                }
            }
        }
        let mut tail = [0u8; 8 * (SPAN + BLOCK)];
        let mut filled = 0;
        for (bytes, carry) in data[8 * folded..8 * words]
            .chunks_exact(8)
            .zip(&mut self.carry[folded..words])
        {
            tail[filled..filled + 8].copy_from_slice(&(word_at(bytes) ^ *carry).to_le_bytes());
            *carry = 0;
            filled += 8;
        }
        // Everything before the tail is now zeros, which leave a zero register
        // as it is: the tail starts from a zero register (a value of all ones).
        let value = tables_update(u32::MAX, &tail[..filled]);
        self.value = tables_update(value, &data[8 * words..]);
    }
}

/// Eight bytes as a little-endian word; `bytes` is always exactly eight long.
fn word_at(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Slicing-by-16 on the uninverted register `value`.
fn tables_update(value: u32, data: &[u8]) -> u32 {
    let mut register = !value;
    let mut chunks = data.chunks_exact(16);
    for chunk in &mut chunks {
        let low = word_at(&chunk[..8]) ^ u64::from(register);
        let high = word_at(&chunk[8..]);
        let lookup = |table: usize, word: u64, shift: u32| TABLES[table][((word >> shift) & 0xFF) as usize];
        register = lookup(15, low, 0)
            ^ lookup(14, low, 8)
            ^ lookup(13, low, 16)
            ^ lookup(12, low, 24)
            ^ lookup(11, low, 32)
            ^ lookup(10, low, 40)
            ^ lookup(9, low, 48)
            ^ lookup(8, low, 56)
            ^ lookup(7, high, 0)
            ^ lookup(6, high, 8)
            ^ lookup(5, high, 16)
            ^ lookup(4, high, 24)
            ^ lookup(3, high, 32)
            ^ lookup(2, high, 40)
            ^ lookup(1, high, 48)
            ^ lookup(0, high, 56);
    }
    for &byte in chunks.remainder() {
        register = TABLES[0][((register ^ u32::from(byte)) & 0xFF) as usize] ^ (register >> 8);
    }
    !register
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_check_value_and_long_inputs() {
        let mut crc = Crc32::default();
        crc.update(b"123456789");
        assert_eq!(crc.value(), 0xCBF4_3926);
        let long: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [
            0,
            1,
            8 * SPAN,
            8 * (SPAN + BLOCK) - 1,
            8 * (SPAN + BLOCK),
            8 * (SPAN + BLOCK) + 5,
            15_000,
            200_000,
        ] {
            crc.reset();
            crc.update(&long[..len]);
            assert_eq!(crc.value(), crc32fast::hash(&long[..len]), "length {len}");
        }
    }

    proptest! {
        #[test]
        fn any_split_gives_the_reference_checksum(
            data in proptest::collection::vec(any::<u8>(), 0..12_000),
            cuts in proptest::collection::vec(0usize..12_000, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut crc = Crc32::default();
            crc.update(b"stale");
            crc.reset();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                crc.update(&data[start..cut]);
                start = cut;
            }
            prop_assert_eq!(crc.value(), crc32fast::hash(&data));
        }
    }
}
