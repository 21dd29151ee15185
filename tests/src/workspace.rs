//! A scratch directory per test: `in/` for archives, `root/` for the loader,
//! plus checks that a refused load left nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use crate::apkg::Apkg;

/// Every area of a root, as the README lists them: written out here, not
/// taken from the loader, so a test notices an area it did not expect.
pub const AREAS: [&str; 10] = [
    "staging",
    "trees",
    "packages",
    "venvs",
    "deployments",
    "locks",
    "state",
    "trash",
    "agents",
    "archives",
];

/// `in/` holds archives, `root/` is the loader's root; nothing else may appear.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A fresh scratch directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("par-test-").tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("in")).expect("mkdir in");
        Self { dir }
    }

    /// The scratch directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The loader root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes `apkg` to `in/{name}.apkg` and returns its path.
    pub fn apkg(&self, name: &str, apkg: &Apkg) -> PathBuf {
        let path = self.dir.path().join("in").join(format!("{name}.apkg"));
        apkg.write_to(&path);
        path
    }

    /// Names of the published package directories.
    pub fn published(&self) -> Vec<String> {
        names_in(&self.root().join("packages"))
    }

    /// Asserts a refused load left no trace: nothing published (no link, no
    /// tree, no venv), no staging directory, and nothing written anywhere in the scratch dir outside `in/`
    /// and `root/` (the escape targets of the hostile archives live there).
    pub fn assert_left_nothing(&self, context: &str) {
        assert_eq!(
            self.published(),
            Vec::<String>::new(),
            "{context}: a package was published"
        );
        for dir in ["staging", "trees", "venvs"] {
            assert_eq!(
                names_in(&self.root().join(dir)),
                Vec::<String>::new(),
                "{context}: {dir}/ left behind"
            );
        }
        let mut outside: Vec<String> = names_in(self.dir.path());
        outside.retain(|n| n != "in" && n != "root");
        assert_eq!(outside, Vec::<String>::new(), "{context}: written outside the root");
        for name in [
            "escape-abs.txt",
            "escape-parent.txt",
            "escape-bs.txt",
            "escape-drive.txt",
        ] {
            assert!(!Path::new("/").join(name).exists(), "{context}: /{name} exists");
            let parent = self.dir.path().parent().expect("tempdir has a parent");
            assert!(
                !parent.join(name).exists(),
                "{context}: {name} escaped to {}",
                parent.display()
            );
        }
    }
}

/// Every generation of every build environment in par's cache at `cache`
/// (`build-envs/{key}/{generation}/`, beside `users/`, the venvs each built), sorted.
pub fn build_environments(cache: &Path) -> Vec<PathBuf> {
    let envs = cache.join("build-envs");
    names_in(&envs)
        .into_iter()
        .flat_map(|key| {
            let dir = envs.join(key);
            names_in(&dir)
                .into_iter()
                .filter(|name| name != "users")
                .map(move |name| dir.join(name))
        })
        .filter(|path| path.is_dir())
        .collect()
}

/// Sorted names in a directory; empty when it does not exist.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// par's cache (the compiled guest, build environments) for the tests of
/// this test binary: shared by its tests, never the user's own.
pub fn component_cache(target_tmpdir: &str) -> PathBuf {
    caches(target_tmpdir).join("par")
}

/// The directory holding uv's and pip's caches for this test binary's loads
/// (`InstallConfig::installer_cache`, `--installer-cache`): never the user's own.
pub fn installer_cache(target_tmpdir: &str) -> PathBuf {
    caches(target_tmpdir).join("installers")
}

/// A loader configuration rooted in `ws` that installs offline with uv:
/// the pinned uv and the wheelhouse (fetched once into
/// `{target_tmpdir}/install-tools`), `--no-index`, and the test binary's own caches.
pub fn offline_config(ws: &Workspace, target_tmpdir: &str) -> par::LoaderConfig {
    let tools_dir = Path::new(target_tmpdir).join("install-tools");
    let mut config = par::LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(target_tmpdir));
    config.install.installer_cache = Some(installer_cache(target_tmpdir));
    config.install.installer = par::InstallerChoice::Uv;
    config.install.uv = crate::tools::uv(&tools_dir);
    config.install.index.no_index = true;
    config.install.index.find_links = vec![crate::tools::wheelhouse(&tools_dir).display().to_string()];
    config
}

/// `{target_tmpdir}/caches/{test binary}`.
fn caches(target_tmpdir: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Cargo names test binaries `{name}-{hash}`.
    let name = stem.rsplit_once('-').map_or(stem.as_str(), |(name, _)| name);
    let dir = Path::new(target_tmpdir).join("caches").join(name);
    fs::create_dir_all(&dir).expect("test cache dir");
    dir
}

/// The bytes `du` counts for `paths` together: allocated blocks, each inode
/// once, symlinks never followed. The tests' own measure, to hold `par list`
/// and `par gc` against.
pub fn du(paths: &[&Path]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut pending: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            pending.extend(fs::read_dir(&path).expect("list").flatten().map(|e| e.path()));
        }
    }
    total
}

/// Waits until `path` last changed longer ago than par's settling time, the
/// point from which par records the archive's identity.
pub fn settle(path: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).expect("archive");
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(meta.ctime()).expect("a change time after 1970"),
            u32::try_from(meta.ctime_nsec()).expect("nanoseconds"),
        );
    let settled = changed + par::ARCHIVE_SETTLE_TIME + std::time::Duration::from_millis(10);
    if let Ok(left) = settled.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
}
