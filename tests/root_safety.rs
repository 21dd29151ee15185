//! The root is par's alone. One another local user owns or can write (or
//! whose parent they can), is refused before anything is read or written in
//! it; what par trusts in it carries par's seal, so a venv or record someone
//! else wrote counts as absent. And a symlink planted under the root (by
//! another local user, or by an install step that could write part of it)
//! never redirects a host write or read: the root's areas are opened once,
//! without following links, and names below them are opened one component
//! at a time.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use par::{LoaderConfig, PackageLoader};
use par_tests::workspace::{AREAS, component_cache, names_in, offline_config, settle};
use par_tests::{Apkg, Workspace};

/// `nobody`: a user the loader is not, to own what another local user made.
const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Gives `path` to another user: only root may, so elsewhere the case is
/// shown by its mode alone (and this says so).
fn give_away(path: &Path) -> bool {
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
        true
    } else {
        eprintln!(
            "not root: cannot give {} to another user; only the mode cases run",
            path.display()
        );
        false
    }
}

#[test]
fn a_root_or_area_another_user_owns_or_can_write_is_refused_before_anything_is_written() {
    type Plant = fn(&Workspace) -> Option<std::path::PathBuf>;
    let cases: [(&str, Plant); 6] = [
        ("root open to all", |ws| {
            fs::create_dir_all(ws.root()).expect("root");
            chmod(&ws.root(), 0o777);
            Some(ws.root())
        }),
        ("root of another user", |ws| {
            fs::create_dir_all(ws.root()).expect("root");
            give_away(&ws.root()).then(|| ws.root())
        }),
        ("venvs open to all", |ws| {
            fs::create_dir_all(ws.root().join("venvs")).expect("area");
            chmod(&ws.root().join("venvs"), 0o777);
            Some(ws.root().join("venvs"))
        }),
        ("agents of another user", |ws| {
            fs::create_dir_all(ws.root().join("agents")).expect("area");
            chmod(&ws.root().join("agents"), 0o700);
            give_away(&ws.root().join("agents")).then(|| ws.root().join("agents"))
        }),
        ("group-writable staging", |ws| {
            fs::create_dir_all(ws.root().join("staging")).expect("area");
            chmod(&ws.root().join("staging"), 0o770);
            Some(ws.root().join("staging"))
        }),
        ("a parent others can write, not sticky", |ws| {
            chmod(ws.path(), 0o777);
            Some(ws.path().to_owned())
        }),
    ];
    for (case, plant) in cases {
        let ws = Workspace::new();
        let Some(at_fault) = plant(&ws) else {
            continue;
        };
        let before = fs::read_dir(ws.root()).map(|entries| entries.count()).unwrap_or(0);
        let error = PackageLoader::new(config(&ws)).expect_err(case);
        assert_eq!(error.kind(), "root-unsafe", "{case}: {error}");
        let message = error.to_string();
        assert!(message.contains(&at_fault.display().to_string()), "{case}: {message}");
        assert!(
            message.contains("owned by uid") || message.contains("mode 0"),
            "{case}: names the owner or the mode: {message}"
        );
        let after = fs::read_dir(ws.root()).map(|entries| entries.count()).unwrap_or(0);
        assert!(after <= before, "{case}: something was made in a root par refused");
        chmod(ws.path(), 0o700);
    }
}

#[test]
fn a_sticky_parent_like_tmp_is_fine_and_what_par_makes_is_closed_to_others() {
    let ws = Workspace::new();
    chmod(ws.path(), 0o1777);
    PackageLoader::new(config(&ws)).expect("a root below a sticky directory");
    let mode = |path: &Path| fs::metadata(path).expect("made").permissions().mode() & 0o777;
    assert_eq!(mode(&ws.root()) & 0o022, 0, "the root");
    // What an agent runs from may be read by others; the rest is private.
    for area in AREAS {
        match area {
            "trees" | "packages" | "venvs" => assert_eq!(mode(&ws.root().join(area)) & 0o022, 0, "{area}"),
            _ => assert_eq!(mode(&ws.root().join(area)), 0o700, "{area}"),
        }
    }
    assert_eq!(mode(&ws.root().join("seal.key")), 0o600, "the key");
    chmod(ws.path(), 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_venv_or_record_par_did_not_seal_is_not_trusted() {
    let ws = Workspace::new();
    let loader = PackageLoader::new(offline_config(&ws, env!("CARGO_TARGET_TMPDIR"))).expect("loader");
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let first = loader.load_package(&apkg, None).await.expect("first load");
    // What another user (or a step) could write, knowing the names: a
    // marker holding the venv's key, a planted interpreter, and a record.
    let venv = &first.venv_path;
    let name = venv.file_name().expect("venv name").to_string_lossy().into_owned();
    let key = name.rsplit_once('_').expect("{app}_{key}").1;
    fs::write(venv.join(".par-complete"), key).expect("forged marker");
    fs::write(venv.join("planted"), "someone else's").expect("planted");
    for record in names_in(&ws.root().join("deployments")) {
        let path = ws.root().join("deployments").join(record);
        let text = fs::read_to_string(&path).expect("record");
        let json = text.split_once('\n').expect("sealed: a tag, then the record").1;
        fs::write(&path, json).expect("an unsealed copy");
    }
    let second = loader.load_package(&apkg, None).await.expect("second load");
    assert!(
        !second.unchanged_redeploy,
        "an unsealed record was taken as the last load"
    );
    assert!(!second.venv_reused, "a venv with a forged marker was reused");
    assert!(!venv.join("planted").exists(), "the forged venv was kept");
    let third = loader.load_package(&apkg, None).await.expect("third load");
    assert!(third.unchanged_redeploy, "par's own seal is trusted again");
}

/// An identity record is trusted only under par's seal: one edited to send
/// an archive to another archive's digest (and so to its recorded load) is
/// ignored, the archive is hashed again, and its own load is what returns.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_identity_par_did_not_seal_is_not_trusted() {
    let ws = Workspace::new();
    let loader = PackageLoader::new(offline_config(&ws, env!("CARGO_TARGET_TMPDIR"))).expect("loader");
    let other = ws.apkg("other", &Apkg::valid_agent().file("which.txt", "other"));
    let own = ws.apkg("own", &Apkg::valid_agent().file("which.txt", "own"));
    settle(&other);
    settle(&own);
    let other_load = loader.load_package(&other, None).await.expect("other");
    let own_load = loader.load_package(&own, None).await.expect("own");
    let digest = |path: &Path| path.extension().expect("a digest").to_string_lossy().into_owned();
    let (other_digest, own_digest) = (digest(&other_load.path), digest(&own_load.path));
    let archives = ws.root().join("archives");
    assert_eq!(names_in(&archives).len(), 2, "both identities recorded");
    let mut edited = 0;
    for name in names_in(&archives) {
        let path = archives.join(name);
        let text = fs::read_to_string(&path).expect("record");
        if text.contains(&own_digest) {
            fs::write(&path, text.replace(&own_digest, &other_digest)).expect("edit the record");
            edited += 1;
        }
    }
    assert_eq!(edited, 1, "the own archive's record names its digest");
    let again = loader.load_package(&own, None).await.expect("own again");
    assert_eq!(again.path, own_load.path, "answered from another archive's load");
    assert_eq!(fs::read_to_string(again.path.join("which.txt")).expect("file"), "own");
}

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
