//! A hostile `setup.py`, installed through the real binary with and without
//! the installer sandbox (bubblewrap). It tries to read a secret from the
//! loader's environment, read files outside its directories, write outside
//! the venv and the package (into par's own cache, and into the build
//! environment shared by every build), reach the network, fork a lot,
//! allocate without bound and leave a daemon behind, and records what happened in the package
//! directory (writable in both modes). Under the sandbox every attempt fails
//! or dies with the step; without it, the test pins down exactly which still
//! succeed, so docs/SECURITY.md can say so honestly.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;

use par_tests::binary::{Par, assert_succeeded, json, processes_mentioning, survivors};
use par_tests::machine::pids_cgroups;
use par_tests::workspace::build_environments;
use par_tests::{Apkg, Workspace};

fn binary() -> Par {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR"))
}

/// The attempts, as Python; `attempt` records `ok` and a short detail per name.
const ATTEMPTS: &str = r#"
import json, os, socket, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
results = {}

def attempt(name, action):
    try:
        detail = action()
        results[name] = {"ok": True, "detail": str(detail)[:200]}
    except BaseException as error:
        results[name] = {"ok": False, "detail": repr(error)[:200]}

def spawn(argv, **options):
    # Detached from the installer's pipes, which it reads to the end.
    quiet = subprocess.DEVNULL
    return subprocess.Popen(argv, stdin=quiet, stdout=quiet, stderr=quiet, **options)

def read_env():
    return os.environ["PAR_TEST_SECRET"]

def read(path):
    with open(path) as f:
        return len(f.read())

def write(path):
    with open(path, "w") as f:
        f.write("planted by setup.py")
    return path

def connect():
    socket.create_connection(("127.0.0.1", PORT), timeout=3).close()
    return "connected"

def fork_many():
    children = []
    try:
        for _ in range(600):
            children.append(spawn(["/bin/sh", "-c", "sleep 60; :", MARKER]))
        return len(children)
    finally:
        # Freed again either way, so the installer itself can still fork.
        for child in children:
            child.kill()
            child.wait()

def allocate():
    return len(bytearray(64 * 1024 ** 3))

def write_shared_build_env():
    import setuptools
    site = os.path.dirname(os.path.dirname(os.path.abspath(setuptools.__file__)))
    if not site.startswith(PAR_CACHE):
        raise RuntimeError("this build has an environment of its own: " + site)
    return write(os.path.join(site, PLANTED))

def daemon():
    # A new session leaves the step's process group, which is all that
    # the group kill reaches when no sandbox is used.
    spawn(["/bin/sh", "-c", "while :; do sleep 0.05; done", MARKER], start_new_session=True)
    return "started"

attempt("read_secret_env", read_env)
attempt("read_outside_file", lambda: read(OUTSIDE_SECRET))
attempt("read_etc_shadow", lambda: read("/etc/shadow"))
attempt("write_outside", lambda: write(OUTSIDE_WRITE))
attempt("write_loader_root", lambda: write(ROOT_WRITE))
attempt("write_par_cache", lambda: write(os.path.join(PAR_CACHE, PLANTED)))
attempt("write_shared_build_env", write_shared_build_env)
attempt("connect_network", connect)
attempt("fork_many", fork_many)
attempt("allocate_64_gib", allocate)
attempt("leave_daemon", daemon)

with open(os.path.join(HERE, "hostile-report.json"), "w") as f:
    json.dump(results, f)

from setuptools import setup
setup(name="test-agent", version="1.0.0", packages=["core", "app"])
"#;

/// One run: the report setup.py wrote and the processes it left behind.
struct Run {
    report: BTreeMap<String, (bool, String)>,
    survivors: Vec<i32>,
    planted: Vec<String>,
    sandbox: String,
}

fn run(installer: &str, sandbox: &str) -> Run {
    let ws = Workspace::new();
    let outside = ws.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, "hunter2").expect("secret");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let marker = format!("par-hostile-{}", ws.path().file_name().expect("name").to_string_lossy());
    let cache = binary().component_cache();
    std::fs::create_dir_all(&cache).expect("cache dir");
    let cache = cache.canonicalize().expect("canonical cache dir");
    let planted_name = format!("planted-{marker}");
    let setup = format!(
        "PORT = {port}\nMARKER = {marker:?}\nOUTSIDE_SECRET = {secret:?}\nOUTSIDE_WRITE = {write:?}\nROOT_WRITE = {root:?}\nPAR_CACHE = {cache:?}\nPLANTED = {planted_name:?}\n{ATTEMPTS}",
        secret = secret.display().to_string(),
        write = outside.join("planted").display().to_string(),
        root = ws.root().join("planted").display().to_string(),
        cache = cache.display().to_string(),
    );
    let apkg = ws.apkg("agent", &Apkg::valid_agent().replace("setup.py", setup));
    let mut args = binary().load_args(&apkg, installer);
    args.extend(["--sandbox".into(), sandbox.into()]);
    let output = binary()
        .command(&ws, &args)
        .env("PAR_TEST_SECRET", "hunter2")
        .output()
        .expect("run par");
    assert_succeeded(&output);
    let sandbox = json(&output)["installer_sandbox"].as_str().unwrap_or("?").to_owned();
    let report_path = ws.root().join("packages/test-agent@1.0.0/hostile-report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("setup.py wrote its report")).expect("JSON");
    let report = report
        .as_object()
        .expect("object")
        .iter()
        .map(|(name, r)| {
            let ok = r["ok"].as_bool().expect("ok");
            (name.clone(), (ok, r["detail"].as_str().unwrap_or("").to_owned()))
        })
        .collect();
    let left = survivors(&marker);
    for pid in processes_mentioning(&marker) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).expect("pid"),
            rustix::process::Signal::KILL,
        );
    }
    let in_cache = [cache.join(&planted_name)]
        .into_iter()
        .chain(build_env_sites(&cache).map(|site| site.join(&planted_name)));
    let planted = [outside.join("planted"), ws.root().join("planted")]
        .into_iter()
        .chain(in_cache)
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    // par's cache is shared by every test: take back what setup.py planted there.
    for path in planted.iter().filter(|p| p.starts_with(&*cache.to_string_lossy())) {
        let _ = std::fs::remove_file(path);
    }
    Run {
        report,
        survivors: left,
        planted,
        sandbox,
    }
}

/// The `site-packages` of every build environment in par's cache.
fn build_env_sites(cache: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    let children = |dir: std::path::PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
    };
    build_environments(cache)
        .into_iter()
        .flat_map(move |env| children(env.join("lib")))
        .map(|lib| lib.join("site-packages"))
        .filter(|site| site.is_dir())
}

fn succeeded(run: &Run) -> Vec<&str> {
    run.report
        .iter()
        .filter(|(_, (ok, _))| *ok)
        .map(|(name, _)| name.as_str())
        .collect()
}

const EVERY_ATTEMPT: [&str; 11] = [
    "allocate_64_gib",
    "connect_network",
    "fork_many",
    "leave_daemon",
    "read_etc_shadow",
    "read_outside_file",
    "read_secret_env",
    "write_loader_root",
    "write_outside",
    "write_par_cache",
    "write_shared_build_env",
];

fn under_the_sandbox_every_attempt_fails(installer: &str) {
    let run = run(installer, "bwrap");
    assert_eq!(run.sandbox, "bwrap");
    assert_eq!(run.report.keys().map(String::as_str).collect::<Vec<_>>(), EVERY_ATTEMPT);
    // Starting a process is not refused; what the sandbox guarantees is that
    // none outlives the step. Forking 600 is refused where the pids cgroup is.
    let expected: &[&str] = if pids_cgroups() {
        &["leave_daemon"]
    } else {
        &["fork_many", "leave_daemon"]
    };
    assert_eq!(
        succeeded(&run),
        expected,
        "{installer}: attempts that got through the sandbox: {:?}",
        run.report
    );
    assert_eq!(
        run.survivors,
        Vec::<i32>::new(),
        "{installer}: processes outlived the step"
    );
    assert_eq!(run.planted, Vec::<String>::new(), "{installer}: files written outside");
    let (_, detail) = &run.report["read_outside_file"];
    assert!(
        detail.contains("FileNotFoundError"),
        "the outside is invisible, not just unreadable: {detail}"
    );
    let (_, detail) = &run.report["write_loader_root"];
    assert!(detail.contains("Read-only file system"), "{detail}");
    // uv's builds run in par's shared build environment, bound read-only;
    // pip builds in an environment of its own, which par never shares.
    let (_, detail) = &run.report["write_shared_build_env"];
    let expected = if installer == "uv" {
        "Read-only file system"
    } else {
        "an environment of its own"
    };
    assert!(detail.contains(expected), "{installer}: {detail}");
}

fn without_the_sandbox_files_network_and_daemons_are_open(installer: &str) {
    let run = run(installer, "none");
    assert_eq!(run.sandbox, "none");
    // What the process-level defences alone still stop: the environment is
    // cleared, RLIMIT_AS stops the allocation, and where the pids cgroup is
    // available it caps forking and kills the daemon with the step.
    // Everything else is open to setup.py.
    let mut expected = vec![
        "connect_network",
        "leave_daemon",
        "read_outside_file",
        "write_loader_root",
        "write_outside",
        "write_par_cache",
    ];
    if installer == "uv" {
        expected.push("write_shared_build_env");
    }
    if !pids_cgroups() {
        expected.push("fork_many");
    }
    if Path::new("/etc/shadow").exists() && rustix::process::geteuid().is_root() {
        expected.push("read_etc_shadow");
    }
    expected.sort_unstable();
    assert_eq!(succeeded(&run), expected, "{installer}: {:?}", run.report);
    assert_eq!(
        run.survivors.is_empty(),
        pids_cgroups(),
        "{installer}: the daemon escapes the group kill unless the step has a cgroup: {:?}",
        run.survivors
    );
    let writes = expected.iter().filter(|name| name.starts_with("write_")).count();
    assert_eq!(
        run.planted.len(),
        writes,
        "{installer}: every write that succeeded left its file: {:?}",
        run.planted
    );
}

#[test]
fn hostile_setup_py_under_the_sandbox_pip() {
    under_the_sandbox_every_attempt_fails("pip");
}

#[test]
fn hostile_setup_py_under_the_sandbox_uv() {
    under_the_sandbox_every_attempt_fails("uv");
}

#[test]
fn hostile_setup_py_without_the_sandbox_pip() {
    without_the_sandbox_files_network_and_daemons_are_open("pip");
}

#[test]
fn hostile_setup_py_without_the_sandbox_uv() {
    without_the_sandbox_files_network_and_daemons_are_open("uv");
}

#[test]
fn sandbox_bwrap_fails_the_load_when_bubblewrap_is_missing() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let mut args = binary().load_args(&apkg, "uv");
    args.extend(["--sandbox".into(), "bwrap".into()]);
    let output = binary()
        .command(&ws, &args)
        .env("PATH", "/nonexistent")
        .output()
        .expect("run par");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["error"]["kind"], "installer-sandbox");
    assert!(
        ws.published().is_empty(),
        "nothing is extracted before the sandbox is known"
    );
}
