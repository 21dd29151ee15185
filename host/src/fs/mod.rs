//! Files under the root, all through handles opened once (`root`): staging
//! and publishing trees (`staging`, `publish`), venvs, deployment records, and par's own cache.

pub(crate) mod agents;
pub(crate) mod archive;
pub(crate) mod blob_cache;
pub(crate) mod bundle;
pub(crate) mod cache_dir;
pub(crate) mod copy;
pub(crate) mod dist_store;
pub(crate) mod handle;
pub(crate) mod lock;
pub(crate) mod owner;
pub(crate) mod publish;
pub(crate) mod redeploy;
pub(crate) mod root;
pub(crate) mod seal;
pub(crate) mod staging;
pub(crate) mod tree_writes;
pub(crate) mod usage;
pub(crate) mod venv;
pub(crate) mod write_behind;

/// A name for a temporary beside `name` that no other writer uses: not
/// another process (its pid), nor another thread of this one (a counter),
/// so one writer never removes or renames another's half-written file.
pub(crate) fn temporary_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}-{n}.tmp", std::process::id())
}

/// Lower-case hex: how digests, tags and keys are written under the root.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is a SHA-256 as [`hex`] writes one: 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A writer that hashes (SHA-256) and counts what passes through it to
/// `out`: for bytes checked against a digest as they are written.
pub(crate) struct HashingWriter<W> {
    out: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    /// Hashes what is written to `out`.
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            written: 0,
        }
    }

    /// How many bytes have passed through.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// The SHA-256 of what passed through, in hex.
    pub(crate) fn sha256(self) -> String {
        hex(&sha2::Digest::finalize(self.hasher))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(bytes)?;
        sha2::Digest::update(&mut self.hasher, &bytes[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
