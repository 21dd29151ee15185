//! Defence in depth: with the guest's own path rules switched off (a switch
//! that exists only under the `test-hooks` feature), the WASI preopen alone
//! still keeps every write inside the staging directory.

use par::{LoadError, LoaderConfig, PackageError, PackageLoader};
use par_tests::workspace::component_cache;
use par_tests::{Apkg, Workspace};

fn loader(ws: &Workspace, rules: bool) -> PackageLoader {
    let mut config = LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    if !rules {
        config = config.without_guest_path_rules();
    }
    PackageLoader::new(config).expect("loader")
}

fn escaping(name: &[u8]) -> Apkg {
    let placeholder: Vec<u8> = name.iter().map(|_| b'q').collect();
    let placeholder = String::from_utf8(placeholder).expect("ascii");
    Apkg::valid_agent()
        .file(&placeholder, "escaped")
        .patch(placeholder.as_bytes(), name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_switch_really_turns_the_rules_off() {
    // `core/../core/x.py` stays inside but breaks the `..` rule: refused with
    // the rules, written without them.
    let apkg = Apkg::valid_agent()
        .file("core/qq/core/inside.py", "x")
        .patch(b"core/qq/core/inside.py", b"core/../core/inside.py");
    let ws = Workspace::new();
    let path = ws.apkg("inside", &apkg);
    let refused = loader(&ws, true).extract(&path, None).await.expect_err("rules on");
    assert!(
        matches!(refused, LoadError::Package(PackageError::UnsafeEntry(_))),
        "{refused}"
    );
    let package = loader(&ws, false).extract(&path, None).await.expect("rules off");
    assert!(package.path.join("core/inside.py").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preopen_alone_confines_writes() {
    let names: [&[u8]; 3] = [
        b"../../escape-parent.txt",
        b"/escape-abs.txt",
        b"core/../../../escape-parent.txt",
    ];
    for name in names {
        let label = String::from_utf8_lossy(name).into_owned();
        let ws = Workspace::new();
        let path = ws.apkg("escape", &escaping(name));
        let error = loader(&ws, false).extract(&path, None).await.expect_err(&label);
        assert!(
            matches!(error, LoadError::Package(PackageError::Write(_))),
            "{label}: the preopen refused the write: {error}"
        );
        ws.assert_left_nothing(&label);
    }
}
