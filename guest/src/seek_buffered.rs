//! A read buffer that survives seeks: the zip reader seeks to every entry's
//! local header, which `std::io::BufReader` answers by dropping its buffer.
//! Entries lie one after another, so the next header is usually already in
//! the buffer; keeping it turns a few reads per entry, each a call out of
//! the sandbox, into one read per [`CAPACITY`] bytes of archive.

use std::io::{self, Read, Seek, SeekFrom};

/// Bytes fetched per read from the underlying file.
pub const CAPACITY: usize = 64 * 1024;

/// Buffers reads from `inner` and serves seeks inside the buffer from memory.
#[derive(Debug)]
pub struct SeekBuffered<R> {
    inner: R,
    buffer: Box<[u8]>,
    /// File offset of `buffer[0]`.
    start: u64,
    /// Valid bytes in `buffer`.
    filled: usize,
    /// Read position within `buffer` (may equal `filled`).
    cursor: usize,
    /// Where `inner` itself is positioned.
    inner_position: u64,
}

impl<R: Read + Seek> SeekBuffered<R> {
    /// Wraps `inner`, which must be positioned at its start.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buffer: vec![0u8; CAPACITY].into_boxed_slice(),
            start: 0,
            filled: 0,
            cursor: 0,
            inner_position: 0,
        }
    }

    fn position(&self) -> u64 {
        self.start + self.cursor as u64
    }
}

impl<R: Read + Seek> Read for SeekBuffered<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cursor == self.filled {
            let position = self.position();
            if self.inner_position != position {
                self.inner.seek(SeekFrom::Start(position))?;
                self.inner_position = position;
            }
            // A read at least as large as the buffer skips it.
            if out.len() >= self.buffer.len() {
                let n = self.inner.read(out)?;
                self.inner_position += n as u64;
                self.start = self.inner_position;
                (self.filled, self.cursor) = (0, 0);
                return Ok(n);
            }
            let n = self.inner.read(&mut self.buffer)?;
            self.inner_position += n as u64;
            (self.start, self.filled, self.cursor) = (position, n, 0);
        }
        let n = out.len().min(self.filled - self.cursor);
        out[..n].copy_from_slice(&self.buffer[self.cursor..self.cursor + n]);
        self.cursor += n;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SeekBuffered<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => offset,
            SeekFrom::Current(delta) => self
                .position()
                .checked_add_signed(delta)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
            SeekFrom::End(_) => {
                let target = self.inner.seek(to)?;
                self.inner_position = target;
                (self.start, self.filled, self.cursor) = (target, 0, 0);
                return Ok(target);
            }
        };
        if target >= self.start && target <= self.start + self.filled as u64 {
            self.cursor = (target - self.start) as usize;
        } else {
            (self.start, self.filled, self.cursor) = (target, 0, 0);
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// Counts the reads that reach the underlying file.
    struct Counting<R> {
        inner: R,
        reads: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.inner.read(out)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn sequential_entries_cost_one_read_per_buffer() {
        let data: Vec<u8> = (0..CAPACITY * 4).map(|i| (i % 251) as u8).collect();
        let mut reader = SeekBuffered::new(Counting {
            inner: Cursor::new(data.clone()),
            reads: 0,
        });
        let mut position = 0;
        let mut chunk = [0u8; 100];
        while position + 130 < data.len() {
            reader.seek(SeekFrom::Start(position as u64)).expect("seek");
            reader.read_exact(&mut chunk).expect("read");
            assert_eq!(chunk[..], data[position..position + 100]);
            position += 130;
        }
        assert!(reader.inner.reads <= 5, "{} reads", reader.inner.reads);
    }

    proptest! {
        #[test]
        fn reads_what_the_file_holds_after_any_seeks(
            len in 0usize..(3 * CAPACITY),
            ops in proptest::collection::vec((0u8..3, 0u64..(3 * CAPACITY as u64), 0usize..(2 * CAPACITY)), 1..40),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut buffered = SeekBuffered::new(Cursor::new(data.clone()));
            let mut plain = Cursor::new(data);
            for (kind, offset, size) in ops {
                let to = match kind {
                    0 => SeekFrom::Start(offset),
                    1 => SeekFrom::Current(offset as i64 - CAPACITY as i64),
                    _ => SeekFrom::End(-((offset % (len as u64 + 1)) as i64)),
                };
                let (a, b) = (buffered.seek(to).ok(), plain.seek(to).ok());
                prop_assert_eq!(a, b);
                if a.is_none() {
                    break;
                }
                let (mut x, mut y) = (vec![0u8; size], vec![0u8; size]);
                let n = buffered.read(&mut x).expect("read");
                let m = plain.read(&mut y).expect("read");
                prop_assert_eq!(&x[..n], &y[..n]);
                prop_assert!(n > 0 || m == 0);
                plain.seek(SeekFrom::Current(n as i64 - m as i64)).expect("align");
            }
        }
    }
}
