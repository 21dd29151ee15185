//! The real `par` binary: exit codes, JSON output, and every hostile archive
//! refused with exit code 3 and nothing left behind.

use std::path::Path;
use std::process::Output;

use par_tests::binary::{Par, assert_succeeded, json};
use par_tests::workspace::{build_environments, names_in};
use par_tests::{Apkg, Workspace, assert_no_failures, hostile_cases};

const EXIT_INTERNAL: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_PACKAGE_REFUSED: i32 = 3;

fn binary() -> Par {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR"))
}

fn par(ws: &Workspace, args: &[&str]) -> Output {
    binary().run(ws, args)
}

/// Asserts that each of the spec's log lines reached stderr.
fn assert_logged(output: &Output, lines: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in lines {
        assert!(stderr.contains(line), "missing log line {line:?}:\n{stderr}");
    }
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/vivid-commenter.apkg")
        .display()
        .to_string()
}

#[test]
fn extract_the_shipped_example() {
    let ws = Workspace::new();
    let output = par(&ws, &["extract", &example(), "--json"]);
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["package_id"], "vivid-commenter@1.0.1");
    let path = result["path"].as_str().expect("path");
    let link = result["link"].as_str().expect("link");
    assert_eq!(Path::new(link), ws.root().join("packages/vivid-commenter@1.0.1"));
    assert_eq!(std::fs::read_link(link).expect("a link"), Path::new(path));
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
fn list_refuses_a_root_others_can_write_naming_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.root().join("venvs")).expect("root");
    std::fs::set_permissions(ws.root(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let output = par(&ws, &["list", "--json"]);
    assert_eq!(output.status.code(), Some(EXIT_INTERNAL));
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "root-unsafe", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("0777")), "{error}");
    assert_eq!(names_in(&ws.root()), ["venvs"], "nothing made in a refused root");
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

#[test]
fn load_the_shipped_example() {
    let ws = Workspace::new();
    let output = binary().run(&ws, &binary().load_args(Path::new(&example()), "pip"));
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["package_id"], "vivid-commenter@1.0.1");
    assert_eq!(result["installed_as_package"], true);
    assert_eq!(result["verified"], true);
    assert_eq!(result["installer"], "pip");
    let (venv, lock) = (result["venv_path"].as_str(), result["lock"].as_str());
    assert_eq!(
        lock.map(Path::new),
        venv.map(|venv| Path::new(venv).join("pylock.toml")).as_deref()
    );
    let lock = std::fs::read_to_string(lock.expect("a lock")).expect("the lock is written");
    assert!(lock.contains("lock-version = \"1.0\""), "{lock}");
    assert_logged(
        &output,
        &[
            "Loading agent package",
            "Extracting package to",
            "Creating venv",
            "Installing agent package in editable mode",
            "Agent package installed successfully",
            "Package loaded successfully",
        ],
    );
}

#[test]
fn load_with_uv_from_a_relative_root() {
    let ws = Workspace::new();
    // Relative paths are the caller's: the sandboxed steps run elsewhere.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_par"))
        .current_dir(ws.path())
        .args(["--root", "root", "--cache-dir"])
        .arg(binary().component_cache())
        .args(binary().load_args(Path::new(&example()), "uv"))
        .env_remove("PAR_LOG")
        .output()
        .expect("run par");
    assert_succeeded(&output);
    let result = json(&output);
    assert_eq!(result["installer"], "uv");
    assert_eq!(
        (result["installed_as_package"].as_bool(), result["verified"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(
        result["link"].as_str().map(Path::new),
        Some(ws.root().join("packages/vivid-commenter@1.0.1").as_path())
    );
    assert_eq!(
        result["link"].as_str().and_then(|link| std::fs::read_link(link).ok()),
        result["path"].as_str().map(std::path::PathBuf::from)
    );
    assert_logged(
        &output,
        &[
            "Creating venv",
            "Installing agent package in editable mode",
            "Agent package installed successfully",
            "Package loaded successfully",
        ],
    );
}

#[test]
fn a_failing_setup_py_cannot_reach_the_terminal_with_control_characters() {
    let ws = Workspace::new();
    // Erase the line, return, print par's own success line, set the
    // terminal's title: what a forged report looks like.
    let forger = "import sys\nsys.stderr.write('\\x1b[2K\\rLoaded test-agent@1.0.0 ok\\x1b]0;pwned\\x07\\x9b2J\\n')\nsys.stdout.write('\\x1b[31mred\\n')\nsys.exit(1)\n";
    let apkg = ws.apkg("agent", &Apkg::valid_agent().replace("setup.py", forger));
    for (installer, json_output) in [("uv", true), ("uv", false), ("pip", true)] {
        let mut args = binary().load_args(&apkg, installer);
        if !json_output {
            args.retain(|arg| arg != "--json");
        }
        let output = binary().command(&ws, &args).output().expect("run par");
        assert_eq!(output.status.code(), Some(EXIT_PACKAGE_REFUSED));
        let printed = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        let text = String::from_utf8_lossy(&printed);
        assert!(
            text.contains("Loaded test-agent@1.0.0 ok"),
            "the output is reported: {text}"
        );
        for forbidden in ['\x1b', '\r', '\x07', '\u{9b}'] {
            assert!(
                !text.contains(forbidden),
                "{forbidden:?} reached the terminal: {text:?}"
            );
        }
    }
}

#[test]
fn a_refused_requirement_exits_3_naming_its_file() {
    let ws = Workspace::new();
    let apkg = Apkg::valid_agent().replace("requirements.txt", "requests\nrequests -f ./wheels\n");
    let apkg = ws.apkg("agent", &apkg);
    let output = binary()
        .command(&ws, &binary().load_args(&apkg, "pip"))
        .output()
        .expect("run par");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_PACKAGE_REFUSED), "{stderr}");
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "requirements-invalid", "{error}");
    assert_eq!(error["subject"], "requirements.txt", "{error}");
    assert!(stderr.contains("requirements.txt:2"), "{stderr}");
    assert_eq!(
        names_in(&ws.root().join("venvs")),
        Vec::<String>::new(),
        "no venv was created"
    );
}

#[test]
fn par_lock_writes_locks_that_a_load_installs_exactly() {
    let ws = Workspace::new();
    let apkg = Apkg::pyproject_agent().replace("requirements.txt", "packaging>=20\n");
    let apkg = ws.apkg("agent", &apkg);
    let lock = ws.path().join("in").join("pylock.toml");
    // `lock` takes the same installer options as `load`.
    let mut args = binary().load_args(&apkg, "uv");
    args[0] = "lock".into();
    args.extend(["-o".into(), lock.display().to_string()]);
    let output = binary().run(&ws, &args);
    assert_succeeded(&output);
    let written = json(&output);
    let build = ws.path().join("in").join("pylock.build.toml");
    assert_eq!(written["lock"].as_str().map(Path::new), Some(lock.as_path()));
    assert_eq!(written["build_lock"].as_str().map(Path::new), Some(build.as_path()));
    let text = std::fs::read_to_string(&lock).expect("the lock");
    assert!(
        text.contains("name = \"packaging\"") && text.contains("version = \"26.4\""),
        "{text}"
    );
    let build = std::fs::read_to_string(&build).expect("the build lock");
    assert!(build.contains("name = \"setuptools\""), "{build}");
    assert_eq!(
        names_in(&ws.root().join("venvs")),
        Vec::<String>::new(),
        "nothing installed"
    );

    let mut args = binary().load_args(&apkg, "uv");
    args.extend(["--lock".into(), lock.display().to_string()]);
    let output = binary().run(&ws, &args);
    assert_succeeded(&output);
    assert_eq!(json(&output)["requirements_count"], 1);
}

#[test]
fn a_lock_that_cannot_be_used_exits_3_naming_its_entry() {
    let ws = Workspace::new();
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let lock = ws.path().join("in").join("pylock.toml");
    std::fs::write(
        &lock,
        "lock-version = \"1.0\"\n[[packages]]\nname = \"evil\"\ndirectory = { path = \"/etc\" }\n",
    )
    .expect("write the lock");
    let mut args = binary().load_args(&apkg, "uv");
    args.extend(["--lock".into(), lock.display().to_string()]);
    let output = binary().command(&ws, &args).output().expect("run par");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_PACKAGE_REFUSED), "{stderr}");
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "lock-invalid", "{error}");
    assert_eq!(error["subject"], "packages[0] (evil)", "{error}");
    ws.assert_left_nothing("a refused lock");
}

/// `par bundle` with a key writes a bundle and its signature; `par load
/// AGENT.parb --offline` with that key trusted installs from it alone; a
/// bundle without its lock exits 3, naming the member.
#[test]
fn par_bundle_writes_a_signed_bundle_that_loads_offline() {
    let ws = Workspace::new();
    let apkg = ws.apkg(
        "agent",
        &Apkg::valid_agent().replace("requirements.txt", "packaging>=20\n"),
    );
    let prefix = ws.path().join("in").join("signer");
    assert_succeeded(&binary().run(&ws, &["keygen", "-o", &prefix.display().to_string()]));
    let parb = ws.path().join("in").join("agent.parb");
    let mut args = binary().load_args(&apkg, "uv");
    args[0] = "bundle".into();
    args.extend([
        "-o".into(),
        parb.display().to_string(),
        "--key".into(),
        prefix.with_extension("key").display().to_string(),
    ]);
    let output = binary().run(&ws, &args);
    assert_succeeded(&output);
    let written = json(&output);
    assert_eq!(written["path"].as_str().map(Path::new), Some(parb.as_path()));
    let files: Vec<&str> = written["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(files.contains(&"packaging-26.4-py3-none-any.whl"), "{written}");
    assert!(parb.with_extension("parb.minisig").is_file());

    let package = binary().load_bundle_trusting(&ws, &parb, &prefix.with_extension("pub"));
    assert_eq!(package["requirements_count"], 1, "{package}");
    assert_eq!(package["verified"], true, "{package}");
    assert!(package["signed"]["key_id"].is_string(), "{package}");

    let other = Workspace::new();
    let incomplete = other.path().join("in").join("incomplete.parb");
    Apkg::new()
        .file("agent.apkg", Apkg::valid_agent().to_bytes())
        .write_to(&incomplete);
    let output = binary()
        .command(&other, &binary().load_args(&incomplete, "uv"))
        .output()
        .expect("run par");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_PACKAGE_REFUSED), "{stderr}");
    let error = &json(&output)["error"];
    assert_eq!(
        (&error["kind"], &error["subject"]),
        (&"bundle-invalid".into(), &"pylock.toml".into()),
        "{error}"
    );
    other.assert_left_nothing("a bundle without its lock");
}

#[test]
fn installer_steps_never_see_the_loaders_environment() {
    let ws = Workspace::new();
    // The package directory is writable from setup.py, with or without the installer sandbox.
    let setup = "import os\nhere = os.path.dirname(os.path.abspath(__file__))\nopen(os.path.join(here, 'environment.txt'), 'w').write('\\n'.join(sorted(os.environ)))\nfrom setuptools import setup\nsetup(name='test-agent', version='1.0.0', packages=['core', 'app'])\n";
    let apkg = ws.apkg("agent", &Apkg::valid_agent().replace("setup.py", setup));
    let output = binary()
        .command(&ws, &binary().load_args(&apkg, "pip"))
        .env("RUNTIME_API_SECRET", "hunter2")
        .env("AWS_SECRET_ACCESS_KEY", "also-secret")
        .output()
        .expect("run par");
    assert_succeeded(&output);
    let leak = ws.root().join("packages/test-agent@1.0.0/environment.txt");
    let seen = std::fs::read_to_string(&leak).expect("setup.py recorded its environment");
    assert!(!seen.contains("SECRET"), "secrets reached setup.py:\n{seen}");
    assert!(
        seen.lines().any(|name| name == "PATH"),
        "PATH is on the allow-list:\n{seen}"
    );
}

/// `--build-env-max-age 0`: every build makes a build environment of its
/// own, and the one before it, no longer held by a build, is removed.
#[test]
fn build_env_max_age_zero_makes_a_build_environment_per_build() {
    let ws = Workspace::new();
    let cache = binary().private_cache(&ws.path().join("cache"));
    let mut made = Vec::new();
    for app in ["first", "second"] {
        let mut args = binary().load_args(Path::new(&example()), "uv");
        args.extend(["--app-id", app, "--build-env-max-age", "0"].map(String::from));
        let output = binary()
            .command_with_cache(&ws, &cache, &args)
            .output()
            .expect("run par");
        assert_succeeded(&output);
        assert_eq!(json(&output)["installed_as_package"], true);
        let [generation] = <[_; 1]>::try_from(build_environments(&cache)).expect("one build environment");
        made.push(generation);
        if app == "second" {
            assert_logged(&output, &["Replacing a build environment past its age"]);
        }
    }
    assert_ne!(made[0], made[1], "the second build made its own");
}

#[test]
fn run_serves_until_sigterm_and_exits_with_the_agents_status() {
    use std::io::{BufRead, BufReader, Read};
    let ws = Workspace::new();
    let token = "par-cli-run-agent";
    let options = ["--health", "http:/health", "--env", "API_TOKEN=cli-secret-3f9a"];
    let mut child = binary()
        .run_agent(&ws, "http-agent", token, &options)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start par run");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the ready event");
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(
        (ready["event"].as_str(), ready["sandbox"].as_str()),
        (Some("ready"), Some("bwrap"))
    );
    let port = ready["ports"][0]["port"].as_u64().expect("a port");

    let answer = par_tests::agent::get(([127, 0, 0, 1], port as u16).into(), "/env");
    assert!(
        answer.contains("cli-secret-3f9a"),
        "the agent gets the caller's variable"
    );

    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let output = child.wait_with_output().expect("par ended");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the exit event");
    let exit: serde_json::Value = serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{e}: {rest:?}"));
    assert_eq!(exit["event"], "exit");
    // Python dies of the SIGTERM par forwarded: 128 + 15, which par exits with.
    assert_eq!((exit["code"].as_i64(), output.status.code()), (Some(143), Some(143)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("cli-secret-3f9a") && !line.contains("cli-secret-3f9a") && !rest.contains("cli-secret-3f9a")
    );
    assert!(stderr.contains("Agent ready"), "{stderr}");
    assert_eq!(par_tests::binary::survivors(token), Vec::<i32>::new());
}

#[test]
fn an_agent_dies_with_a_loader_killed_by_sigkill() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    let token = "par-cli-orphan-agent";
    let mut child = binary()
        .run_agent(&ws, "http-agent", token, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start par run");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the ready line");
    assert!(line.contains("ready"), "{line}");
    assert!(
        !par_tests::binary::processes_mentioning(token).is_empty(),
        "the agent runs, as this test needs"
    );
    child.kill().expect("SIGKILL par");
    child.wait().expect("par ended");
    assert_eq!(
        par_tests::binary::survivors(token),
        Vec::<i32>::new(),
        "the agent outlived its loader"
    );
}

#[test]
fn run_without_a_command_and_without_an_http_server_names_what_is_missing() {
    let ws = Workspace::new();
    let apkg = ws.apkg("plain", &par_tests::agent::agent_apkg("plain", ""));
    let mut args = binary().load_args(&apkg, "uv");
    args[0] = "run".into();
    args.extend(["--sandbox", "bwrap", "--listen", "rest=127.0.0.1:0"].map(String::from));
    let output = binary().command(&ws, &args).output().expect("run par");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "no-command", "{error}");
    assert!(stderr.contains("http_server"), "{stderr}");
}

/// `par load` with no uv on `PATH`: `auto` fetches par's pinned uv from the
/// index (here the real wheel, served offline), keeps it in the cache and
/// installs with it; a later load takes it from the cache, fetching nothing.
#[test]
fn a_load_with_no_uv_fetches_the_pinned_one_and_keeps_it() {
    let ws = Workspace::new();
    let cache = binary().private_cache(&ws.path().join("cache"));
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let with_uv_wheel = fetch_uv_args(&apkg, "auto", Some(&par_tests::tools::uv_wheels(&tools_dir())));
    let output = without_uv(binary().command_with_cache(&ws, &cache, &with_uv_wheel))
        .output()
        .expect("run par");
    assert_succeeded(&output);
    assert_eq!(json(&output)["installer"], "uv");
    assert_logged(&output, &["Fetching uv"]);
    let fetched = cache.join("uv-0.13.9/uv");
    let version = std::process::Command::new(&fetched)
        .arg("--version")
        .output()
        .expect("run the fetched uv");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with("uv 0.13.9 "), "{version}");
    assert!(!cache.join("uv-0.13.9/failed").exists());

    let mut args = fetch_uv_args(&apkg, "auto", None);
    args.extend(["--app-id".into(), "other".into()]);
    let output = without_uv(binary().command_with_cache(&ws, &cache, &args))
        .output()
        .expect("run par");
    assert_succeeded(&output);
    assert_eq!(json(&output)["installer"], "uv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("Fetching uv"), "fetched again:\n{stderr}");
}

/// A uv wheel whose bytes are not PyPI's (its name right, its hash not one
/// par pins) is never run: `auto` installs with pip, says why, and does not
/// try again within the hour; `--installer uv` tries, and fails naming the
/// installer; offline, or with `--no-fetch-uv`, nothing is tried.
#[test]
fn a_uv_wheel_with_another_hash_is_refused_and_pip_installs() {
    let ws = Workspace::new();
    let cache = binary().private_cache(&ws.path().join("cache"));
    let forged = ws.path().join("forged");
    std::fs::create_dir(&forged).expect("forged dir");
    for name in names_in(&par_tests::tools::uv_wheels(&tools_dir())) {
        if name.ends_with(".whl") {
            let mut bytes = std::fs::read(par_tests::tools::uv_wheels(&tools_dir()).join(&name)).expect("the wheel");
            bytes.extend_from_slice(b"forged");
            std::fs::write(forged.join(&name), bytes).expect("forge the wheel");
        }
    }
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let load = |installer: &str, extra: &[&str]| {
        let mut args = fetch_uv_args(&apkg, installer, Some(&forged));
        args.extend(extra.iter().map(|a| a.to_string()));
        without_uv(binary().command_with_cache(&ws, &cache, &args))
            .output()
            .expect("run par")
    };
    let output = load("auto", &[]);
    assert_succeeded(&output);
    assert_eq!(json(&output)["installer"], "pip");
    assert_logged(&output, &["Fetching uv", "Could not fetch uv", "HASHES"]);
    assert!(!cache.join("uv-0.13.9/uv").exists(), "a forged uv was kept");
    assert!(cache.join("uv-0.13.9/failed").is_file());

    let output = load("uv", &[]);
    assert_ne!(output.status.code(), Some(0));
    assert_logged(&output, &["Fetching uv", "fetching uv 0.13.9 failed"]);
    assert_eq!(json(&output)["error"]["kind"], "invalid-input");

    let not_fetching = |extra: &[&str]| {
        let output = load("auto", extra);
        assert_succeeded(&output);
        assert_eq!(json(&output)["installer"], "pip", "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("Fetching uv"), "{extra:?} fetched:\n{stderr}");
    };
    not_fetching(&[]);
    std::fs::remove_file(cache.join("uv-0.13.9/failed")).expect("the failure is remembered");
    not_fetching(&["--offline"]);
    not_fetching(&["--no-fetch-uv"]);
    assert!(!cache.join("uv-0.13.9/failed").exists(), "a fetch was tried");
}

fn tools_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools")
}

/// `load APKG --installer INSTALLER` with the default `uv` name, from the
/// wheelhouse and, when given, a directory holding uv's wheel.
fn fetch_uv_args(apkg: &Path, installer: &str, uv_wheels: Option<&Path>) -> Vec<String> {
    let mut args = binary().load_args(apkg, installer);
    let uv = args.iter().position(|a| a == "--uv").expect("--uv");
    args.drain(uv..uv + 2);
    if let Some(dir) = uv_wheels {
        args.extend(["--find-links".into(), dir.display().to_string()]);
    }
    args
}

/// `command` with no uv on its `PATH` and the interpreter named by its
/// absolute path (the directory it is in may hold a uv too).
fn without_uv(mut command: std::process::Command) -> std::process::Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("uv").exists())
        .collect();
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    command
        .env("PATH", std::env::join_paths(kept).expect("PATH"))
        .arg("--python")
        .arg(String::from_utf8_lossy(&python.stdout).trim());
    command
}
