//! Faults during a load, through the real binary: SIGKILL at each phase of a
//! redeploy, and a disk that fills up during extraction or during install.
//! After each, nothing half-built is published, reused or left running, the
//! previous deployment still imports its own code, and the next load of the
//! same package succeeds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use par_tests::binary::{Par, assert_succeeded, json, survivors};
use par_tests::workspace::names_in;
use par_tests::{Apkg, Workspace};

fn binary() -> Par {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR"))
}

/// Files in the agent's `data/`: enough that writing them takes the guest a
/// while after its first progress line.
const DATA_FILES: usize = 4000;

/// Each phase of a load and the log line that announces it: the loader is
/// killed the moment the line appears, while the phase is under way. During
/// extraction that is the guest's progress line once it has written its
/// first batch of entries (a debug line, hence `-v`).
const KILL_POINTS: [(&str, &str); 4] = [
    ("extraction", "written=256 "),
    ("venv creation", "Creating venv"),
    ("requirements install", "Installing dependencies from requirements.txt"),
    ("self-install", "Installing agent package in editable mode"),
];

/// The agent of the same name and version, marked `release`, with a
/// requirement (served by the wheelhouse) and enough files that extraction
/// takes a noticeable moment.
fn agent(release: &str) -> Apkg {
    let apkg = Apkg::valid_agent()
        .replace("requirements.txt", "wheel\n")
        .file("core/release.py", format!("RELEASE = {release:?}\n"));
    (0..DATA_FILES).fold(apkg, |apkg, i| {
        apkg.file(&format!("data/f{i:04}.py"), format!("VALUE = {i}\n"))
    })
}

/// What `core.release` says in the venv of `python`, run from elsewhere.
fn release_imported_by(python: &str) -> String {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let output = Command::new(python)
        .args(["-c", "import core.release; print(core.release.RELEASE)"])
        .current_dir(elsewhere.path())
        .output()
        .expect("run the venv's python");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// Every regular file under `dir`, at any depth.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => files_under(&entry.path()),
                Ok(kind) if kind.is_file() => 1,
                _ => 0,
            })
            .sum()
    })
}

#[test]
fn killed_at_every_phase_then_loaded_pip() {
    killed_at_every_phase_then_loaded("pip");
}

#[test]
fn killed_at_every_phase_then_loaded_uv() {
    killed_at_every_phase_then_loaded("uv");
}

fn killed_at_every_phase_then_loaded(installer: &str) {
    let ws = Workspace::new();
    let good = ws.apkg("good", &agent("good"));
    let deployed = binary().run(&ws, &binary().load_args(&good, installer));
    assert_succeeded(&deployed);
    let deployed = json(&deployed);
    let (good_python, good_tree) = (
        deployed["python_path"].as_str().expect("python").to_owned(),
        deployed["path"].as_str().expect("tree").to_owned(),
    );
    let link = ws.root().join("packages/test-agent@1.0.0");
    for (phase, line) in KILL_POINTS {
        // A redeploy of the same name and version with new code, killed mid-phase.
        let apkg = ws.apkg(phase, &agent(phase));
        let mut args = binary().load_args(&apkg, installer);
        args.push("-v".into());
        let mut first = binary()
            .command(&ws, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn par");
        let stderr = first.stderr.take().expect("stderr");
        let mut seen = Vec::new();
        let reached = BufReader::new(stderr).lines().map_while(Result::ok).any(|logged| {
            seen.push(logged.clone());
            logged.contains(line)
        });
        first.kill().expect("SIGKILL the loader");
        first.wait().expect("reap");
        assert!(
            reached,
            "{installer}: the load never reached {phase}:\n{}",
            seen.join("\n")
        );

        if phase == "extraction" {
            let written = files_under(&ws.root().join("staging"));
            assert!(
                written > 0 && written < DATA_FILES,
                "{installer}: the kill landed outside extraction ({written} files in staging)"
            );
        }
        let root = ws.root().display().to_string();
        assert_eq!(
            survivors(&root),
            Vec::<i32>::new(),
            "{installer}, killed during {phase}: a step outlived the loader"
        );
        assert_eq!(
            std::fs::read_link(&link).expect("the app's link").display().to_string(),
            good_tree,
            "{installer}, killed during {phase}: the link left the last good deployment"
        );
        assert_eq!(
            release_imported_by(&good_python),
            "good",
            "{installer}, killed during {phase}: the running deployment's code changed"
        );
        for tree in names_in(&ws.root().join("trees")) {
            assert_eq!(
                names_in(&ws.root().join("trees").join(&tree).join("data")).len(),
                DATA_FILES,
                "{installer}, killed during {phase}: {tree} was published half-written"
            );
        }

        let output = binary().run(&ws, &args);
        assert_succeeded(&output);
        let result = json(&output);
        assert_eq!(
            result["venv_reused"], false,
            "{installer}, killed during {phase}: a half-built venv was reused"
        );
        assert_eq!(result["verified"], true, "{installer}, killed during {phase}");
        let python = result["python_path"].as_str().expect("python");
        assert_eq!(release_imported_by(python), phase, "{installer}: the new deployment");
        assert_eq!(release_imported_by(&good_python), "good", "{installer}: the old one");
        let venv = Path::new(result["venv_path"].as_str().expect("venv"));
        assert!(venv.join(".par-complete").is_file());
        assert_eq!(names_in(&ws.root().join("staging")), Vec::<String>::new());

        // The good archive again: unchanged, so current again at once.
        let again = binary().run(&ws, &binary().load_args(&good, installer));
        assert_succeeded(&again);
        assert_eq!(json(&again)["unchanged_redeploy"], true, "{installer}");
        assert_eq!(
            std::fs::read_link(&link).expect("the app's link").display().to_string(),
            good_tree
        );
    }
}

/// Runs `par --root $ROOT {args}` in a private mount namespace where the
/// root is a `megabytes` tmpfs. Its stdout ends with `exit=N` and a
/// `left: NAME` line per entry left in staging or in `{root}/{watched}`.
/// Returns stdout and stderr.
fn par_on_full_disk(ws: &Workspace, megabytes: u32, args: &[String], watched: &str) -> (String, String) {
    std::fs::create_dir_all(ws.root()).expect("root");
    let args: Vec<String> = args.iter().map(|arg| format!("{arg:?}")).collect();
    let script = format!(
        "mount -t tmpfs -o size={megabytes}m,mode=0755 tmpfs \"$ROOT\" || exit 99\n\
         \"$PAR\" --root \"$ROOT\" {}\necho \"exit=$?\"\n\
         ls -A \"$ROOT/staging\" \"$ROOT/{watched}\" 2>/dev/null | grep -v ':$' | grep -v '^$' | sed 's/^/left: /'\n",
        args.join(" ")
    );
    let output = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .env("ROOT", ws.root())
        .env("PAR", binary().binary())
        .env("PAR_CACHE_DIR", binary().component_cache())
        .output()
        .expect("run unshare");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_full_disk_during_extraction_is_a_clear_error_and_leaves_nothing() {
    let ws = Workspace::new();
    // Ten 900 KiB files of zeros: a tiny archive (each under the ratio
    // check's 1 MiB threshold) that expands past the 2 MiB disk.
    let big = (0..10).fold(Apkg::valid_agent(), |apkg, i| {
        apkg.file(&format!("data/part-{i}.bin"), vec![0u8; 900 * 1024])
    });
    let apkg = ws.apkg("big", &big).display().to_string();
    let args = ["extract".to_owned(), apkg, "--json".to_owned()];
    let (stdout, stderr) = par_on_full_disk(&ws, 2, &args, "packages");
    assert!(
        stdout.contains("exit=1"),
        "a full disk is the host's fault: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"kind\":\"disk-full\""), "{stdout}");
    assert!(
        stdout.contains("no space left") && stdout.contains("data/part-"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("left: "),
        "staging or a package was left behind: {stdout}"
    );
}

#[test]
fn a_full_disk_during_install_is_a_clear_error_and_leaves_no_venv_pip() {
    full_disk_during_install("pip");
}

#[test]
fn a_full_disk_during_install_is_a_clear_error_and_leaves_no_venv_uv() {
    full_disk_during_install("uv");
}

/// The package (a few KiB) fits on a 3 MiB disk; the venv with setuptools
/// installed into it (several MiB) does not.
fn full_disk_during_install(installer: &str) {
    let ws = Workspace::new();
    let apkg = ws.apkg(
        "agent",
        &Apkg::valid_agent().replace("requirements.txt", "setuptools\n"),
    );
    let (stdout, stderr) = par_on_full_disk(&ws, 3, &binary().load_args(&apkg, installer), "venvs");
    assert!(
        stdout.contains("exit=1"),
        "{installer}: a full disk is the host's fault, not the package's: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"kind\":\"disk-full\""), "{installer}: {stdout}");
    assert!(
        !stdout.contains("left: "),
        "{installer}: staging or a half-built venv was left behind: {stdout}\n{stderr}"
    );
    assert!(
        Path::new(&ws.root()).read_dir().is_ok(),
        "the root outside the namespace is untouched"
    );
}
