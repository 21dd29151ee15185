//! Valid packages through the real sandbox: the tree lands where the spec
//! says, with normalized modes, every manifest variant found in the wild is
//! accepted, and republishing replaces a package atomically.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use par::{LoadError, LoaderConfig, PackageLoader, SandboxError};
use par_tests::apkg::AGENT_YAML;
use par_tests::workspace::{component_cache, names_in};
use par_tests::zip_bytes::ZipBytes;
use par_tests::{Apkg, Workspace};

fn config(ws: &Workspace) -> LoaderConfig {
    let mut config = LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config
}

fn loader(ws: &Workspace) -> PackageLoader {
    PackageLoader::new(config(ws)).expect("loader")
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_agent_is_published_with_normalized_modes() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let package = loader(&ws).extract(&apkg, None).await.expect("extract");

    assert_eq!(package.package_id, "test-agent@1.0.0");
    assert_eq!(package.app_id, "test-agent");
    assert_published(&ws, &package.link, &package.path, "test-agent@1.0.0");
    assert_eq!(package.files, 9);
    let tree = &package.path;
    assert_eq!(
        fs::read_to_string(tree.join("agent.yaml")).expect("manifest"),
        AGENT_YAML
    );
    assert!(
        fs::read_to_string(tree.join("core/langchain_util.py"))
            .expect("core")
            .contains("model_default")
    );
    assert_eq!(
        names_in(tree),
        ["agent.yaml", "app", "bin", "core", "requirements.txt", "setup.py", "ui"]
    );
    assert_eq!(mode(tree), 0o755);
    assert_eq!(mode(&tree.join("core")), 0o755);
    assert_eq!(mode(&tree.join("setup.py")), 0o644);
    assert_eq!(mode(&tree.join("bin/run.sh")), 0o755);
    assert_eq!(names_in(&ws.root().join("staging")), Vec::<String>::new());

    let manifest = &package.manifest;
    let entrypoint = manifest.entrypoint.as_ref().expect("entrypoint");
    assert_eq!(
        (entrypoint.module.as_str(), entrypoint.attr.as_deref()),
        ("app.main", Some("agent"))
    );
    assert_eq!(manifest.document["runtime"], "python3.11");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_id_chooses_the_directory() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let package = loader(&ws)
        .extract(&apkg, Some("4906eeb7-9959-414e-84c6-f2445822ebe4"))
        .await
        .expect("extract");
    assert_eq!(package.package_id, "test-agent@1.0.0");
    assert_published(
        &ws,
        &package.link,
        &package.path,
        "4906eeb7-9959-414e-84c6-f2445822ebe4@1.0.0",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_app_id_is_refused_before_anything_is_written() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    for app_id in ["../evil", "a/b", "", ".hidden", "x@y"] {
        let error = loader(&ws).extract(&apkg, Some(app_id)).await.expect_err(app_id);
        assert!(
            matches!(error, LoadError::InvalidInput { what: "app id", .. }),
            "{app_id}: {error}"
        );
    }
    ws.assert_left_nothing("unsafe app id");
}

/// A label, extra `agent.yaml` lines, and a check of the resulting manifest.
type Variant<'a> = (&'a str, &'a str, &'a dyn Fn(&par::Manifest));

#[tokio::test(flavor = "multi_thread")]
async fn manifest_variants_from_the_wild_are_accepted() {
    let variants: &[Variant] = &[
        ("runtime as a string", "runtime: python3.11\n", &|m| {
            assert_eq!(m.document["runtime"], "python3.11")
        }),
        ("runtime as a mapping", "runtime:\n  python: \">=3.8\"\n", &|m| {
            assert_eq!(m.document["runtime"]["python"], ">=3.8")
        }),
        ("exports", "exports:\n  - agent\n  - tools\n", &|m| {
            assert_eq!(m.document["exports"][1], "tools")
        }),
        ("a2a", "a2a:\n  service: app.a2a:serve\n", &|m| {
            assert_eq!(m.document["a2a"]["service"], "app.a2a:serve")
        }),
        ("rest", "rest:\n  entry: app.rest:router\n", &|m| {
            assert_eq!(m.document["rest"]["entry"], "app.rest:router")
        }),
        ("ui", "ui:\n  path: ui\n  basePath: /ui\n", &|m| {
            assert_eq!(m.document["ui"]["basePath"], "/ui")
        }),
        ("environment", "environment:\n  LOG_LEVEL: info\n  RETRIES: 3\n", &|m| {
            assert_eq!(m.document["environment"]["RETRIES"], 3)
        }),
        ("dependencies", "dependencies:\n  - fastapi>=0.100\n", &|m| {
            assert_eq!(m.document["dependencies"][0], "fastapi>=0.100")
        }),
        (
            "metadata.sub_agents",
            "metadata:\n  sub_agents:\n    - name: critic\n      description: reviews\n",
            &|m| assert_eq!(m.document["metadata"]["sub_agents"][0]["name"], "critic"),
        ),
        ("mcp", "mcp:\n  enabled: true\n  servers: []\n", &|m| {
            assert_eq!(m.document["mcp"]["enabled"], true)
        }),
        ("unknown fields", "x-future:\n  nested: [1, {deep: yes}]\n", &|m| {
            assert_eq!(m.document["x-future"]["nested"][1]["deep"], "yes")
        }),
    ];
    let ws = Workspace::new();
    let loader = loader(&ws);
    for (label, extra, check) in variants {
        let yaml = format!("name: variant\nversion: 2.0.0\n{extra}");
        let apkg = ws.apkg("variant", &Apkg::agent_with_manifest(&yaml));
        let manifest = loader.inspect(&apkg).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        check(&manifest);
        assert!(manifest.entrypoint.is_none(), "{label}: no entrypoint given");
        let package = loader
            .extract(&apkg, None)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(package.manifest, manifest, "{label}: inspect and extract agree");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_as_pak_builds_it_has_its_servers_permissions_and_deploy_file_typed() {
    let ws = Workspace::new();
    let apkg = ws.apkg("pak", &Apkg::pak_agent());
    let loader = loader(&ws);
    let manifest = loader.inspect(&apkg).await.expect("inspect");
    let app = |module: &str, attr: &str| par::Entrypoint {
        module: module.into(),
        attr: Some(attr.into()),
    };
    assert_eq!(manifest.http_server, Some(app("src.server", "app")));
    assert_eq!(manifest.a2a_http_server, Some(app("a2a_server", "app")));
    assert_eq!(
        manifest.permissions,
        Some(par::Permissions {
            required: vec!["files.read".into()],
            optional: vec!["calendar.write".into()],
        })
    );
    assert_eq!(
        manifest.data_access,
        Some(par::DataAccess {
            oauth_providers: vec!["google".into()],
            user_data: vec!["email".into(), "profile".into()],
            external_apis: vec!["https://api.example.com".into()],
        })
    );
    assert_eq!(
        manifest.deploy,
        Some(par::Deploy {
            expose: vec!["rest".into(), "a2a".into()],
            ports: vec![("a2a".into(), 50051), ("rest".into(), 8080)],
            multiplex: Some(true),
            environment: vec![
                ("GREETING".into(), "${GREETING:-hello}".into()),
                ("RETRIES".into(), "3".into()),
            ],
        })
    );
    let package = loader.extract(&apkg, None).await.expect("extract");
    assert_eq!(package.manifest, manifest, "inspect and extract agree");
    assert!(package.path.join("deploy.json").is_file());

    let plain = loader
        .inspect(&ws.apkg("plain", &Apkg::valid_agent()))
        .await
        .expect("inspect");
    assert_eq!(
        (plain.http_server, plain.permissions, plain.data_access, plain.deploy),
        (None, None, None, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_deploy_file_or_server_is_refused_naming_the_field() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let cases: &[(&str, Apkg, &str, &str)] = &[
        (
            "deploy.json port",
            Apkg::pak_agent().replace("deploy.json", r#"{"ports": {"rest": 0}}"#),
            "deploy-invalid",
            "ports.rest",
        ),
        (
            "deploy.json variable par sets",
            Apkg::pak_agent().replace("deploy.json", r#"{"environment": {"LD_PRELOAD": "/tmp/x.so"}}"#),
            "deploy-invalid",
            "environment.LD_PRELOAD",
        ),
        (
            "deploy.json not JSON",
            Apkg::pak_agent().replace("deploy.json", "expose: [rest]"),
            "deploy-invalid",
            "",
        ),
        (
            "http_server without an app",
            Apkg::agent_with_manifest("name: a\nversion: '1'\nhttp_server: src.server\n"),
            "manifest-invalid",
            "http_server",
        ),
        (
            "permissions not a list",
            Apkg::agent_with_manifest("name: a\nversion: '1'\npermissions: {required: files.read}\n"),
            "manifest-invalid",
            "permissions.required",
        ),
    ];
    for (label, apkg, kind, subject) in cases {
        let apkg = ws.apkg("bad", apkg);
        for error in [
            loader.inspect(&apkg).await.expect_err(label),
            loader.extract(&apkg, None).await.expect_err(label),
        ] {
            let LoadError::Package(error) = &error else {
                panic!("{label}: {error}");
            };
            assert_eq!(error.kind(), *kind, "{label}: {error}");
            assert_eq!(error.subject().unwrap_or_default(), *subject, "{label}: {error}");
        }
    }
    assert_eq!(names_in(&ws.root().join("trees")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn numeric_version_keeps_its_text() {
    let ws = Workspace::new();
    let apkg = ws.apkg("v", &Apkg::agent_with_manifest("name: numeric\nversion: 1.10\n"));
    let package = loader(&ws).extract(&apkg, None).await.expect("extract");
    assert_eq!(package.manifest.version, "1.10");
    assert_eq!(package.manifest.document["version"], "1.10");
    assert_published(&ws, &package.link, &package.path, "numeric@1.10");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_publishes_nothing() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let manifest = loader(&ws).inspect(&apkg).await.expect("inspect");
    assert_eq!(manifest.name, "test-agent");
    ws.assert_left_nothing("inspect");
}

#[tokio::test(flavor = "multi_thread")]
async fn republishing_never_writes_through_a_planted_symlink() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let first = ws.apkg("first", &Apkg::valid_agent().file("old.txt", "old"));
    let package = loader.extract(&first, None).await.expect("first extract");

    // An agent replaces its own tree with a symlink to a victim dir, then
    // the same archive is extracted again: same tree path.
    let victim = ws.path().join("in/victim");
    fs::create_dir(&victim).expect("victim");
    fs::remove_dir_all(&package.path).expect("remove");
    std::os::unix::fs::symlink(&victim, &package.path).expect("plant symlink");
    let again = loader.extract(&first, None).await.expect("second extract");
    assert_eq!(again.path, package.path);
    let meta = fs::symlink_metadata(&again.path).expect("published");
    assert!(meta.is_dir(), "the symlink was replaced by a real directory");
    assert!(again.path.join("old.txt").is_file());

    // The app's link replaced by a symlink to the victim: switched, not followed.
    fs::remove_file(&package.link).expect("remove the link");
    std::os::unix::fs::symlink(&victim, &package.link).expect("plant symlink");
    let second = ws.apkg("second", &Apkg::valid_agent().file("new.txt", "new"));
    let other = loader.extract(&second, None).await.expect("third extract");
    assert_ne!(other.path, package.path, "another archive, another tree");
    assert_published(&ws, &other.link, &other.path, "test-agent@1.0.0");
    assert!(other.link.join("new.txt").is_file());
    assert!(!other.link.join("old.txt").exists());
    assert_eq!(
        names_in(&victim),
        Vec::<String>::new(),
        "nothing written through a symlink"
    );
    assert_eq!(names_in(&ws.root().join("staging")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn archives_that_every_reader_reads_alike_are_accepted() {
    // Data descriptors throughout (as streaming writers make them), and ZIP64
    // end records (as writers of large archives add them): both consistent.
    let mut zip64 = ZipBytes(par_tests::cases::layered().to_bytes());
    zip64.with_zip64(0);
    for (name, bytes) in [("streamed", par_tests::cases::streamed()), ("zip64", zip64.0)] {
        let ws = Workspace::new();
        let apkg = ws.apkg(name, &Apkg::from_bytes(bytes));
        let package = loader(&ws)
            .extract(&apkg, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            fs::read_to_string(package.path.join("core/langchain_util.py")).expect("a file"),
            "def model_default():\n    return 'test-model'\n",
            "{name}"
        );
    }
}

/// The tree is under `trees/`, and the app's link `packages/{name}` points at it.
fn assert_published(ws: &Workspace, link: &Path, tree: &Path, name: &str) {
    assert_eq!(link, ws.root().join("packages").join(name));
    assert_eq!(
        tree.parent(),
        Some(ws.root().join("trees").as_path()),
        "{}",
        tree.display()
    );
    assert!(
        tree.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}."))),
        "{}",
        tree.display()
    );
    assert_eq!(fs::read_link(link).expect("a link").as_path(), tree);
    assert!(fs::symlink_metadata(tree).expect("the tree").is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_extracts_of_one_package_both_succeed() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let (a, b) = tokio::join!(loader.extract(&apkg, None), loader.extract(&apkg, None));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.path, b.path);
    assert_eq!(ws.published(), ["test-agent@1.0.0"]);
    assert!(a.path.join("core/langchain_util.py").is_file());
    assert_eq!(names_in(&ws.root().join("staging")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_memory_cap_becomes_a_typed_error() {
    let ws = Workspace::new();
    let mut config = config(&ws);
    config.guest_memory_bytes = 4 * 1024 * 1024;
    let big_manifest = format!("{AGENT_YAML}items:\n{}", "  - some list item text\n".repeat(40_000));
    config.limits.max_manifest_bytes = 2 * 1024 * 1024;
    let apkg = ws.apkg("big", &Apkg::agent_with_manifest(&big_manifest));
    let error = PackageLoader::new(config)
        .expect("loader")
        .extract(&apkg, None)
        .await
        .expect_err("must not fit in 4 MiB");
    assert!(
        matches!(
            error,
            LoadError::Sandbox(SandboxError::MemoryLimit { limit_bytes: 4194304 })
        ),
        "{error}"
    );
    ws.assert_left_nothing("memory cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_cpu_cap_becomes_a_typed_error() {
    let ws = Workspace::new();
    let mut config = config(&ws);
    config.guest_cpu_time = Duration::from_millis(1);
    let mut apkg = Apkg::valid_agent();
    for i in 0..400 {
        apkg = apkg.file(&format!("data/{i}.bin"), par_tests::cases::incompressible(64 * 1024));
    }
    let apkg = ws.apkg("slow", &apkg);
    let error = PackageLoader::new(config)
        .expect("loader")
        .extract(&apkg, None)
        .await
        .expect_err("25 MiB cannot be written in 1 ms");
    assert!(
        matches!(error, LoadError::Sandbox(SandboxError::CpuTimeLimit { .. })),
        "{error}"
    );
    ws.assert_left_nothing("cpu cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_abandoned_by_a_killed_load_is_swept_but_a_live_one_is_kept() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    // A load killed mid-extraction leaves its staging directory, lock released.
    let abandoned = ws.root().join("staging/stage-killed");
    fs::create_dir_all(abandoned.join("tree/core")).expect("abandoned");
    fs::write(abandoned.join("tree/core/half.py"), "half").expect("half-written file");
    fs::write(abandoned.join(".live"), "").expect("released lock");
    // A load still running in another process holds its lock.
    let live = ws.root().join("staging/stage-running");
    fs::create_dir_all(&live).expect("live");
    let held = fs::File::create(live.join(".live")).expect("lock file");
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).expect("lock");

    let package = loader(&ws).extract(&apkg, None).await.expect("extract");
    assert!(package.path.join("core/langchain_util.py").is_file());
    assert_eq!(names_in(&ws.root().join("staging")), ["stage-running"]);
    drop(held);
}
