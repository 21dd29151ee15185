//! An offline bundle's files: writing one (`par bundle`), and reading back
//! what the guest unpacked of one, every member checked by the host itself
//! (never through a symlink, only regular files, each distribution file
//! hashed here).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use par_rules::bundle::{self, BUILD_LOCK, EDITABLE_DIR, FILES_DIR, LOCK, PACKAGE};
use par_rules::limits::MAX_LOCK_BYTES;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::fs::handle::{open_dir_nofollow, open_file_nofollow, read_bounded};
use crate::fs::hex;

/// A member at fault, and what is wrong with it.
pub(crate) type MemberProblem = (String, String);

/// What the guest unpacked of a bundle, as the host found it.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// The package inside it.
    pub package: PathBuf,
    /// Its lock's bytes.
    pub lock: Vec<u8>,
    /// Its build lock's bytes, when it has one.
    pub build_lock: Option<Vec<u8>>,
    /// The directory of its distribution files.
    pub files_dir: PathBuf,
    /// Each distribution file's SHA-256, hashed here, by file name.
    pub files: BTreeMap<String, String>,
    /// The agent's editable wheel, when the bundle carries one: its file
    /// name (a wheel's) and path.
    pub editable: Option<(String, PathBuf)>,
}

impl Unpacked {
    /// Reads the unpacked bundle in `tree` (at `path`): every name a member
    /// (par-rules' rule, applied again), the package and the lock present.
    pub(crate) fn read(tree: &Dir, path: &Path) -> Result<Self, MemberProblem> {
        let problem = |member: &str, why: String| (member.to_owned(), why);
        let entries = tree
            .entries()
            .map_err(|e| problem(".", format!("cannot list the unpacked bundle: {e}")))?;
        let (mut has_files_dir, mut has_editable_dir) = (false, false);
        for entry in entries {
            let entry = entry.map_err(|e| problem(".", format!("cannot list the unpacked bundle: {e}")))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(|e| problem(&name, e.to_string()))?;
            if !(kind.is_file() || kind.is_dir()) || !bundle::is_member(&name, kind.is_dir()) {
                return Err(problem(&name, "not a member a bundle may hold".into()));
            }
            has_files_dir |= name == FILES_DIR;
            has_editable_dir |= name == EDITABLE_DIR;
        }
        let regular = |name: &str| -> Result<(), MemberProblem> {
            match open_file_nofollow(tree, name).and_then(|file| file.metadata()) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => Err(problem(name, "not a regular file".into())),
                Err(e) => Err(problem(name, reason(&e))),
            }
        };
        regular(PACKAGE)?;
        let read_lock = |name: &str| read_bounded(tree, name, MAX_LOCK_BYTES).map_err(|e| problem(name, reason(&e)));
        let lock = read_lock(LOCK)?;
        let build_lock = match tree.symlink_metadata(BUILD_LOCK) {
            Ok(_) => Some(read_lock(BUILD_LOCK)?),
            Err(_) => None,
        };
        let files = match has_files_dir {
            true => hash_files(tree)?,
            false => BTreeMap::new(),
        };
        let editable = has_editable_dir
            .then(|| editable_wheel(tree))
            .transpose()?
            .map(|name| (name.clone(), path.join(EDITABLE_DIR).join(name)));
        Ok(Self {
            package: path.join(PACKAGE),
            lock,
            build_lock,
            files_dir: path.join(FILES_DIR),
            files,
            editable,
        })
    }
}

/// The one wheel, a regular file, in the bundle's editable directory.
fn editable_wheel(tree: &Dir) -> Result<String, MemberProblem> {
    let problem = |why: String| (EDITABLE_DIR.to_owned(), why);
    let dir = open_dir_nofollow(tree, EDITABLE_DIR).map_err(|e| problem(e.to_string()))?;
    let mut names = Vec::new();
    for entry in dir.entries().map_err(|e| problem(e.to_string()))? {
        names.push(entry.map_err(|e| problem(e.to_string()))?.file_name());
    }
    let [name] = <[_; 1]>::try_from(names).map_err(|names| problem(format!("{} files, not one wheel", names.len())))?;
    let name = name.to_string_lossy().into_owned();
    let member = format!("{EDITABLE_DIR}/{name}");
    if !bundle::is_wheel_file_name(&name) {
        return Err((member, "not a wheel's name".into()));
    }
    match open_file_nofollow(&dir, &name).and_then(|file| file.metadata()) {
        Ok(meta) if meta.is_file() => Ok(name),
        Ok(_) => Err((member, "not a regular file".into())),
        Err(e) => Err((member, e.to_string())),
    }
}

/// What a failed open or read of a member says: `missing` for a member
/// that is not there.
fn reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "missing".into(),
        _ => error.to_string(),
    }
}

/// Every distribution file under the bundle's files directory, hashed.
fn hash_files(tree: &Dir) -> Result<BTreeMap<String, String>, MemberProblem> {
    let dir = open_dir_nofollow(tree, FILES_DIR).map_err(|e| (FILES_DIR.to_owned(), e.to_string()))?;
    let mut files = BTreeMap::new();
    let entries = dir.entries().map_err(|e| (FILES_DIR.to_owned(), e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| (FILES_DIR.to_owned(), e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let member = format!("{FILES_DIR}/{name}");
        let problem = |why: String| (member.clone(), why);
        if !bundle::is_distribution_file_name(&name) {
            return Err(problem("not a distribution file's name".into()));
        }
        let file = open_file_nofollow(&dir, &name).map_err(|e| problem(e.to_string()))?;
        if !file.metadata().is_ok_and(|meta| meta.is_file()) {
            return Err(problem("not a regular file".into()));
        }
        files.insert(name, sha256_of(file).map_err(|e| problem(e.to_string()))?);
    }
    Ok(files)
}

/// The SHA-256 of everything `file` holds from where it is, in hex.
pub(crate) fn sha256_of(mut file: File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hex(&hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// A bundle being written: a temporary file beside its destination, renamed
/// over it once complete. Every member is stored (wheels are compressed
/// already, and the guest then copies big stored members natively) with a
/// fixed time and mode, so the same inputs make the same bytes.
pub(crate) struct BundleWriter {
    zip: ZipWriter<tempfile::NamedTempFile>,
    destination: PathBuf,
    /// The directories added so far ([`FILES_DIR`], [`EDITABLE_DIR`]).
    dirs: Vec<&'static str>,
}

impl BundleWriter {
    /// Starts a bundle that will be `destination`.
    pub(crate) fn create(destination: &Path) -> io::Result<Self> {
        let dir = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let file = tempfile::Builder::new().prefix(".parb-").tempfile_in(dir)?;
        Ok(Self {
            zip: ZipWriter::new(file),
            destination: destination.to_owned(),
            dirs: Vec::new(),
        })
    }

    fn options(size: u64) -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644)
            .large_file(size >= u64::from(u32::MAX))
    }

    /// Starts the member `name` of `size` bytes, after the directory that
    /// holds it when it is the first member there: every bundle is laid
    /// out the same way, whoever writes it.
    fn start(&mut self, name: &str, size: u64) -> io::Result<()> {
        let dir = [FILES_DIR, EDITABLE_DIR]
            .into_iter()
            .find(|dir| name.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')));
        if let Some(dir) = dir.filter(|dir| !self.dirs.contains(dir)) {
            self.dirs.push(dir);
            let options = SimpleFileOptions::default()
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o755);
            self.zip.add_directory(dir, options).map_err(io::Error::other)?;
        }
        self.zip.start_file(name, Self::options(size)).map_err(io::Error::from)
    }

    /// Adds the member `name` holding `bytes`.
    pub(crate) fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.start(name, bytes.len() as u64)?;
        self.zip.write_all(bytes)
    }

    /// Adds the member `name` holding what `file` holds.
    pub(crate) fn add_file(&mut self, name: &str, mut file: File) -> io::Result<()> {
        self.start(name, file.metadata()?.len())?;
        io::copy(&mut file, &mut self.zip).map(drop)
    }

    /// Adds the member `name` of `size` bytes, written by `fill`.
    pub(crate) fn add_with<E>(
        &mut self,
        name: &str,
        size: u64,
        fill: impl FnOnce(&mut dyn io::Write) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<io::Error>,
    {
        self.start(name, size)?;
        fill(&mut self.zip)
    }

    /// Finishes the archive and puts it in place; its size.
    pub(crate) fn finish(self) -> io::Result<u64> {
        let destination = self.destination.clone();
        let file = self.into_temporary()?;
        let size = file.as_file().metadata()?.len();
        file.persist(destination).map_err(|e| e.error)?;
        Ok(size)
    }

    /// Finishes the archive but leaves it under its temporary name, for a
    /// caller that checks it before putting it in place.
    pub(crate) fn into_temporary(self) -> io::Result<tempfile::NamedTempFile> {
        let mut file = self.zip.finish()?;
        file.as_file_mut().sync_all()?;
        Ok(file)
    }
}
