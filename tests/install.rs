//! The spec's install flow end to end, with real venvs and real pip and uv,
//! offline: every install runs with `--no-index` and a local wheelhouse.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use par::{AgentPackage, InstallerChoice, LoadError, LoaderConfig, PackageError, PackageLoader};
use par_tests::apkg::{AGENT_YAML, PAK_AGENT_YAML};
use par_tests::binary::survivors;
use par_tests::index_trap::IndexTrap;
use par_tests::workspace::{build_environments, component_cache, installer_cache, names_in, settle};
use par_tests::{Apkg, Workspace, tools};
use sha2::{Digest, Sha256};

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools")
}

/// A loader for `backend`, installing only from the wheelhouse.
fn config(ws: &Workspace, backend: InstallerChoice) -> LoaderConfig {
    let mut config = LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config.install.installer_cache = Some(installer_cache(env!("CARGO_TARGET_TMPDIR")));
    config.install.installer = backend;
    config.install.uv = tools::uv(&tools_dir());
    config.install.index.no_index = true;
    config.install.index.find_links = vec![tools::wheelhouse(&tools_dir()).display().to_string()];
    config
}

async fn load(ws: &Workspace, backend: InstallerChoice, apkg: &Apkg) -> Result<AgentPackage, LoadError> {
    load_with(config(ws, backend), ws, apkg).await
}

async fn load_with(config: LoaderConfig, ws: &Workspace, apkg: &Apkg) -> Result<AgentPackage, LoadError> {
    let path = ws.apkg("agent", apkg);
    PackageLoader::new(config)
        .expect("loader")
        .load_package(&path, None)
        .await
}

/// Runs `code` with the venv's Python from a directory outside the package.
fn python_in(package: &AgentPackage, code: &str) -> std::process::Output {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    Command::new(&package.python_path)
        .args(["-c", code])
        .current_dir(elsewhere.path())
        .env_remove("PYTHONPATH")
        .output()
        .expect("run venv python")
}

/// Declares one test per back end from an `async fn(InstallerChoice)`.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod pip {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name(par::InstallerChoice::Pip).await })*
        }
        mod uv {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name(par::InstallerChoice::Uv).await })*
        }
    };
}

for_each_backend!(
    setup_py_agent_imports_from_any_directory,
    pyproject_agent_is_installed_too,
    a_package_as_pak_builds_it_loads_with_its_servers_importable,
    pyprojects_dependencies_are_checked_installed_and_locked_as_requirement_lines,
    every_pep517_backend_installs_the_agent_and_its_dependencies,
    old_package_loads_without_being_installed,
    invalid_setup_py_fails_with_pips_output,
    a_failed_redeploy_leaves_the_last_good_deployment_as_it_was,
    local_requirement_installs_and_a_missing_one_fails_the_load,
    self_install_timeout_kills_everything_it_started,
    redeploy_reuses_the_venv_and_a_new_version_gets_its_own,
    concurrent_loads_of_one_app_share_one_venv,
    lines_redirecting_the_index_are_refused_and_reach_no_listener,
    an_index_option_the_operator_allows_reaches_the_listener,
    every_call_the_seccomp_filter_refuses_is_refused_inside_an_install_step,
    an_install_step_is_capped_in_memory_and_temporary_space_as_a_whole,
    the_venv_lock_names_exactly_what_was_installed_by_hash,
    a_lock_planted_by_setup_py_is_replaced_by_the_hosts,
);

async fn setup_py_agent_imports_from_any_directory(backend: InstallerChoice) {
    let ws = Workspace::new();
    let package = load(&ws, backend, &Apkg::valid_agent()).await.expect("load");
    assert!(package.installed_as_package);
    assert_eq!(package.verified, Some(true));
    assert_eq!(
        package.installer,
        if backend == InstallerChoice::Uv { "uv" } else { "pip" }
    );
    assert!(package.venv_path.starts_with(ws.root().join("venvs")));
    let name = package
        .venv_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("test-agent_"), "{name}");
    let out = python_in(
        &package,
        "from core.langchain_util import model_default; print(model_default())",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "test-model");
    assert_records_an_editable_install(&package);
}

/// The venv's metadata says what `pip install -e .` says (PEP 610): an
/// editable install of the package directory, whichever way it was built.
fn assert_records_an_editable_install(package: &AgentPackage) {
    let out = python_in(
        package,
        "import importlib.metadata as m, json, urllib.parse as u\n\
         d = json.loads(m.distribution('test-agent').read_text('direct_url.json'))\n\
         url = u.urlparse(d['url'])\n\
         print(json.dumps([url.scheme, u.unquote(url.path), d.get('dir_info', {}).get('editable')]))",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        recorded,
        serde_json::json!(["file", package.path.display().to_string(), true]),
        "scheme, path and editable flag of direct_url.json"
    );
}

async fn pyproject_agent_is_installed_too(backend: InstallerChoice) {
    let ws = Workspace::new();
    let package = load(&ws, backend, &Apkg::pyproject_agent()).await.expect("load");
    assert!(package.installed_as_package);
    assert_eq!(package.verified, Some(true));
    let out = python_in(&package, "import core.langchain_util, app.main; print(app.main.agent)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_records_an_editable_install(&package);
}

async fn a_package_as_pak_builds_it_loads_with_its_servers_importable(backend: InstallerChoice) {
    let ws = Workspace::new();
    let package = load(&ws, backend, &Apkg::pak_agent()).await.expect("load");
    assert!(package.installed_as_package);
    assert_eq!(package.verified, Some(true));
    let http = package.manifest.http_server.as_ref().expect("http_server");
    let a2a = package.manifest.a2a_http_server.as_ref().expect("a2a.http_server");
    assert!(package.manifest.deploy.is_some());
    let check = format!(
        "import importlib, inspect\nfor module, app in [('{}', '{}'), ('{}', '{}')]:\n    assert inspect.iscoroutinefunction(getattr(importlib.import_module(module), app))",
        http.module,
        http.attr.as_deref().unwrap_or_default(),
        a2a.module,
        a2a.attr.as_deref().unwrap_or_default(),
    );
    let out = python_in(&package, &check);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = load(&ws, backend, &Apkg::pak_agent()).await.expect("redeploy");
    assert!(again.unchanged_redeploy);
    assert_eq!(again.manifest, package.manifest, "the record keeps the typed manifest");
}

/// PAK ships `pyproject.toml` instead of `requirements.txt`: its
/// `[project].dependencies` go through the policy, the install and the
/// lock as requirement lines do, and a refusal names its line.
async fn pyprojects_dependencies_are_checked_installed_and_locked_as_requirement_lines(backend: InstallerChoice) {
    let ws = Workspace::new();
    let pyproject = |dependencies: &str| {
        Apkg::pak_agent().replace(
            "pyproject.toml",
            format!("[project]\nname = \"pak-agent\"\nversion = \"0.1.0\"\ndescription = \"x\"\nrequires-python = \">=3.9\"\ndependencies = [\n{dependencies}]\n"),
        )
    };
    let package = load(&ws, backend, &pyproject("  \"packaging>=20\",\n"))
        .await
        .expect("load");
    assert_eq!(package.requirements_count, 1);
    let lock: toml::Table = toml::from_str(&fs::read_to_string(&package.lock).expect("the lock")).expect("TOML");
    let packages = lock["packages"].as_array().expect("packages");
    assert!(
        packages.iter().any(|p| p["name"].as_str() == Some("packaging")),
        "the lock names pyproject.toml's dependency: {packages:?}"
    );
    let out = python_in(&package, "import packaging; print(packaging.__version__)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let refused = pyproject("  \"packaging>=20\",\n  \"evil @ https://evil.example/evil-1.0-py3-none-any.whl\",\n")
        .replace(
            "agent.yaml",
            PAK_AGENT_YAML.replace("version: 0.1.0\nentrypoint", "version: 0.1.1\nentrypoint"),
        );
    let error = load(&ws, backend, &refused).await.expect_err("a direct URL");
    let LoadError::Package(PackageError::RequirementsInvalid(refusal)) = &error else {
        panic!("{error}");
    };
    assert_eq!((refusal.file.as_str(), refusal.line), ("pyproject.toml", 8), "{error}");
}

/// The PEP 517 backends a `pyproject.toml` names besides setuptools (the
/// tests above): the agent's name, `[build-system]`, and the backend's own
/// table, where it needs one to find the agent's packages.
const BACKENDS: [(&str, &str, &str); 3] = [
    (
        "hatch-agent",
        "requires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"",
        "[tool.hatch.build.targets.wheel]\npackages = [\"core\", \"app\"]\n",
    ),
    (
        "flit-agent",
        "requires = [\"flit_core>=3.4\"]\nbuild-backend = \"flit_core.buildapi\"",
        "[tool.flit.module]\nname = \"core\"\n",
    ),
    (
        "pdm-agent",
        "requires = [\"pdm-backend\"]\nbuild-backend = \"pdm.backend\"",
        "",
    ),
];

/// A `pyproject.toml` in place of `setup.py` and `requirements.txt`, with
/// hatchling, flit or pdm as its backend: its `[project].dependencies`
/// install as requirement lines, and the agent installs editable (its
/// modules imported from its tree) with each.
async fn every_pep517_backend_installs_the_agent_and_its_dependencies(backend: InstallerChoice) {
    let ws = Workspace::new();
    for (name, build_system, tool) in BACKENDS {
        let apkg = Apkg::valid_agent()
            .without("setup.py")
            .without("requirements.txt")
            .replace("agent.yaml", AGENT_YAML.replace("test-agent", name))
            .file(
                "pyproject.toml",
                format!(
                    "[build-system]\n{build_system}\n\n[project]\nname = \"{name}\"\nversion = \"1.0.0\"\n\
                     description = \"An agent\"\ndependencies = [\"packaging>=20\"]\n\n{tool}"
                ),
            );
        let package = load(&ws, backend, &apkg)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(package.installed_as_package, "{name}");
        assert_eq!(package.verified, Some(true), "{name}");
        assert_eq!(package.requirements_count, 1, "{name}");
        let out = python_in(&package, "import app.main, core, packaging; print(core.__file__)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            Path::new(stdout.trim()).starts_with(&package.path),
            "{name}: core is imported from {stdout}, not the tree"
        );
    }
}

/// The guest's CPU cap counts its own work, not the time it waits for a step:
/// a one-second cap holds over a `setup.py` that takes three.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_waiting_on_slow_steps_is_within_its_cpu_cap() {
    let ws = Workspace::new();
    let mut config = config(&ws, InstallerChoice::Uv);
    config.guest_cpu_time = Duration::from_secs(1);
    let slow = Apkg::valid_agent().replace(
        "setup.py",
        "import time\ntime.sleep(3)\nfrom setuptools import setup, find_packages\nsetup(name='test-agent', version='1.0.0', packages=find_packages())\n",
    );
    let package = load_with(config, &ws, &slow).await.expect("within the cap");
    assert!(package.installed_as_package);
    assert!(package.timings.total_ms >= 3000, "{:?}", package.timings);
}

async fn old_package_loads_without_being_installed(backend: InstallerChoice) {
    let ws = Workspace::new();
    let package = load(&ws, backend, &Apkg::old_agent())
        .await
        .expect("old packages still load");
    assert!(!package.installed_as_package);
    assert_eq!(
        package.verified,
        Some(true),
        "with the package directory on sys.path, as the runtime runs an old package, the entrypoint imports"
    );
    let out = python_in(&package, "import core");
    assert!(
        !out.status.success(),
        "import core must fail outside the package for an old package"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("No module named 'core'"));

    // Generated gRPC code importing a sibling by its bare name fails even
    // with the package directory on sys.path: still reported unverified.
    let ws = Workspace::new();
    let grpc = Apkg::old_agent()
        .file("app/service_pb2.py", "SERVICE = 1\n")
        .file("app/service_pb2_grpc.py", "import service_pb2\n")
        .replace("app/main.py", "from app import service_pb2_grpc\nagent = 1\n");
    let package = load(&ws, backend, &grpc).await.expect("still loads");
    assert_eq!(package.verified, Some(false));
}

async fn invalid_setup_py_fails_with_pips_output(backend: InstallerChoice) {
    let ws = Workspace::new();
    let broken = Apkg::valid_agent().replace("setup.py", "import module_that_does_not_exist_par\n");
    let error = load(&ws, backend, &broken).await.expect_err("broken setup.py");
    let message = error.to_string();
    assert!(matches!(error, LoadError::Install(_)), "{message}");
    assert!(
        message.starts_with("Package installation failed: Agent package installation failed:"),
        "{message}"
    );
    assert!(
        message.contains("module_that_does_not_exist_par"),
        "stderr is carried: {message}"
    );
    assert!(error.is_package_fault());
    assert_eq!(
        names_in(&ws.root().join("venvs")),
        Vec::<String>::new(),
        "no half-built venv left"
    );
}

async fn a_failed_redeploy_leaves_the_last_good_deployment_as_it_was(backend: InstallerChoice) {
    let ws = Workspace::new();
    let good = Apkg::valid_agent().file("core/release.py", "RELEASE = 'good'\n");
    let package = load(&ws, backend, &good).await.expect("first deploy");
    let release = "import core.release; print(core.release.RELEASE)";
    // Importing first, so the bytecode it caches is part of what must stay.
    let out = python_in(&package, release);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "good", "{out:?}");
    let before = (
        fs::read_link(&package.link).expect("link"),
        listing(&package.path),
        listing(&package.venv_path),
        names_in(&ws.root().join("deployments")),
    );

    // The same name and version, new code, and a setup.py that fails.
    let broken = good
        .replace("core/release.py", "RELEASE = 'broken'\n")
        .replace("setup.py", "raise SystemExit('broken on purpose')\n");
    let error = load(&ws, backend, &broken).await.expect_err("broken setup.py");
    assert!(matches!(error, LoadError::Install(_)), "{error}");

    let after = (
        fs::read_link(&package.link).expect("link"),
        listing(&package.path),
        listing(&package.venv_path),
        names_in(&ws.root().join("deployments")),
    );
    assert_eq!(after, before, "the last good deployment changed");
    let out = python_in(&package, release);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "good", "{out:?}");
    assert_eq!(names_in(&ws.root().join("trees")).len(), 1, "the failed tree is gone");
    assert_eq!(names_in(&ws.root().join("venvs")).len(), 1, "the failed venv is gone");
}

/// Every entry under `dir` with its size and modification time, sorted.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("read dir").filter_map(Result::ok) {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                pending.push(entry.path());
            }
            let modified = meta.modified().expect("mtime");
            entries.push((entry.path(), meta.len(), modified));
        }
    }
    entries.sort();
    entries
}

async fn local_requirement_installs_and_a_missing_one_fails_the_load(backend: InstallerChoice) {
    let helper = |apkg: Apkg| {
        apkg.file(
            "vendor/helper/setup.py",
            "from setuptools import setup\nsetup(name='par-helper', version='0.1', packages=['par_helper'])\n",
        )
        .file("vendor/helper/par_helper/__init__.py", "VALUE = 42\n")
    };
    let ws = Workspace::new();
    let good = helper(Apkg::valid_agent()).replace("requirements.txt", "# local dependency\n./vendor/helper\n");
    let package = load(&ws, backend, &good).await.expect("load");
    assert_eq!(package.requirements_count, 1);
    let out = python_in(&package, "import par_helper; print(par_helper.VALUE)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Scenario D: the dependency fails, the agent itself installs, the load fails.
    let ws = Workspace::new();
    let missing = helper(Apkg::valid_agent()).replace(
        "requirements.txt",
        "./vendor/helper\npar-no-such-package-anywhere==9.9.9\n",
    );
    let error = load(&ws, backend, &missing).await.expect_err("missing dependency");
    let message = error.to_string();
    assert!(
        message.starts_with("Package installation failed: Dependency installation failed:"),
        "{message}"
    );
    assert!(message.contains("par-no-such-package-anywhere"), "{message}");
    assert!(
        !message.contains("Agent package installation failed"),
        "the agent itself installed: {message}"
    );
}

/// The venv's `pylock.toml` names every distribution installed into it, by
/// the SHA-256 of the very file it came from (hashed here from the
/// wheelhouse), the local requirement and the agent as directories of the
/// package, and the interpreter it was resolved for; a redeploy that reuses
/// the venv names the same lock, unchanged.
async fn the_venv_lock_names_exactly_what_was_installed_by_hash(backend: InstallerChoice) {
    let ws = Workspace::new();
    let apkg = Apkg::valid_agent()
        .replace("requirements.txt", "packaging>=20\n./vendor/helper\n")
        .file(
            "vendor/helper/setup.py",
            "from setuptools import setup\nsetup(name='par_helper', version='0.1', packages=['par_helper'])\n",
        )
        .file("vendor/helper/par_helper/__init__.py", "");
    let package = load(&ws, backend, &apkg).await.expect("load");
    assert_eq!(package.lock, package.venv_path.join("pylock.toml"));
    let text = fs::read_to_string(&package.lock).expect("the lock");
    let lock: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(lock["lock-version"].as_str(), Some("1.0"), "{text}");

    let version = python_in(&package, "import platform; print(platform.python_version())");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert_eq!(lock["requires-python"].as_str(), Some(format!("=={version}").as_str()));
    let marker = lock["environments"][0].as_str().expect("an environment");
    assert!(
        marker.contains(&format!("python_full_version == '{version}'")),
        "{marker}"
    );

    let packages = lock["packages"].as_array().expect("packages");
    let named = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in the lock:\n{text}"))
    };
    let wheel = tools::wheelhouse(&tools_dir()).join("packaging-26.4-py3-none-any.whl");
    let sha256 = format!("{:x}", Sha256::digest(fs::read(&wheel).expect("the wheel")));
    let packaging = named("packaging");
    assert_eq!(packaging["version"].as_str(), Some("26.4"));
    let wheels = packaging["wheels"].as_array().expect("wheels");
    assert_eq!(wheels.len(), 1, "{text}");
    assert_eq!(wheels[0]["hashes"]["sha256"].as_str(), Some(sha256.as_str()));
    assert!(
        wheels[0]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/packaging-26.4-py3-none-any.whl")),
        "{text}"
    );
    assert_eq!(named("par-helper")["directory"]["path"].as_str(), Some("vendor/helper"));
    let agent = named("test-agent");
    assert_eq!(agent["directory"]["path"].as_str(), Some("."));
    assert_eq!(agent["directory"]["editable"].as_bool(), Some(true));
    assert_eq!(packages.len(), 3, "{text}");

    // What the venv holds, as its own interpreter sees it, is what the lock says.
    let installed = python_in(
        &package,
        "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'].lower().replace('_', '-'), d.version)",
    );
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    for (name, version) in [("packaging", "26.4"), ("par-helper", "0.1"), ("test-agent", "1.0.0")] {
        assert!(
            installed.lines().any(|line| line == format!("{name} {version}")),
            "{name} {version} is not installed:\n{installed}"
        );
    }

    let again = load(&ws, backend, &apkg).await.expect("redeploy");
    assert!(again.venv_reused);
    assert_eq!(again.lock, package.lock);
    assert_eq!(fs::read_to_string(&again.lock).expect("the lock"), text);
}

/// `setup.py` runs after the requirements step, in the venv's interpreter
/// (pip) or in a build environment (uv): whatever it plants at the lock's
/// name, a file or a symlink to one outside, the load ends with the host's
/// lock and nothing outside is written.
async fn a_lock_planted_by_setup_py_is_replaced_by_the_hosts(backend: InstallerChoice) {
    let ws = Workspace::new();
    let outside = ws.path().join("outside.toml");
    fs::write(&outside, "theirs\n").expect("outside");
    let setup = format!(
        "import os, sys\n\
         venv = os.path.dirname(os.path.dirname(sys.executable))\n\
         for prefix in {{sys.prefix, venv, os.environ.get('VIRTUAL_ENV', venv)}}:\n\
         \x20   lock = os.path.join(prefix, 'pylock.toml')\n\
         \x20   try:\n\
         \x20       os.symlink({outside:?}, lock)\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         from setuptools import setup, find_packages\n\
         setup(name='test-agent', version='1.0.0', packages=find_packages())\n"
    );
    let apkg = Apkg::valid_agent()
        .replace("requirements.txt", "packaging\n")
        .replace("setup.py", setup);
    let package = load(&ws, backend, &apkg).await.expect("load");
    assert!(
        !fs::symlink_metadata(&package.lock).expect("the lock").is_symlink(),
        "the lock is a file of its own"
    );
    let lock: toml::Table = toml::from_str(&fs::read_to_string(&package.lock).expect("lock")).expect("TOML");
    assert_eq!(lock["created-by"].as_str(), Some("par"));
    assert_eq!(fs::read_to_string(&outside).expect("outside"), "theirs\n");
}

/// A loader for `backend` with a remote index, as an operator runs it: what
/// a package's requirement lines say about indexes would be obeyed, if the
/// policy let them through.
fn config_with_index(ws: &Workspace, backend: InstallerChoice) -> LoaderConfig {
    let mut config = config(ws, backend);
    config.install.index.no_index = false;
    config.install.index.find_links.clear();
    config
}

/// Lines that once passed the policy, each with an index or find-links
/// option riding behind an allowed one; with pip, each reached a listener
/// standing for the attacker's index. `{URL}` is the listener.
const INDEX_REDIRECTS: [&str; 5] = [
    "-i {URL}/simple",
    "--pre -i {URL}/simple",
    "--prefer-binary --index-url={URL}/simple",
    "--pre --extra-index-url {URL}/simple",
    "--pre -f {URL}/links",
];

async fn lines_redirecting_the_index_are_refused_and_reach_no_listener(backend: InstallerChoice) {
    let trap = IndexTrap::start();
    for template in INDEX_REDIRECTS {
        let line = template.replace("{URL}", &trap.url());
        let ws = Workspace::new();
        let apkg = Apkg::old_agent().replace("requirements.txt", format!("requests\n{line}\n"));
        let error = load_with(config_with_index(&ws, backend), &ws, &apkg)
            .await
            .expect_err(&line);
        assert_eq!(error.kind(), "requirements-invalid", "{line}: {error}");
        let message = error.to_string();
        assert!(message.contains("requirements.txt:2"), "{line}: {message}");
        assert!(message.contains(&line), "the error names the line: {message}");
        assert_eq!(
            names_in(&ws.root().join("venvs")),
            Vec::<String>::new(),
            "{line}: a venv was created"
        );
    }
    assert_eq!(trap.connections(), 0, "an installer reached the package's index");
}

/// The listener sees what an installer does: with the operator's consent,
/// the same kind of line is obeyed and reaches it.
async fn an_index_option_the_operator_allows_reaches_the_listener(backend: InstallerChoice) {
    let trap = IndexTrap::start();
    let ws = Workspace::new();
    let mut config = config_with_index(&ws, backend);
    config.install.policy.allow_index_options = true;
    let requirements = format!("--index-url {}/simple\npar-index-trap-probe==1.0\n", trap.url());
    let apkg = Apkg::old_agent().replace("requirements.txt", requirements);
    let error = load_with(config, &ws, &apkg)
        .await
        .expect_err("the listener serves nothing");
    assert_eq!(error.kind(), "install-failed", "{error}");
    assert!(trap.connections() > 0, "the installer never reached the allowed index");
}

async fn self_install_timeout_kills_everything_it_started(backend: InstallerChoice) {
    // The deadline must fall after setup.py has started its child: if the
    // build backend took longer than that to start (a loaded machine), the
    // load is tried again with a longer one. setup.py sleeps far past each.
    for seconds in [15, 60, 240] {
        let ws = Workspace::new();
        // The marker names the child in the process table (its pid would be
        // the one inside the sandbox's PID namespace); `started` lands in the
        // package tree, which setup.py may write with or without the sandbox,
        // and which the failed load removes: it is watched for meanwhile.
        let marker = format!("par-timeout-{}", ws.path().file_name().expect("name").to_string_lossy());
        let setup = format!(
            "import os, subprocess, time\nsubprocess.Popen(['/bin/sh', '-c', 'sleep 900; :', {marker:?}], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nopen('started', 'w').close()\ntime.sleep(900)\n"
        );
        let mut config = config(&ws, backend);
        config.install.self_install_timeout = Duration::from_secs(seconds);
        let trees = ws.root().join("trees");
        let (done, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let watcher = {
            let (done, started) = (done.clone(), started.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) && !started.load(Ordering::SeqCst) {
                    let seen = names_in(&trees)
                        .iter()
                        .any(|tree| trees.join(tree).join("started").exists());
                    started.store(seen, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let error = load_with(config, &ws, &Apkg::valid_agent().replace("setup.py", setup))
            .await
            .expect_err("must time out");
        done.store(true, Ordering::SeqCst);
        watcher.join().expect("watcher");
        assert_eq!(
            error.to_string(),
            format!("Package installation failed: Agent package installation timed out after {seconds}s")
        );
        assert_eq!(
            survivors(&marker),
            Vec::<i32>::new(),
            "the process setup.py started survived the timeout"
        );
        ws.assert_left_nothing("timed out");
        if started.load(Ordering::SeqCst) {
            return;
        }
    }
    panic!("setup.py never started within the longest deadline");
}

async fn redeploy_reuses_the_venv_and_a_new_version_gets_its_own(backend: InstallerChoice) {
    let ws = Workspace::new();
    let first = load(&ws, backend, &Apkg::valid_agent()).await.expect("first");
    assert!(!first.venv_reused);
    let again = load(&ws, backend, &Apkg::valid_agent()).await.expect("redeploy");
    assert!(again.venv_reused);
    assert_eq!(again.venv_path, first.venv_path);
    let v2 = Apkg::agent_with_manifest("name: test-agent\nversion: 2.0.0\nentrypoint: app.main:agent\n");
    let second = load(&ws, backend, &v2).await.expect("v2");
    assert_ne!(
        second.venv_path, first.venv_path,
        "two versions never share an editable install"
    );
    assert_eq!(names_in(&ws.root().join("venvs")).len(), 2);
}

async fn concurrent_loads_of_one_app_share_one_venv(backend: InstallerChoice) {
    let ws = Workspace::new();
    let path = ws.apkg("agent", &Apkg::valid_agent());
    let loader = PackageLoader::new(config(&ws, backend)).expect("loader");
    let (a, b) = tokio::join!(loader.load_package(&path, None), loader.load_package(&path, None));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.venv_path, b.venv_path);
    assert!(
        a.venv_reused != b.venv_reused,
        "one built the venv, the other reused it"
    );
    assert_eq!(names_in(&ws.root().join("venvs")).len(), 1);
}

/// An agent whose build backend lives in the package (`backend-path`),
/// wraps setuptools, asks for `extra` build requirements, and logs each hook
/// it runs, with the process it runs in, to `hooks.log` in the package.
fn agent_with_in_tree_backend(extra: &str) -> Apkg {
    let backend = format!(
        r#"import os
from setuptools import build_meta as _setuptools

def _log(hook):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hooks.log"), "a") as f:
        f.write(f"{{hook}} {{os.getpid()}}\n")

def get_requires_for_build_editable(config_settings=None):
    _log("get_requires_for_build_editable")
    return {extra} + _setuptools.get_requires_for_build_editable(config_settings)

def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _log("prepare_metadata_for_build_editable")
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _log("build_editable")
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)

get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
build_wheel = _setuptools.build_wheel
build_sdist = _setuptools.build_sdist
"#
    );
    Apkg::pyproject_agent()
        .replace(
            "pyproject.toml",
            concat!(
                "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"par_test_backend\"\nbackend-path = [\"_backend\"]\n\n",
                "[project]\nname = \"test-agent\"\nversion = \"1.0.0\"\n\n",
                "[tool.setuptools]\npackages = [\"core\", \"app\"]\n",
            ),
        )
        .file("_backend/par_test_backend.py", backend)
}

/// Loads the agent with an in-tree backend asking for `extra` with uv,
/// checks it installed and imports, and returns the hooks the backend ran,
/// each with its process id, from `hooks.log`.
async fn hooks_run_loading_in_tree_backend(extra: &str) -> Vec<(String, String)> {
    let ws = Workspace::new();
    hooks_run_loading_with(config(&ws, InstallerChoice::Uv), &ws, extra).await
}

async fn hooks_run_loading_with(config: LoaderConfig, ws: &Workspace, extra: &str) -> Vec<(String, String)> {
    let package = load_with(config, ws, &agent_with_in_tree_backend(extra))
        .await
        .expect("load");
    assert!(package.installed_as_package);
    assert_eq!(package.verified, Some(true));
    assert_records_an_editable_install(&package);
    std::fs::read_to_string(package.path.join("hooks.log"))
        .expect("the backend logged its hooks")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(hook, pid)| (hook.to_owned(), pid.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_uv_one_process_runs_the_build_hooks_of_an_in_tree_backend() {
    let hooks = hooks_run_loading_in_tree_backend("[]").await;
    let names: Vec<&str> = hooks.iter().map(|(hook, _)| hook.as_str()).collect();
    assert_eq!(
        names,
        ["get_requires_for_build_editable", "build_editable"],
        "{hooks:?}"
    );
    assert_eq!(hooks[0].1, hooks[1].1, "both hooks ran in one process: {hooks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_asking_for_more_build_requirements_is_built_by_the_installer() {
    let hooks = hooks_run_loading_in_tree_backend("[\"wheel\"]").await;
    let names: Vec<&str> = hooks.iter().map(|(hook, _)| hook.as_str()).collect();
    // par's frontend asked and stopped; uv's own `-e` asked again and built.
    assert_eq!(names[..2], ["get_requires_for_build_editable"; 2], "{hooks:?}");
    assert_eq!(names.last(), Some(&"build_editable"), "{hooks:?}");
    assert_eq!(names.iter().filter(|n| **n == "build_editable").count(), 1, "{hooks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_others_may_write_leaves_the_build_to_uv() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    let cache = ws.path().join("shared-cache");
    std::fs::create_dir(&cache).expect("cache dir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut config = config(&ws, InstallerChoice::Uv);
    config.component_cache = Some(cache.clone());
    let hooks = hooks_run_loading_with(config, &ws, "[]").await;
    let names: Vec<&str> = hooks.iter().map(|(hook, _)| hook.as_str()).collect();
    assert_eq!(names.last(), Some(&"build_editable"), "{hooks:?}");
    assert_ne!(
        hooks[0].1,
        hooks[hooks.len() - 1].1,
        "uv ran each hook in a process of its own: {hooks:?}"
    );
    assert!(
        !cache.join("build-envs").exists(),
        "no build environment in a cache others may write"
    );
}

/// Venvs are copies of one `uv venv` per interpreter, made once in par's
/// cache: each copy holds what `uv venv` makes at its path, byte for byte
/// (every directory, link and file, modes included, the venv's own path
/// where uv writes it), for the first venv (which made the template) and
/// for the next.
#[tokio::test(flavor = "multi_thread")]
async fn a_venv_copied_from_the_template_is_what_uv_makes_at_its_path() {
    let ws = Workspace::new();
    let mut config = config(&ws, InstallerChoice::Uv);
    // A cache of its own: the first load makes the template.
    config.component_cache = Some(ws.path().join("cache"));
    let uv = config.install.uv.clone();
    let loader = PackageLoader::new(config).expect("loader");
    for app in ["first", "second"] {
        let package = loader
            .load_package(&ws.apkg(app, &Apkg::valid_agent()), Some(app))
            .await
            .expect("load");
        assert!(package.verified == Some(true), "{package:?}");
        let venv = &package.venv_path;
        let base = fs::read_link(venv.join("bin/python")).expect("the venv's python");
        let ours = venv.with_extension("ours");
        fs::rename(venv, &ours).expect("set the venv aside");
        let made = Command::new(&uv)
            .args(["venv", "--no-config", "--quiet", "--python"])
            .arg(&base)
            .arg(venv)
            .env("UV_CACHE_DIR", ws.path().join("uv-cache"))
            .output()
            .expect("uv venv");
        assert!(made.status.success(), "{made:?}");
        let differences = par_tests::trees::differences(venv, &ours);
        assert_eq!(
            differences,
            Vec::<String>::new(),
            "{app}: the copy differs from uv's venv"
        );
    }
    let templates = names_in(&ws.path().join("cache").join("venv-templates"));
    assert_eq!(
        templates.len(),
        1,
        "one template for one interpreter and uv: {templates:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn build_environments_are_shared_per_build_requirements() {
    let ws = Workspace::new();
    // A cache of its own, so the environments other tests make do not count.
    let cache = ws.path().join("cache");
    let mut config = config(&ws, InstallerChoice::Uv);
    config.component_cache = Some(cache.clone());
    let loader = PackageLoader::new(config).expect("loader");
    let setup_py = ws.apkg("setup-py", &Apkg::valid_agent());
    let pyproject = ws.apkg("pyproject", &Apkg::pyproject_agent());
    for (apkg, app) in [(&setup_py, "a"), (&pyproject, "b"), (&setup_py, "c")] {
        let package = loader.load_package(apkg, Some(app)).await.expect("load");
        assert!(
            package.installed_as_package && package.verified == Some(true),
            "{package:?}"
        );
    }
    let mut requirements: Vec<String> = build_environments(&cache)
        .into_iter()
        .map(|env| {
            assert!(env.join(".par-complete").is_file(), "{} is unfinished", env.display());
            std::fs::read_to_string(env.join(".par-build-requirements.txt")).expect("requirements")
        })
        .collect();
    requirements.sort();
    assert_eq!(
        requirements,
        ["setuptools>=40.8.0\n", "setuptools>=64\n"],
        "one environment per list of build requirements, whatever the app"
    );
}

/// A build environment past `build_env_max_age` is made anew by the next
/// load (an open `setuptools>=40.8.0` then resolves again), and the old one,
/// which no build holds any more, is removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_environment_past_its_age_is_made_anew() {
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let mut config = config(&ws, InstallerChoice::Uv);
    config.component_cache = Some(cache.clone());
    let max_age = config.install.build_env_max_age;
    let loader = PackageLoader::new(config).expect("loader");
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    loader.load_package(&apkg, Some("first")).await.expect("load");
    let [old] = <[_; 1]>::try_from(build_environments(&cache)).expect("one build environment");
    let marker = std::fs::File::options()
        .write(true)
        .open(old.join(".par-complete"))
        .expect("marker");
    let aged = std::time::SystemTime::now() - max_age - Duration::from_secs(60);
    marker.set_modified(aged).expect("age the marker");

    let package = loader.load_package(&apkg, Some("second")).await.expect("load");
    assert!(
        package.installed_as_package && package.verified == Some(true),
        "{package:?}"
    );
    let [new] = <[_; 1]>::try_from(build_environments(&cache)).expect("the old one is removed");
    assert_ne!(new, old, "a new generation");
    assert_eq!(new.parent(), old.parent(), "for the same build requirements");
    assert!(new.join(".par-complete").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_requirement_names_its_line_and_runs_nothing() {
    // The second and third hide a find-links option where pip would still
    // obey it: after a requirement, and after another option.
    for (line, reason) in [
        ("--index-url https://evil.example/simple", "where packages come from"),
        (
            "par-helper -f ./wheels",
            "only `--hash` may follow a requirement, not `-f`",
        ),
        ("--pre --find-links ./wheels", "one option per line"),
        // uv would build and install the directory the reference names.
        ("sneaky @ ../../outside", "inside the package"),
        ("-e file:../../outside", "`file:` URLs"),
    ] {
        let ws = Workspace::new();
        let apkg = Apkg::valid_agent().replace("requirements.txt", format!("requests\n{line}\n"));
        let error = load(&ws, InstallerChoice::Pip, &apkg).await.expect_err(line);
        assert_eq!(error.kind(), "requirements-invalid", "{error}");
        let message = error.to_string();
        assert!(message.contains("requirements.txt:2"), "{message}");
        assert!(message.contains(reason), "{message}");
        assert_eq!(
            names_in(&ws.root().join("venvs")),
            Vec::<String>::new(),
            "no venv was created for {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_include_outside_the_package_is_refused_by_the_guest() {
    let ws = Workspace::new();
    let apkg = Apkg::valid_agent().replace("requirements.txt", "-r ../../etc/passwd\n");
    let error = load(&ws, InstallerChoice::Pip, &apkg).await.expect_err("refused");
    assert_eq!(error.kind(), "requirements-invalid", "{error}");
    assert!(error.to_string().contains("requirements.txt:1"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_entrypoint_warns_by_default_and_fails_when_strict() {
    let ws = Workspace::new();
    let apkg = Apkg::agent_with_manifest("name: test-agent\nversion: 1.0.0\nentrypoint: app.main:no_such_attribute\n");
    let package = load(&ws, InstallerChoice::Uv, &apkg)
        .await
        .expect("loads with a warning");
    assert_eq!(package.verified, Some(false));
    let mut strict = config(&ws, InstallerChoice::Uv);
    strict.install.strict = true;
    let error = load_with(strict, &ws, &apkg).await.expect_err("strict");
    assert_eq!(error.kind(), "verification-failed");
    assert!(error.to_string().contains("no_such_attribute"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setup_py_allocating_without_bound_hits_the_address_space_limit() {
    let ws = Workspace::new();
    let greedy = Apkg::valid_agent().replace(
        "setup.py",
        "hoard = bytearray(3 * 1024 ** 3)\nfrom setuptools import setup\nsetup(name='test-agent', version='1.0.0', packages=['core', 'app'])\n",
    );
    let mut config = config(&ws, InstallerChoice::Uv);
    config.install.limits.address_space_bytes = Some(2 * 1024 * 1024 * 1024);
    let error = load_with(config, &ws, &greedy)
        .await
        .expect_err("3 GiB cannot fit in 2 GiB");
    assert!(error.to_string().contains("MemoryError"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_loads_across_five_apps_share_one_venv_per_key() {
    let ws = Workspace::new();
    let path = ws.apkg("agent", &Apkg::valid_agent());
    let loader = PackageLoader::new(config(&ws, InstallerChoice::Uv)).expect("loader");
    let loads = (0..20).map(|i| {
        let loader = loader.clone();
        let path = path.clone();
        tokio::spawn(async move { loader.load_package(&path, Some(&format!("app-{}", i % 5))).await })
    });
    let mut results = Vec::new();
    for load in loads {
        results.push(load.await.expect("task").expect("every load succeeds"));
    }
    let built = results.iter().filter(|p| !p.venv_reused).count();
    assert_eq!(built, 5, "one venv built per app, every other load reused it");
    let venvs = names_in(&ws.root().join("venvs"));
    assert_eq!(venvs.len(), 5, "{venvs:?}");
    assert!(results.iter().all(|p| p.verified == Some(true)));
    assert_eq!(names_in(&ws.root().join("staging")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_redeploy_runs_nothing_and_any_change_runs_everything() {
    let ws = Workspace::new();
    let apkg = Apkg::valid_agent();
    let first = load(&ws, InstallerChoice::Uv, &apkg).await.expect("first");
    assert!(!first.unchanged_redeploy && !first.venv_reused);
    let again = load(&ws, InstallerChoice::Uv, &apkg).await.expect("redeploy");
    assert!(again.unchanged_redeploy && again.venv_reused, "{again:?}");
    assert_eq!(
        (again.path.clone(), again.venv_path.clone()),
        (first.path.clone(), first.venv_path.clone())
    );
    assert_eq!(again.verified, Some(true));

    // A file of the published tree changed: the archive is extracted again
    // (restoring the file), the finished venv is still reused.
    let module = first.path.join("core/langchain_util.py");
    std::fs::write(&module, "raise SystemExit('tampered')\n").expect("tamper");
    let restored = load(&ws, InstallerChoice::Uv, &apkg).await.expect("after a change");
    assert!(!restored.unchanged_redeploy && restored.venv_reused, "{restored:?}");
    assert!(std::fs::read_to_string(&module).expect("module").contains("test-model"));

    // The venv lost its marker: rebuilt.
    std::fs::remove_file(first.venv_path.join(".par-complete")).expect("unmark");
    let rebuilt = load(&ws, InstallerChoice::Uv, &apkg)
        .await
        .expect("after the venv changed");
    assert!(!rebuilt.unchanged_redeploy && !rebuilt.venv_reused, "{rebuilt:?}");

    // A setting that shapes the load changed: everything runs again.
    let mut strict = config(&ws, InstallerChoice::Uv);
    strict.install.strict = true;
    let under_new_settings = load_with(strict, &ws, &apkg).await.expect("strict");
    assert!(!under_new_settings.unchanged_redeploy, "{under_new_settings:?}");
    let unchanged = load(&ws, InstallerChoice::Uv, &apkg)
        .await
        .expect("back to the old settings");
    assert!(!unchanged.unchanged_redeploy, "the strict load republished the tree");
    assert!(
        load(&ws, InstallerChoice::Uv, &apkg)
            .await
            .expect("once more")
            .unchanged_redeploy
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_rewritten_after_it_was_hashed_is_refused_and_never_named_by_other_bytes() {
    let ws = Workspace::new();
    let genuine = Apkg::valid_agent().file("which.txt", "genuine");
    let forged = Apkg::valid_agent().file("which.txt", "forged!").to_bytes();
    let path = ws.apkg("agent", &genuine);
    // Rewritten in place the moment the load has hashed it: the bytes the
    // digest names are gone before the guest reads a byte.
    let rewriting = config(&ws, InstallerChoice::Uv).before_copy(move |archive| {
        fs::write(archive, &forged).expect("rewrite the archive");
    });
    let error = PackageLoader::new(rewriting)
        .expect("loader")
        .load_package(&path, None)
        .await
        .expect_err("an archive that changed while it was read");
    assert_eq!(error.kind(), "invalid-input", "{error}");
    assert!(error.to_string().contains("changed while it was read"), "{error}");
    assert_eq!(names_in(&ws.root().join("trees")), Vec::<String>::new());
    assert_eq!(names_in(&ws.root().join("deployments")), Vec::<String>::new());

    // The genuine bytes, loaded again, are loaded in full and are what the tree holds.
    genuine.write_to(&path);
    let package = PackageLoader::new(config(&ws, InstallerChoice::Uv))
        .expect("loader")
        .load_package(&path, None)
        .await
        .expect("the genuine archive");
    assert!(!package.unchanged_redeploy);
    assert_eq!(
        fs::read_to_string(package.path.join("which.txt")).expect("file"),
        "genuine"
    );
}

/// An archive par hashed is known afterwards by its identity on disk and not
/// read again; a rewrite in place that keeps its size and puts its
/// modification time back still changes that identity (its change time), so
/// the new bytes are hashed and loaded, never answered from the old record.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_rewritten_in_place_with_its_mtime_put_back_is_hashed_again() {
    let ws = Workspace::new();
    let genuine = Apkg::valid_agent().file("which.txt", "genuine").to_bytes();
    let forged = Apkg::valid_agent().file("which.txt", "forged!").to_bytes();
    assert_eq!(genuine.len(), forged.len(), "a rewrite at the same size");
    let path = ws.path().join("agent.apkg");
    fs::write(&path, &genuine).expect("archive");
    settle(&path);
    let loader = PackageLoader::new(config(&ws, InstallerChoice::Uv)).expect("loader");
    let first = loader.load_package(&path, None).await.expect("first load");
    assert!(!first.unchanged_redeploy);
    assert_eq!(
        names_in(&ws.root().join("archives")).len(),
        1,
        "the identity is recorded"
    );
    let second = loader.load_package(&path, None).await.expect("second load");
    assert!(second.unchanged_redeploy, "known by its identity: {second:?}");

    let modified = fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    let file = fs::OpenOptions::new().write(true).open(&path).expect("open in place");
    std::io::Write::write_all(&mut &file, &forged).expect("rewrite in place");
    file.set_modified(modified).expect("put the mtime back");
    drop(file);
    let meta = fs::metadata(&path).expect("archive");
    assert_eq!(
        (meta.len(), meta.modified().expect("mtime")),
        (genuine.len() as u64, modified)
    );
    let third = loader.load_package(&path, None).await.expect("third load");
    assert!(!third.unchanged_redeploy, "answered from the genuine bytes' record");
    assert_ne!(third.path, first.path, "a tree named after the new bytes");
    assert_eq!(
        fs::read_to_string(third.path.join("which.txt")).expect("file"),
        "forged!"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_never_removes_the_tree_an_agent_runs_in() {
    use std::os::unix::fs::MetadataExt as _;
    let ws = Workspace::new();
    let apkg = Apkg::valid_agent();
    let first = load(&ws, InstallerChoice::Uv, &apkg).await.expect("first load");
    let inode = fs::metadata(&first.path).expect("tree").ino();
    // A process running in the tree, as an agent does.
    let mut resident = Command::new("sleep")
        .arg("600")
        .current_dir(&first.path)
        .spawn()
        .expect("a process in the tree");
    // A file of it changed, and another setting: not an unchanged
    // redeploy, so the whole load runs, and publishes the same archive's
    // tree at the same path.
    let module = first.path.join("core/langchain_util.py");
    fs::write(&module, "raise SystemExit('tampered')\n").expect("tamper");
    let mut strict = config(&ws, InstallerChoice::Uv);
    strict.install.strict = true;
    let second = load_with(strict, &ws, &apkg).await.expect("second load");
    let cwd = fs::read_link(format!("/proc/{}/cwd", resident.id())).expect("its directory");
    let _ = resident.kill();
    let _ = resident.wait();
    assert!(!second.unchanged_redeploy && second.path == first.path);
    assert_eq!(cwd, first.path, "the tree a process ran in was removed under it");
    assert_eq!(
        fs::metadata(&second.path).expect("tree").ino(),
        inode,
        "the same tree, kept"
    );
    assert!(second.path.join("agent.yaml").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_import_check_reads_the_venv_and_the_package_and_writes_neither() {
    let ws = Workspace::new();
    // The entrypoint's module runs at the import check: it tries to write
    // into the venv and into its own tree.
    let writer = "import os, sys\nfor where in (sys.prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):\n    try:\n        open(os.path.join(where, 'written-by-import'), 'w').close()\n    except OSError:\n        pass\nagent = 1\n";
    let apkg = Apkg::valid_agent().replace("app/main.py", writer);
    let package = load(&ws, InstallerChoice::Uv, &apkg).await.expect("load");
    assert_eq!(package.verified, Some(true));
    assert!(
        !package.venv_path.join("written-by-import").exists(),
        "the venv was writable"
    );
    assert!(
        !package.path.join("written-by-import").exists(),
        "the tree was writable"
    );
}

/// Loads the valid agent whose `setup.py` runs `probe` first, and returns
/// the JSON the probe left in the package (`probe-report.json`).
async fn setup_py_probe(config: LoaderConfig, ws: &Workspace, probe: &str) -> serde_json::Value {
    let setup = format!(
        "{probe}\nfrom setuptools import setup\nsetup(name='test-agent', version='1.0.0', packages=['core', 'app'])\n"
    );
    let package = load_with(config, ws, &Apkg::valid_agent().replace("setup.py", setup))
        .await
        .expect("load");
    serde_json::from_slice(&fs::read(package.path.join("probe-report.json")).expect("the probe's report"))
        .expect("JSON")
}

/// The errno each call the filter refuses must get.
fn expected_refusals() -> serde_json::Value {
    par::seccomp::REFUSED
        .iter()
        .map(|refusal| (refusal.name.to_owned(), serde_json::json!(refusal.answer.errno())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn every_call_the_seccomp_filter_refuses_is_refused_inside_an_install_step(backend: InstallerChoice) {
    let ws = Workspace::new();
    let mut config = config(&ws, backend);
    config.install.sandbox = par::SandboxChoice::Bwrap;
    let probe = par_tests::agent::seccomp_probe("'probe-report.json'");
    let report = setup_py_probe(config, &ws, &probe).await;
    for (name, errno) in expected_refusals().as_object().expect("map") {
        assert_eq!(&report[name], errno, "{name}: {report}");
    }
    assert_eq!(report["seccomp_mode"], "2", "a filter is loaded");
    assert_eq!(
        (&report["threads"], &report["fork"]),
        (&serde_json::json!(true), &serde_json::json!(true))
    );
}

async fn an_install_step_is_capped_in_memory_and_temporary_space_as_a_whole(backend: InstallerChoice) {
    let ws = Workspace::new();
    let mut config = config(&ws, backend);
    config.install.sandbox = par::SandboxChoice::Bwrap;
    config.install.limits.tmp_bytes = Some(32 * 1024 * 1024);
    config.install.limits.memory_bytes = Some(256 * 1024 * 1024);
    let probe = par_tests::agent::limits_probe("'probe-report.json'", 4, 100);
    let report = setup_py_probe(config, &ws, &probe).await;
    assert!(report["tmp_mib"].as_u64().is_some_and(|mib| mib <= 32), "{report}");
    assert!(report["shm_mib"].as_u64().is_some_and(|mib| mib <= 32), "{report}");
    assert_eq!(report["dev"], 30, "/dev is read-only (EROFS): {report}");
    if par_tests::machine::memory_cgroups() {
        // Four processes of 100 MiB under one 256 MiB cap: not all of them live.
        let killed = report["hogs"]
            .as_array()
            .map_or(0, |codes| codes.iter().filter(|c| c.as_i64() < Some(0)).count());
        assert!(killed >= 1, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_requirements_and_import_check_deadlines_hold_and_default_to_the_specs() {
    let defaults = par::InstallConfig::default();
    assert_eq!(
        (
            defaults.requirements_timeout,
            defaults.self_install_timeout,
            defaults.import_timeout
        ),
        (
            Duration::from_secs(300),
            Duration::from_secs(120),
            Duration::from_secs(10)
        ),
        "the spec's deadlines"
    );
    // A requirement whose build never ends.
    let ws = Workspace::new();
    let slow = Apkg::valid_agent().replace("requirements.txt", "./vendor/slow\n").file(
        "vendor/slow/setup.py",
        "import time\ntime.sleep(900)\nfrom setuptools import setup\nsetup(name='slow', version='0.1')\n",
    );
    let mut short = config(&ws, InstallerChoice::Uv);
    short.install.requirements_timeout = Duration::from_secs(3);
    let error = load_with(short, &ws, &slow).await.expect_err("must time out");
    assert!(
        error.to_string().contains("Dependency installation timed out after 3s"),
        "{error}"
    );
    ws.assert_left_nothing("requirements timed out");

    // An entrypoint whose import never ends: a warning by default, an error when strict.
    let hanging = Apkg::valid_agent().replace("app/main.py", "import time\ntime.sleep(900)\nagent = 1\n");
    for strict in [false, true] {
        let ws = Workspace::new();
        let mut config = config(&ws, InstallerChoice::Uv);
        config.install.import_timeout = Duration::from_secs(2);
        config.install.strict = strict;
        let result = load_with(config, &ws, &hanging).await;
        match (strict, result) {
            (false, Ok(package)) => assert_eq!(package.verified, Some(false)),
            (true, Err(error)) => assert!(
                error
                    .to_string()
                    .contains("Agent package verification timed out after 2s"),
                "{error}"
            ),
            (strict, other) => panic!("strict {strict}: {other:?}"),
        }
    }
}
