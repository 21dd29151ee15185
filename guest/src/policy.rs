//! Entry policy: which kinds of archive entry may be extracted, and which names collide.

use std::collections::{HashMap, HashSet};

use unicode_normalization::UnicodeNormalization;

use crate::error::EntryProblem;
use crate::path::SafePath;

/// `S_IFMT` and the file types it distinguishes, as stored in a zip's external attributes.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFSOCK: u32 = 0o140_000;

/// PKWARE's Unix extra field: its variable part holds the target of a hard or symbolic link.
pub const PKWARE_UNIX_EXTRA_FIELD: u16 = 0x000d;
/// Fixed part of that field (atime, mtime, uid, gid) before the link target.
const PKWARE_UNIX_FIXED_LEN: usize = 12;

/// What an accepted entry becomes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; `executable` when any execute bit is set in the archive.
    File {
        /// Extracted with mode 0755 instead of 0644.
        executable: bool,
    },
    /// A directory.
    Dir,
}

/// The metadata the policy needs about one entry, independent of the zip library.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta<'a> {
    /// Unix mode from the external attributes, if the packer recorded one.
    pub unix_mode: Option<u32>,
    /// Whether the entry's name ends with `/`.
    pub name_is_dir: bool,
    /// Whether the encryption flag is set.
    pub encrypted: bool,
    /// `(header id, data)` of each extra field.
    pub extra_fields: &'a [(u16, &'a [u8])],
}

/// Decides whether an entry is a plain file or directory, refusing every other kind.
pub fn classify(meta: &EntryMeta<'_>) -> Result<EntryKind, EntryProblem> {
    if meta.encrypted {
        return Err(EntryProblem::Encrypted);
    }
    let mode = meta.unix_mode.unwrap_or(0);
    let kind = match mode & S_IFMT {
        0 if meta.name_is_dir => EntryKind::Dir,
        0 | S_IFREG if !meta.name_is_dir => EntryKind::File {
            executable: mode & 0o111 != 0,
        },
        S_IFDIR if meta.name_is_dir => EntryKind::Dir,
        S_IFLNK => return Err(EntryProblem::Symlink),
        S_IFIFO => return Err(EntryProblem::SpecialFile("fifo".into())),
        S_IFCHR => return Err(EntryProblem::SpecialFile("character device".into())),
        S_IFBLK => return Err(EntryProblem::SpecialFile("block device".into())),
        S_IFSOCK => return Err(EntryProblem::SpecialFile("socket".into())),
        S_IFREG | S_IFDIR => {
            return Err(EntryProblem::SpecialFile(
                "file type does not match the name's trailing slash".into(),
            ));
        }
        other => return Err(EntryProblem::SpecialFile(format!("unknown type {other:#o}"))),
    };
    let links_somewhere = meta
        .extra_fields
        .iter()
        .any(|(id, data)| *id == PKWARE_UNIX_EXTRA_FIELD && data.len() > PKWARE_UNIX_FIXED_LEN);
    if links_somewhere {
        return Err(EntryProblem::HardLink);
    }
    Ok(kind)
}

/// The form two names are compared in: Unicode NFC, then lower-cased, so that names a
/// case-insensitive or normalising file system would merge are caught as duplicates.
fn fold(component: &str) -> String {
    // ASCII is already NFC, and lower-cases to ASCII: the common case, without the tables.
    if component.is_ascii() {
        return component.to_ascii_lowercase();
    }
    component.nfc().collect::<String>().to_lowercase().nfc().collect()
}

/// Tracks every name seen so far and refuses collisions.
#[derive(Debug, Default)]
pub struct NameSet {
    /// Folded path of each file, mapped to the name it was first seen as.
    files: HashMap<String, String>,
    /// Folded paths of directory entries listed explicitly.
    explicit_dirs: HashMap<String, String>,
    /// Folded paths of every directory some entry lives under.
    implied_dirs: HashSet<String>,
}

impl NameSet {
    /// Records `path`, or names the earlier entry it collides with.
    pub fn insert(&mut self, path: &SafePath) -> Result<(), EntryProblem> {
        let folded: Vec<String> = path.components().iter().map(|c| fold(c)).collect();
        let mut prefix = String::new();
        for component in &folded[..folded.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if let Some(first) = self.files.get(&prefix) {
                return Err(EntryProblem::Duplicate(first.clone()));
            }
        }
        let key = folded.join("/");
        let original = path.as_relative();
        if let Some(first) = self.files.get(&key) {
            return Err(EntryProblem::Duplicate(first.clone()));
        }
        if path.is_dir() {
            if let Some(first) = self.explicit_dirs.get(&key) {
                return Err(EntryProblem::Duplicate(format!("{first}/")));
            }
            self.explicit_dirs.insert(key.clone(), original);
            self.implied_dirs.insert(key);
        } else {
            if self.implied_dirs.contains(&key) {
                return Err(EntryProblem::Duplicate(format!("{original}/")));
            }
            self.files.insert(key, original);
        }
        let mut prefix = String::new();
        for component in &folded[..folded.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            self.implied_dirs.insert(prefix.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::check_entry_name;

    fn meta(unix_mode: Option<u32>, name_is_dir: bool) -> EntryMeta<'static> {
        EntryMeta {
            unix_mode,
            name_is_dir,
            encrypted: false,
            extra_fields: &[],
        }
    }

    #[test]
    fn files_and_dirs_pass_with_their_exec_bit() {
        assert_eq!(classify(&meta(None, false)), Ok(EntryKind::File { executable: false }));
        assert_eq!(
            classify(&meta(Some(S_IFREG | 0o755), false)),
            Ok(EntryKind::File { executable: true })
        );
        assert_eq!(classify(&meta(Some(S_IFDIR | 0o755), true)), Ok(EntryKind::Dir));
        assert_eq!(classify(&meta(None, true)), Ok(EntryKind::Dir));
    }

    #[test]
    fn special_kinds_are_refused() {
        assert_eq!(
            classify(&meta(Some(S_IFLNK | 0o777), false)),
            Err(EntryProblem::Symlink)
        );
        for mode in [S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK, 0o070_000] {
            assert!(matches!(
                classify(&meta(Some(mode | 0o644), false)),
                Err(EntryProblem::SpecialFile(_))
            ));
        }
        assert!(matches!(
            classify(&meta(Some(S_IFDIR | 0o755), false)),
            Err(EntryProblem::SpecialFile(_))
        ));
        let encrypted = EntryMeta {
            encrypted: true,
            ..meta(None, false)
        };
        assert_eq!(classify(&encrypted), Err(EntryProblem::Encrypted));
    }

    #[test]
    fn pkware_link_target_is_a_hard_link() {
        let mut data = vec![0u8; PKWARE_UNIX_FIXED_LEN];
        data.extend_from_slice(b"/etc/passwd");
        let fields = [(PKWARE_UNIX_EXTRA_FIELD, data.as_slice())];
        let linked = EntryMeta {
            extra_fields: &fields,
            ..meta(Some(S_IFREG | 0o644), false)
        };
        assert_eq!(classify(&linked), Err(EntryProblem::HardLink));
        let plain = [(PKWARE_UNIX_EXTRA_FIELD, &data[..PKWARE_UNIX_FIXED_LEN])];
        let timestamps_only = EntryMeta {
            extra_fields: &plain,
            ..meta(Some(S_IFREG | 0o644), false)
        };
        assert!(classify(&timestamps_only).is_ok());
    }

    fn insert_all(names: &[&str]) -> Result<(), EntryProblem> {
        let mut set = NameSet::default();
        for name in names {
            set.insert(&check_entry_name(name.as_bytes()).expect("valid name"))?;
        }
        Ok(())
    }

    #[test]
    fn duplicates_are_found_after_folding() {
        assert!(insert_all(&["core/", "core/a.py", "core/b.py", "app/x.py", "app/"]).is_ok());
        assert_eq!(
            insert_all(&["a.py", "a.py"]),
            Err(EntryProblem::Duplicate("a.py".into()))
        );
        assert_eq!(
            insert_all(&["README", "readme"]),
            Err(EntryProblem::Duplicate("README".into()))
        );
        assert_eq!(
            insert_all(&["caf\u{e9}.py", "cafe\u{301}.py"]),
            Err(EntryProblem::Duplicate("caf\u{e9}.py".into()))
        );
        assert!(insert_all(&["core", "core/x.py"]).is_err());
        assert!(insert_all(&["core/x.py", "core"]).is_err());
        assert!(insert_all(&["Core/x.py", "core"]).is_err());
        assert!(insert_all(&["d/", "d/"]).is_err());
    }
}
