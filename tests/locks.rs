//! The same bits on every node: a load given a lock (`--lock`, the lock of
//! an earlier load) installs exactly that set in another root, with real
//! pip and uv, offline; a lock that cannot be used, or that does not hold
//! what the package asks for, is refused before anything is installed. An
//! offline bundle loads in any root from its own files alone, and one that
//! holds anything else, or other bytes than its lock says, is refused.

use std::fs;
use std::path::{Path, PathBuf};

use par::{AgentPackage, IndexConfig, InstallerChoice, LoadError, LoaderConfig, PackageLoader, TrustedKey};
use par_tests::index_trap::IndexTrap;
use par_tests::simple_index::SimpleIndex;
use par_tests::workspace::offline_config;
use par_tests::{Apkg, Workspace, tools};

/// A loader for `backend` in `ws`, installing only from the wheelhouse.
fn config(ws: &Workspace, backend: InstallerChoice) -> LoaderConfig {
    let mut config = offline_config(ws, env!("CARGO_TARGET_TMPDIR"));
    config.install.installer = backend;
    config
}

fn loader(ws: &Workspace, backend: InstallerChoice) -> PackageLoader {
    PackageLoader::new(config(ws, backend)).expect("loader")
}

/// The test agent with a requirement from the wheelhouse and a local one.
fn agent(requirements: &str) -> Apkg {
    Apkg::valid_agent()
        .replace("requirements.txt", requirements)
        .file(
            "vendor/helper/setup.py",
            "from setuptools import setup\nsetup(name='par_helper', version='0.1', packages=['par_helper'])\n",
        )
        .file("vendor/helper/par_helper/__init__.py", "VALUE = 42\n")
}

const REQUIREMENTS: &str = "packaging>=20\n./vendor/helper\n";

/// The wheelhouse's `packaging` wheel, as a `file://` URL.
fn packaging_url() -> String {
    let wheelhouse = tools::wheelhouse(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools"));
    format!("file://{}/packaging-26.4-py3-none-any.whl", wheelhouse.display())
}

/// Loads `apkg` in `ws` without a lock: the lock it records is what the tests give.
fn first_load(ws: &Workspace, backend: InstallerChoice, apkg: &Apkg) -> AgentPackage {
    loader(ws, backend)
        .load_blocking(&ws.apkg("agent", apkg), None)
        .expect("the first load")
}

fn load_locked(ws: &Workspace, backend: InstallerChoice, apkg: &Apkg, lock: &Path) -> Result<AgentPackage, LoadError> {
    loader(ws, backend).load_locked_blocking(&ws.apkg("agent", apkg), None, lock)
}

/// Declares one test per back end from a `fn(InstallerChoice)`.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod pip {
            $(#[test]
            fn $name() { super::$name(par::InstallerChoice::Pip) })*
        }
        mod uv {
            $(#[test]
            fn $name() { super::$name(par::InstallerChoice::Uv) })*
        }
    };
}

for_each_backend!(
    the_lock_of_one_load_installs_the_same_set_in_another_root,
    a_lock_that_does_not_hold_a_requirement_is_refused_naming_it,
    a_file_whose_hash_differs_from_the_lock_fails_the_install_and_publishes_nothing,
    a_lock_naming_what_the_loader_would_not_fetch_is_refused_naming_the_entry,
    a_lock_keeps_its_version_after_the_index_gains_a_newer_release,
    par_lock_resolves_without_installing_and_its_lock_loads_in_another_root,
    every_venv_has_an_sbom_of_what_it_holds_that_the_cyclonedx_schema_accepts,
    a_bundle_loads_in_two_roots_offline_with_the_same_records_and_lock,
    a_bundle_holding_other_bytes_or_members_than_its_lock_is_refused_naming_them,
    a_release_with_a_wheel_and_an_sdist_is_locked_installed_and_bundled_as_one,
    loads_locks_and_bundles_fetch_over_http_from_an_index_shaped_like_pypi,
);

/// The lock an earlier load recorded, given to a load in a fresh root: the
/// same distributions, installed file for file the same (their `RECORD`s),
/// and the same lock recorded.
fn the_lock_of_one_load_installs_the_same_set_in_another_root(backend: InstallerChoice) {
    let apkg = agent(REQUIREMENTS);
    let (first, second) = (Workspace::new(), Workspace::new());
    let original = first_load(&first, backend, &apkg);
    let lock = fs::read_to_string(&original.lock).expect("the first lock");

    let package = load_locked(&second, backend, &apkg, &original.lock).expect("the locked load");
    assert!(
        package.installed_as_package && package.verified == Some(true),
        "{package:?}"
    );
    assert_eq!(
        fs::read_to_string(&package.lock).expect("the second lock"),
        lock,
        "the same lock, whatever the root"
    );
    let installed = std::process::Command::new(&package.python_path)
        .args([
            "-c",
            "import packaging, par_helper; print(packaging.__version__, par_helper.VALUE)",
        ])
        .current_dir(second.path())
        .output()
        .expect("run the venv's python");
    assert_eq!(String::from_utf8_lossy(&installed.stdout).trim(), "26.4 42");
    // The same wheel, installed the same: every file, by its RECORD hash.
    assert_eq!(
        record(&package, "packaging-26.4"),
        record(&original, "packaging-26.4"),
        "packaging's RECORD"
    );

    // Loaded again with the same lock: unchanged, nothing runs; without it,
    // the settings differ and the load runs again.
    let again = load_locked(&second, backend, &apkg, &original.lock).expect("again");
    assert!(again.unchanged_redeploy, "{again:?}");
    let unlocked = loader(&second, backend)
        .load_blocking(&second.apkg("agent", &apkg), None)
        .expect("without the lock");
    assert!(!unlocked.unchanged_redeploy);
    assert_ne!(unlocked.venv_path, package.venv_path, "a locked venv is its own");
}

/// A requirement line the lock does not satisfy (a version it excludes, a
/// distribution it lacks) refuses the load, naming the line, before
/// anything is installed.
fn a_lock_that_does_not_hold_a_requirement_is_refused_naming_it(backend: InstallerChoice) {
    let ws = Workspace::new();
    let lock = first_load(&ws, backend, &agent(REQUIREMENTS)).lock;
    for (line, needle) in [
        ("packaging>=99", "the lock has `packaging` 26.4, not `>=99`"),
        ("par-absent-package", "the lock has no `par-absent-package`"),
        ("./vendor/other", "the lock has nothing from `vendor/other`"),
    ] {
        let other = Workspace::new();
        let apkg = agent(&format!("{REQUIREMENTS}{line}\n")).file("vendor/other/setup.py", "");
        let error = load_locked(&other, backend, &apkg, &lock).expect_err(line);
        assert_eq!(
            (error.kind(), error.subject()),
            ("lock-unsatisfied", Some(line)),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("requirements.txt:3") && message.contains(needle),
            "{message}"
        );
        other.assert_left_nothing(line);
    }
    // A requirement whose marker does not hold here asks for nothing.
    let other = Workspace::new();
    let apkg = agent(&format!("{REQUIREMENTS}par-absent-package ; sys_platform == 'win32'\n"));
    load_locked(&other, backend, &apkg, &lock).expect("a line for another platform");
}

/// A lock whose hash for a file is not that file's: the installer refuses
/// the file, the load fails, and nothing is published.
fn a_file_whose_hash_differs_from_the_lock_fails_the_install_and_publishes_nothing(backend: InstallerChoice) {
    let ws = Workspace::new();
    let lock = write_lock(
        &ws,
        &format!(
            "[[packages]]\nname = \"packaging\"\nversion = \"26.4\"\nwheels = [{{ url = \"{}\", hashes = {{ sha256 = \"{}\" }} }}]\n",
            packaging_url(),
            "0".repeat(64)
        ),
    );
    let error = load_locked(&ws, backend, &agent("packaging>=20\n"), &lock).expect_err("a wrong hash");
    assert_eq!(error.kind(), "install-failed", "{error}");
    let message = error.to_string().to_lowercase();
    assert!(message.contains("hash"), "{message}");
    ws.assert_left_nothing("a wrong hash");
}

/// What a requirement line could not do, a lock cannot either: each entry
/// the loader's settings or the format refuse is named (a file outside the
/// find-links directories, anything remote offline, another index, a
/// direct URL, a hash that is no SHA-256, a path out of the package, one
/// project's wheel under another's name), nothing installed.
fn a_lock_naming_what_the_loader_would_not_fetch_is_refused_naming_the_entry(backend: InstallerChoice) {
    let sha = "1".repeat(64);
    let wheel =
        |url: &str| format!("version = \"1\"\nwheels = [{{ url = \"{url}\", hashes = {{ sha256 = \"{sha}\" }} }}]");
    let cases = [
        (
            wheel("file:///etc/evil-1-py3-none-any.whl"),
            "outside every find-links directory",
        ),
        (
            wheel("https://example.invalid/evil-1-py3-none-any.whl"),
            "installs only from local files",
        ),
        (
            format!(
                "version = \"1\"\nindex = \"https://example.invalid/simple\"\nsdist = {{ url = \"{}\", hashes = {{ sha256 = \"{sha}\" }} }}",
                packaging_url()
            ),
            "not one the loader is configured with",
        ),
        (
            format!("archive = {{ url = \"https://example.invalid/evil.whl\", hashes = {{ sha256 = \"{sha}\" }} }}"),
            "direct reference",
        ),
        (
            format!(
                "version = \"1\"\nsdist = {{ url = \"{}\", hashes = {{ md5 = \"x\" }} }}",
                packaging_url()
            ),
            "`md5` is not one par checks",
        ),
        ("directory = { path = \"../../etc\" }".into(), "inside the package"),
        (
            wheel(&packaging_url()),
            "the wheel `packaging-26.4-py3-none-any.whl` is not of `evil`",
        ),
    ];
    for (entry, needle) in cases {
        let ws = Workspace::new();
        let lock = write_lock(&ws, &format!("[[packages]]\nname = \"evil\"\n{entry}\n"));
        let error = load_locked(&ws, backend, &agent("evil\n"), &lock).expect_err(&entry);
        assert_eq!(
            (error.kind(), error.subject()),
            ("lock-invalid", Some("packages[0] (evil)")),
            "{entry}: {error}"
        );
        assert!(error.to_string().contains(needle), "{entry}: {error}");
        assert!(error.is_package_fault());
        ws.assert_left_nothing(&entry);
    }
}

/// A find-links directory gains a newer release between two loads: a load
/// without the lock takes it, a load with the lock installs the locked one.
fn a_lock_keeps_its_version_after_the_index_gains_a_newer_release(backend: InstallerChoice) {
    let (first, second) = (Workspace::new(), Workspace::new());
    let links = first.path().join("in").join("links");
    fs::create_dir(&links).expect("links");
    let with_links = |ws: &Workspace| {
        let mut config = config(ws, backend);
        config.install.index.find_links.push(links.display().to_string());
        PackageLoader::new(config).expect("loader")
    };
    let version_in = |package: &AgentPackage| {
        let out = std::process::Command::new(&package.python_path)
            .args(["-c", "import importlib.metadata as m; print(m.version('par-probe'))"])
            .output()
            .expect("run the venv's python");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let apkg = Apkg::valid_agent().replace("requirements.txt", "par-probe\n");
    write_wheel(&links, "1.0");
    let locked = with_links(&first)
        .load_blocking(&first.apkg("agent", &apkg), None)
        .expect("the first load");
    assert_eq!(version_in(&locked), "1.0");

    write_wheel(&links, "2.0");
    let path = second.apkg("agent", &apkg);
    let newest = with_links(&second)
        .load_blocking(&path, Some("newest"))
        .expect("unlocked");
    assert_eq!(version_in(&newest), "2.0", "the index gained a release");
    let pinned = with_links(&second)
        .load_locked_blocking(&path, Some("pinned"), &locked.lock)
        .expect("locked");
    assert_eq!(version_in(&pinned), "1.0", "the lock's release, not the newest");
}

/// `lock` resolves the requirements and the build backend's requirements
/// (setuptools, for a `setup.py`) and installs nothing; its lock then loads
/// in another root, installing exactly what it says.
fn par_lock_resolves_without_installing_and_its_lock_loads_in_another_root(backend: InstallerChoice) {
    let (ws, other) = (Workspace::new(), Workspace::new());
    let apkg = agent(REQUIREMENTS);
    let resolved = loader(&ws, backend)
        .lock_blocking(&ws.apkg("agent", &apkg))
        .expect("lock");
    ws.assert_left_nothing("lock");
    let lock: toml::Table = toml::from_str(&resolved.lock).expect("TOML");
    let packages = lock["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["packaging", "par-helper"], "{}", resolved.lock);
    assert_eq!(packages[0]["version"].as_str(), Some("26.4"));
    assert_eq!(packages[1]["directory"]["path"].as_str(), Some("vendor/helper"));
    let build: toml::Table = toml::from_str(resolved.build_lock.as_deref().expect("a build lock")).expect("TOML");
    let build_names: Vec<&str> = build["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // pip builds a `setup.py` alone with `wheel` (which needs `packaging`) beside setuptools.
    let built_with: &[&str] = match backend {
        InstallerChoice::Pip => &["packaging", "setuptools", "wheel"],
        _ => &["setuptools"],
    };
    assert_eq!(build_names, built_with, "{build:?}");

    let path = other.path().join("in").join("pylock.toml");
    fs::write(&path, &resolved.lock).expect("write the lock");
    let package = load_locked(&other, backend, &apkg, &path).expect("the locked load");
    assert_eq!(package.requirements_count, 2);
    let recorded = fs::read_to_string(&package.lock).expect("the recorded lock");
    assert!(recorded.contains("name = \"test-agent\""), "{recorded}");
}

/// The venv's SBOM names the agent as its root, and every distribution
/// with its version, package URL, hash and the licence its metadata
/// declares (read here from the wheel itself); CycloneDX's own validator
/// accepts it; `sbom` and `list` name the same.
fn every_venv_has_an_sbom_of_what_it_holds_that_the_cyclonedx_schema_accepts(backend: InstallerChoice) {
    let ws = Workspace::new();
    let package = first_load(&ws, backend, &agent(REQUIREMENTS));
    assert_eq!(package.sbom, package.venv_path.join("sbom.cdx.json"));
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools");
    tools::assert_valid_cyclonedx(&tools, &package.sbom);
    let text = fs::read_to_string(&package.sbom).expect("the SBOM");
    let bill: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        (bill["bomFormat"].as_str(), bill["specVersion"].as_str()),
        (Some("CycloneDX"), Some("1.5"))
    );
    let root = &bill["metadata"]["component"];
    assert_eq!(
        (root["type"].as_str(), root["name"].as_str(), root["version"].as_str()),
        (Some("application"), Some("test-agent"), Some("1.0.0"))
    );
    let components = bill["components"].as_array().expect("components");
    let named = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    let packaging = named("packaging");
    assert_eq!(packaging["version"], "26.4");
    assert_eq!(packaging["purl"], "pkg:pypi/packaging@26.4");
    let wheel_path = tools::wheelhouse(&tools).join("packaging-26.4-py3-none-any.whl");
    let wheel = fs::read(&wheel_path).expect("the wheel");
    let sha256 = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&wheel));
    assert_eq!(packaging["hashes"][0]["alg"], "SHA-256");
    assert_eq!(packaging["hashes"][0]["content"].as_str(), Some(sha256.as_str()));
    let declared = wheel_metadata(&wheel_path, "packaging-26.4.dist-info/METADATA")
        .lines()
        .find_map(|line| line.strip_prefix("License-Expression: ").map(str::to_owned))
        .expect("packaging declares its licence");
    assert_eq!(packaging["licenses"][0]["expression"].as_str(), Some(declared.as_str()));
    let helper = named("par-helper");
    assert_eq!(helper["externalReferences"][0]["url"], "vendor/helper");

    let loader = loader(&ws, backend);
    assert_eq!(
        loader.sbom_blocking("test-agent", None).expect("sbom").trim_end(),
        text.trim_end()
    );
    assert_eq!(
        loader
            .sbom_blocking("test-agent", Some("1.0.0"))
            .expect("sbom")
            .trim_end(),
        text.trim_end()
    );
    let missing = loader
        .sbom_blocking("test-agent", Some("9.9"))
        .expect_err("no such version");
    assert_eq!(missing.kind(), "not-found", "{missing}");
    let listing = loader.list_blocking().expect("list");
    assert_eq!(
        listing.apps[0].deployments[0].sbom.as_deref(),
        Some(package.sbom.as_path())
    );
}

/// Writes the bundle of `apkg` (made in a root of its own) into `ws`'s `in/`.
fn bundle(ws: &Workspace, backend: InstallerChoice, apkg: &Apkg, key: Option<&par::SigningKey>) -> PathBuf {
    let maker = Workspace::new();
    let parb = ws.path().join("in").join("agent.parb");
    let written = loader(&maker, backend)
        .bundle_blocking(&maker.apkg("agent", apkg), &parb, key)
        .expect("the bundle");
    assert_eq!(written.path, parb);
    parb
}

/// A loader in `ws` that knows nothing but `index` (no find-links) and has
/// an installer cache of its own, empty: a node that never saw the package.
fn node(ws: &Workspace, backend: InstallerChoice, index: &IndexTrap) -> LoaderConfig {
    let mut config = config(ws, backend);
    config.install.index = IndexConfig {
        index_url: Some(format!("{}/simple", index.url())),
        ..IndexConfig::default()
    };
    config.install.installer_cache = Some(ws.path().join("in").join("installer-cache"));
    config
}

/// Two nodes load one bundle, made with the other installer: with an index that would answer and no
/// find-links, every file comes from the bundle and nothing reaches the
/// index (not the installer, not the agent's `setup.py`, which tries); both
/// venvs hold the same distributions, installed file for file the same,
/// and record the same lock. A second load is unchanged.
fn a_bundle_loads_in_two_roots_offline_with_the_same_records_and_lock(backend: InstallerChoice) {
    let trap = IndexTrap::start();
    let setup = format!(
        "import urllib.request\ntry:\n    urllib.request.urlopen('{}/setup', timeout=5)\nexcept Exception:\n    pass\n\
         from setuptools import setup, find_packages\nsetup(name='test-agent', version='1.0.0', packages=find_packages())\n",
        trap.url()
    );
    let apkg = agent(REQUIREMENTS).replace("setup.py", setup);
    let ws = Workspace::new();
    // Made with the other installer: a bundle loads with either.
    let maker = match backend {
        InstallerChoice::Pip => InstallerChoice::Uv,
        _ => InstallerChoice::Pip,
    };
    let parb = bundle(&ws, maker, &apkg, None);
    let mut packages = Vec::new();
    for _ in 0..2 {
        let node_ws = Workspace::new();
        let loader = PackageLoader::new(node(&node_ws, backend, &trap)).expect("loader");
        let package = loader.load_blocking(&parb, None).expect("the load from the bundle");
        assert!(
            package.installed_as_package && package.verified == Some(true),
            "{package:?}"
        );
        let again = loader.load_blocking(&parb, None).expect("again");
        assert!(again.unchanged_redeploy, "{again:?}");
        packages.push((node_ws, package));
    }
    let [(_, first), (_, second)] = &packages[..] else {
        unreachable!("two loads");
    };
    assert_eq!(trap.connections(), 0, "a load from the bundle reached the network");
    assert_eq!(
        fs::read_to_string(&first.lock).expect("lock"),
        fs::read_to_string(&second.lock).expect("lock"),
        "the same lock on both nodes"
    );
    assert_eq!(distributions(first), distributions(second));
    assert_eq!(record(first, "packaging-26.4"), record(second, "packaging-26.4"));
}

/// The SHA-256 of `bytes`, in hex: the name par's store of bundle files keeps them under.
fn sha256_hex(bytes: &[u8]) -> String {
    <sha2::Sha256 as sha2::Digest>::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every distribution in the package's venv, as `name==version` lines, sorted.
fn distributions(package: &AgentPackage) -> String {
    let out = std::process::Command::new(&package.python_path)
        .args([
            "-c",
            "import importlib.metadata as m\nprint('\\n'.join(sorted(f'{d.name}=={d.version}' for d in m.distributions())))",
        ])
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The members of the bundle `parb`, each through `edit` (none: left out),
/// then `extra`, written as `name` beside it.
fn rewrite(
    parb: &Path,
    name: &str,
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: &[(&str, &[u8])],
) -> PathBuf {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(fs::File::open(parb).expect("the bundle")).expect("a zip");
    let mut rewritten = Apkg::new();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).expect("entry");
        let member = entry.name().expect("a UTF-8 name").into_owned();
        if entry.is_dir() {
            rewritten = rewritten.dir(&member);
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        if let Some(bytes) = edit(&member, bytes) {
            rewritten = rewritten.file(&member, bytes);
        }
    }
    for (member, bytes) in extra {
        rewritten = rewritten.file(member, bytes);
    }
    let path = parb.with_file_name(name);
    rewritten.write_to(&path);
    path
}

/// A bundle is refused, naming the member, when a wheel is not the one
/// its lock hashed, when it holds a file its lock does not name or a
/// member no bundle holds, or when its lock is missing; nothing is
/// installed or published.
fn a_bundle_holding_other_bytes_or_members_than_its_lock_is_refused_naming_them(backend: InstallerChoice) {
    let ws = Workspace::new();
    let parb = bundle(&ws, backend, &agent(REQUIREMENTS), None);
    let wheel = "wheels/packaging-26.4-py3-none-any.whl";
    let evil = "wheels/evil-1.0-py3-none-any.whl";
    let cases: [(PathBuf, &str, &str, &str); 6] = [
        (
            rewrite(
                &parb,
                "other-wheel.parb",
                |member, bytes| {
                    Some(if member == wheel {
                        b"other bytes".to_vec()
                    } else {
                        bytes
                    })
                },
                &[],
            ),
            "bundle-invalid",
            "pylock.toml packages[0] (packaging)",
            wheel,
        ),
        (
            rewrite(&parb, "extra-wheel.parb", |_, bytes| Some(bytes), &[(evil, b"evil")]),
            "bundle-invalid",
            evil,
            "neither lock names",
        ),
        (
            rewrite(
                &parb,
                "extra-member.parb",
                |_, bytes| Some(bytes),
                &[("run.sh", b"#!/bin/sh\n")],
            ),
            "unsafe-entry",
            "run.sh",
            "not a bundle member",
        ),
        (
            rewrite(
                &parb,
                "editable-sdist.parb",
                |_, bytes| Some(bytes),
                &[("editable/agent-1.0.tar.gz", b"sdist")],
            ),
            "unsafe-entry",
            "editable/agent-1.0.tar.gz",
            "not a bundle member",
        ),
        (
            rewrite(
                &parb,
                "editable-two.parb",
                |_, bytes| Some(bytes),
                &[
                    ("editable/a-1.0-py3-none-any.whl", b"PK"),
                    ("editable/b-1.0-py3-none-any.whl", b"PK"),
                ],
            ),
            "bundle-invalid",
            "editable",
            "not one wheel",
        ),
        (
            rewrite(
                &parb,
                "no-lock.parb",
                |member, bytes| (member != "pylock.toml").then_some(bytes),
                &[],
            ),
            "bundle-invalid",
            "pylock.toml",
            "missing",
        ),
    ];
    // The store is the test binary's cache, shared: none of these files may be there before.
    let store = config(&ws, backend)
        .component_cache
        .expect("a cache")
        .join("dists/sha256");
    let refused_files = [sha256_hex(b"other bytes"), sha256_hex(b"evil")];
    for sha256 in &refused_files {
        let _ = fs::remove_dir_all(store.join(sha256));
    }
    for (path, kind, subject, needle) in cases {
        let node_ws = Workspace::new();
        let error = loader(&node_ws, backend).load_blocking(&path, None).expect_err(subject);
        assert_eq!((error.kind(), error.subject()), (kind, Some(subject)), "{error}");
        assert!(error.to_string().contains(needle), "{error}");
        assert!(error.is_package_fault());
        node_ws.assert_left_nothing(subject);
    }
    // Nor did a refused bundle's files reach par's store of bundle files.
    for sha256 in &refused_files {
        assert!(!store.join(sha256).exists(), "a refused bundle's file was kept");
    }
}

/// A bundle's files are kept in par's store under their digests, and every
/// load reads them from there: loads of the bundle into two roots of one
/// node (its caches shared) have the installer unpack each wheel once, not
/// once per load.
#[test]
fn a_bundles_files_are_unpacked_once_per_node_and_not_once_per_load() {
    let backend = InstallerChoice::Uv;
    let ws = Workspace::new();
    let parb = bundle(&ws, backend, &agent(REQUIREMENTS), None);
    let installers = ws.path().join("node-installer-cache");
    // The node's own cache too: another test's install of the same lock
    // would otherwise be linked, and nothing unpacked at all.
    let node_cache = ws.path().join("node-cache");
    // The installer's cache entries that hold `packaging` unpacked.
    let unpacked = || {
        let archives = installers.join("uv").join("archive-v0");
        let entries = fs::read_dir(&archives).expect("the installer's archives");
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().join("packaging").join("__init__.py").is_file())
            .count()
    };
    let mut counts = Vec::new();
    for _ in 0..2 {
        let node_ws = Workspace::new();
        let mut config = config(&node_ws, backend);
        config.install.installer_cache = Some(installers.clone());
        config.component_cache = Some(node_cache.clone());
        let store = node_cache.join("dists/sha256");
        let package = PackageLoader::new(config)
            .expect("loader")
            .load_blocking(&parb, None)
            .expect("the load from the bundle");
        assert!(package.verified == Some(true), "{package:?}");
        let wheel = "packaging-26.4-py3-none-any.whl";
        let tools_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools");
        let sha256 = sha256_hex(&fs::read(tools::wheelhouse(&tools_dir).join(wheel)).expect("the wheel"));
        assert!(
            store.join(&sha256).join(wheel).is_file(),
            "{wheel} kept under its digest"
        );
        counts.push(unpacked());
    }
    assert_eq!(counts, [1, 1], "packaging's wheel unpacked once, by the first load");
}

/// A node installs a bundle's lock once, confined, and links each venv of
/// that lock from the install: the files it installed are the same inodes
/// in every venv, yet each venv holds, entry for entry, what the load makes
/// where nothing is linked (no sandbox) at its path, uvicorn's script
/// naming its own venv's python and its `RECORD` line to match. An agent
/// whose wheel would write a linked file is refused, and the file, which
/// every venv of the lock shares, is unchanged.
#[test]
fn a_bundles_requirements_are_installed_once_per_node_and_linked_into_each_venv() {
    use std::os::unix::fs::MetadataExt as _;
    let backend = InstallerChoice::Uv;
    let ws = Workspace::new();
    // Only wheels: what a directory of the package holds is never linked.
    let parb = bundle(&ws, backend, &agent("packaging>=20\nuvicorn==0.32.1\n"), None);
    let node_ws = Workspace::new();
    let mut node = config(&node_ws, backend);
    node.component_cache = Some(node_ws.path().join("node-cache"));
    let loader = PackageLoader::new(node.clone()).expect("loader");
    let [first, second] = ["first", "second"].map(|app| {
        let package = loader
            .load_blocking(&parb, Some(app))
            .expect("the load from the bundle");
        assert!(package.verified == Some(true), "{package:?}");
        package
    });
    let templates = node_ws.path().join("node-cache/venv-templates");
    assert_eq!(
        fs::read_dir(&templates).expect("templates").count(),
        2,
        "the venv template and one install of the lock"
    );
    let site = |package: &AgentPackage| {
        let lib = package.venv_path.join("lib");
        let python = fs::read_dir(&lib)
            .expect("lib")
            .flatten()
            .next()
            .expect("python*")
            .file_name();
        lib.join(python).join("site-packages")
    };
    let shared = |package: &AgentPackage| site(package).join("packaging/__init__.py");
    let inode = |path: &Path| fs::metadata(path).map(|meta| (meta.dev(), meta.ino())).expect("a file");
    assert_eq!(inode(&shared(&first)), inode(&shared(&second)), "one inode, linked");
    let original = fs::read(shared(&first)).expect("packaging");
    for package in [&first, &second] {
        let script = package.venv_path.join("bin/uvicorn");
        let text = fs::read_to_string(&script).expect("uvicorn's script");
        let shebang = format!("#!{}", package.venv_path.join("bin/python").display());
        assert!(text.starts_with(&shebang), "{text}");
        let out = std::process::Command::new(&script)
            .arg("--version")
            .output()
            .expect("run the script");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("uvicorn 0.32.1"),
            "{out:?}"
        );
    }

    // The same venvs made where nothing is linked: the same root, set aside
    // first, and no sandbox (which linking needs).
    let linked_root = node_ws.path().join("linked-root");
    fs::rename(node_ws.root(), &linked_root).expect("set the root aside");
    // The same seal key, so the venvs' markers match.
    fs::create_dir(node_ws.root()).expect("the root");
    fs::copy(linked_root.join("seal.key"), node_ws.root().join("seal.key")).expect("the seal key");
    let mut unconfined = node.clone();
    unconfined.install.sandbox = par::SandboxChoice::None;
    let plain = PackageLoader::new(unconfined).expect("loader");
    for linked in [&first, &second] {
        let made = plain
            .load_blocking(&parb, Some(&linked.app_id))
            .expect("the load, unlinked");
        assert_eq!(made.venv_path, linked.venv_path, "the same venv");
        // Unconfined, the import check could write the venv (it reads it
        // read-only when confined): what it compiled is not the install's.
        for pycache in venv_pycaches(&made.venv_path) {
            fs::remove_dir_all(pycache).expect("remove");
        }
        let ours = linked_root.join(linked.venv_path.strip_prefix(node_ws.root()).expect("under the root"));
        let differences = par_tests::trees::differences(&made.venv_path, &ours);
        assert_eq!(
            differences,
            Vec::<String>::new(),
            "{}: the linked venv differs",
            linked.app_id
        );
        assert_eq!(
            fs::read_dir(&made.venv_path).expect("venv").count(),
            fs::read_dir(&ours).expect("venv").count(),
            "{}: the same entries",
            linked.app_id
        );
    }
    fs::remove_dir_all(node_ws.root()).expect("remove the unlinked root");
    fs::rename(&linked_root, node_ws.root()).expect("put the root back");

    // An agent whose wheel also writes `packaging/__init__.py`: placed by
    // par (files only), or, with a script, installed by uv with what the
    // venv shares read-only.
    for (app, script, why) in [
        ("third", false, "which the venv already holds"),
        ("fourth", true, "Read-only file system"),
    ] {
        let poisoned = rewrite(
            &parb,
            &format!("{app}.parb"),
            |member, bytes| {
                if !member.starts_with("editable/") {
                    return Some(bytes);
                }
                Some(poisoned_wheel(bytes, script))
            },
            &[],
        );
        let error = loader
            .load_blocking(&poisoned, Some(app))
            .expect_err("an agent overwriting a linked file");
        assert_eq!(error.kind(), "install-failed", "{error}");
        let message = error.to_string();
        assert!(
            message.contains(why) && message.contains("packaging/__init__.py"),
            "{message}"
        );
        assert_eq!(
            fs::read(shared(&first)).expect("packaging"),
            original,
            "the shared file was written"
        );
        let venvs: Vec<String> = fs::read_dir(node_ws.root().join("venvs"))
            .expect("venvs")
            .flatten()
            .map(|venv| venv.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            venvs.iter().all(|venv| !venv.starts_with(app)),
            "the refused load's venv was kept: {venvs:?}"
        );
    }
}

/// The editable wheel `bytes` with `packaging/__init__.py` added, and with
/// `script` a console script too.
fn poisoned_wheel(bytes: Vec<u8>, script: bool) -> Vec<u8> {
    use std::io::Read as _;
    let mut wheel = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("the wheel");
    let mut rewritten = Apkg::new();
    let mut dist_info = String::new();
    for index in 0..wheel.len() {
        let mut file = wheel.by_index(index).expect("a file of the wheel");
        if file.is_dir() {
            continue;
        }
        let name = file.name().expect("a UTF-8 name").into_owned();
        if let Some(dir) = name.strip_suffix("/RECORD") {
            dist_info = dir.to_owned();
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("read");
        rewritten = rewritten.file(&name, data);
    }
    rewritten = rewritten.file("packaging/__init__.py", "POISONED = True\n");
    if script {
        let entry_points = format!("{dist_info}/entry_points.txt");
        rewritten = rewritten.file(&entry_points, "[console_scripts]\npoison = core:main\n");
    }
    rewritten.to_bytes()
}

/// The `__pycache__` directories of the venv's site-packages, at its top.
fn venv_pycaches(venv: &Path) -> Vec<PathBuf> {
    let lib = venv.join("lib");
    fs::read_dir(&lib)
        .expect("lib")
        .flatten()
        .map(|python| python.path().join("site-packages/__pycache__"))
        .filter(|pycache| pycache.is_dir())
        .collect()
}

/// `par bundle` builds the agent's editable wheel once and carries it,
/// naming the tree as the bundle format's stand-in; a load installs that
/// wheel moved to its own tree, running no build backend (the token the
/// agent's `setup.py` draws at every build is the bundle's on both nodes),
/// and the agent imports from the tree the load published.
#[test]
fn a_bundle_carries_the_agents_editable_wheel_and_each_load_installs_it_for_its_own_tree() {
    use std::io::Read as _;
    let backend = InstallerChoice::Uv;
    let setup = "import uuid\nfrom setuptools import setup, find_packages\n\
                 setup(name='test-agent', version='1.0.0', description=uuid.uuid4().hex, packages=find_packages())\n";
    let ws = Workspace::new();
    let parb = bundle(&ws, backend, &agent(REQUIREMENTS).replace("setup.py", setup), None);
    let mut zip = zip::ZipArchive::new(fs::File::open(&parb).expect("the bundle")).expect("a zip");
    let mut wheels = Vec::new();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).expect("entry");
        let name = entry.name().expect("a UTF-8 name").into_owned();
        if name.starts_with("editable/") && name.ends_with(".whl") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            wheels.push(bytes);
        }
    }
    let [wheel] = <[_; 1]>::try_from(wheels).expect("one editable wheel in the bundle");
    let mut wheel = zip::ZipArchive::new(std::io::Cursor::new(wheel)).expect("the wheel is a zip");
    let mut contents = String::new();
    for index in 0..wheel.len() {
        let mut file = wheel.by_index(index).expect("a file of the wheel");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("a text file");
        contents.push_str(&text);
    }
    assert!(contents.contains("/.par-bundled-agent-tree"), "{contents}");
    assert!(
        !contents.contains("/staging/"),
        "the maker's tree left in the wheel: {contents}"
    );
    let token = wheel_metadata_field(&contents, "Summary");
    for _ in 0..2 {
        let node_ws = Workspace::new();
        let package = PackageLoader::new(config(&node_ws, backend))
            .expect("loader")
            .load_blocking(&parb, None)
            .expect("the load from the bundle");
        assert!(
            package.installed_as_package && package.verified == Some(true),
            "{package:?}"
        );
        let out = std::process::Command::new(&package.python_path)
            .args([
                "-c",
                "import core, importlib.metadata as m\nprint(m.metadata('test-agent')['Summary'])\nprint(core.__file__)",
            ])
            .current_dir(node_ws.path())
            .output()
            .expect("run the venv's python");
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next(),
            Some(token.as_str()),
            "installed from the bundle's wheel: {stdout}"
        );
        let imported = PathBuf::from(lines.next().expect("core's file"));
        assert!(
            imported.starts_with(&package.path),
            "{imported:?} under {:?}",
            package.path
        );
    }

    // A wheel that cannot be moved fails the load, naming it; nothing is kept.
    let broken = rewrite(
        &parb,
        "broken-editable.parb",
        |member, bytes| {
            Some(if member.starts_with("editable/") {
                b"not a zip".to_vec()
            } else {
                bytes
            })
        },
        &[],
    );
    let node_ws = Workspace::new();
    let error = PackageLoader::new(config(&node_ws, backend))
        .expect("loader")
        .load_blocking(&broken, None)
        .expect_err("a broken editable wheel");
    assert_eq!(error.kind(), "install-failed", "{error}");
    let message = error.to_string();
    assert!(
        message.contains("test_agent-1.0.0-0.editable-py3-none-any.whl cannot be moved"),
        "{message}"
    );
    node_ws.assert_left_nothing("a broken editable wheel");
}

/// A load installs a bundle's agent wheel alone, its dependencies from the
/// bundle's lock: an agent whose `setup.py` requires what its requirements
/// lock (and, for an extra, anything) loads, with it importable; one that
/// requires what they do not is refused when the bundle is made, naming the
/// requirement.
#[test]
fn a_bundles_agent_requires_only_what_its_lock_holds() {
    let backend = InstallerChoice::Uv;
    let requiring = |requires: &str| {
        let setup = format!(
            "from setuptools import setup, find_packages\nsetup(name='test-agent', version='1.0.0', \
             packages=find_packages(), install_requires=[{requires}], extras_require={{'dev': ['par-absent']}})\n"
        );
        agent(REQUIREMENTS).replace("setup.py", setup)
    };
    let ws = Workspace::new();
    let parb = bundle(&ws, backend, &requiring("'packaging>=20'"), None);
    let node_ws = Workspace::new();
    let package = loader(&node_ws, backend)
        .load_blocking(&parb, None)
        .expect("the load from the bundle");
    assert!(package.verified == Some(true), "{package:?}");
    let out = std::process::Command::new(&package.python_path)
        .args([
            "-c",
            "import packaging, importlib.metadata as m; print(m.requires('test-agent'))",
        ])
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("packaging>=20"),
        "{out:?}"
    );

    let maker = Workspace::new();
    let apkg = maker.apkg("agent", &requiring("'packaging>=20', 'par-absent>=1'"));
    let error = loader(&maker, backend)
        .bundle_blocking(&apkg, &ws.path().join("in").join("absent.parb"), None)
        .expect_err("an agent requiring what its lock does not hold");
    let message = error.to_string();
    assert!(
        message.contains("Requires-Dist")
            && message.contains("par-absent>=1")
            && message.contains("the lock has no `par-absent`"),
        "{message}"
    );
    assert!(!ws.path().join("in").join("absent.parb").exists(), "no bundle written");
}

/// The value of `field` in the METADATA lines of `text`.
fn wheel_metadata_field(text: &str, field: &str) -> String {
    let prefix = format!("{field}: ");
    let line = text.lines().find_map(|line| line.strip_prefix(&prefix));
    line.expect("the field in the wheel's METADATA").to_owned()
}

/// A bundle made with a key loads where that key is trusted (the bundle's
/// signature checked before the guest reads it), and is refused as
/// `signature-invalid` once a byte of it changes, or `signature-missing`
/// when made without the key.
#[test]
fn a_signed_bundle_loads_only_where_its_key_is_trusted_and_unchanged() {
    let backend = InstallerChoice::Uv;
    let ws = Workspace::new();
    let prefix = ws.path().join("in").join("signer");
    let trusted = par::generate_keys(&prefix).expect("keys");
    let key = par::SigningKey::from_file(&prefix.with_extension("key"), None).expect("the secret key");
    let parb = bundle(&ws, backend, &agent(REQUIREMENTS), Some(&key));
    let signature = parb.with_extension("parb.minisig");
    assert!(signature.is_file(), "the bundle's signature beside it");
    let trusting = |node_ws: &Workspace| {
        let mut config = config(node_ws, backend);
        config.trusted_keys = vec![TrustedKey::from_file(&prefix.with_extension("pub")).expect("public key")];
        PackageLoader::new(config).expect("loader")
    };
    let node_ws = Workspace::new();
    let package = trusting(&node_ws).load_blocking(&parb, None).expect("a signed bundle");
    let signed = package.signed.as_ref().expect("signed");
    assert_eq!(
        (signed.key_id.as_str(), signed.signature.as_path()),
        (trusted.id().as_str(), signature.as_path())
    );

    let tampered = rewrite(
        &parb,
        "tampered.parb",
        |member, bytes| {
            Some(if member == "sbom.cdx.json" {
                b"{}".to_vec()
            } else {
                bytes
            })
        },
        &[],
    );
    fs::copy(&signature, tampered.with_extension("parb.minisig")).expect("the old signature");
    let other = Workspace::new();
    let unsigned = bundle(&other, backend, &agent(REQUIREMENTS), None);
    for (path, kind) in [(tampered, "signature-invalid"), (unsigned, "signature-missing")] {
        let node_ws = Workspace::new();
        let error = trusting(&node_ws).load_blocking(&path, None).expect_err(kind);
        assert_eq!(error.kind(), kind, "{error}");
        node_ws.assert_left_nothing(kind);
    }
}

/// An index that has a release's wheel and its sdist (as PyPI has most):
/// uv locks both files as one entry, and the load, a locked load in another
/// root and a bundle of it all install the wheel.
fn a_release_with_a_wheel_and_an_sdist_is_locked_installed_and_bundled_as_one(backend: InstallerChoice) {
    let ws = Workspace::new();
    let links = probe_release(&ws);
    let with_links = |ws: &Workspace| {
        let mut config = config(ws, backend);
        config.install.index.find_links.push(links.display().to_string());
        PackageLoader::new(config).expect("loader")
    };
    let apkg = Apkg::valid_agent().replace("requirements.txt", "par-probe\n");
    let package = with_links(&ws)
        .load_blocking(&ws.apkg("agent", &apkg), None)
        .expect("the load");
    let lock: toml::Table = toml::from_str(&fs::read_to_string(&package.lock).expect("lock")).expect("TOML");
    let probe = lock["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"].as_str() == Some("par-probe"))
        .expect("par-probe in the lock");
    assert!(probe.get("wheels").is_some(), "{probe:?}");
    if backend == InstallerChoice::Uv {
        assert!(
            probe.get("sdist").is_some(),
            "uv locks the sdist beside the wheel: {probe:?}"
        );
    }

    let other = Workspace::new();
    with_links(&other)
        .load_locked_blocking(&other.apkg("agent", &apkg), None, &package.lock)
        .expect("the locked load");
    let parb = other.path().join("in").join("agent.parb");
    let written = with_links(&other)
        .bundle_blocking(&other.apkg("agent", &apkg), &parb, None)
        .expect("the bundle");
    assert!(
        written.files.contains(&"par_probe-1.0-py3-none-any.whl".to_owned()),
        "{written:?}"
    );
    let node = Workspace::new();
    loader(&node, backend)
        .load_blocking(&parb, None)
        .expect("the load from the bundle");
}

/// An index served by HTTP as PyPI serves one (simple pages, files linked
/// with their hashes, a release's wheel and sdist side by side): a load
/// installs from it and locks what it fetched by URL, `par bundle` fetches
/// the files over HTTP into the bundle, and a node with no index loads the
/// bundle without a request to it.
fn loads_locks_and_bundles_fetch_over_http_from_an_index_shaped_like_pypi(backend: InstallerChoice) {
    let ws = Workspace::new();
    let links = probe_release(&ws);
    let wheelhouse = tools::wheelhouse(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools"));
    let index = SimpleIndex::serve(&[&links, &wheelhouse]);
    let from_index = |ws: &Workspace| {
        let mut config = config(ws, backend);
        config.install.index = IndexConfig {
            index_url: Some(index.url()),
            ..IndexConfig::default()
        };
        config.install.installer_cache = Some(ws.path().join("in").join("installer-cache"));
        PackageLoader::new(config).expect("loader")
    };
    let apkg = Apkg::valid_agent().replace("requirements.txt", "par-probe\n");
    let package = from_index(&ws)
        .load_blocking(&ws.apkg("agent", &apkg), None)
        .expect("the load from the index");
    let lock = fs::read_to_string(&package.lock).expect("lock");
    assert!(
        lock.contains("/files/par_probe-1.0-py3-none-any.whl\""),
        "the wheel is locked by its URL: {lock}"
    );

    let maker = Workspace::new();
    let parb = maker.path().join("in").join("agent.parb");
    let written = from_index(&maker)
        .bundle_blocking(&maker.apkg("agent", &apkg), &parb, None)
        .expect("the bundle, fetched over HTTP");
    for file in ["par_probe-1.0-py3-none-any.whl", "setuptools-"] {
        assert!(written.files.iter().any(|f| f.starts_with(file)), "{file}: {written:?}");
    }
    let served = index.requests();
    let node = Workspace::new();
    let mut offline = config(&node, backend);
    offline.install.index = IndexConfig::default();
    offline.install.installer_cache = Some(node.path().join("in").join("installer-cache"));
    let loaded = PackageLoader::new(offline)
        .expect("loader")
        .load_blocking(&parb, None)
        .expect("the bundle, offline");
    assert_eq!(loaded.requirements_count, 1, "{loaded:?}");
    assert_eq!(index.requests(), served, "the load from the bundle reached the index");
}

/// A directory in `ws`'s `in/` holding the probe's 1.0 wheel and sdist.
fn probe_release(ws: &Workspace) -> PathBuf {
    let links = ws.path().join("in").join("links");
    fs::create_dir(&links).expect("links");
    write_wheel(&links, "1.0");
    write_sdist(&links, "1.0");
    links
}

/// Writes an sdist of the probe distribution into `dir`, as a zip.
fn write_sdist(dir: &Path, version: &str) {
    use std::io::Write as _;
    let path = dir.join(format!("par_probe-{version}.zip"));
    let mut sdist = zip::ZipWriter::new(fs::File::create(path).expect("the sdist"));
    for (name, text) in [
        (
            "PKG-INFO",
            format!("Metadata-Version: 2.1\nName: par-probe\nVersion: {version}\n"),
        ),
        (
            "setup.py",
            format!("from setuptools import setup\nsetup(name='par-probe', version='{version}')\n"),
        ),
    ] {
        sdist
            .start_file(
                format!("par_probe-{version}/{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .expect("entry");
        sdist.write_all(text.as_bytes()).expect("write");
    }
    sdist.finish().expect("finish the sdist");
}

/// The text of `entry` in the wheel at `path`.
fn wheel_metadata(path: &Path, entry: &str) -> String {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(fs::File::open(path).expect("open the wheel")).expect("a zip");
    let mut text = String::new();
    zip.by_name(entry)
        .expect(entry)
        .read_to_string(&mut text)
        .expect("read");
    text
}

/// Writes the wheel of `par-probe` `version` (one module, its metadata) into `dir`.
fn write_wheel(dir: &Path, version: &str) {
    use std::io::Write;
    let path = dir.join(format!("par_probe-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).expect("create the wheel"));
    let info = format!("par_probe-{version}.dist-info");
    let files = [
        ("par_probe/__init__.py".to_owned(), format!("VERSION = '{version}'\n")),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: par-probe\nVersion: {version}\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: par-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_owned(),
        ),
    ];
    let mut record = String::new();
    for (name, text) in &files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .expect("entry");
        zip.write_all(text.as_bytes()).expect("write");
        record += &format!("{name},,\n");
    }
    record += &format!("{info}/RECORD,,\n");
    zip.start_file(format!("{info}/RECORD"), zip::write::SimpleFileOptions::default())
        .expect("entry");
    zip.write_all(record.as_bytes()).expect("write");
    zip.finish().expect("finish the wheel");
}

/// The `RECORD` of the distribution `dist` (`name-version`) in the package's
/// venv: every file the distribution installed, by hash. uv's own
/// `uv_cache.json` is left out: it records when uv's cache took the wheel,
/// so two nodes with caches of their own never share it.
fn record(package: &AgentPackage, dist: &str) -> String {
    let lib = package.venv_path.join("lib");
    let python = fs::read_dir(&lib)
        .expect("lib")
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .expect("lib/python*");
    let path = python
        .path()
        .join("site-packages")
        .join(format!("{dist}.dist-info"))
        .join("RECORD");
    let mut lines: Vec<String> = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|line| !line.contains(".dist-info/uv_cache.json,"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert!(lines.iter().any(|line| line.contains(",sha256=")), "{lines:?}");
    lines.join("\n")
}

/// Writes a lock of `packages` into the workspace's `in/`.
fn write_lock(ws: &Workspace, packages: &str) -> PathBuf {
    let path = ws.path().join("in").join("pylock.toml");
    fs::write(
        &path,
        format!("lock-version = \"1.0\"\ncreated-by = \"a test\"\n\n{packages}"),
    )
    .expect("write the lock");
    path
}
