//! Byte surgery on zip archives, for the hostile catalogue: find a record by
//! the entry it belongs to and change one field, so that one structure of an
//! otherwise valid archive disagrees with another.

/// Local file header signature.
const LOCAL: &[u8; 4] = b"PK\x03\x04";
/// Central-directory header signature.
const CENTRAL: &[u8; 4] = b"PK\x01\x02";
/// End-of-central-directory signature.
const EOCD: &[u8; 4] = b"PK\x05\x06";

/// An archive's bytes being edited.
#[derive(Debug, Clone)]
pub struct ZipBytes(pub Vec<u8>);

impl ZipBytes {
    /// Where the local header of `name` starts.
    pub fn local(&self, name: &str) -> usize {
        self.record(LOCAL, 26, 30, name)
    }

    /// Where the central-directory header of `name` starts.
    pub fn central(&self, name: &str) -> usize {
        self.record(CENTRAL, 28, 46, name)
    }

    /// Where the end-of-central-directory record starts.
    pub fn eocd(&self) -> usize {
        (0..self.0.len() - 3)
            .rev()
            .find(|&i| &self.0[i..i + 4] == EOCD)
            .expect("an end record")
    }

    /// Where `name`'s local entry ends: after its header and data (no descriptor).
    pub fn local_end(&self, name: &str) -> usize {
        let central = self.central(name);
        let local = self.local(name);
        let header = 30 + self.u16(local + 26) as usize + self.u16(local + 28) as usize;
        local + header + self.u32(central + 20) as usize
    }

    /// The little-endian `u16` at `at`.
    pub fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    /// The little-endian `u32` at `at`.
    pub fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    /// Writes a little-endian `u16` at `at`.
    pub fn set_u16(&mut self, at: usize, value: u16) -> &mut Self {
        self.0[at..at + 2].copy_from_slice(&value.to_le_bytes());
        self
    }

    /// Writes a little-endian `u32` at `at`.
    pub fn set_u32(&mut self, at: usize, value: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&value.to_le_bytes());
        self
    }

    /// Removes `name`'s central-directory record and fixes the end record's
    /// counts and size: its local entry stays, listed nowhere.
    pub fn unlist(&mut self, name: &str) -> &mut Self {
        let at = self.central(name);
        let len = 46 + self.u16(at + 28) as usize + self.u16(at + 30) as usize + self.u16(at + 32) as usize;
        self.0.drain(at..at + len);
        let eocd = self.eocd();
        let entries = self.u16(eocd + 10) - 1;
        let size = self.u32(eocd + 12) - len as u32;
        self.set_u16(eocd + 8, entries)
            .set_u16(eocd + 10, entries)
            .set_u32(eocd + 12, size)
    }

    /// Adds ZIP64 end records (as writers of large archives do) in front of
    /// the end record, their locator pointing `shift` bytes off the record.
    pub fn with_zip64(&mut self, shift: u64) -> &mut Self {
        let eocd = self.eocd();
        let (entries, size, offset) = (
            u64::from(self.u16(eocd + 10)),
            u64::from(self.u32(eocd + 12)),
            u64::from(self.u32(eocd + 16)),
        );
        let mut records = Vec::with_capacity(76);
        records.extend_from_slice(b"PK\x06\x06");
        records.extend_from_slice(&44u64.to_le_bytes());
        records.extend_from_slice(&45u16.to_le_bytes());
        records.extend_from_slice(&45u16.to_le_bytes());
        records.extend_from_slice(&[0u8; 8]);
        for value in [entries, entries, size, offset] {
            records.extend_from_slice(&value.to_le_bytes());
        }
        records.extend_from_slice(b"PK\x06\x07");
        records.extend_from_slice(&0u32.to_le_bytes());
        records.extend_from_slice(&(eocd as u64 + shift).to_le_bytes());
        records.extend_from_slice(&1u32.to_le_bytes());
        self.0.splice(eocd..eocd, records);
        self
    }

    /// The first record with `signature` whose name (length at `len_at`,
    /// bytes from `name_at`) is `name`.
    fn record(&self, signature: &[u8; 4], len_at: usize, name_at: usize, name: &str) -> usize {
        (0..self.0.len().saturating_sub(name_at))
            .find(|&i| {
                &self.0[i..i + 4] == signature
                    && self.u16(i + len_at) as usize == name.len()
                    && self.0.get(i + name_at..i + name_at + name.len()) == Some(name.as_bytes())
            })
            .unwrap_or_else(|| panic!("no record for {name}"))
    }
}
