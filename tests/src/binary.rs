//! Running the real `par` binary from a test: rooted in a [`Workspace`],
//! sharing the compiled-guest cache, installing only from the test wheelhouse.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::workspace::{component_cache, installer_cache, names_in};
use crate::{Workspace, tools};

/// The `par` binary of the test build (`env!("CARGO_BIN_EXE_par")`) and the
/// test target's scratch directory (`env!("CARGO_TARGET_TMPDIR")`).
#[derive(Debug, Clone)]
pub struct Par {
    binary: PathBuf,
    target_tmpdir: PathBuf,
}

impl Par {
    /// The binary at `binary`, with shared state under `target_tmpdir`.
    pub fn new(binary: &str, target_tmpdir: &str) -> Self {
        Self {
            binary: binary.into(),
            target_tmpdir: target_tmpdir.into(),
        }
    }

    /// The binary's path.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Where the compiled guest is cached for every test.
    pub fn component_cache(&self) -> PathBuf {
        component_cache(&self.target_tmpdir.to_string_lossy())
    }

    /// `par --root {ws}/root --cache-dir … {args}`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, ws: &Workspace, args: &[S]) -> Command {
        self.command_with_cache(ws, &self.component_cache(), args)
    }

    /// `par --root {ws}/root --cache-dir {cache} {args}`: for a test that
    /// must see what par leaves in its cache, alone.
    pub fn command_with_cache<S: AsRef<std::ffi::OsStr>>(&self, ws: &Workspace, cache: &Path, args: &[S]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(ws.root())
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env_remove("PAR_LOG");
        command
    }

    /// A cache of its own at `dir` (private, as par requires), holding a copy
    /// of the shared compiled guest so nothing is compiled again.
    pub fn private_cache(&self, dir: &Path) -> PathBuf {
        std::fs::DirBuilder::new().mode(0o700).create(dir).expect("cache dir");
        let shared = self.component_cache();
        for name in names_in(&shared).into_iter().filter(|name| name.ends_with(".cwasm")) {
            std::fs::copy(shared.join(&name), dir.join(&name)).expect("copy the compiled guest");
        }
        dir.to_owned()
    }

    /// Runs [`Par::command`] to completion.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, ws: &Workspace, args: &[S]) -> Output {
        self.command(ws, args).output().expect("run par")
    }

    /// `par run` of the test HTTP agent ([`crate::agent::agent_apkg`] named
    /// `app`) in the sandbox on a free port, offline, with `options`, its
    /// stdout piped for the ready event; `token` marks its processes.
    pub fn run_agent(&self, ws: &Workspace, app: &str, token: &str, options: &[&str]) -> Command {
        let apkg = ws.apkg(app, &crate::agent::agent_apkg(app, ""));
        let mut args = self.load_args(&apkg, "uv");
        args[0] = "run".into();
        args.extend(["--sandbox", "bwrap", "--listen", "http=127.0.0.1:0"].map(String::from));
        args.extend(options.iter().map(|o| o.to_string()));
        args.extend(["--", "python", "server.py", token].map(String::from));
        let mut command = self.command(ws, &args);
        command.stdout(std::process::Stdio::piped());
        command
    }

    /// `par load {parb} --offline --trusted-key {public_key}` with uv, which
    /// must succeed; the loaded package as JSON.
    pub fn load_bundle_trusting(&self, ws: &Workspace, parb: &Path, public_key: &Path) -> serde_json::Value {
        let mut args = self.load_args(parb, "uv");
        args.extend([
            "--offline".into(),
            "--trusted-key".into(),
            public_key.display().to_string(),
        ]);
        let output = self.run(ws, &args);
        assert_succeeded(&output);
        json(&output)
    }

    /// `load {apkg} --installer {installer} --uv … --installer-cache …
    /// --no-index --find-links {wheelhouse} --json`.
    pub fn load_args(&self, apkg: &Path, installer: &str) -> Vec<String> {
        let tools_dir = self.target_tmpdir.join("install-tools");
        let wheelhouse = tools::wheelhouse(&tools_dir).display().to_string();
        let uv = tools::uv(&tools_dir).display().to_string();
        let installer_cache = installer_cache(&self.target_tmpdir.to_string_lossy())
            .display()
            .to_string();
        let apkg = apkg.display().to_string();
        [
            "load",
            &apkg,
            "--installer",
            installer,
            "--uv",
            &uv,
            "--installer-cache",
            &installer_cache,
            "--no-index",
            "--find-links",
            &wheelhouse,
            "--json",
        ]
        .map(String::from)
        .into()
    }
}

/// Asserts exit code 0, showing the logs otherwise.
pub fn assert_succeeded(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Standard output parsed as JSON.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// Pids of live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// Waits up to five seconds (a PID namespace takes a moment to be torn
/// down on a loaded machine) for every process mentioning `needle` to be
/// gone, and returns those still there.
pub fn survivors(needle: &str) -> Vec<i32> {
    for _ in 0..100 {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    processes_mentioning(needle)
}
