//! Entry-name rules on arbitrary bytes: an accepted name never resolves
//! outside the directory it is joined to.

use std::path::{Component, Path};

use par_guest::path::check_entry_name;

/// One input.
pub(crate) fn run(data: &[u8]) {
    if let Ok(path) = check_entry_name(data) {
        let joined = Path::new("/root").join(path.as_relative());
        assert!(joined.starts_with("/root"));
        assert!(
            joined
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        );
    }
}
