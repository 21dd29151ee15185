//! Entry-name rules on arbitrary bytes: an accepted name never resolves
//! outside the directory it is joined to.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use par_guest::path::check_entry_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = check_entry_name(data) {
        let joined = Path::new("/root").join(path.as_relative());
        assert!(joined.starts_with("/root"));
        assert!(
            joined
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        );
    }
});
