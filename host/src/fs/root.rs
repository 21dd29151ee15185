//! The loader root, opened once.
//!
//! Every host file operation under `{root}` goes through `cap_std` handles
//! opened here, one per area (`staging/`, `trees/`, `packages/`, `venvs/`,
//! `deployments/`, `locks/`, `state/`, `trash/`, `agents/`), each a real directory opened without following
//! a symlink. A symlink or directory swapped in underneath afterwards (by
//! another local user, or by an install step that can write part of the
//! root) cannot redirect a write or a read: the handles stay on the
//! directories they were opened on, and names below them are opened one
//! component at a time, never through a symlink. Paths are still built for
//! what needs one: the argv of installer steps and messages.

use std::io;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt};

pub(crate) use crate::fs::handle::{fd_path, open_dir_nofollow, open_file_nofollow, read_bounded};
use crate::fs::owner;
use crate::fs::seal::{KEY_FILE, Seal};
use crate::types::error::LoadError;

/// One top-level directory of the root (in the order of [`Area::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Area {
    /// Scratch directories of running loads and builds.
    Staging,
    /// Published package trees.
    Trees,
    /// Each app's link to its current tree.
    Packages,
    /// Virtual environments.
    Venvs,
    /// Records of successful loads.
    Deployments,
    /// Per-package lock files.
    Locks,
    /// Each app's writable state directory, the home of its running agent.
    State,
    /// What `gc` and `remove` are deleting: moved here first, in one rename
    /// each, so nothing half-deleted is ever where a load looks.
    Trash,
    /// One record per agent started by this root's loaders, locked by the
    /// loader that started it for as long as the agent runs.
    Agents,
    /// The digest of each archive par has hashed, under the file's identity
    /// on disk, so an archive that has not changed is not hashed again.
    Archives,
}

impl Area {
    /// Every area.
    pub(crate) const ALL: [Area; 10] = [
        Area::Staging,
        Area::Trees,
        Area::Packages,
        Area::Venvs,
        Area::Deployments,
        Area::Locks,
        Area::State,
        Area::Trash,
        Area::Agents,
        Area::Archives,
    ];

    /// Its directory name under the root.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Area::Staging => "staging",
            Area::Trees => "trees",
            Area::Packages => "packages",
            Area::Venvs => "venvs",
            Area::Deployments => "deployments",
            Area::Locks => "locks",
            Area::State => "state",
            Area::Trash => "trash",
            Area::Agents => "agents",
            Area::Archives => "archives",
        }
    }

    /// Trees, links and venvs are read by the runtime and its agents; the
    /// rest is par's alone.
    fn mode(self) -> u32 {
        match self {
            Area::Trees | Area::Packages | Area::Venvs => 0o755,
            Area::Staging
            | Area::Deployments
            | Area::Locks
            | Area::State
            | Area::Trash
            | Area::Agents
            | Area::Archives => 0o700,
        }
    }
}

/// The root and a handle on each of its areas.
#[derive(Debug)]
pub(crate) struct RootDir {
    path: PathBuf,
    areas: Vec<Dir>,
    seal: Seal,
}

impl RootDir {
    /// Opens the root, making what is missing: the root (0755) and each area
    /// (0755 for what agents read, else 0700), each with an exclusive
    /// `mkdir`. The root and every area must be this user's and closed to
    /// others (checked on the open handle), and every directory above the
    /// root this user's or root's and closed to others unless sticky, or
    /// the root is refused (`root-unsafe`): another local user could
    /// otherwise have made it first, or swap what is in it. An area that is
    /// a symlink (or anything but a directory) is refused, never followed.
    /// The root is known by its canonical path from then on.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        let refused = |refusal| match refusal {
            owner::Refusal::Io(at, source) => LoadError::io("cannot open the root at", at)(source),
            owner::Refusal::Unsafe(problem) => LoadError::RootUnsafe(problem),
        };
        let path = owner::prepare(path, 0o755).map_err(refused)?;
        let root = owner::open_private(&path).map_err(refused)?;
        // Every area already there is checked before any missing one is
        // made: a root par refuses is left as it was found.
        let open_area = |name: &str| -> Result<Dir, LoadError> {
            let at = path.join(name);
            let dir = open_dir_nofollow(&root, name).map_err(LoadError::io(
                "cannot open (a symlink or other non-directory is never followed)",
                &at,
            ))?;
            let ownership = owner::Ownership::of(&dir).map_err(LoadError::io("cannot read", &at))?;
            owner::check_private(&at, ownership).map_err(LoadError::RootUnsafe)?;
            Ok(dir)
        };
        let mut found = Vec::with_capacity(Area::ALL.len());
        for area in Area::ALL {
            found.push(match root.symlink_metadata(area.name()) {
                Ok(_) => Some(open_area(area.name())?),
                Err(_) => None,
            });
        }
        let areas = Area::ALL
            .into_iter()
            .zip(found)
            .map(|(area, found)| {
                if let Some(dir) = found {
                    return Ok(dir);
                }
                let mut builder = DirBuilder::new();
                builder.mode(area.mode());
                match root.create_dir_with(area.name(), &builder) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(LoadError::io("cannot create", path.join(area.name()))(e));
                    }
                    _ => {}
                }
                open_area(area.name())
            })
            .collect::<Result<_, _>>()?;
        let seal = Seal::open(&root).map_err(LoadError::io("cannot read the root's key", path.join(KEY_FILE)))?;
        Ok(Self { path, areas, seal })
    }

    /// The root's key: what par seals the state it trusts with.
    pub(crate) fn seal(&self) -> &Seal {
        &self.seal
    }

    /// The root's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The handle on `area`.
    pub(crate) fn dir(&self, area: Area) -> &Dir {
        &self.areas[area as usize]
    }

    /// The name of `path` when it lies directly in `area` of this root
    /// (compared by component, so `{root}/trees/` is `{root}/trees`): how a
    /// path par returned is taken back as one of its own entries.
    pub(crate) fn name_in<'a>(&self, path: &'a Path, area: Area) -> Option<&'a str> {
        let name = path.file_name()?.to_str()?;
        (path.parent() == Some(self.path.join(area.name()).as_path())).then_some(name)
    }

    /// `{root}/{area}/{name}`: for argv and messages, never for the host's own access.
    pub(crate) fn join(&self, area: Area, name: &str) -> PathBuf {
        self.path.join(area.name()).join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_area_planted_as_a_symlink_is_refused_and_nothing_is_written_through_it() {
        let scratch = tempfile::tempdir().expect("dir");
        let (root, outside) = (scratch.path().join("root"), scratch.path().join("outside"));
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir(&outside).expect("outside");
        for area in Area::ALL {
            let planted = root.join(area.name());
            std::os::unix::fs::symlink(&outside, &planted).expect("plant");
            let error = RootDir::open(&root).expect_err("a symlinked area");
            assert!(error.to_string().contains(area.name()), "{error}");
            std::fs::remove_file(&planted).expect("unplant");
            std::fs::create_dir(&planted).expect("real area");
        }
        assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
        let opened = RootDir::open(&root).expect("every area real");
        assert!(opened.dir(Area::Venvs).dir_metadata().expect("venvs").is_dir());
    }

    #[test]
    fn names_are_opened_one_component_at_a_time_and_never_through_a_symlink() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = Dir::open_ambient_dir(scratch.path(), cap_std::ambient_authority()).expect("open");
        std::fs::create_dir(scratch.path().join("real")).expect("real");
        std::fs::write(scratch.path().join("file"), "x").expect("file");
        std::os::unix::fs::symlink("/etc", scratch.path().join("link")).expect("link");
        std::os::unix::fs::symlink("/etc/hostname", scratch.path().join("file-link")).expect("link");
        assert!(open_dir_nofollow(&dir, "real").is_ok());
        assert!(open_dir_nofollow(&dir, "link").is_err());
        assert!(open_dir_nofollow(&dir, "real/..").is_err());
        assert!(open_file_nofollow(&dir, "file").is_ok());
        assert!(open_file_nofollow(&dir, "file-link").is_err());
        assert!(open_file_nofollow(&dir, "real").is_err(), "a directory is not a file");
    }
}
