//! A symlink planted under the root (by another local user, or by an install
//! step that could write part of it) never redirects a host write or read:
//! the root's areas are opened once, without following links, and names
//! below them are opened one component at a time.

use std::fs;
use std::path::Path;

use par::{LoaderConfig, PackageLoader};
use par_tests::workspace::{component_cache, names_in};
use par_tests::{Apkg, Workspace};

const AREAS: [&str; 6] = ["staging", "trees", "packages", "venvs", "deployments", "locks"];

fn config(ws: &Workspace) -> LoaderConfig {
    let mut config = LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config
}

/// A directory beside the root that nothing may write into.
fn outside(ws: &Workspace) -> std::path::PathBuf {
    let dir = ws.path().join("in/outside");
    fs::create_dir_all(&dir).expect("outside");
    dir
}

#[test]
fn every_area_planted_as_a_symlink_is_refused_and_nothing_outside_is_touched() {
    for area in AREAS {
        let ws = Workspace::new();
        let outside = outside(&ws);
        fs::create_dir_all(ws.root()).expect("root");
        std::os::unix::fs::symlink(&outside, ws.root().join(area)).expect("plant");
        let error = PackageLoader::new(config(&ws)).expect_err("a symlinked area");
        assert_eq!(error.kind(), "io", "{area}: {error}");
        assert!(error.to_string().contains(area), "{area}: {error}");
        assert_eq!(names_in(&outside), Vec::<String>::new(), "{area}: written outside");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_file_planted_as_a_symlink_is_not_written_through() {
    let ws = Workspace::new();
    let outside = outside(&ws);
    let target = outside.join("victim");
    fs::write(&target, "untouched").expect("victim");
    let loader = PackageLoader::new(config(&ws)).expect("loader");
    std::os::unix::fs::symlink(&target, ws.root().join("locks/test-agent@1.0.0.lock")).expect("plant");
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let result = loader.extract(&apkg, None).await;
    assert!(result.is_err(), "the lock is only taken through the handle: {result:?}");
    assert_eq!(fs::read_to_string(&target).expect("victim"), "untouched");
    assert_eq!(names_in(&outside), vec!["victim".to_owned()]);
    assert_eq!(names_in(&ws.root().join("trees")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_area_swapped_for_a_symlink_after_the_loader_opened_it_is_not_followed() {
    let ws = Workspace::new();
    let outside = outside(&ws);
    let loader = PackageLoader::new(config(&ws)).expect("loader");
    // The real directories are moved away and replaced by links out.
    for area in ["staging", "trees", "packages"] {
        let path = ws.root().join(area);
        fs::rename(&path, ws.root().join(format!("{area}.moved"))).expect("move");
        std::os::unix::fs::symlink(&outside, &path).expect("plant");
    }
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let package = loader.extract(&apkg, None).await.expect("extract through the handles");
    assert_eq!(names_in(&outside), Vec::<String>::new(), "written outside the root");
    // Everything went where the handles point: the directories opened first.
    let tree = package.path.file_name().expect("tree name");
    assert!(ws.root().join("trees.moved").join(tree).join("agent.yaml").is_file());
    assert!(
        fs::symlink_metadata(ws.root().join("packages.moved/test-agent@1.0.0"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        names_in(Path::new(&ws.root().join("staging.moved"))),
        Vec::<String>::new()
    );
}
