//! An entry's uncompressed bytes, checked as the zip reader checks them.
//!
//! The zip crate's own reader computes CRC-32 with `crc32fast`, whose only
//! wasm path is a slow table loop, and builds a fresh inflate state for every
//! entry. This reads the entry's raw (compressed) bytes from the zip crate
//! instead, inflates them with one zlib-rs state reset per entry, and applies
//! the zip reader's checks: no more bytes than the declared size, and the
//! declared CRC-32 at the end. It is stricter in one way: a deflate stream
//! that stops before its end marker is refused rather than read as complete.

use std::io::{self, Read};

use flate2::{Decompress, FlushDecompress, Status};
use zip::CompressionMethod;

/// Compressed bytes handed to the inflater per read.
const INPUT_CAPACITY: usize = 32 * 1024;

/// The checksum: inside the sandbox the XOR-folding one, natively `crc32fast`'s.
#[cfg(target_arch = "wasm32")]
type Checksum = crate::crc32::Crc32;

/// The checksum: inside the sandbox the XOR-folding one, natively `crc32fast`'s.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Default)]
struct Checksum(crc32fast::Hasher);

#[cfg(not(target_arch = "wasm32"))]
impl Checksum {
    fn reset(&mut self) {
        self.0.reset();
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// State kept across entries: the inflater, its input buffer and the checksum.
pub(crate) struct Inflater {
    state: Decompress,
    input: Box<[u8]>,
    checksum: Checksum,
}

impl Default for Inflater {
    fn default() -> Self {
        Self {
            state: Decompress::new(false),
            input: vec![0u8; INPUT_CAPACITY].into_boxed_slice(),
            checksum: Checksum::default(),
        }
    }
}

/// What the central directory declares about one entry's data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Declared {
    /// Stored or deflated; anything else is refused.
    pub method: CompressionMethod,
    /// Uncompressed size: producing more is an error.
    pub size: u64,
    /// CRC-32 of the uncompressed bytes, checked at the end.
    pub crc32: u32,
    /// Encrypted entries are refused (the zip reader asks for a password).
    pub encrypted: bool,
}

/// Reads one entry's uncompressed bytes from its raw bytes `raw`.
pub(crate) struct EntryData<'a, R> {
    raw: R,
    inflater: &'a mut Inflater,
    declared: Declared,
    /// Valid compressed bytes in the input buffer, and how many were consumed.
    filled: usize,
    consumed: usize,
    raw_ended: bool,
    stream_ended: bool,
    produced: u64,
    checked: bool,
}

impl<'a, R: Read> EntryData<'a, R> {
    /// Starts reading; fails for a compression method other than stored or deflated.
    pub(crate) fn new(raw: R, declared: Declared, inflater: &'a mut Inflater) -> io::Result<Self> {
        if declared.encrypted {
            return Err(invalid("encrypted entries are not supported".into()));
        }
        match declared.method {
            CompressionMethod::Stored | CompressionMethod::Deflated => {}
            other => return Err(invalid(format!("unsupported compression method {other:?}"))),
        }
        inflater.state.reset(false);
        inflater.checksum.reset();
        Ok(Self {
            raw,
            inflater,
            declared,
            filled: 0,
            consumed: 0,
            raw_ended: false,
            stream_ended: false,
            produced: 0,
            checked: false,
        })
    }

    /// Inflates into `out`; 0 only at the end of the deflate stream.
    fn inflate(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stream_ended {
                return Ok(0);
            }
            if self.consumed == self.filled && !self.raw_ended {
                self.filled = read_some(&mut self.raw, &mut self.inflater.input)?;
                self.consumed = 0;
                self.raw_ended = self.filled == 0;
            }
            let state = &mut self.inflater.state;
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state
                .decompress(
                    &self.inflater.input[self.consumed..self.filled],
                    out,
                    FlushDecompress::None,
                )
                .map_err(|e| invalid(format!("corrupt deflate stream: {e}")))?;
            let taken = (state.total_in() - in_before) as usize;
            let written = (state.total_out() - out_before) as usize;
            self.consumed += taken;
            self.stream_ended = status == Status::StreamEnd;
            if written > 0 {
                return Ok(written);
            }
            if taken == 0 && self.consumed < self.filled && !self.stream_ended {
                return Err(invalid("corrupt deflate stream: no progress".into()));
            }
            if self.raw_ended && !self.stream_ended {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the deflate stream ends early",
                ));
            }
        }
    }
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.checked {
            return Ok(0);
        }
        let n = match self.declared.method {
            CompressionMethod::Deflated => self.inflate(out)?,
            _ => read_some(&mut self.raw, out)?,
        };
        self.produced += n as u64;
        if self.produced > self.declared.size {
            return Err(invalid("File is larger than its declared uncompressed size".into()));
        }
        if n == 0 {
            if self.inflater.checksum.value() != self.declared.crc32 {
                return Err(invalid("Invalid checksum".into()));
            }
            self.checked = true;
            return Ok(0);
        }
        self.inflater.checksum.update(&out[..n]);
        Ok(n)
    }
}

/// One read that retries when interrupted.
fn read_some(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("write to memory");
        encoder.finish().expect("finish in memory")
    }

    fn read_all(raw: &[u8], declared: Declared, inflater: &mut Inflater) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 1000];
        let mut data = EntryData::new(raw, declared, inflater)?;
        loop {
            match data.read(&mut chunk)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn sample() -> Vec<u8> {
        (0..40_000u32)
            .map(|i| b"def f(x): return x\n"[(i % 19) as usize])
            .collect()
    }

    /// What the central directory says of `data` stored deflated.
    fn deflated(data: &[u8]) -> Declared {
        Declared {
            method: CompressionMethod::Deflated,
            size: data.len() as u64,
            crc32: crc32fast::hash(data),
            encrypted: false,
        }
    }

    #[test]
    fn inflates_and_checks_entry_after_entry() {
        let data = sample();
        let raw = deflate(&data);
        let declared = deflated(&data);
        let mut inflater = Inflater::default();
        for _ in 0..3 {
            assert_eq!(read_all(&raw, declared, &mut inflater).expect("valid entry"), data);
        }
        let stored = Declared {
            method: CompressionMethod::Stored,
            ..declared
        };
        assert_eq!(read_all(&data, stored, &mut inflater).expect("stored entry"), data);
    }

    #[test]
    fn refuses_a_wrong_checksum_a_larger_size_and_a_cut_stream() {
        let data = sample();
        let raw = deflate(&data);
        let good = deflated(&data);
        let mut inflater = Inflater::default();
        let wrong_crc = Declared {
            crc32: good.crc32 ^ 1,
            ..good
        };
        let smaller = Declared {
            size: good.size - 1,
            ..good
        };
        for (raw, declared) in [
            (&raw[..], wrong_crc),
            (&raw[..], smaller),
            (&raw[..raw.len() / 2], good),
        ] {
            let error = read_all(raw, declared, &mut inflater).expect_err("must be refused");
            assert!(
                matches!(error.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof),
                "{error}"
            );
        }
        let stored_wrong = Declared {
            method: CompressionMethod::Stored,
            ..wrong_crc
        };
        assert!(read_all(&data, stored_wrong, &mut inflater).is_err());
        let encrypted = Declared {
            encrypted: true,
            ..good
        };
        assert!(read_all(&raw, encrypted, &mut inflater).is_err());
        assert_eq!(read_all(&raw, good, &mut inflater).expect("still usable"), data);
    }
}
