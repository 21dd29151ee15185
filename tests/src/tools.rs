//! What the install tests need besides the loader, fetched once per target
//! directory from the package registry at pinned versions and reused: a
//! local wheelhouse with the build backend (setuptools, wheel) so every
//! install runs with `--no-index`, and a `uv` executable. Fetching uses a pip
//! cache of its own, never the user's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The uv the tests install with (and `--installer auto` finds).
pub const UV: &str = "uv==0.13.9";
/// The build backend every test installs offline, with every dependency
/// pinned too (pip's build isolation installs `wheel`, which needs
/// `packaging`); the other PEP 517 backends (hatchling with its own and
/// the `editables` its editable builds ask for, flit, pdm); and uvicorn with its own, which serves a manifest's `http_server`.
pub const WHEELHOUSE: [&str; 15] = [
    "setuptools==84.2.1",
    "wheel==0.48.0",
    "packaging==26.4",
    "hatchling==1.33.0",
    "editables==0.6",
    "pathspec==1.1.1",
    "pluggy==1.7.0",
    "tomlkit==0.15.3",
    "trove-classifiers==2026.9.21.13",
    "flit_core==4.2.0",
    "pdm-backend==2.5.0",
    "uvicorn==0.32.1",
    "click==8.5.1",
    "h11==0.16.0",
    "typing_extensions==4.16.0",
];
/// CycloneDX's own Python library, which validates a document against the
/// specification's JSON schema, with everything it needs, pinned.
pub const SBOM_VALIDATOR: [&str; 27] = [
    "cyclonedx-python-lib[json-validation]==11.12.0",
    "arrow==1.4.0",
    "attrs==26.1.0",
    "boolean.py==5.0",
    "defusedxml==0.7.1",
    "fqdn==1.6.0",
    "idna==3.21",
    "isoduration==20.11.0",
    "jsonpointer==3.12",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "lark==1.3.1",
    "license-expression==30.4.4",
    "packageurl-python==0.17.6",
    "py-serializable==2.2.0",
    "python-dateutil==4.0.0",
    "referencing==0.37.0",
    "rfc3339-validator==0.1.4",
    "rfc3986-validator==0.1.1",
    "rfc3987-syntax==1.1.0",
    "rpds-py==2026.9.1",
    "six==1.17.0",
    "sortedcontainers==2.4.0",
    "typing_extensions==4.16.0",
    "tzdata==2026.6",
    "uri-template==1.3.0",
    "webcolors==25.10.0",
];
/// Validates the CycloneDX 1.5 JSON document named by its argument against
/// the schema, strictly; prints what is wrong and exits 1 otherwise.
const VALIDATE_SBOM: &str = "import sys\n\
from cyclonedx.schema import SchemaVersion\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
sys.exit(str(errors) if errors else 0)\n";
/// How often a fetch from the package registry is tried before the test fails.
const FETCH_ATTEMPTS: u32 = 3;

/// Serializes preparation across test threads and test processes.
fn with_lock<T>(dir: &Path, work: impl FnOnce() -> T) -> T {
    fs::create_dir_all(dir).expect("tools dir");
    let lock = fs::File::create(dir.join(".lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock");
    work()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(output.status.success(), "{what} failed: {}", describe(&output));
}

/// A fetch from the registry, tried a few times: a registry or proxy that
/// stumbles once must not fail the suite, and a real failure names the fetch.
fn fetch(make: impl Fn() -> Command, what: &str) {
    let mut last = String::new();
    for attempt in 1..=FETCH_ATTEMPTS {
        match make().output() {
            Ok(output) if output.status.success() => return,
            Ok(output) => last = describe(&output),
            Err(e) => last = format!("cannot start: {e}"),
        }
        eprintln!("{what}: attempt {attempt} of {FETCH_ATTEMPTS} failed");
    }
    panic!("{what} failed {FETCH_ATTEMPTS} times; last: {last}");
}

/// `python3 -m pip …` with a pip cache of the tools directory's own.
fn pip(python: &Path, tools: &Path) -> Command {
    let mut command = Command::new(python);
    command
        .args(["-m", "pip"])
        .env("PIP_CACHE_DIR", tools.join("pip-cache"))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    command
}

/// A directory holding [`WHEELHOUSE`] as wheels.
pub fn wheelhouse(tools: &Path) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| downloaded(tools, "wheelhouse", &WHEELHOUSE))
        .clone()
}

/// A directory holding the wheel of [`UV`] for this machine, as PyPI serves
/// it: what par fetches when it finds no uv, served to it offline.
pub fn uv_wheels(tools: &Path) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| downloaded(tools, "uv-wheels", &[UV])).clone()
}

/// The directory `name` of `tools`, holding the wheels of `pins` (without
/// their dependencies), downloaded once. The marker names what was fetched:
/// a directory of other pins (an older checkout's) is fetched again, never
/// trusted.
fn downloaded(tools: &Path, name: &str, pins: &[&str]) -> PathBuf {
    let dir = tools.join(name);
    with_lock(tools, || {
        let ready = dir.join(".ready");
        let named = pins.join("\n");
        if fs::read_to_string(&ready).ok().as_deref() != Some(named.as_str()) {
            let _ = fs::remove_dir_all(&dir);
            let what = format!("downloading {} from the package registry", pins.join(" and "));
            fetch(
                || {
                    let mut command = pip(Path::new("python3"), tools);
                    command
                        .args(["download", "--only-binary=:all:", "--no-deps", "--dest"])
                        .arg(&dir)
                        .args(pins);
                    command
                },
                &what,
            );
            fs::write(&ready, &named).expect("mark the download");
        }
    });
    dir
}

/// The pinned `uv`, installed into a tools venv (never the one on `PATH`,
/// whose version the tests cannot know).
pub fn uv(tools: &Path) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let venv = tools.join("uv-venv");
        let program = venv.join("bin").join("uv");
        let ready = venv.join(format!(".ready-{UV}"));
        with_lock(tools, || {
            if !ready.is_file() {
                let _ = fs::remove_dir_all(&venv);
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "creating the uv venv",
                );
                let python = venv.join("bin").join("python");
                fetch(
                    || {
                        let mut command = pip(&python, tools);
                        command.args(["install", UV]);
                        command
                    },
                    &format!("installing {UV} from the package registry"),
                );
                fs::write(&ready, "").expect("mark uv");
            }
        });
        program
    })
    .clone()
}

/// Checks `document` (a path) against the CycloneDX 1.5 JSON schema with
/// CycloneDX's own validator, installed once, pinned, into a venv of the
/// tools directory; what the schema refuses fails the test.
pub fn assert_valid_cyclonedx(tools: &Path, document: &Path) {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        let venv = tools.join("sbom-validator");
        let python = venv.join("bin").join("python");
        let pins = SBOM_VALIDATOR.join("\n");
        let ready = venv.join(".ready");
        with_lock(tools, || {
            if fs::read_to_string(&ready).ok().as_deref() != Some(pins.as_str()) {
                let _ = fs::remove_dir_all(&venv);
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "creating the SBOM validator's venv",
                );
                fetch(
                    || {
                        let mut command = pip(&python, tools);
                        command.args(["install", "--no-deps"]).args(SBOM_VALIDATOR);
                        command
                    },
                    "installing CycloneDX's validator from the package registry",
                );
                fs::write(&ready, &pins).expect("mark the validator");
            }
        });
        python
    });
    let output = Command::new(python)
        .args(["-c", VALIDATE_SBOM])
        .arg(document)
        .output()
        .expect("run the validator");
    assert!(
        output.status.success(),
        "{} is not CycloneDX 1.5: {}",
        document.display(),
        describe(&output)
    );
}
