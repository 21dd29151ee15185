//! Disk use, inode by inode: what `list` reports and `gc` budgets with.
//!
//! Every walk goes through handles and never follows a symlink (a link
//! counts as itself). Sizes are allocated blocks, and a file with several
//! hard links under the root is counted once, so the sum is what `du`
//! prints. Knowing each inode's link count also tells what removing a set of
//! items gives back: a file still linked from elsewhere (an installer's
//! cache, a kept venv) is removed but not freed.

use std::collections::HashMap;

use cap_std::fs::{Dir, MetadataExt};

use crate::fs::root::open_dir_nofollow;

/// A file's identity: device and inode.
type InodeId = (u64, u64);

/// One file's size and how many of its links the walks saw.
#[derive(Debug, Clone, Copy)]
struct Inode {
    bytes: u64,
    links: u64,
    seen: u64,
}

/// What one item (a tree, a venv, a record) holds: its inodes, each with
/// the number of its links inside the item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    inodes: HashMap<InodeId, u64>,
    bytes: u64,
}

impl Tally {
    /// Its size, each inode once.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Every inode the walks saw, with its size and link counts.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    inodes: HashMap<InodeId, Inode>,
}

impl Usage {
    /// Walks the entry `name` of `dir` (a directory with everything in it,
    /// or a single file or link) and returns what it holds. A missing entry
    /// holds nothing.
    pub(crate) fn walk(&mut self, dir: &Dir, name: &str) -> Tally {
        let mut tally = Tally::default();
        self.visit(dir, name, &mut tally);
        tally
    }

    /// Walks `dir` itself and, with `children`, everything in it, as one item.
    pub(crate) fn walk_dir(&mut self, dir: &Dir, children: bool) -> Tally {
        let mut tally = Tally::default();
        if let Ok(meta) = dir.dir_metadata() {
            self.count(&meta, &mut tally);
        }
        if children {
            self.visit_children(dir, &mut tally);
        }
        tally
    }

    /// The size of every inode seen, each once.
    pub(crate) fn total(&self) -> u64 {
        self.inodes.values().map(|inode| inode.bytes).sum()
    }

    /// What removing `items` would take off the walked total (`removed`),
    /// and what of that the disk gets back (`freed`: files none of whose
    /// links survive anywhere).
    pub(crate) fn removing<'a>(&self, items: impl IntoIterator<Item = &'a Tally>) -> Removal {
        let mut links: HashMap<InodeId, u64> = HashMap::new();
        for item in items {
            for (id, count) in &item.inodes {
                *links.entry(*id).or_default() += count;
            }
        }
        let mut removal = Removal::default();
        for (id, count) in links {
            let Some(inode) = self.inodes.get(&id) else {
                continue;
            };
            removal.removed += inode.bytes;
            if count >= inode.seen {
                removal.uncounted += inode.bytes;
                if count >= inode.links {
                    removal.freed += inode.bytes;
                }
            }
        }
        removal
    }

    fn visit(&mut self, dir: &Dir, name: &str, tally: &mut Tally) {
        let Ok(meta) = dir.symlink_metadata(name) else {
            return;
        };
        self.count(&meta, tally);
        if meta.is_dir()
            && let Ok(sub) = open_dir_nofollow(dir, name)
        {
            self.visit_children(&sub, tally);
        }
    }

    fn visit_children(&mut self, dir: &Dir, tally: &mut Tally) {
        let Ok(entries) = dir.entries() else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                self.visit(dir, name, tally);
            }
        }
    }

    fn count(&mut self, meta: &cap_std::fs::Metadata, tally: &mut Tally) {
        let id = (meta.dev(), meta.ino());
        let bytes = meta.blocks().saturating_mul(512);
        // A directory's link count counts its subdirectories' `..`: it has one name.
        let links = if meta.is_dir() { 1 } else { meta.nlink() };
        let inode = self.inodes.entry(id).or_insert(Inode { bytes, links, seen: 0 });
        inode.seen += 1;
        let in_item = tally.inodes.entry(id).or_default();
        if *in_item == 0 {
            tally.bytes += bytes;
        }
        *in_item += 1;
    }
}

/// The effect of removing some items (see [`Usage::removing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Removal {
    /// Their size, each inode once.
    pub removed: u64,
    /// What leaves the walked total: inodes none of whose walked links survive.
    pub uncounted: u64,
    /// What the disk gets back: inodes none of whose links survive at all.
    pub freed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn hard_links_count_once_and_free_only_with_their_last_link() {
        let scratch = tempfile::tempdir().expect("dir");
        let base = scratch.path();
        for item in ["a", "b"] {
            fs::create_dir(base.join(item)).expect("item");
        }
        fs::write(base.join("a/data"), vec![7u8; 64 * 1024]).expect("data");
        fs::hard_link(base.join("a/data"), base.join("a/again")).expect("link in a");
        fs::hard_link(base.join("a/data"), base.join("b/data")).expect("link in b");
        fs::write(base.join("outside"), vec![1u8; 64 * 1024]).expect("outside");
        fs::hard_link(base.join("outside"), base.join("b/shared")).expect("link from outside");
        std::os::unix::fs::symlink("/etc", base.join("b/link")).expect("symlink");

        let dir = Dir::open_ambient_dir(base, cap_std::ambient_authority()).expect("open");
        let mut usage = Usage::default();
        let (a, b) = (usage.walk(&dir, "a"), usage.walk(&dir, "b"));
        let block = |path: &str| fs::symlink_metadata(base.join(path)).expect("meta").blocks() * 512;
        use std::os::unix::fs::MetadataExt as _;
        let (data, shared, dirs) = (block("a/data"), block("outside"), block("a") + block("b"));
        assert!(data >= 64 * 1024, "the file's blocks are counted");
        assert_eq!(a.bytes(), block("a") + data, "two links in one item count once");
        assert_eq!(b.bytes(), block("b") + data + shared + block("b/link"));
        assert_eq!(usage.total(), dirs + data + shared + block("b/link"));

        let only_a = usage.removing([&a]);
        assert_eq!(only_a.freed, block("a"), "b still links the data");
        let both = usage.removing([&a, &b]);
        assert_eq!(both.removed, usage.total());
        assert_eq!(both.uncounted, usage.total());
        assert_eq!(
            both.freed,
            usage.total() - shared,
            "the file also linked outside is not freed"
        );
        assert_eq!(usage.walk(&dir, "missing").bytes(), 0);
    }
}
