//! The real `par` binary: exit codes, JSON output, and every hostile archive
//! refused with exit code 3 and nothing left behind.

use std::path::Path;
use std::process::{Command, Output};

use par_tests::workspace::component_cache;
use par_tests::{Apkg, Workspace, assert_no_failures, hostile_cases, tools};

const EXIT_INTERNAL: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_PACKAGE_REFUSED: i32 = 3;

/// The real binary, rooted in the workspace, sharing the compiled-guest cache.
fn par_command(ws: &Workspace, args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_par"));
    command
        .arg("--root")
        .arg(ws.root())
        .arg("--cache-dir")
        .arg(component_cache(env!("CARGO_TARGET_TMPDIR")))
        .args(args)
        .env_remove("PAR_LOG");
    command
}

fn par(ws: &Workspace, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    par_command(ws, &args).output().expect("run par")
}

/// Asserts exit code 0, showing the logs otherwise.
fn assert_succeeded(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/vivid-commenter.apkg")
        .display()
        .to_string()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn extract_the_shipped_example() {
    let ws = Workspace::new();
    let output = par(&ws, &["extract", &example(), "--json"]);
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["package_id"], "vivid-commenter@1.0.1");
    let path = result["path"].as_str().expect("path");
    assert_eq!(Path::new(path), ws.root().join("packages/vivid-commenter@1.0.1"));
    assert!(Path::new(path).join("core/langchain_util.py").is_file());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Loading agent package"), "{stderr}");
    assert!(stderr.contains("Package extracted"), "{stderr}");
}

#[test]
fn extract_prints_where_for_humans() {
    let ws = Workspace::new();
    let output = par(&ws, &["extract", &example(), "--app-id", "4906eeb7"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("vivid-commenter@1.0.1"), "{stdout}");
    assert!(
        stdout.contains(&ws.root().join("packages/4906eeb7@1.0.1").display().to_string()),
        "{stdout}"
    );
}

#[test]
fn inspect_prints_the_manifest_and_publishes_nothing() {
    let ws = Workspace::new();
    let output = par(&ws, &["inspect", &example()]);
    assert_succeeded(&output);
    let manifest = json(&output);
    assert_eq!(manifest["name"], "vivid-commenter");
    assert_eq!(manifest["entrypoint"]["module"], "app.main");
    assert_eq!(manifest["document"]["ui"]["basePath"], "/ui");
    ws.assert_left_nothing("inspect");
}

#[test]
fn logs_can_be_json_lines() {
    let ws = Workspace::new();
    let output = par(&ws, &["inspect", &example(), "--log-json"]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first).expect("JSON log line");
    assert_eq!(line["level"], "INFO");
    assert!(line["message"].is_string());
}

#[test]
fn quiet_silences_info_logs() {
    let ws = Workspace::new();
    let output = par(&ws, &["inspect", &example(), "-q"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn every_hostile_archive_exits_3_with_a_json_error() {
    let mut failures = Vec::new();
    for case in hostile_cases() {
        let ws = Workspace::new();
        let apkg = ws.apkg("hostile", &case.apkg);
        let apkg = apkg.display().to_string();
        let mut args = vec!["extract", apkg.as_str(), "--json"];
        let total = case.limits.max_total_bytes.map(|v| v.to_string());
        let file = case.limits.max_file_bytes.map(|v| v.to_string());
        if let Some(total) = &total {
            args.extend(["--max-total-bytes", total]);
        }
        if let Some(file) = &file {
            args.extend(["--max-file-bytes", file]);
        }
        let output = par(&ws, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(EXIT_PACKAGE_REFUSED) {
            failures.push(format!("{}: exit {:?}: {stderr}", case.name, output.status.code()));
            continue;
        }
        let error = &json(&output)["error"];
        if error["kind"] != case.expected.kind || error["subject"].as_str().map(str::to_owned) != case.expected.subject
        {
            failures.push(format!("{}: wrong JSON error {error}", case.name));
        }
        if !stderr.contains("error:") || !stderr.contains(case.expected.needle) {
            failures.push(format!("{}: stderr lacks the reason: {stderr}", case.name));
        }
        ws.assert_left_nothing(case.name);
    }
    assert_no_failures(&failures);
}

#[test]
fn missing_archive_is_an_internal_error_not_a_refusal() {
    let ws = Workspace::new();
    let missing = ws.path().join("in/missing.apkg").display().to_string();
    let output = par(&ws, &["extract", &missing, "--json"]);
    assert_eq!(output.status.code(), Some(EXIT_INTERNAL));
    assert_eq!(json(&output)["error"]["kind"], "io");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let ws = Workspace::new();
    assert_eq!(par(&ws, &["extract"]).status.code(), Some(EXIT_USAGE));
    assert_eq!(par(&ws, &["frobnicate"]).status.code(), Some(EXIT_USAGE));
    let apkg = ws.apkg("agent", &Apkg::valid_agent()).display().to_string();
    let output = par(&ws, &["extract", &apkg, "--app-id", "../escape"]);
    assert_eq!(output.status.code(), Some(EXIT_INTERNAL));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid app id"));
    ws.assert_left_nothing("bad app id");
}

#[test]
fn help_documents_the_exit_codes() {
    let ws = Workspace::new();
    let output = par(&ws, &["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "Exit codes:",
        "0  success",
        "1  internal error",
        "3  package refused",
        "inspect",
        "extract",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}

/// `par load` with `installer`, installing only from the test wheelhouse.
fn load_args_with(apkg: &str, installer: &str) -> Vec<String> {
    let tools_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools");
    let wheelhouse = tools::wheelhouse(&tools_dir).display().to_string();
    let uv = tools::uv(&tools_dir).display().to_string();
    let args = [
        "load",
        apkg,
        "--installer",
        installer,
        "--uv",
        &uv,
        "--no-index",
        "--find-links",
        &wheelhouse,
    ];
    args.into_iter().chain(["--json"]).map(String::from).collect()
}

/// `par load` with pip, installing only from the test wheelhouse.
fn load_args(apkg: &str) -> Vec<String> {
    load_args_with(apkg, "pip")
}

#[test]
fn load_the_shipped_example() {
    let ws = Workspace::new();
    let args = load_args(&example());
    let output = par(&ws, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["package_id"], "vivid-commenter@1.0.1");
    assert_eq!(result["installed_as_package"], true);
    assert_eq!(result["verified"], true);
    assert_eq!(result["installer"], "pip");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in [
        "Loading agent package",
        "Extracting package to",
        "Creating venv",
        "Installing agent package in editable mode",
        "Agent package installed successfully",
        "Package loaded successfully",
    ] {
        assert!(stderr.contains(line), "missing log line {line:?}:\n{stderr}");
    }
}

#[test]
fn installer_steps_never_see_the_loaders_environment() {
    let ws = Workspace::new();
    let leak = ws.path().join("in/environment.txt");
    let setup = format!(
        "import os\nopen({:?}, 'w').write('\\n'.join(sorted(os.environ)))\nfrom setuptools import setup\nsetup(name='test-agent', version='1.0.0', packages=['core', 'app'])\n",
        leak.display().to_string()
    );
    let apkg = ws
        .apkg("agent", &Apkg::valid_agent().replace("setup.py", setup))
        .display()
        .to_string();
    let args = load_args(&apkg);
    let output = par_command(&ws, &args)
        .env("RUNTIME_API_SECRET", "hunter2")
        .env("AWS_SECRET_ACCESS_KEY", "also-secret")
        .output()
        .expect("run par");
    assert_succeeded(&output);
    let seen = std::fs::read_to_string(&leak).expect("setup.py recorded its environment");
    assert!(!seen.contains("SECRET"), "secrets reached setup.py:\n{seen}");
    assert!(
        seen.lines().any(|name| name == "PATH"),
        "PATH is on the allow-list:\n{seen}"
    );
}

#[test]
fn a_load_killed_mid_install_is_followed_by_one_that_succeeds_pip() {
    killed_load_then_success("pip");
}

#[test]
fn a_load_killed_mid_install_is_followed_by_one_that_succeeds_uv() {
    killed_load_then_success("uv");
}

fn killed_load_then_success(installer: &str) {
    let ws = Workspace::new();
    let flag = ws.path().join("in/slow.flag");
    let started = ws.path().join("in/started.flag");
    std::fs::write(&flag, "").expect("flag");
    let setup = format!(
        "import os, time\nif os.path.exists({flag:?}):\n    open({started:?}, 'w').close()\n    time.sleep(20)\nfrom setuptools import setup\nsetup(name='test-agent', version='1.0.0', packages=['core', 'app'])\n",
        flag = flag.display().to_string(),
        started = started.display().to_string()
    );
    let apkg = ws
        .apkg("agent", &Apkg::valid_agent().replace("setup.py", setup))
        .display()
        .to_string();
    let args = load_args_with(&apkg, installer);
    let mut first = par_command(&ws, &args).arg("-q").spawn().expect("spawn par");
    let reached = (0..1200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        started.exists()
    });
    assert!(reached, "the first load never reached the self-install");
    first.kill().expect("SIGKILL the loader");
    first.wait().expect("reap");
    std::fs::remove_file(&flag).expect("unflag");

    let output = par(&ws, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["venv_reused"], false, "the half-built venv must not be reused");
    assert_eq!(result["verified"], true);
    assert_eq!(par_tests::workspace::names_in(&ws.root().join("venvs")).len(), 1);
    assert_eq!(
        par_tests::workspace::names_in(&ws.root().join("staging")),
        Vec::<String>::new()
    );
}

/// Runs `script` in a private mount namespace where `ROOT` is a small tmpfs.
fn with_full_disk(ws: &Workspace, megabytes: u32, script: &str) -> Output {
    std::fs::create_dir_all(ws.root()).expect("root");
    let script = format!("mount -t tmpfs -o size={megabytes}m tmpfs \"$ROOT\" || exit 99\n{script}");
    Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .env("ROOT", ws.root())
        .env("PAR", env!("CARGO_BIN_EXE_par"))
        .env("PAR_CACHE_DIR", component_cache(env!("CARGO_TARGET_TMPDIR")))
        .output()
        .expect("run unshare")
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
    let script = format!(
        "\"$PAR\" --root \"$ROOT\" extract {apkg:?} --json\necho \"exit=$?\"\nls -A \"$ROOT/staging\" \"$ROOT/packages\" 2>/dev/null | grep -v ':$' | grep -v '^$' | sed 's/^/left: /'\n"
    );
    let output = with_full_disk(&ws, 2, &script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("exit=1"),
        "a full disk is the host's fault: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"kind\":\"io\""), "{stdout}");
    assert!(
        stdout.contains("no space left") && stdout.contains("data/part-"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("left: "),
        "staging or a package was left behind: {stdout}"
    );
}
