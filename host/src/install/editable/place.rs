//! A bundle's agent placed into its venv by the host, without an installer.
//! Installing the agent's moved wheel with uv took a confined step of its
//! own on the longest path of a bundle load: a sandbox's start, uv, and
//! uv's query of an interpreter it has not seen (each venv is new to it),
//! about 90 ms for a wheel of a few files. When the wheel installs nothing
//! but files in site-packages, the mover lays them out as installed (see
//! `relocate.py`: `installed/`, with `INSTALLER`, `REQUESTED` and `RECORD`),
//! and the host copies that layout into the venv through handles, creating
//! every file new. So nothing the venv holds is ever written: not a
//! requirement's file, which a linked venv shares with every venv of its
//! lock (see `install::installed_template`); a wheel that would overwrite
//! one is refused, naming it.

use std::io;
use std::path::Path;
use std::str::FromStr as _;

use cap_std::fs::Dir;
use uv_normalize::PackageName;

use crate::fs::root::{open_dir_nofollow, open_file_nofollow};
use crate::fs::venv;
use crate::install::venv_template::{Entry, entries, mode_of, write_new};

/// Where the mover lays out what the wheel installs, in its output directory.
const INSTALLED_DIR: &str = "installed";

/// Copies the mover's layout in `out_dir`, if it made one, into the venv
/// at `venv`: every directory merged with the one there, every file created
/// new; whether there was a layout. Refused when the venv already holds a
/// distribution of the agent's name, or a file the layout holds.
pub(crate) fn place(out_dir: &Path, venv: &Path) -> io::Result<bool> {
    let out = Dir::open_ambient_dir(out_dir, cap_std::ambient_authority())?;
    // Written by a confined step: never followed out of its directory.
    let from = match open_dir_nofollow(&out, INSTALLED_DIR) {
        Ok(from) => from,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    let (_, site) = venv::one_site_packages(&Dir::open_ambient_dir(venv, cap_std::ambient_authority())?)?;
    let theirs = projects(&site)?;
    if let Some(name) = projects(&from)?.into_iter().find(|name| theirs.contains(name)) {
        return Err(io::Error::other(format!(
            "the venv already holds a distribution named {name}"
        )));
    }
    merge(&from, &site, "").map(|()| true)
}

/// The projects whose `.dist-info` directories `dir` holds, normalized.
fn projects(dir: &Dir) -> io::Result<Vec<PackageName>> {
    let mut found = Vec::new();
    for entry in dir.entries()? {
        let name = entry?.file_name();
        let project = (name.to_str())
            .and_then(venv::dist_info_project)
            .and_then(|project| PackageName::from_str(project).ok());
        found.extend(project);
    }
    Ok(found)
}

/// Copies the entries of `from` (at `rel` in the layout) into `to`.
fn merge(from: &Dir, to: &Dir, rel: &str) -> io::Result<()> {
    for Entry { name, path, kind } in entries(from, rel)? {
        if kind.is_dir() {
            match to.create_dir(&name) {
                Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
                _ => {}
            }
            let into = open_dir_nofollow(to, &name)
                .map_err(|e| io::Error::other(format!("{path} in the venv is not a directory: {e}")))?;
            merge(&open_dir_nofollow(from, &name)?, &into, &path)?;
        } else if kind.is_file() {
            let mode = mode_of(from, &name)? & 0o777;
            write_new(to, &name, mode, &mut open_file_nofollow(from, &name)?).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    io::Error::other(format!("the agent's wheel holds {path}, which the venv already holds"))
                }
                _ => e,
            })?;
        } else {
            return Err(io::Error::other(format!("{path} is not a file or a directory")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A venv with `packaging` installed, and a layout of the agent beside it.
    fn venv_and_layout() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let venv = dir.path().join("venv");
        let site = venv.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("packaging-26.4.dist-info")).expect("mkdir");
        std::fs::create_dir_all(site.join("shared")).expect("mkdir");
        std::fs::write(site.join("shared/theirs.py"), "theirs").expect("write");
        let layout = dir.path().join("out").join(INSTALLED_DIR);
        std::fs::create_dir_all(layout.join("agent-1.0.dist-info")).expect("mkdir");
        std::fs::create_dir_all(layout.join("shared")).expect("mkdir");
        std::fs::write(layout.join("agent-1.0.dist-info/RECORD"), "r").expect("write");
        std::fs::write(layout.join("shared/ours.py"), "ours").expect("write");
        std::fs::write(layout.join("run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(layout.join("run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        (dir, venv, layout)
    }

    #[test]
    fn the_layout_is_merged_into_site_packages_with_its_modes() {
        let (_dir, venv, layout) = venv_and_layout();
        assert!(place(layout.parent().expect("out"), &venv).expect("placed"));
        let site = venv.join("lib/python3.11/site-packages");
        assert_eq!(
            std::fs::read_to_string(site.join("shared/ours.py")).expect("read"),
            "ours"
        );
        assert_eq!(
            std::fs::read_to_string(site.join("shared/theirs.py")).expect("read"),
            "theirs"
        );
        assert!(site.join("agent-1.0.dist-info/RECORD").is_file());
        let mode = std::fs::metadata(site.join("run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn a_file_the_venv_holds_is_never_written() {
        let (_dir, venv, layout) = venv_and_layout();
        std::fs::write(layout.join("shared/theirs.py"), "overwritten").expect("write");
        let error = place(layout.parent().expect("out"), &venv).expect_err("a file of the venv");
        assert!(error.to_string().contains("shared/theirs.py"), "{error}");
        let site = venv.join("lib/python3.11/site-packages");
        assert_eq!(
            std::fs::read_to_string(site.join("shared/theirs.py")).expect("read"),
            "theirs"
        );
    }

    #[test]
    fn a_distribution_of_a_name_the_venv_holds_is_refused() {
        let (_dir, venv, layout) = venv_and_layout();
        std::fs::create_dir(layout.join("Packaging-1.0.dist-info")).expect("mkdir");
        let error = place(layout.parent().expect("out"), &venv).expect_err("two of one name");
        assert!(error.to_string().contains("packaging"), "{error}");
    }

    #[test]
    fn no_layout_is_left_to_the_installer_and_a_linked_one_is_refused() {
        let (dir, venv, layout) = venv_and_layout();
        let out = layout.parent().expect("out");
        std::fs::remove_dir_all(&layout).expect("rm");
        assert!(!place(out, &venv).expect("no layout"));
        std::os::unix::fs::symlink(dir.path(), &layout).expect("symlink");
        assert!(place(out, &venv).is_err(), "a layout that is a link is not followed");
    }

    #[test]
    fn a_link_in_the_venv_is_not_followed() {
        let (dir, venv, layout) = venv_and_layout();
        let site = venv.join("lib/python3.11/site-packages");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::fs::remove_dir_all(site.join("shared")).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, site.join("shared")).expect("symlink");
        assert!(place(layout.parent().expect("out"), &venv).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).expect("list").count(), 0);
    }
}
